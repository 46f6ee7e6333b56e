"""The `lmliqa` command line: one module per command, each registering its own parser (``register(subparsers)``)
and running it (``run(args) -> exit status``). Heavy modules are imported inside each command's ``run``, so
``lmliqa --help`` and the torch-free commands start fast and need no torch."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import LmliqaError
from . import bench, data, evaluate, export, info, parity, platform, quantize, release, score, train, verify, web

# in the order `lmliqa --help` lists them
COMMANDS = (info, data, train, evaluate, export, score, parity, quantize, release, verify, bench, web, platform)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmliqa", description="LML-IQA: train, export and run no-reference "
                                "image quality models.")
    p.add_argument("--version", action="version", version=f"lmliqa {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LmliqaError as exc:       # bad input, file, option or environment: the message says which (exit 2)
        print(f"lmliqa: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
