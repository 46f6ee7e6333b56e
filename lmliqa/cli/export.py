"""`lmliqa export`: one checkpoint -> the program (M.pt2) and an artifact for each chosen target."""

from __future__ import annotations

import argparse
import json

from ..targets import Stage
from ._common import (
    CHECKPOINT_HELP,
    add_target_options,
    add_targets_flag,
    checkpoint_path,
    chosen_targets,
    target_options,
)


def register(sub) -> None:
    from .. import targets
    from ..contract import LAYOUTS

    p = sub.add_parser("export", help=f"checkpoint -> {', '.join(targets.names(Stage.EXPORT))}",
                       description="Writes the program (M.pt2) and each target's artifacts to --out. Exit status 1 "
                                   "when a target fails; a target whose tools are missing here is reported.")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    add_targets_flag(p, Stage.EXPORT)
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failed targets")
    p.add_argument("--layout", choices=list(LAYOUTS), help="evaluation layout the artifacts record (default: the "
                   "checkpoint's, 3 x 3): " + "; ".join(f"{k}: {v}" for k, v in LAYOUTS.items()))
    add_target_options(p, Stage.EXPORT)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_checkpoint
    from ..stages import Outcome

    results = export_checkpoint(checkpoint_path(args.checkpoint), chosen_targets(args, Stage.EXPORT), args.out,
                                verbose=args.verbose, layout=args.layout, **target_options(args, Stage.EXPORT))
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            print(r.line())
    return 1 if any(r.outcome is Outcome.FAILED for r in results) else 0
