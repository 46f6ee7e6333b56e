"""`lmliqa verify DIR`: re-hash a release against its manifest and score its golden probes."""

from __future__ import annotations

import argparse
import json

from ._common import add_platform_flag


def register(sub) -> None:
    p = sub.add_parser("verify", help="re-hash a release against its manifest and score its golden probes",
                       description="Exit status 0 only when every file matches manifest.json and every artifact that "
                                   "runs here scores the golden probes within its tolerance; what cannot run here is "
                                   "listed with the reason. FOLDER 'default': the model in the package.")
    p.add_argument("folder")
    p.add_argument("--threads", type=int)
    add_platform_flag(p, several=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..verify import verify_release

    folder, unbundled = args.folder, {}
    if folder == "default":
        from ..default_model import RELEASE, fetch_hint
        from ..default_model import unbundled as left_out

        folder, unbundled = RELEASE, {n: fetch_hint(n) for n in left_out()}
    report = verify_release(folder, threads=args.threads, unbundled=unbundled,
                            platforms=tuple(p.strip() for p in args.platforms.split(",") if p.strip()))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0 if report.ok else 1
