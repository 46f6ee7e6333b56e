"""`lmliqa quantize`: INT8 (and Core ML weight compression) from the FP32 parents of an export folder."""

from __future__ import annotations

import argparse
import json

from ..targets import Stage
from ._common import (
    CHECKPOINT_HELP,
    add_scope_flag,
    add_target_options,
    add_targets_flag,
    checkpoint_path,
    chosen_targets,
    target_options,
)


def register(sub) -> None:
    from .. import targets

    p = sub.add_parser("quantize", help=f"post-training quantization for {', '.join(targets.names(Stage.QUANTIZE))}",
                       description="Quantizes the FP32 parents in --out (an `lmliqa export` folder; a missing parent "
                                   "is exported there first, from its program or --checkpoint) and writes each "
                                   "quantized artifact next to its parent, and quantization.json (scope, calibration "
                                   "hash, validation against the torch program).")
    p.add_argument("--out", required=True, help="the export folder")
    p.add_argument("--checkpoint", help=CHECKPOINT_HELP + ", when --out holds no exported program yet")
    p.add_argument("--calib", help="data spec of the calibration/validation images (default: the checkpoint's "
                                   "training data)")
    p.add_argument("--val", help="data spec of the validation images (default: other images of --calib); photos the "
                                 "model was not trained on make its SRCC vs MOS an honest number")
    add_targets_flag(p, Stage.QUANTIZE)
    add_scope_flag(p)
    p.add_argument("--calib-images", type=int, default=32, help="images (x the contract's crops) to calibrate on")
    p.add_argument("--val-images", type=int, default=96, help="validation images, disjoint from calibration")
    p.add_argument("--json", action="store_true")
    p.add_argument("--verbose", action="store_true")
    add_target_options(p, Stage.QUANTIZE)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..quantize import quantize_models

    report = quantize_models(args.out, chosen_targets(args, Stage.QUANTIZE), calib=args.calib, val=args.val,
                             checkpoint=checkpoint_path(args.checkpoint), scope=args.float_scope,
                             n_calib=args.calib_images, n_val=args.val_images, verbose=args.verbose,
                             **target_options(args, Stage.QUANTIZE))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report.text())
    return 1 if report.failed else 0
