"""`lmliqa bench`: speed next to fidelity for every runnable artifact in a folder and the torch eager FP32
reference built from the checkpoint, measured in the same run.

Each (artifact, precision) row runs in its own fresh process (so its peak memory is its own and one
backend's thread pools do not slow the next), in a fixed order, on the same input: the contract's eval crops
of a real image, tiled to the batch. A batch counts images (each brings the contract's n crops, 9 for the
3 x 3 grid), so images/s is what a user scoring photos gets from the network; decoding and cropping, the same
code for every backend, is measured once separately (``preprocess_ms_per_image``). Timing: warm-up calls,
then at least ``--iters`` calls and ``--min-time`` seconds; median and p95 latency per call.

    lmliqa bench --models DIR --checkpoint CKPT [--batch 1,8,32] [--threads 2] [--json] [--out FILE]

Numbers on a shared VM vary +-20-30 % from run to run: compare the ratios of one run.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.targets import Support, Target


def peak_rss_mib() -> float:
    """This process's own peak resident memory in MiB. On Linux VmHWM, which starts again at exec: ru_maxrss would
    also count the parent's resident memory at the fork (the kernel carries it over exec), so every row spawned
    by a large parent would report at least the parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024     # bytes on macOS, KiB on Linux


def measure_one(path: str, runtime_module: str, precision: str | None, batches: list[int], threads: int | None,
                image: str, warmup: int, iters: int, min_time: float) -> dict[str, Any]:
    """Runs in the child process: load (with the target's runtime module, by its import path), warm up, time;
    returns one dict per batch size."""


    rss0 = peak_rss_mib()
    t0 = time.perf_counter()
    scorer = _load_scorer(path, runtime_module, precision, threads, compile_mode=None)
    load_s = time.perf_counter() - t0
    crops = scorer.contract.eval_crops(image)
    t0 = time.perf_counter()
    for _ in range(5):
        scorer.contract.eval_crops(image)
    pre_ms = (time.perf_counter() - t0) / 5 * 1e3
    rows = []
    for b in batches:
        x = np.ascontiguousarray(np.concatenate([crops] * b), dtype=np.float32)
        times = _timed(partial(scorer.infer, x), warmup, iters, min_time, max_calls=200)
        med = statistics.median(times)
        rows.append({"batch": b, "crops_per_call": int(len(x)), "n_calls": len(times),
                     "median_ms": med * 1e3, "p95_ms": float(np.percentile(times, 95)) * 1e3,
                     "images_per_s": b / med, "crops_per_s": len(x) / med})
    return {"precision": scorer.precision.value, "precision_detail": scorer.detail, "load_s": load_s,
            "preprocess_ms_per_image": pre_ms,
            "threads": threads or os.cpu_count(), "peak_rss_mib": peak_rss_mib(),
            "rss_before_load_mib": rss0, "rows": rows}


