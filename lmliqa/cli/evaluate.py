"""`lmliqa eval`: SRCC, PLCC, KRCC, RMSE of checkpoints on a dataset (the test split they record, or all of it)."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate checkpoints: SRCC, PLCC, KRCC, RMSE")
    p.add_argument("--checkpoint", required=True, nargs="+",
                   help="checkpoint file(s), or a protocol run folder (with --splits)")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", choices=["test", "all"],
                   help="test: the split recorded in the checkpoint (all images when it was trained on another "
                        "dataset); all: every image (cross-dataset)")
    p.add_argument("--splits", type=int, default=0,
                   help="with a protocol folder: evaluate split_0..split_{N-1}, report the median")
    p.add_argument("--protocol", default="grid", choices=["grid", "deiqt-random"],
                   help="grid: the contract's deterministic crops; deiqt-random: DEIQT's random crops")
    p.add_argument("--crops", type=int, default=10, help="random crops per image for deiqt-random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.evaluate import evaluate_checkpoints

    result = evaluate_checkpoints(args.checkpoint, args.data, split=args.split, splits=args.splits,
                                  protocol=args.protocol, crops=args.crops, seed=args.seed, device=args.device)
    if args.json:
        print(json.dumps(result if len(result["runs"]) > 1 else result["runs"][0], indent=2))
        return 0
    for r in result["runs"]:
        print(f"{r['checkpoint']}: n={r['n']} SRCC {r['srcc']:.4f} PLCC {r['plcc']:.4f} "
              f"(logistic {r['plcc_logistic']:.4f}) KRCC {r['krcc']:.4f} RMSE {r['rmse']:.3f}"
              + (f"  [{r['n_failed']} failed]" if r["n_failed"] else ""))
    if len(result["runs"]) > 1:
        m = result["median"]
        print(f"median of {len(result['runs'])}: SRCC {m['srcc']:.4f} PLCC {m['plcc']:.4f}")
    return 0
