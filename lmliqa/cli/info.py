"""`lmliqa info`: version, presets with their cost, the registered targets and what this machine can do."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("info", help="version, presets (params, GMAC/crop) and installed backends")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..info import format_info, gather

    info = gather()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
