"""`lmliqa bench`: speed next to fidelity for every runnable artifact in a folder and the torch eager FP32
reference built from the checkpoint, measured in the same run.

Each (artifact, precision) row runs in its own fresh process (lmliqa.bench.measure; so its peak memory is its own
and one backend's thread pools do not slow the next), in a fixed order, on the same input: the contract's eval crops
of a real image, tiled to the batch. A batch counts images (each brings the contract's n crops, 9 for the 3 x 3
grid), so images/s is what a user scoring photos gets from the network; decoding and cropping, the same code for
every backend, is measured once separately (``preprocess_ms_per_image``). Timing: warm-up calls, then at least
``--iters`` calls and ``--min-time`` seconds; median and p95 latency per call.

    lmliqa bench --models DIR --checkpoint CKPT [--batch 1,8,32] [--threads 2] [--json] [--out FILE]
    lmliqa bench --camera ...     lmliqa bench --folder PHOTOS ...

Numbers on a shared VM vary +-20-30 % from run to run: compare the ratios of one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lmliqa import targets
from lmliqa.targets import Support, Target

from .formats import format_camera, format_folder, format_table
from .measure import peak_rss_mib

Progress = Callable[[str], None] | None


def candidates(models: Path, checkpoint: Path) -> list[tuple[Path, Target, str | None, str]]:
    """(artifact, target, precision, why not) for torch eager FP32 and every artifact x precision its target can
    execute; WHY NOT is the capability note when this machine cannot run it (then it is not timed)."""
    reference = targets.reference()
    out: list[tuple[Path, Target, str | None, str]] = [(checkpoint, reference, "fp32", "")]
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


def _job(path: Path, target: Target, precision: str | None, **fields: Any) -> dict[str, Any]:
    return {"path": str(path), "target": target.name, "precision": precision, **fields,
            "runtime_module": target.runtime_module if isinstance(target.runtime_module, str) else None}


def _spawn(job: dict[str, Any], timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Run one measurement JOB in a fresh process: (its result, "") or (None, why it did not run)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "lmliqa.bench.measure", json.dumps(job)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    if proc.returncode != 0:
        return None, (proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1]), ""


def _row_id(path: Path, target: Target, precision: str | None, backend: str | None = None) -> dict[str, Any]:
    """The columns that name a row (measured or skipped)."""
    return {"artifact": path.name, "target": target.name, "backend": backend or target.runtime, "precision": precision}


def _runnable(models: Path, checkpoint: Path, skipped: list[dict[str, Any]]) -> Iterator[tuple[Path, Target, Any]]:
    """(path, target, precision) of every row this machine runs; the others are appended to SKIPPED."""
    for path, target, precision, why_not in candidates(models, checkpoint):
        if not why_not and not isinstance(target.runtime_module, str) and target.name not in targets.names():
            why_not = "its runtime is not an importable module"
        if why_not:
            skipped.append({**_row_id(path, target, precision), "reason": why_not})
            continue
        yield path, target, precision


def _header(**fields: Any) -> dict[str, Any]:
    from lmliqa.provenance import cpu_name, provenance

    return {"provenance": provenance(), **fields, "cpu": cpu_name()}


def run_bench(models: str | Path, checkpoint: str | Path, batches: list[int], threads: int | None = None,
              image: str | None = None, warmup: int = 2, iters: int = 5, min_time: float = 2.0,
              timeout: float = 900, progress: Progress = print) -> dict[str, Any]:
    """The network of every runnable artifact x precision at each batch, next to torch eager FP32."""
    from lmliqa.provenance import provenance

    provenance()                     # fixes the commit this run starts from
    models, checkpoint = Path(models), Path(checkpoint)
    image = image or default_image()
    rows, skipped = [], []
    for path, target, precision in _runnable(models, checkpoint, skipped):
        job = _job(path, target, precision, mode="network", batches=batches, threads=threads, image=image,
                   warmup=warmup, iters=iters, min_time=min_time)
        res, why = _spawn(job, timeout)
        if res is None:
            skipped.append({**_row_id(path, target, precision), "reason": why})
            continue
        for r in res.pop("rows"):
            row = {**_row_id(path, target, precision), **res, **r, "model_size_mb": target.size_mb(path)}
            rows.append(row)
            if progress:
                progress(f"{row['artifact']:<28} {target.runtime:<12} {row['precision']:<9} batch {r['batch']:>3}: "
                         f"{r['images_per_s']:8.2f} img/s  median {r['median_ms']:8.1f} ms  p95 {r['p95_ms']:8.1f} ms")
    reference = {x["batch"]: x for x in rows if targets.get(x["target"]).reference}
    for r in rows:  # the ratio to torch eager FP32 at the same batch, measured in this run
        ref = reference.get(r["batch"])
        r["speedup_vs_torch_fp32"] = r["images_per_s"] / ref["images_per_s"] if ref else None
    return _header(models=str(models), checkpoint=str(checkpoint), image=image, batches=batches,
                   threads=threads or os.cpu_count(), rows=rows, skipped=skipped)


# torch baselines a PyTorch user would reach for, timed next to eager FP32 in camera mode: (precision, torch.compile
# mode, row name)
TORCH_BASELINES = (("fp32", None, "torch eager fp32"), ("fp32", "default", "torch.compile fp32"),
                   ("bf16", "default", "torch.compile bf16 autocast"))


def _camera_plan(models: Path, checkpoint: Path, baselines: bool, skipped: list[dict[str, Any]]):
    """(path, target, precision, torch.compile mode, row name) of every camera row: the torch baselines first."""
    reference = targets.reference()
    plan = [(checkpoint, reference, p, c, name) for p, c, name in (TORCH_BASELINES if baselines
                                                                    else TORCH_BASELINES[:1])]
    return plan + [(path, target, precision, None, "") for path, target, precision in
                   _runnable(models, checkpoint, skipped) if not target.reference]


def run_camera(models: str | Path, checkpoint: str | Path, threads: int | None = None, image: str | None = None,
               warmup: int = 10, runs: int = 100, quality: int = 90, baselines: bool = True, timeout: float = 1800,
               peak: str | Path | None = None, progress: Progress = print) -> dict[str, Any]:
    """Camera check for every runnable artifact x precision and the torch baselines: JPEG bytes -> score at
    batch 1, p50/p95 and the stage breakdown, each row in its own process. PEAK: a benchmarks/cpu_peak.py result;
    each row's network GMAC/s is then also given as a fraction of the peak of the precision it runs."""
    import tempfile

    from PIL import Image

    from lmliqa.provenance import provenance

    provenance()                     # fixes the commit this run starts from
    models, checkpoint = Path(models), Path(checkpoint)
    image = image or default_image()
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        jpeg = Path(tmp) / "frame.jpg"
        src = Image.open(image).convert("RGB")
        src.save(jpeg, quality=quality)
        frame = {"width": src.width, "height": src.height, "jpeg_quality": quality, "jpeg_bytes": jpeg.stat().st_size}
        for path, target, precision, compile_mode, label in _camera_plan(models, checkpoint, baselines, skipped):
            job = _job(path, target, precision, mode="camera", threads=threads, jpeg=str(jpeg), warmup=warmup,
                       runs=runs, compile=compile_mode)
            res, why = _spawn(job, timeout)
            row_id = _row_id(path, target, precision, backend=label)
            if res is None:
                skipped.append({**row_id, "reason": why})
                continue
            rows.append({**row_id, **res, "model_size_mb": target.size_mb(path)})
            if progress:
                st = res["stages_p50_ms"]
                progress(f"{path.name:<28} {row_id['backend']:<28} {res['precision']:<5} p50 {res['p50_ms']:7.1f} ms "
                         f"p95 {res['p95_ms']:7.1f} ms  (decode {st['decode']:.1f}, crops {st['crops']:.1f}, "
                         f"network {st['network']:.1f}, aggregate {st['aggregate']:.2f})")
    best = _add_ratios(rows, gmacs_per_image(checkpoint), json.loads(Path(peak).read_text())["peak_gmacs_per_s"]
                       if peak else None)
    return _header(mode="camera", models=str(models), checkpoint=str(checkpoint), image=image, frame=frame,
                   best_torch_baseline=best, gmacs_per_image=gmacs_per_image(checkpoint),
                   peak_file=str(peak) if peak else None, threads=threads or os.cpu_count(), rows=rows,
                   skipped=skipped)


