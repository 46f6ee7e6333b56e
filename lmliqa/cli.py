"""The `lmliqa` command line. Heavy modules are imported inside each command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__


def _cmd_info(args: argparse.Namespace) -> int:
    from .info import format_info, gather

    info = gather()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from .data import open_dataset
    from .data.check import check_dataset, format_report

    ds = open_dataset(args.spec, seed=args.seed)
    rep = check_dataset(ds, min_side=args.min_side, progress=not args.json and sys.stderr.isatty())
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0 if rep["ok"] else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmliqa", description="LML-IQA: train, export and run no-reference "
                                "image quality models.")
    p.add_argument("--version", action="version", version=f"lmliqa {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="version, presets (params, GMAC/crop) and installed backends")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_cmd_info)

    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="data_command", required=True)
    check = dsub.add_parser("check", help="read a dataset, open every image header, report problems",
                            description="SPEC: livec:PATH, koniq10k:PATH, csiq:PATH, live:PATH, tid2013:PATH, "
                                        "kadid10k:PATH, spaq:PATH, livefb:PATH, folder:PATH or synthetic. "
                                        "Exit status 1 when images are missing, unreadable or duplicated.")
    check.add_argument("spec")
    check.add_argument("--json", action="store_true")
    check.add_argument("--min-side", type=int, default=224, help="flag images smaller than this (default 224)")
    check.add_argument("--seed", type=int, default=0, help="seed of the synthetic set (default 0)")
    check.set_defaults(func=_cmd_data_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .contract import ContractError
    from .data.base import DatasetError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DatasetError, ContractError) as exc:
        print(f"lmliqa: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
