"""Eager PyTorch inference throughput of each preset (crops/s) on this machine.

    python benchmarks/forward_throughput.py [--presets paper,mobile] [--batch 1,8] [--threads 2] [--json]

Numbers vary +-20-30 % on a shared VM: compare ratios measured in one run. Random weights (speed only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lmliqa import presets
from lmliqa.models.network import build_model, gmacs_per_crop


def measure(preset: str, batch: int, warmup: int = 2, iters: int = 8) -> dict:
    cfg = presets.get(preset).config
    model = build_model(cfg, pretrained="none").eval()
    s = cfg.contract.crop_size
    x = torch.rand(batch, 3, s, s) * 255
    times = []
    with torch.inference_mode():
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    gmac = gmacs_per_crop(cfg)
    return {"preset": preset, "batch": batch, "threads": torch.get_num_threads(), "median_ms": med * 1e3,
            "crops_per_s": batch / med, "gflops_per_s": 2 * gmac * batch / med}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default=",".join(presets.names()))
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(p, int(b)) for p in args.presets.split(",") for b in args.batch.split(",")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'preset':<13} {'batch':>5} {'threads':>7} {'median ms':>10} {'crops/s':>8} {'GFLOP/s':>8}")
    for r in rows:
        print(f"{r['preset']:<13} {r['batch']:>5} {r['threads']:>7} {r['median_ms']:>10.1f} "
              f"{r['crops_per_s']:>8.1f} {r['gflops_per_s']:>8.1f}")


if __name__ == "__main__":
    main()
