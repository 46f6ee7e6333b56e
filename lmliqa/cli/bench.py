"""`lmliqa bench`: speed of every runnable artifact next to torch eager FP32, in one run (network, camera, folder)."""

from __future__ import annotations

import argparse
import json
import sys

from ._common import CHECKPOINT_HELP, checkpoint_path


def register(sub) -> None:
    p = sub.add_parser("bench", help="speed of every runnable artifact next to torch eager FP32, in one run",
                       description="Default: the network on the contract's pre-cut crops at each --batch. --camera: "
                                   "JPEG bytes -> score at batch 1, p50/p95 over --runs with the stage breakdown, next "
                                   "to torch eager, torch.compile fp32 and torch.compile bf16 autocast. --folder DIR: "
                                   "lmliqa's scorer end to end on real photos next to the same network's ceiling at "
                                   "the same batch.")
    p.add_argument("--models", required=True)
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP + " (the torch eager reference)")
    p.add_argument("--batch", default="1,8", help="images per call (each brings the contract's crops); --folder uses "
                                                  "the last")
    p.add_argument("--threads", type=int)
    p.add_argument("--image", help="photo to crop the input from (default: a wheel-shipped photo)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--camera", action="store_true", help="camera check: JPEG bytes -> score, batch 1")
    mode.add_argument("--folder", metavar="DIR", help="folder throughput on the photos in DIR")
    p.add_argument("--runs", type=int, default=100, help="--camera: timed runs after warm-up (default 100)")
    p.add_argument("--no-compile", action="store_true", help="--camera: leave out the torch.compile baselines")
    p.add_argument("--peak", help="--camera: a benchmarks/cpu_peak.py result; rows then give their network GMAC/s as "
                                  "a fraction of this CPU's peak")
    p.add_argument("--folder-images", type=int, default=200, help="--folder: photos to score (default 200)")
    p.add_argument("--workers", type=int, help="--folder: decoding threads (default: the scorer's)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--out", help="also write the JSON report here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import bench

    say = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    checkpoint = checkpoint_path(args.checkpoint)
    if args.camera:
        report = bench.run_camera(args.models, checkpoint, threads=args.threads, image=args.image, runs=args.runs,
                                  baselines=not args.no_compile, peak=args.peak, progress=say)
        table = bench.format_camera(report)
    elif args.folder:
        report = bench.run_folder(args.models, checkpoint, args.folder, n_images=args.folder_images,
                                  batch=int(args.batch.split(",")[-1]), workers=args.workers, threads=args.threads,
                                  progress=say)
        table = bench.format_folder(report)
    else:
        report = bench.run_bench(args.models, checkpoint, [int(b) for b in args.batch.split(",")],
                                 threads=args.threads, image=args.image, iters=args.iters, min_time=args.min_time,
                                 progress=say)
        table = bench.format_table(report)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2) if args.json else table)
    return 0
