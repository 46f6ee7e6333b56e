"""`lmliqa release`: export, quantize, check and document a model as a release folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..targets import Stage
from ._common import (
    CHECKPOINT_HELP,
    add_platform_flag,
    add_scope_flag,
    add_target_options,
    add_targets_flag,
    checkpoint_path,
    chosen_targets,
    target_options,
)


def register(sub) -> None:
    p = sub.add_parser("release", help="export, quantize, check and document a model as a release folder",
                       description="Runs export, quantize, parity on the evaluation photos, bench and the golden "
                                   "probes, then writes the artifacts, manifest.json (sha256 of every file, gates, "
                                   "versions, commit, data hashes), golden/, MODEL_CARD.md and report.md into --out. "
                                   "Exit status 1 when a gate fails (no manifest is written; evidence/ is kept), 2 "
                                   "when the inputs cannot make an honest release (e.g. evaluation photos that the "
                                   "checkpoint was trained on).")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--calib", required=True, help="data spec of the calibration photos")
    p.add_argument("--eval", required=True, help="data spec of the evaluation photos: never trained on (checked by "
                                                 "content hash); when it equals --calib, the calibration photos are "
                                                 "left out of it")
    p.add_argument("--val", help="data spec of the quantizers' validation photos, the float-scope ladder's gate "
                                 "(default: other photos of --calib, so that no evaluation photo steers them; photos "
                                 "the checkpoint never trained on are the better choice); evaluation photos among "
                                 "them are left out of evaluation")
    p.add_argument("--val-images", type=int, default=96, help="validation photos, disjoint from calibration")
    p.add_argument("--out", required=True, help="a new (or empty) folder")
    add_targets_flag(p, Stage.EXPORT, old=None)
    p.add_argument("--name", help="release name (default: PRESET-<checkpoint sha256[:8]>)")
    p.add_argument("--keep", help="artifacts the release ships, e.g. onnx:int8,litert (default: all). A target it "
                                  "names none of is not built, nor quantized when only float precisions of it are "
                                  "kept; every artifact built is measured here, and on --platforms other than native "
                                  "the shipped ones")
    p.add_argument("--include-checkpoint", action="store_true", help="ship the checkpoint (the torch reference)")
    p.add_argument("--allow-overlap", action="store_true",
                   help="do not refuse evaluation photos the checkpoint was trained on (the card and the report then "
                        "say so in bold)")
    p.add_argument("--cv", help="a cross-validation result (benchmarks/cv_accuracy.py) for the card")
    p.add_argument("--cross", action="append", default=[],
                   help="a cross-dataset table (lmliqa eval --cross --out FILE) for the card; repeat it to merge "
                        "tables over the same data sets (each row keeps the command that measured it)")
    p.add_argument("--calib-images", type=int, default=32)
    add_scope_flag(p)
    p.add_argument("--eval-limit", type=int, help="evaluate on the first N evaluation photos only")
    p.add_argument("--bench-batch", default="1,8")
    p.add_argument("--threads", type=int)
    add_platform_flag(p, several=True)
    p.add_argument("--emulated-limit", type=int, default=12, help="emulated platforms score the first N evaluation "
                                                                  "photos (and every golden probe; default 12)")
    add_target_options(p, Stage.EXPORT, Stage.QUANTIZE)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ReleaseFailed
    from ..release import Keep, ReleaseConfig, build_release, format_failure

    cfg = ReleaseConfig(Path(checkpoint_path(args.checkpoint)), args.calib, args.eval, Path(args.out),
                        chosen_targets(args, Stage.EXPORT), name=args.name, keep=Keep.parse(args.keep),
                        include_checkpoint=args.include_checkpoint, allow_overlap=args.allow_overlap,
                        cv=Path(args.cv) if args.cv else None, cross=tuple(Path(c) for c in args.cross),
                        n_calib=args.calib_images, val=args.val, n_val=args.val_images, scope=args.float_scope,
                        eval_limit=args.eval_limit,
                        bench_batches=tuple(int(b) for b in args.bench_batch.split(",")), threads=args.threads,
                        platforms=tuple(p.strip() for p in args.platforms.split(",") if p.strip()),
                        emulated_limit=args.emulated_limit, export_options=target_options(args, Stage.EXPORT),
                        quantize_options=target_options(args, Stage.QUANTIZE))
    try:
        body = build_release(cfg)
    except ReleaseFailed as exc:
        print(format_failure(exc), file=sys.stderr)
        return 1
    acc = body["accuracy"]["ci95"]
    print(f"release {body['name']} -> {args.out}: {len(body['artifacts'])} artifacts, SRCC {acc['srcc']['value']:.4f} "
          f"[{acc['srcc']['low']:.4f}, {acc['srcc']['high']:.4f}] on {body['accuracy']['n']} evaluation photos; "
          f"check it anywhere with `lmliqa verify {args.out}`")
    return 0
