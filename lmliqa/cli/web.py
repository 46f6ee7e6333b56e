"""`lmliqa web DIR`: serve an exported web folder (the camera-check page) on this machine."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("web", help="serve an exported web folder (the camera-check page) on 127.0.0.1",
                       description="Serves DIR (an `lmliqa export --targets web` folder) with the headers its page "
                                   "needs: COOP/COEP (cross-origin isolation, so WebAssembly runs threaded) and the "
                                   "MIME types of .mjs and .wasm. Open the printed address; the camera needs "
                                   "localhost or https. Ctrl-C stops.")
    p.add_argument("folder")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine "
                                                      "only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runtimes.web import serve

    serve(args.folder, port=args.port, host=args.host)
    return 0
