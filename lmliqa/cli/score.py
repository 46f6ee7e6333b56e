"""`lmliqa score`: one row per input (a score, or the error that kept it from one), written as it goes."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter

from ._common import add_platform_flag, add_target_flag, device_help

# exit status: documented in --help and the README, asserted by tests/test_reliability.py
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EPILOG = ("exit status:\n  0    every input scored\n  1    some inputs failed (their rows say why; the rest are "
          "scored)\n  2    usage, model or output-file error; nothing to score\n  130  interrupted (every finished "
          "row is kept: --resume continues)")


def register(sub) -> None:
    from .. import targets

    p = sub.add_parser("score", help="score images with an exported model (or a checkpoint, via torch)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       description="Every input gets exactly one row: a score, or an error naming the cause "
                                   "(error_kind one of missing, unreadable, empty, not_an_image, unsupported, "
                                   "truncated, corrupt, too_large). Rows are written and flushed one by one in "
                                   "input order; --resume continues an interrupted run into the same file.")
    suffixes = ", ".join(s for t in targets.targets(reference=True) for s in t.suffixes)
    p.add_argument("--model", default="default", help=f"an artifact ({suffixes}; an OpenVINO IR folder); default: the "
                                                      "model that ships in the package (`lmliqa info` shows it)")
    add_target_flag(p, "the target that runs it (default: from the file)")
    p.add_argument("--precision", choices=[p.value for p in targets.Precision],
                   help="the precision to execute (default: the artifact's; OpenVINO runs an FP32 IR in bf16 or fp16 "
                        "on request)")
    p.add_argument("--device", help=device_help())
    add_platform_flag(p)
    p.add_argument("--threads", type=int, help="inference threads")
    p.add_argument("--workers", type=int, help="decoding threads, overlapped with inference (default min(4, CPUs); "
                                               "0 decodes in the main thread)")
    p.add_argument("--batch", type=int, default=8, help="images per inference call")
    p.add_argument("--max-pixels", type=float, default=200.0, metavar="MEGAPIXELS",
                   help="refuse larger images from their header, before decoding (default 200; 0: no limit)")
    p.add_argument("inputs", nargs="*", help="image files (always tried), folders (walked recursively; files without "
                                             "an image name are skipped and counted) and globs")
    p.add_argument("--files-from", metavar="LIST", help="also score the paths listed in LIST, one per line ('-': "
                                                       "standard input)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", metavar="OUT", help="write image,score,error,error_kind rows to OUT ('-': standard "
                                                  "output; the default)")
    out.add_argument("--jsonl", metavar="OUT", help="write one JSON object per image to OUT ('-': standard output)")
    out.add_argument("--json", metavar="OUT", nargs="?", const="-",
                     help="write one JSON document (model, results, summary) to OUT (default '-': standard output)")
    p.add_argument("--ray", metavar="ADDRESS", help="score with a Ray Data actor pool: 'local' (a Ray instance on this "
                                                    "machine) or a cluster address (needs lmliqa[ray])")
    p.add_argument("--ray-actors", type=int, default=2, help="--ray: actors, each loading the model once (default 2)")
    p.add_argument("--resume", action="store_true", help="continue OUT: skip the images it already has rows for "
                                                         "(refused when another model wrote it)")
    p.add_argument("--verbose", action="store_true", help="list what folder walks and globs skipped, and why")
    p.add_argument("--quiet", action="store_true", help="no progress, per-image errors or summary on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runtimes import load
    from ..scorefile import Output

    fmt, path = next(((f, getattr(args, f)) for f in ("jsonl", "json", "csv") if getattr(args, f)), ("csv", "-"))
    out = Output(path, fmt)
    max_pixels = None if args.max_pixels <= 0 else int(args.max_pixels * 1e6)
    if args.ray and args.platform != "native":
        from ..errors import ConfigError

        raise ConfigError("--ray scores on the cluster's own CPUs: it does not combine with --platform")
    scorer = load(args.model, target=args.target, precision=args.precision, threads=args.threads, device=args.device,
                  platform=args.platform)
    with scorer:
        return _score(args, scorer, out, max_pixels)


def _score(args: argparse.Namespace, scorer, out, max_pixels: int | None) -> int:
    from ..inputs import Scan
    from ..scorefile import Done, ResultWriter, model_identity, resume_state

    identity = model_identity(scorer, max_pixels)
    done = resume_state(out, identity) if args.resume else Done(Counter())
    resumed = sum(done.rows.values())
    scan = Scan(args.inputs, files_from=args.files_from)
    todo = _not_done(scan, done.rows)
    first = next(todo, None)
    if first is None and resumed == 0:
        _report_skipped(scan, verbose=True)
        print("lmliqa: error: no images to score", file=sys.stderr)
        return EXIT_USAGE
    writer = ResultWriter(out, scorer.describe(), identity, append=bool(resumed))
    interrupted = False
    try:
        if first is not None:
            _write_rows(args, scorer, _chain(first, todo), writer, max_pixels)
    except KeyboardInterrupt:
        interrupted = True
    summary = {"scored": writer.counts["scored"], "failed": writer.counts["failed"], "resumed_rows": resumed,
               "resumed_failed": done.failed, "skipped": len(scan.skipped)}
    writer.close(summary, interrupted=interrupted)
    _report_skipped(scan, verbose=args.verbose)
    if not args.quiet:
        where = "" if out.to_stdout else f" -> {out.path}"
        print(f"{summary['scored']} scored, {summary['failed']} failed"
              + (f", {resumed} already done" if resumed else "")
              + (f", {len(scan.skipped)} skipped (--verbose lists them)" if scan.skipped else "")
              + where + (" (interrupted: --resume continues)" if interrupted else ""), file=sys.stderr)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if summary["failed"] or done.failed else EXIT_OK   # the whole file counts


def _write_rows(args: argparse.Namespace, scorer, inputs, writer, max_pixels: int | None) -> None:
    """Score INPUTS (here, or on a Ray actor pool) and write each row as it comes."""
    if args.ray:
        from ..distributed import score_with_ray

        results = score_with_ray(inputs, args.model, address=args.ray, actors=args.ray_actors, batch_size=args.batch,
                                 target=args.target, precision=args.precision, threads=args.threads or 1,
                                 max_pixels=max_pixels)
    else:
        results = scorer.score_many(inputs, batch_size=args.batch, workers=args.workers, max_pixels=max_pixels,
                                    progress=sys.stderr.isatty() and not args.quiet)
    with contextlib.closing(results):       # on Ctrl-C, stop the decoding threads at once
        for r in results:
            writer.write(r)
            if not r.ok and not args.quiet:
                print(f"lmliqa: {r.image}: {r.error}", file=sys.stderr)


def _not_done(paths, done):
    """PATHS without the rows an earlier run already wrote (each row accounts for one occurrence)."""
    for p in paths:
        if done[p] > 0:
            done[p] -= 1
            continue
        yield p


def _chain(first, rest):
    yield first
    yield from rest


def _report_skipped(scan, verbose: bool) -> None:
    if verbose:
        for s in scan.skipped:
            print(f"lmliqa: skipped {s.path}: {s.reason}", file=sys.stderr)
