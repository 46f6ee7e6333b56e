"""`lmliqa platform`: the platforms an artifact can be checked on (list), and setting one up here (setup)."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    from .. import platforms

    p = sub.add_parser("platform", help="platforms (native, arm64 under QEMU): list them, set one up",
                       description="An emulated platform runs the aarch64 build of a target's runtime under QEMU, in "
                                   "a sysroot built once from Debian packages and the runtimes' wheels (LMLIQA_CACHE).")
    p.add_argument("action", choices=["list", "setup"])
    p.add_argument("name", nargs="?", choices=[n for n in platforms.names() if n != platforms.NATIVE])
    p.add_argument("--force", action="store_true", help="setup: build the sysroot again")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import platforms, sysroot
    from ..errors import ConfigError
    from ..info import platform_status

    if args.action == "list":
        rows = platform_status()
        if args.json:
            print(json.dumps(rows, indent=2))
        for r in [] if args.json else rows:
            print(f"{r['platform']:<8} {'available' if r['available'] else 'not available: ' + r['why_not']}"
                  f"  ({', '.join(r['targets'])})")
        return 0
    if not args.name:
        raise ConfigError("lmliqa platform setup NAME: name the platform (e.g. arm64)")
    root = sysroot.build(platforms.get(args.name), force=args.force)
    rec = sysroot.record(platforms.get(args.name))
    print(json.dumps(rec, indent=2) if args.json else f"{args.name}: {root} (" + ", ".join(
        f"{k} {v}" for k, v in rec["wheel_versions"].items()) + ")")
    return 0
