"""`lmliqa eval`: SRCC, PLCC, KRCC, RMSE of checkpoints on a dataset (the test split they record, or all of it)."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate checkpoints: SRCC, PLCC, KRCC, RMSE")
    p.add_argument("--checkpoint", required=True, nargs="+",
                   help="checkpoint file(s) ('default': the checkpoint of the model in the package), or a protocol "
                        "run folder (with --splits)")
    p.add_argument("--data", required=True, action="append",
                   help="data spec; with --cross, repeat it: one column per data set")
    p.add_argument("--cross", action="store_true",
                   help="a train-set x test-set table: every checkpoint on every --data (its published test split, "
                        "else all of it, never the checkpoint's training photos), with bootstrap intervals")
    p.add_argument("--bootstrap", type=int, default=1000, help="--cross: bootstrap resamples (0: none)")
    p.add_argument("--names", help="--cross: comma-separated row names (default: each checkpoint's folder)")
    p.add_argument("--out", help="--cross: write the table as JSON (and .md beside it)")
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
    from ..errors import ConfigError
    from ..train.evaluate import evaluate_checkpoints
    from ._common import checkpoint_path

    args.checkpoint = [checkpoint_path(c) for c in args.checkpoint]
    if args.cross:
        return _cross(args)
    if len(args.data) > 1:
        raise ConfigError("several --data take --cross (a train-set x test-set table); or join specs with commas to "
                          "evaluate on them as one data set")
    result = evaluate_checkpoints(args.checkpoint, args.data[0], split=args.split, splits=args.splits,
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


def _cross(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..provenance import provenance
    from ..train.crosseval import cross_dataset, markdown

    names = args.names.split(",") if args.names else None
    table = cross_dataset(args.checkpoint, args.data, bootstrap=args.bootstrap, device=args.device, names=names)
    table["provenance"] = provenance()
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(table, indent=2))
        out.with_suffix(".md").write_text(markdown(table))
    print(json.dumps(table, indent=2) if args.json else markdown(table))
    return 0