def _timed(call, warmup: int, min_calls: int, min_time: float, max_calls: int | None = None) -> list[float]:
    """Seconds per CALL after WARMUP untimed calls: at least MIN_CALLS, and more until MIN_TIME seconds have
    passed (at most MAX_CALLS)."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or (time.perf_counter() - start < min_time
                                     and (max_calls is None or len(times) < max_calls)):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return times


def _load_scorer(path: str, runtime_module: str, precision: str | None, threads: int | None,
                 compile_mode: str | None):
    """The scorer of one row; compile_mode (torch rows only): wrap the network in torch.compile."""
    import importlib

    from lmliqa.targets import Precision

    scorer = importlib.import_module(runtime_module).SCORER(path, precision=Precision(precision) if precision else None,
                                                            device=None, threads=threads)
    if compile_mode:
        import torch

        scorer.model = torch.compile(scorer.model, mode=None if compile_mode == "default" else compile_mode)
    return scorer


def measure_camera(scorer, jpeg: bytes, warmup: int, runs: int) -> dict[str, Any]:
    """A camera check: encoded JPEG bytes in memory -> one score, batch 1, timed per stage (decode: bytes to RGB
    with orientation; crops: resize and the contract's grid; network; aggregation) over RUNS calls after WARMUP."""
    c = scorer.contract
    stages: dict[str, list[float]] = {"decode": [], "crops": [], "network": [], "aggregate": [], "total": []}
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        rgb = c.decode(jpeg)
        t1 = time.perf_counter()
        crops = c.grid_crops(rgb)
        t2 = time.perf_counter()
        crop_scores = scorer.infer(crops)
        t3 = time.perf_counter()
        score = c.aggregate(crop_scores)
        t4 = time.perf_counter()
        if i >= warmup:
            for k, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                stages[k].append(dt * 1e3)
    total = stages.pop("total")
    return {"runs": runs, "p50_ms": float(np.percentile(total, 50)), "p95_ms": float(np.percentile(total, 95)),
            "p95_over_p50": float(np.percentile(total, 95) / np.percentile(total, 50)),
            "stages_p50_ms": {k: float(np.percentile(v, 50)) for k, v in stages.items()}, "score": float(score)}


def measure_folder(scorer, images: list[str], batch: int, workers: int | None, min_time: float) -> dict[str, Any]:
    """End to end (files -> scores, decoding in WORKERS threads overlapped with inference) against the network-only
    ceiling of the same scorer at the same batch (pre-cut crops of the same photos), both in this process."""
    crops = np.concatenate([scorer.contract.eval_crops(p) for p in images[:batch]])
    ceiling = batch / statistics.median(_timed(partial(scorer.infer, crops), 2, 5, min_time))
    t = time.perf_counter()
    results = list(scorer.score_many(images, batch_size=batch, workers=workers))
    wall = time.perf_counter() - t
    return {"n_images": len(images), "batch": batch, "workers": workers, "scored": sum(r.ok for r in results),
            "end_to_end_images_per_s": len(images) / wall, "network_ceiling_images_per_s": ceiling,
            "fraction_of_ceiling": len(images) / wall / ceiling}


def candidates(models: Path, checkpoint: Path) -> list[tuple[Path, Target, str | None, str]]:
    """(artifact, target, precision, why not) for torch eager FP32 and every artifact x precision its target can
    execute; WHY NOT is the capability note when this machine cannot run it (then it is not timed)."""
    from lmliqa import targets

    out: list[tuple[Path, Target, str | None, str]] = [(checkpoint, targets.get("torch"), "fp32", "")]
    probes: dict[str, dict] = {}                     # one probe per target, not per artifact
    for art in targets.discover(models):
        if art.target.name not in probes:
            probes[art.target.name] = {c.precision: c for c in art.target.probe()}
        caps = probes[art.target.name]
        for precision in art.target.run_precisions(art.precision):
            cap = caps.get(precision or art.precision)
            why = "" if cap is None or cap.support is Support.RUNS else str(cap)
            out.append((art.path, art.target, precision.value if precision else None, why))
    return out


def _spawn(job: dict[str, Any], timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Run one measurement JOB in a fresh process: (its result, "") or (None, why it did not run)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "lmliqa.benchmarks.bench", "--child", json.dumps(job)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    if proc.returncode != 0:
        return None, (proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1]), ""


def _row_id(path: Path, target: Target, precision: str | None, backend: str | None = None) -> dict[str, Any]:
    """The columns that name a row (measured or skipped)."""
    return {"artifact": path.name, "target": target.name, "backend": backend or target.runtime, "precision": precision}


def _runnable(models: Path, checkpoint: Path, skipped: list[dict[str, Any]]):
    """(path, target, precision) of every row this machine runs; the others are appended to SKIPPED."""
    for path, target, precision, why_not in candidates(models, checkpoint):
        if not why_not and not isinstance(target.runtime_module, str):
            why_not = "its runtime is not an importable module"
        if why_not:
            skipped.append({**_row_id(path, target, precision), "reason": why_not})
            continue
        yield path, target, precision


def run_bench(models: str | Path, checkpoint: str | Path, batches: list[int], threads: int | None = None,
              image: str | None = None, warmup: int = 2, iters: int = 5, min_time: float = 2.0,
              timeout: float = 900, progress=print) -> dict[str, Any]:
    from lmliqa.parity import artifact_size_mb
    from lmliqa.provenance import cpu_name, provenance

    provenance()                     # fixes the commit this run starts from
    models, checkpoint = Path(models), Path(checkpoint)
    image = image or _default_image()
    rows, skipped = [], []
    for path, target, precision in _runnable(models, checkpoint, skipped):
        backend = target.runtime
        job = {"path": str(path), "runtime_module": target.runtime_module, "precision": precision,
               "batches": batches, "threads": threads, "image": image, "warmup": warmup, "iters": iters,
               "min_time": min_time}
        res, why = _spawn(job, timeout)
        if res is None:
            skipped.append({**_row_id(path, target, precision), "reason": why})
            continue
        for r in res.pop("rows"):
            row = {**_row_id(path, target, precision), **res, **r, "model_size_mb": artifact_size_mb(path)}
            rows.append(row)
            if progress:
                progress(f"{row['artifact']:<28} {backend:<12} {row['precision']:<9} batch {r['batch']:>3}: "
                         f"{r['images_per_s']:8.2f} img/s  median {r['median_ms']:8.1f} ms  p95 {r['p95_ms']:8.1f} ms")
    for r in rows:  # the ratio to torch eager FP32 at the same batch, measured in this run
        ref = next((x for x in rows if x["backend"] == "torch" and x["batch"] == r["batch"]), None)
        r["speedup_vs_torch_fp32"] = r["images_per_s"] / ref["images_per_s"] if ref else None
    return {"provenance": provenance(), "models": str(models), "checkpoint": str(checkpoint), "image": image,
            "batches": batches, "threads": threads or os.cpu_count(), "cpu": cpu_name(), "rows": rows,
            "skipped": skipped}


# torch baselines a PyTorch user would reach for, timed next to eager FP32 in camera mode
TORCH_BASELINES = (("fp32", None, "torch eager fp32"), ("fp32", "default", "torch.compile fp32"),
                   ("bf16", "default", "torch.compile bf16 autocast"))


def run_camera(models: str | Path, checkpoint: str | Path, threads: int | None = None, image: str | None = None,
               warmup: int = 10, runs: int = 100, quality: int = 90, baselines: bool = True, timeout: float = 1800,
               peak: str | Path | None = None, progress=print) -> dict[str, Any]:
    """Camera check for every runnable artifact x precision and the torch baselines: JPEG bytes -> score at
    batch 1, p50/p95 and the stage breakdown, each row in its own process. PEAK: a benchmarks/cpu_peak.py result;
    each row's network GMAC/s is then also given as a fraction of the peak of the precision it runs."""
    import tempfile

    from PIL import Image

    from lmliqa import targets
    from lmliqa.parity import artifact_size_mb
    from lmliqa.provenance import cpu_name, provenance

    provenance()                     # fixes the commit this run starts from
    models, checkpoint = Path(models), Path(checkpoint)
    image = image or _default_image()
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        jpeg = Path(tmp) / "frame.jpg"
        src = Image.open(image).convert("RGB")
        src.save(jpeg, quality=quality)
        jpeg_bytes = jpeg.stat().st_size
        plan = [(checkpoint, targets.get("torch"), p, c, name) for p, c, name in
                (TORCH_BASELINES if baselines else TORCH_BASELINES[:1])]
        plan += [(path, target, precision, None, "") for path, target, precision in
                 _runnable(models, checkpoint, skipped) if target.name != "torch"]
        for path, target, precision, compile_mode, label in plan:
            job = {"mode": "camera", "path": str(path), "runtime_module": target.runtime_module,
                   "precision": precision, "threads": threads, "jpeg": str(jpeg), "warmup": warmup, "runs": runs,
                   "compile": compile_mode}
            res, why = _spawn(job, timeout)
            row_id = _row_id(path, target, precision, backend=label)
            if res is None:
                skipped.append({**row_id, "reason": why})
                continue
            rows.append({**row_id, **res, "model_size_mb": artifact_size_mb(path)})
            if progress:
                st = res["stages_p50_ms"]
                progress(f"{path.name:<28} {row_id['backend']:<28} {res['precision']:<5} p50 {res['p50_ms']:7.1f} ms "
                         f"p95 {res['p95_ms']:7.1f} ms  (decode {st['decode']:.1f}, crops {st['crops']:.1f}, "
                         f"network {st['network']:.1f}, aggregate {st['aggregate']:.2f})")
    eager = next((r for r in rows if r["backend"] == "torch eager fp32"), None)
    torch_rows = [r for r in rows if r["target"] == "torch"]
    best = min(torch_rows, key=lambda r: r["p50_ms"]) if torch_rows else None
    gmac_image = gmacs_per_image(checkpoint)
    peaks = json.loads(Path(peak).read_text())["peak_gmacs_per_s"] if peak else None
    for r in rows:
        r["speedup_vs_torch_eager"] = eager["p50_ms"] / r["p50_ms"] if eager else None
        r["speedup_vs_best_torch"] = best["p50_ms"] / r["p50_ms"] if best else None
        r["network_gmacs_per_s"] = gmac_image / (r["stages_p50_ms"]["network"] / 1e3)
        r["utilisation"] = utilisation(r["network_gmacs_per_s"], r["precision"], peaks) if peaks else None
    return {"provenance": provenance(), "mode": "camera", "models": str(models), "checkpoint": str(checkpoint),
            "image": image, "frame": {"width": src.width, "height": src.height, "jpeg_quality": quality,
                                      "jpeg_bytes": jpeg_bytes},
            "best_torch_baseline": best["backend"] if best else None, "gmacs_per_image": gmac_image,
            "peak_file": str(peak) if peak else None, "threads": threads or os.cpu_count(),
            "cpu": cpu_name(), "rows": rows, "skipped": skipped}


def gmacs_per_image(checkpoint: Path) -> float:
    """Multiply-accumulates of the network for one image: GMAC per crop x the contract's crops."""
    from lmliqa.config import ModelConfig
    from lmliqa.models.checkpoint import read_metadata
    from lmliqa.models.network import gmacs_per_crop

    cfg = ModelConfig.from_dict(read_metadata(checkpoint)["config"])
    return gmacs_per_crop(cfg) * cfg.contract.n_eval_crops


def utilisation(gmacs_per_s: float, precision: str, peaks: dict[str, float]) -> float:
    """GMAC/s as a fraction of the best measured peak of the arithmetic PRECISION runs in (fp16 on a CPU: fp32;
    int8 with float parts, e.g. OpenVINO's int8+bf16: int8)."""
    kind = "int8" if precision.startswith("int8") else "bf16" if precision == "bf16" else "fp32"
    return gmacs_per_s / max(v for k, v in peaks.items() if k.split("_")[0] == kind and v == v)


def run_folder(models: str | Path, checkpoint: str | Path, folder: str | Path, n_images: int = 200, batch: int = 8,
               workers: int | None = None, threads: int | None = None, min_time: float = 3.0,
               timeout: float = 1800, progress=print) -> dict[str, Any]:
    """Folder throughput: `score_many` over N real photos, end to end, next to the same scorer's network-only
    ceiling at the same batch, for every runnable artifact x precision (torch eager included)."""
    from lmliqa.inputs import Scan
    from lmliqa.provenance import cpu_name, provenance

    provenance()                     # fixes the commit this run starts from
    images = [p for _, p in zip(range(n_images), Scan([str(folder)]))]
    rows, skipped = [], []
    for path, target, precision in _runnable(Path(models), Path(checkpoint), skipped):
        job = {"mode": "folder", "path": str(path), "runtime_module": target.runtime_module, "precision": precision,
               "threads": threads, "images": images, "batch": batch, "workers": workers, "min_time": min_time}
        res, why = _spawn(job, timeout)
        row_id = _row_id(path, target, precision)
        if res is None:
            skipped.append({**row_id, "reason": why})
            continue
        rows.append({**row_id, **res})
        if progress:
            progress(f"{path.name:<28} {target.runtime:<12} {res['precision']:<5} end to end "
                     f"{res['end_to_end_images_per_s']:7.2f} img/s, network ceiling "
                     f"{res['network_ceiling_images_per_s']:7.2f} img/s ({res['fraction_of_ceiling']:.0%})")
    return {"provenance": provenance(), "mode": "folder", "models": str(models), "checkpoint": str(checkpoint),
            "folder": str(folder), "n_images": len(images), "batch": batch, "workers": workers,
            "threads": threads or os.cpu_count(), "cpu": cpu_name(), "rows": rows, "skipped": skipped}


def _default_image() -> str:
    from lmliqa.data.synthetic import _wheel_photos  # the wheel photos the synthetic set is built from

    photos = _wheel_photos()
    return str(photos.get("chelsea") or sorted(photos.values())[0])


def format_table(report: dict[str, Any]) -> str:
    lines = [f"lmliqa bench: {report['cpu']}, {report['threads']} threads, batch = images "
             "(x the contract's crops each)", "",
             "| artifact | backend | precision | batch | images/s | median ms | p95 ms | x torch fp32 | size MB | "
             "peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        sp = r["speedup_vs_torch_fp32"]
        ratio = f"{sp:.2f}" if sp else "-"
        lines.append(f"| {r['artifact']} | {r['backend']} | {r['precision']} | {r['batch']} | "
                     f"{r['images_per_s']:.2f} | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | {ratio} | "
                     f"{r['model_size_mb']:.1f} | {r['peak_rss_mib']:.0f} |")
    for s in report["skipped"]:
        lines.append(f"| {s['artifact']} | {s['backend']} | {s['precision'] or 'stored'} | - | not run: {s['reason']} |"
                     " | | | | |")
    return "\n".join(lines) + "\n"


def format_camera(report: dict[str, Any]) -> str:
    f = report["frame"]
    lines = [f"lmliqa bench --camera: {report['cpu']}, {report['threads']} threads; a {f['width']}x{f['height']} "
             f"JPEG (q{f['jpeg_quality']}, {f['jpeg_bytes']} bytes) -> score, batch 1", "",
             "| artifact | runs as | precision | p50 ms | p95 ms | decode | crops | network | aggregate | "
             "x eager | x best torch | GMAC/s | of peak |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        st = r["stages_p50_ms"]
        lines.append(f"| {r['artifact']} | {r['backend']} | {r['precision']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
                     f"{st['decode']:.2f} | {st['crops']:.2f} | {st['network']:.1f} | {st['aggregate']:.3f} | "
                     f"{r['speedup_vs_torch_eager'] or 0:.2f} | {r['speedup_vs_best_torch'] or 0:.2f} | "
                     f"{r['network_gmacs_per_s']:.1f} | "
                     + (f"{r['utilisation']:.1%}" if r["utilisation"] is not None else "-") + " |")
    for s in report["skipped"]:
        lines.append(f"| {s['artifact']} | {s['backend']} | {s['precision'] or 'stored'} | not run: {s['reason']} |"
                     " | | | | | | |")
    return "\n".join(lines) + "\n"


def format_folder(report: dict[str, Any]) -> str:
    lines = [f"lmliqa bench --folder: {report['n_images']} photos of {report['folder']}, batch {report['batch']}, "
             f"{report['threads']} threads, decode workers {report['workers'] or 'default'}", "",
             "| artifact | backend | precision | end to end img/s | network ceiling img/s | fraction |",
             "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['artifact']} | {r['backend']} | {r['precision']} | {r['end_to_end_images_per_s']:.2f} | "
                     f"{r['network_ceiling_images_per_s']:.2f} | {r['fraction_of_ceiling']:.0%} |")
    for s in report["skipped"]:
        lines.append(f"| {s['artifact']} | {s['backend']} | {s['precision'] or 'stored'} | not run: {s['reason']} | |"
                     " |")
    return "\n".join(lines) + "\n"


def _child(job: dict[str, Any]) -> None:
    mode = job.get("mode", "network")
    if mode == "network":
        res = measure_one(job["path"], job["runtime_module"], job["precision"], job["batches"], job["threads"],
                          job["image"], job["warmup"], job["iters"], job["min_time"])
    else:
        rss0 = peak_rss_mib()
        t0 = time.perf_counter()
        scorer = _load_scorer(job["path"], job["runtime_module"], job["precision"], job["threads"], job.get("compile"))
        load_s = time.perf_counter() - t0
        if mode == "camera":
            res = measure_camera(scorer, Path(job["jpeg"]).read_bytes(), job["warmup"], job["runs"])
        else:
            res = measure_folder(scorer, job["images"], job["batch"], job.get("workers"), job["min_time"])
        res.update(precision=scorer.precision.value, precision_detail=scorer.detail, load_s=load_s,
                   threads=job["threads"] or os.cpu_count(), rss_before_load_mib=rss0,
                   peak_rss_mib=peak_rss_mib())
    print(json.dumps(res))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        try:
            _child(json.loads(sys.argv[2]))
        except Exception as exc:  # reported by the parent as the row's reason
            print(f"{type(exc).__name__}: {exc}".splitlines()[0])
            sys.exit(1)
