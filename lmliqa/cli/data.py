"""`lmliqa data check SPEC`: read a dataset, open every image header, report problems."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:
    from ..data import spec_help

    p = sub.add_parser("data", help="dataset tools")
    dsub = p.add_subparsers(dest="data_command", required=True)
    check = dsub.add_parser("check", help="read a dataset, open every image header, report problems",
                            description=f"SPEC: {spec_help()}. Exit status 1 when images are missing, unreadable or "
                                        "duplicated.")
    check.add_argument("spec")
    check.add_argument("--json", action="store_true")
    check.add_argument("--min-side", type=int, default=224, help="flag images smaller than this (default 224)")
    check.add_argument("--seed", type=int, default=0, help="seed of the synthetic set (default 0)")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from ..data import open_dataset
    from ..data.check import check_dataset, format_report

    ds = open_dataset(args.spec, seed=args.seed, strict=False)   # reports label entries outside the root
    rep = check_dataset(ds, min_side=args.min_side, progress=not args.json and sys.stderr.isatty())
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0 if rep["ok"] else 1
