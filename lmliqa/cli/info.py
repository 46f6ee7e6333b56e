"""`lmliqa info`: version, presets with their cost, the registered targets and what this machine can do."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("info", help="version, presets (params, GMAC/crop) and installed backends")
    p.add_argument("--json", action="store_true")
    p.add_argument("--fetch-checkpoint", metavar="FILE|URL",
                   help="add the default model's torch checkpoint to a wheel install (the wheel leaves it out): its "
                        "sha256 must be the manifest's; kept in the cache (LMLIQA_CACHE)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..info import format_info, gather

    if args.fetch_checkpoint:
        from ..default_model import fetch_checkpoint

        print(f"the default model's torch checkpoint: {fetch_checkpoint(args.fetch_checkpoint)}")
        return 0
    info = gather()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
