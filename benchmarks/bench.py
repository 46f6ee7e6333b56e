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
from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.targets import Support, Target


def measure_one(path: str, runtime_module: str, precision: str | None, batches: list[int], threads: int | None,
                image: str, warmup: int, iters: int, min_time: float) -> dict[str, Any]:
    """Runs in the child process: load (with the target's runtime module, by its import path), warm up, time;
    returns one dict per batch size."""
    import importlib

    from lmliqa.targets import Precision

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    scorer_cls = importlib.import_module(runtime_module).SCORER
    scorer = scorer_cls(path, precision=Precision(precision) if precision else None, device=None, threads=threads)
    load_s = time.perf_counter() - t0
    crops = scorer.contract.eval_crops(image)
    t0 = time.perf_counter()
    for _ in range(5):
        scorer.contract.eval_crops(image)
    pre_ms = (time.perf_counter() - t0) / 5 * 1e3
    rows = []
    for b in batches:
        x = np.ascontiguousarray(np.concatenate([crops] * b), dtype=np.float32)
        for _ in range(warmup):
            scorer.infer(x)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < iters or (time.perf_counter() - start < min_time and len(times) < 200):
            t = time.perf_counter()
            scorer.infer(x)
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        rows.append({"batch": b, "crops_per_call": int(len(x)), "n_calls": len(times),
                     "median_ms": med * 1e3, "p95_ms": float(np.percentile(times, 95)) * 1e3,
                     "images_per_s": b / med, "crops_per_s": len(x) / med})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"precision": scorer.precision.value, "precision_detail": scorer.detail, "load_s": load_s,
            "preprocess_ms_per_image": pre_ms,
            "threads": threads or os.cpu_count(), "peak_rss_mib": peak / 1024,
            "rss_before_load_mib": rss0 / 1024, "rows": rows}


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


def run_bench(models: str | Path, checkpoint: str | Path, batches: list[int], threads: int | None = None,
              image: str | None = None, warmup: int = 2, iters: int = 5, min_time: float = 2.0,
              timeout: float = 900, progress=print) -> dict[str, Any]:
    from lmliqa.parity import artifact_size_mb

    models, checkpoint = Path(models), Path(checkpoint)
    image = image or _default_image()
    rows, skipped = [], []
    for path, target, precision, why_not in candidates(models, checkpoint):
        if not why_not and not isinstance(target.runtime_module, str):
            why_not = "its runtime is not an importable module"
        if why_not:
            skipped.append({"artifact": path.name, "target": target.name, "backend": target.runtime,
                            "precision": precision, "reason": why_not})
            continue
        backend = target.runtime
        job = {"path": str(path), "runtime_module": target.runtime_module, "precision": precision,
               "batches": batches, "threads": threads, "image": image, "warmup": warmup, "iters": iters,
               "min_time": min_time}
        try:
            proc = subprocess.run([sys.executable, "-m", "lmliqa.benchmarks.bench", "--child", json.dumps(job)],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            skipped.append({"artifact": path.name, "target": target.name, "backend": backend, "precision": precision,
                            "reason": f"timed out after {timeout:.0f} s"})
            continue
        if proc.returncode != 0:
            reason = (proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines() or ["?"])[-1]
            skipped.append({"artifact": path.name, "target": target.name, "backend": backend, "precision": precision,
                            "reason": reason})
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        for r in res.pop("rows"):
            row = {"artifact": path.name, "target": target.name, "backend": backend, **res, **r,
                   "model_size_mb": artifact_size_mb(path)}
            rows.append(row)
            if progress:
                progress(f"{row['artifact']:<28} {backend:<12} {row['precision']:<9} batch {r['batch']:>3}: "
                         f"{r['images_per_s']:8.2f} img/s  median {r['median_ms']:8.1f} ms  p95 {r['p95_ms']:8.1f} ms")
    for r in rows:  # the ratio to torch eager FP32 at the same batch, measured in this run
        ref = next((x for x in rows if x["backend"] == "torch" and x["batch"] == r["batch"]), None)
        r["speedup_vs_torch_fp32"] = r["images_per_s"] / ref["images_per_s"] if ref else None
    from lmliqa.provenance import cpu_name, provenance

    return {"provenance": provenance(), "models": str(models), "checkpoint": str(checkpoint), "image": image,
            "batches": batches, "threads": threads or os.cpu_count(), "cpu": cpu_name(), "rows": rows,
            "skipped": skipped}


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


def _child(job: dict[str, Any]) -> None:
    res = measure_one(job["path"], job["runtime_module"], job["precision"], job["batches"], job["threads"],
                      job["image"], job["warmup"], job["iters"], job["min_time"])
    print(json.dumps(res))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        try:
            _child(json.loads(sys.argv[2]))
        except Exception as exc:  # reported by the parent as the row's reason
            print(f"{type(exc).__name__}: {exc}".splitlines()[0])
            sys.exit(1)
