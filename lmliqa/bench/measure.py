"""The measuring side of `lmliqa bench`: what runs inside each row's own process.

    python -m lmliqa.bench.measure JOB_JSON      # prints one JSON line: the row's numbers, or exits 1 with the reason

A job names the artifact, its target (and, for a target registered at run time in the parent, the runtime module
that runs it), the precision, and the mode: ``network`` (pre-cut crops at each batch), ``camera`` (JPEG bytes ->
score at batch 1, per stage) or ``folder`` (files -> scores end to end next to the network's ceiling). The scorer is
loaded the way users load one: through the target's ``load`` behind the release-manifest guard.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np


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


def timed(call, warmup: int, min_calls: int, min_time: float, max_calls: int | None = None) -> list[float]:
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


def load_scorer(job: dict[str, Any]):
    """The scorer of one row, loaded through its target (the release manifest guard included); compile (torch rows
    only): wrap the network in torch.compile."""
    from lmliqa import targets
    from lmliqa.errors import TargetError
    from lmliqa.manifest import guard

    try:
        target = targets.get(job["target"])
    except TargetError:     # registered at run time in the parent process only: its runtime module is importable
        target = targets.Target(job["target"], job["target"], job["target"], "", (), (), job["runtime_module"])
    guard(job["path"])
    scorer = target.load(job["path"], precision=job.get("precision"), threads=job.get("threads"))
    if job.get("compile"):
        import torch

        mode = job["compile"]
        scorer.model = torch.compile(scorer.model, mode=None if mode == "default" else mode)
    return scorer


def measure_network(scorer, batches: list[int], image: str, warmup: int, iters: int,
                    min_time: float) -> dict[str, Any]:
    """The network alone on the contract's crops of IMAGE, tiled to each batch (a batch counts images)."""
    crops = scorer.contract.eval_crops(image)
    t0 = time.perf_counter()
    for _ in range(5):
        scorer.contract.eval_crops(image)
    pre_ms = (time.perf_counter() - t0) / 5 * 1e3
    rows = []
    for b in batches:
        x = np.ascontiguousarray(np.concatenate([crops] * b), dtype=np.float32)
        times = timed(partial(scorer.infer, x), warmup, iters, min_time, max_calls=200)
        med = statistics.median(times)
        rows.append({"batch": b, "crops_per_call": int(len(x)), "n_calls": len(times),
                     "median_ms": med * 1e3, "p95_ms": float(np.percentile(times, 95)) * 1e3,
                     "images_per_s": b / med, "crops_per_s": len(x) / med})
    return {"preprocess_ms_per_image": pre_ms, "rows": rows}


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
    ceiling = batch / statistics.median(timed(partial(scorer.infer, crops), 2, 5, min_time))
    t = time.perf_counter()
    results = list(scorer.score_many(images, batch_size=batch, workers=workers))
    wall = time.perf_counter() - t
    return {"n_images": len(images), "batch": batch, "workers": workers, "scored": sum(r.ok for r in results),
            "end_to_end_images_per_s": len(images) / wall, "network_ceiling_images_per_s": ceiling,
            "fraction_of_ceiling": len(images) / wall / ceiling}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Load the row's scorer and measure it in the job's mode, with its load time and this process's memory."""
    rss0 = peak_rss_mib()
    t0 = time.perf_counter()
    scorer = load_scorer(job)
    load_s = time.perf_counter() - t0
    mode = job.get("mode", "network")
    if mode == "network":
        res = measure_network(scorer, job["batches"], job["image"], job["warmup"], job["iters"], job["min_time"])
    elif mode == "camera":
        res = measure_camera(scorer, Path(job["jpeg"]).read_bytes(), job["warmup"], job["runs"])
    else:
        res = measure_folder(scorer, job["images"], job["batch"], job.get("workers"), job["min_time"])
    res.update(precision=scorer.precision.value, precision_detail=scorer.detail, load_s=load_s,
               threads=job.get("threads") or os.cpu_count(), rss_before_load_mib=rss0, peak_rss_mib=peak_rss_mib())
    return res


if __name__ == "__main__":
    try:
        print(json.dumps(run_job(json.loads(sys.argv[1]))))
    except Exception as exc:  # reported by the parent as the row's reason
        print(f"{type(exc).__name__}: {exc}".splitlines()[0])
        sys.exit(1)
