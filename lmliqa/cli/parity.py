"""`lmliqa parity`: every exported artifact x precision against the torch reference, on real photos."""

from __future__ import annotations

import argparse
import json

from ._common import CHECKPOINT_HELP, add_platform_flag, checkpoint_path


def register(sub) -> None:
    from ..fidelity import EXACT, QUANTIZED, REDUCED

    p = sub.add_parser("parity", help="every exported artifact x precision against the torch reference",
                       description="Writes parity.json, parity.md and a scatter plot per backend to --out. Exit status "
                                   f"1 when a verified artifact misses its gate (fp32: {EXACT}; bf16/fp16: {REDUCED}; "
                                   f"quantized: {QUANTIZED}; in score units).")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--models", required=True, help="the --out folder of lmliqa export")
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=int, help="first N images of the data spec")
    p.add_argument("--threads", type=int)
    add_platform_flag(p, several=True)
    p.add_argument("--emulated-limit", type=int, help="emulated platforms score the first N of the photos (emulation "
                                                      "runs ~50-100x slower; default: all)")
    p.add_argument("--out", help="report folder (default: MODELS/parity)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..parity import markdown_table, run_parity

    report = run_parity(checkpoint_path(args.checkpoint), args.models, args.data, limit=args.limit,
                        threads=args.threads, out=args.out, platforms=args.platforms.split(","),
                        emulated_limit=args.emulated_limit)
    if args.json:
        print(json.dumps(report.to_dict(scores=False), indent=2))
    else:
        print(markdown_table(report))
    return 1 if any(r.failed for r in report.results) else 0