def _add_ratios(rows: list[dict[str, Any]], gmac_image: float, peaks: dict[str, float] | None) -> str | None:
    """Each camera row's speed-up over torch eager and over the best torch baseline, its network GMAC/s and (with
    PEAKS) the fraction of this CPU's peak; returns the best torch baseline's name."""
    eager = next((r for r in rows if r["backend"] == TORCH_BASELINES[0][2]), None)
    torch_rows = [r for r in rows if targets.get(r["target"]).reference]
    best = min(torch_rows, key=lambda r: r["p50_ms"]) if torch_rows else None
    for r in rows:
        r["speedup_vs_torch_eager"] = eager["p50_ms"] / r["p50_ms"] if eager else None
        r["speedup_vs_best_torch"] = best["p50_ms"] / r["p50_ms"] if best else None
        r["network_gmacs_per_s"] = gmac_image / (r["stages_p50_ms"]["network"] / 1e3)
        r["utilisation"] = utilisation(r["network_gmacs_per_s"], r["precision"], peaks) if peaks else None
    return best["backend"] if best else None


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
               timeout: float = 1800, progress: Progress = print) -> dict[str, Any]:
    """Folder throughput: `score_many` over N real photos, end to end, next to the same scorer's network-only
    ceiling at the same batch, for every runnable artifact x precision (torch eager included)."""
    from lmliqa.inputs import Scan
    from lmliqa.provenance import provenance

    provenance()                     # fixes the commit this run starts from
    images = [p for _, p in zip(range(n_images), Scan([str(folder)]))]
    rows, skipped = [], []
    for path, target, precision in _runnable(Path(models), Path(checkpoint), skipped):
        job = _job(path, target, precision, mode="folder", threads=threads, images=images, batch=batch,
                   workers=workers, min_time=min_time)
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
    return _header(mode="folder", models=str(models), checkpoint=str(checkpoint), folder=str(folder),
                   n_images=len(images), batch=batch, workers=workers, threads=threads or os.cpu_count(), rows=rows,
                   skipped=skipped)


def default_image() -> str:
    """A real photo that ships in a wheel (scikit-image's chelsea), the default input of every mode."""
    from lmliqa.data.synthetic import wheel_photos

    photos = wheel_photos()
    return str(photos.get("chelsea") or sorted(photos.values())[0])


__all__ = ["run_bench", "run_camera", "run_folder", "candidates", "format_table", "format_camera", "format_folder",
           "gmacs_per_image", "utilisation", "peak_rss_mib", "TORCH_BASELINES"]
