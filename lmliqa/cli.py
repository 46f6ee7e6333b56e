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

    ds = open_dataset(args.spec, seed=args.seed, strict=False)   # reports label entries outside the root
    rep = check_dataset(ds, min_side=args.min_side, progress=not args.json and sys.stderr.isatty())
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0 if rep["ok"] else 1


def _cmd_train(args: argparse.Namespace) -> int:
    from .train.config import parse_set, resolve_config
    from .train.protocol import expand_split, run_protocol

    overrides = {"data": args.data, "out": args.out, "epochs": args.epochs, "device": args.device,
                 "resume": args.resume or None, "split": args.split, "max_steps": args.max_steps,
                 "seed": args.seed, "pretrained": args.pretrained, "amp": args.amp,
                 "lml_weight": args.lml_weight, "threads": args.threads}
    overrides.update(parse_set(args.set or []))
    cfg = resolve_config(args.preset, args.config, **overrides)
    splits = expand_split(cfg.split)
    if splits:
        result = run_protocol(cfg, splits)
        med = result["median_final"]
        print(json.dumps(result, indent=2) if args.json else
              f"{cfg.split}: median SRCC {med.get('srcc', float('nan')):.4f} PLCC {med.get('plcc', float('nan')):.4f} "
              f"over {len(splits)} splits -> {cfg.out}/protocol_summary.json")
        return 0
    from .train.engine import train

    summary = train(cfg)
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2) if args.json else _format_summary(cfg.out, summary))
    return 0


def _format_summary(out: str, s: dict) -> str:
    line = f"trained {s['steps']} steps in {s['wall_s']:.0f} s -> {out}/final.safetensors"
    if "final" in s:
        f = s["final"]
        line += f"\ntest split (n={f['n']}): SRCC {f['srcc']:.4f}  PLCC {f['plcc']:.4f}  KRCC {f['krcc']:.4f}  " \
                f"RMSE {f['rmse']:.3f}"
    return line


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_checkpoints

    result = evaluate_checkpoints(args.checkpoint, args.data, split=args.split, splits=args.splits,
                                  protocol=args.protocol, crops=args.crops, seed=args.seed, device=args.device)
    if args.json:
        print(json.dumps(result if len(result["runs"]) > 1 else result["runs"][0], indent=2))
    else:
        for r in result["runs"]:
            print(f"{r['checkpoint']}: n={r['n']} SRCC {r['srcc']:.4f} PLCC {r['plcc']:.4f} "
                  f"(logistic {r['plcc_logistic']:.4f}) KRCC {r['krcc']:.4f} RMSE {r['rmse']:.3f}"
                  + (f"  [{r['n_failed']} failed]" if r["n_failed"] else ""))
        if len(result["runs"]) > 1:
            m = result["median"]
            print(f"median of {len(result['runs'])}: SRCC {m['srcc']:.4f} PLCC {m['plcc']:.4f}")
    return 0


def _target_options(args: argparse.Namespace, stage) -> dict:
    from . import targets

    names = {o.name for t in targets.targets(stage) for o in t.options_for(stage)}
    return {n: getattr(args, n) for n in names}


def _cmd_export(args: argparse.Namespace) -> int:
    from lmliqa.export import Status, export_checkpoint

    from . import targets

    chosen = targets.parse_targets(args.formats, targets.Stage.EXPORT)
    results = export_checkpoint(args.checkpoint, chosen, args.out, verbose=args.verbose, layout=args.layout,
                                **_target_options(args, targets.Stage.EXPORT))
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            print(r.line())
    return 1 if any(r.status is Status.FAILED for r in results) else 0


# `lmliqa score` exit status: documented in its --help and the README, asserted by tests/test_reliability.py.
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _cmd_score(args: argparse.Namespace) -> int:
    import contextlib
    from collections import Counter

    from lmliqa.runtimes import load

    from .inputs import Scan
    from .scorefile import Done, Output, ResultWriter, model_identity, resume_state

    fmt, path = next(((f, getattr(args, f)) for f in ("jsonl", "json", "csv") if getattr(args, f)), ("csv", "-"))
    out = Output(path, fmt)
    max_pixels = None if args.max_pixels <= 0 else int(args.max_pixels * 1e6)
    scorer = load(args.model, backend=args.backend, precision=args.precision, threads=args.threads,
                  device=args.device)
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
            if args.ray:
                from .distributed import score_with_ray

                results = score_with_ray(_chain(first, todo), args.model, address=args.ray, actors=args.ray_actors,
                                         batch_size=args.batch, backend=args.backend, precision=args.precision,
                                         threads=args.threads or 1, max_pixels=max_pixels)
            else:
                results = scorer.score_many(_chain(first, todo), batch_size=args.batch, workers=args.workers,
                                            max_pixels=max_pixels, progress=sys.stderr.isatty() and not args.quiet)
            with contextlib.closing(results):       # on Ctrl-C, stop the decoding threads at once
                for r in results:
                    writer.write(r)
                    if not r.ok and not args.quiet:
                        print(f"lmliqa: {r.image}: {r.error}", file=sys.stderr)
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


def _cmd_release(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import targets
    from .release import ReleaseConfig, ReleaseFailed, build_release, format_failure

    checkpoint = args.checkpoint
    if checkpoint == "default":
        from .default_model import default_artifact

        checkpoint = str(default_artifact("torch"))
    keep = tuple(k.strip() for k in (args.keep or "").split(",") if k.strip())
    for k in keep:                       # an unknown target or precision fails before any work
        t, _, p = k.partition(":")
        targets.get(t)
        if p:
            targets.Precision(p)
    cfg = ReleaseConfig(Path(checkpoint), args.calib, args.eval, Path(args.out),
                        targets.parse_targets(args.targets, targets.Stage.EXPORT), name=args.name, keep=keep,
                        include_checkpoint=args.include_checkpoint, allow_overlap=args.allow_overlap,
                        cv=Path(args.cv) if args.cv else None, n_calib=args.calib_images, eval_limit=args.eval_limit,
                        bench_batches=tuple(int(b) for b in args.bench_batch.split(",")), threads=args.threads)
    try:
        body = build_release(cfg)
    except ReleaseFailed as exc:
        print(format_failure(exc), file=sys.stderr)
        return 1
    acc = body["accuracy"]["ci95"]
    print(f"release {body['name']} -> {args.out}: {len(body['artifacts'])} artifacts, SRCC {acc['srcc']['value']:.4f} "
          f"[{acc['srcc']['low']:.4f}, {acc['srcc']['high']:.4f}] on {body['accuracy']['n']} evaluation photos; "
          f"check it anywhere with `lmliqa verify {args.out}`")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify_release

    folder = args.folder
    if folder == "default":
        from .default_model import RELEASE

        folder = RELEASE
    report = verify_release(folder, threads=args.threads)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0 if report.ok else 1


def _cmd_parity(args: argparse.Namespace) -> int:
    from .parity import markdown_table, run_parity

    report = run_parity(args.checkpoint, args.models, args.data, limit=args.limit, threads=args.threads,
                        out=args.out)
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k not in ("images", "torch_scores", "mos")}, indent=2))
    else:
        print(markdown_table(report))
    return 0 if all(r["gate_pass"] for r in report["rows"]) else 1


def _cmd_quantize(args: argparse.Namespace) -> int:
    from lmliqa.export import Status

    from . import targets
    from .quantize import QuantResult, quantize_models

    chosen = targets.parse_targets(args.formats, targets.Stage.QUANTIZE)
    report = quantize_models(args.out, chosen, calib=args.calib, val=args.val, checkpoint=args.checkpoint,
                             scope=args.float_scope, n_calib=args.calib_images, n_val=args.val_images,
                             verbose=args.verbose,
                             **_target_options(args, targets.Stage.QUANTIZE))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        cal = report["calibration"]
        print(f"calibration: {cal['n_images']} images / {cal['n_crops']} crops of {cal['spec']} "
              f"(sha256 {cal['sha256'][:12]}...), float scope: {','.join(report['scope']) or 'none'}; validation: "
              f"{report['validation']['n_images']} other images against the torch program")
        for r in report["results"]:
            print(QuantResult(r["target"], Status(r["status"]), r["reason"], r["paths"], r["details"]).line())
    return 1 if any(r["status"] == Status.FAILED.value for r in report["results"]) else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .benchmarks import bench

    say = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    if args.camera:
        report = bench.run_camera(args.models, args.checkpoint, threads=args.threads, image=args.image,
                                  runs=args.runs, baselines=not args.no_compile, peak=args.peak, progress=say)
        table = bench.format_camera(report)
    elif args.folder:
        report = bench.run_folder(args.models, args.checkpoint, args.folder, n_images=args.folder_images,
                                  batch=int(args.batch.split(",")[-1]), workers=args.workers, threads=args.threads,
                                  progress=say)
        table = bench.format_folder(report)
    else:
        batches = [int(b) for b in args.batch.split(",")]
        report = bench.run_bench(args.models, args.checkpoint, batches, threads=args.threads, image=args.image,
                                 iters=args.iters, min_time=args.min_time, progress=say)
        table = bench.format_table(report)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2) if args.json else table)
    return 0


def _add_target_options(parser: argparse.ArgumentParser, stage) -> None:
    """One flag per target option of STAGE (lmliqa.targets), its help naming the targets it applies to."""
    from . import targets

    seen: dict[str, list[str]] = {}
    options = {}
    for t in targets.targets(stage):
        for o in t.options_for(stage):
            seen.setdefault(o.name, []).append(t.name)
            options.setdefault(o.name, o)
    group = parser.add_argument_group("target options (an option for a target not chosen is an error)")
    for name, o in options.items():
        help_ = f"[{', '.join(seen[name])}] {o.help}"
        if o.is_flag:
            group.add_argument(o.flag, dest=name, action="store_true", help=help_)
        else:
            group.add_argument(o.flag, dest=name, type=o.type, choices=o.choices, default=None,
                               help=help_ + (f" (default {o.default})" if o.default is not None else ""))


def build_parser() -> argparse.ArgumentParser:
    from . import targets

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

    tr = sub.add_parser("train", help="train LML-IQA (or the plain-regression baseline)",
                        description="Layers: defaults < configs/train/PRESET.yaml < --config < flags < --set. "
                                    "Under torchrun every process runs this command (DDP).")
    tr.add_argument("--preset", required=True)
    tr.add_argument("--data", help="data spec (default: the preset config's, else synthetic)")
    tr.add_argument("--out", help="output folder (default runs/default)")
    tr.add_argument("--config", help="YAML file of training options")
    tr.add_argument("--epochs", type=float)
    tr.add_argument("--max-steps", type=int)
    tr.add_argument("--device", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"])
    tr.add_argument("--split", help="all | random:J | kfold:K:J | kfold:K (all folds) | repeat:N (N x 80/20)")
    tr.add_argument("--seed", type=int)
    tr.add_argument("--pretrained", help="none | offline | hub | a weights file (default: the preset's)")
    tr.add_argument("--lml-weight", type=float, help="lambda of the LML loss; 0 = plain regression baseline")
    tr.add_argument("--threads", type=int)
    tr.add_argument("--resume", action="store_true", help="continue OUT/last.pt")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE", help="any training option (repeatable)")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("eval", help="evaluate checkpoints: SRCC, PLCC, KRCC, RMSE")
    ev.add_argument("--checkpoint", required=True, nargs="+",
                    help="checkpoint file(s), or a protocol run folder (with --splits)")
    ev.add_argument("--data", required=True)
    ev.add_argument("--split", default="test", choices=["test", "all"],
                    help="test: the split recorded in the checkpoint (all images when it was trained on "
                         "another dataset); all: every image (cross-dataset)")
    ev.add_argument("--splits", type=int, default=0,
                    help="with a protocol folder: evaluate split_0..split_{N-1}, report the median")
    ev.add_argument("--protocol", default="grid", choices=["grid", "deiqt-random"],
                    help="grid: the contract's deterministic crops; deiqt-random: DEIQT's random crops")
    ev.add_argument("--crops", type=int, default=10, help="random crops per image for deiqt-random")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_cmd_eval)

    exportable = targets.names(targets.Stage.EXPORT)
    ex = sub.add_parser("export", help=f"checkpoint -> {', '.join(exportable)}",
                        description="Writes the program (M.pt2) and each target's artifacts to --out. Exit status 1 "
                                    "when a target fails; a target whose tools are missing here is reported.")
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--formats", default=",".join(exportable), help=f"targets (default: all: {','.join(exportable)})")
    ex.add_argument("--out", required=True)
    ex.add_argument("--json", action="store_true")
    ex.add_argument("--verbose", action="store_true", help="print tracebacks of failed targets")
    from .contract import LAYOUTS

    ex.add_argument("--layout", choices=list(LAYOUTS), help="evaluation layout the artifacts record (default: the "
                    "checkpoint's, 3 x 3): " + "; ".join(f"{k}: {v}" for k, v in LAYOUTS.items()))
    _add_target_options(ex, targets.Stage.EXPORT)
    ex.set_defaults(func=_cmd_export)

    sc = sub.add_parser("score", help="score images with an exported model (or a checkpoint, via torch)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Every input gets exactly one row: a score, or an error naming the cause "
                                    "(error_kind one of missing, unreadable, empty, not_an_image, unsupported, "
                                    "truncated, corrupt, too_large). Rows are written and flushed one by one in "
                                    "input order; --resume continues an interrupted run into the same file.",
                        epilog="exit status:\n  0    every input scored\n  1    some inputs failed (their rows say "
                               "why; the rest are scored)\n  2    usage, model or output-file error; nothing to "
                               "score\n  130  interrupted (every finished row is kept: --resume continues)")
    suffixes = ", ".join(s for t in targets.targets(reference=True) for s in t.suffixes)
    sc.add_argument("--model", default="default", help=f"an artifact ({suffixes}; an OpenVINO IR folder); default: the "
                                                       "model that ships in the package (`lmliqa info` shows it)")
    sc.add_argument("--backend", choices=sorted({n for t in targets.targets(reference=True)
                                                 for n in (t.name, t.runtime)}),
                    help="the target that runs it (default: from the file)")
    sc.add_argument("--precision", choices=[p.value for p in targets.Precision],
                    help="the precision to execute (default: the artifact's; OpenVINO runs an FP32 IR in bf16 or "
                         "fp16 on request)")
    sc.add_argument("--device", help="OpenVINO CPU/GPU/NPU/AUTO; ONNX Runtime cpu, cuda[:N] or a provider name; "
                                     "Core ML ALL/CPU_ONLY/CPU_AND_GPU/CPU_AND_NE; TensorRT cuda:N")
    sc.add_argument("--threads", type=int, help="inference threads")
    sc.add_argument("--workers", type=int, help="decoding threads, overlapped with inference (default min(4, CPUs); "
                                                "0 decodes in the main thread)")
    sc.add_argument("--batch", type=int, default=8, help="images per inference call")
    sc.add_argument("--max-pixels", type=float, default=200.0, metavar="MEGAPIXELS",
                    help="refuse larger images from their header, before decoding (default 200; 0: no limit)")
    sc.add_argument("inputs", nargs="*", help="image files (always tried), folders (walked recursively; files "
                                              "without an image name are skipped and counted) and globs")
    sc.add_argument("--files-from", metavar="LIST", help="also score the paths listed in LIST, one per line ('-': "
                                                        "standard input)")
    out = sc.add_mutually_exclusive_group()
    out.add_argument("--csv", metavar="OUT", help="write image,score,error,error_kind rows to OUT ('-': standard "
                                                  "output; the default)")
    out.add_argument("--jsonl", metavar="OUT", help="write one JSON object per image to OUT ('-': standard output)")
    out.add_argument("--json", metavar="OUT", nargs="?", const="-",
                     help="write one JSON document (model, results, summary) to OUT (default '-': standard output)")
    sc.add_argument("--ray", metavar="ADDRESS", help="score with a Ray Data actor pool: 'local' (a Ray instance on "
                                                     "this machine) or a cluster address (needs lmliqa[ray])")
    sc.add_argument("--ray-actors", type=int, default=2, help="--ray: actors, each loading the model once "
                                                             "(default 2)")
    sc.add_argument("--resume", action="store_true", help="continue OUT: skip the images it already has rows for "
                                                          "(refused when another model wrote it)")
    sc.add_argument("--verbose", action="store_true", help="list what folder walks and globs skipped, and why")
    sc.add_argument("--quiet", action="store_true", help="no progress, per-image errors or summary on stderr")
    sc.set_defaults(func=_cmd_score)

    pa = sub.add_parser("parity", help="every exported artifact x precision against the torch reference",
                        description="Writes parity.json, parity.md and a scatter plot per backend to --out. "
                                    "Exit status 1 when a verified backend misses its gate "
                                    "(fp32 <= 0.01, bf16/fp16 <= 0.5 score units).")
    pa.add_argument("--checkpoint", required=True)
    pa.add_argument("--models", required=True, help="the --out folder of lmliqa export")
    pa.add_argument("--data", required=True)
    pa.add_argument("--limit", type=int, help="first N images of the data spec")
    pa.add_argument("--threads", type=int)
    pa.add_argument("--out", help="report folder (default: MODELS/parity)")
    pa.add_argument("--json", action="store_true")
    pa.set_defaults(func=_cmd_parity)

    quantizable = targets.names(targets.Stage.QUANTIZE)
    qu = sub.add_parser("quantize", help=f"post-training quantization for {', '.join(quantizable)}",
                        description="Quantizes the FP32 parents in --out (an `lmliqa export` folder; a missing parent "
                                    "is exported there first, from its program or --checkpoint) and writes each "
                                    "quantized artifact next to its parent, and quantization.json (scope, calibration "
                                    "hash, validation against the torch program).")
    qu.add_argument("--out", required=True, help="the export folder")
    qu.add_argument("--checkpoint", help="the FP32 checkpoint, when --out holds no exported program yet")
    qu.add_argument("--calib", help="data spec of the calibration/validation images (default: the checkpoint's "
                                    "training data)")
    qu.add_argument("--val", help="data spec of the validation images (default: other images of --calib); photos the "
                                  "model was not trained on make its SRCC vs MOS an honest number")
    qu.add_argument("--formats", default=",".join(quantizable), help=f"targets (default: {','.join(quantizable)})")
    qu.add_argument("--float-scope",
                    help="categories kept in float, comma-separated: layernorm, softmax, gelu, residual_add, "
                         "attention_matmul and the network's regions (head, decoder, stem; CNNs: tokens, "
                         "first_stage, second_stage); 'default' = layernorm,softmax,gelu,residual_add,head,stem "
                         "(+ first_stage for CNNs); 'none'. Not given: the default, and for a target whose INT8 "
                         "artifact fails its gate, the default + second_stage (CNNs), tried once more")
    qu.add_argument("--calib-images", type=int, default=32, help="images (x the contract's crops) to calibrate on")
    qu.add_argument("--val-images", type=int, default=96, help="validation images, disjoint from calibration")
    qu.add_argument("--json", action="store_true")
    qu.add_argument("--verbose", action="store_true")
    _add_target_options(qu, targets.Stage.QUANTIZE)
    qu.set_defaults(func=_cmd_quantize)

    rel = sub.add_parser("release", help="export, quantize, check and document a model as a release folder",
                         description="Runs export, quantize, parity on the evaluation photos, bench and the golden "
                                     "probes, then writes the artifacts, manifest.json (sha256 of every file, gates, "
                                     "versions, commit, data hashes), golden/, MODEL_CARD.md and report.md into --out. "
                                     "Exit status 1 when a gate fails (no manifest is written; evidence/ is kept), "
                                     "2 when the inputs cannot make an honest release (e.g. evaluation photos that "
                                     "the checkpoint was trained on).")
    rel.add_argument("--checkpoint", required=True, help="the FP32 checkpoint ('default': the shipped model's)")
    rel.add_argument("--calib", required=True, help="data spec of the calibration photos")
    rel.add_argument("--eval", required=True, help="data spec of the evaluation photos: never trained on (checked "
                                                   "by content hash); when it equals --calib, the calibration photos "
                                                   "are left out of it")
    rel.add_argument("--out", required=True, help="a new (or empty) folder")
    rel.add_argument("--targets", default=",".join(exportable), help=f"(default: all: {','.join(exportable)})")
    rel.add_argument("--name", help="release name (default: PRESET-<checkpoint sha256[:8]>)")
    rel.add_argument("--keep", help="artifacts the release ships, e.g. onnx:int8,litert (default: all; every one is "
                                    "measured either way)")
    rel.add_argument("--include-checkpoint", action="store_true", help="ship the checkpoint (the torch reference)")
    rel.add_argument("--allow-overlap", action="store_true",
                     help="do not refuse evaluation photos the checkpoint was trained on (the card and the report "
                          "then say so in bold)")
    rel.add_argument("--cv", help="a cross-validation result (benchmarks/cv_accuracy.py) for the card")
    rel.add_argument("--calib-images", type=int, default=32)
    rel.add_argument("--eval-limit", type=int, help="evaluate on the first N evaluation photos only")
    rel.add_argument("--bench-batch", default="1,8")
    rel.add_argument("--threads", type=int)
    rel.set_defaults(func=_cmd_release)

    ve = sub.add_parser("verify", help="re-hash a release against its manifest and score its golden probes",
                        description="Exit status 0 only when every file matches manifest.json and every artifact that "
                                    "runs here scores the golden probes within its tolerance; what cannot run here "
                                    "is listed with the reason. FOLDER 'default': the model in the package.")
    ve.add_argument("folder")
    ve.add_argument("--threads", type=int)
    ve.add_argument("--json", action="store_true")
    ve.set_defaults(func=_cmd_verify)

    be = sub.add_parser("bench", help="speed of every runnable artifact next to torch eager FP32, in one run",
                        description="Default: the network on the contract's pre-cut crops at each --batch. --camera: "
                                    "JPEG bytes -> score at batch 1, p50/p95 over --runs with the stage breakdown, "
                                    "next to torch eager, torch.compile fp32 and torch.compile bf16 autocast. "
                                    "--folder DIR: lmliqa's scorer end to end on real photos next to the same "
                                    "network's ceiling at the same batch.")
    be.add_argument("--models", required=True)
    be.add_argument("--checkpoint", required=True, help="the FP32 checkpoint (torch eager reference)")
    be.add_argument("--batch", default="1,8", help="images per call (each brings the contract's crops); --folder "
                                                   "uses the last")
    be.add_argument("--threads", type=int)
    be.add_argument("--image", help="photo to crop the input from (default: a wheel-shipped photo)")
    mode = be.add_mutually_exclusive_group()
    mode.add_argument("--camera", action="store_true", help="camera check: JPEG bytes -> score, batch 1")
    mode.add_argument("--folder", metavar="DIR", help="folder throughput on the photos in DIR")
    be.add_argument("--runs", type=int, default=100, help="--camera: timed runs after warm-up (default 100)")
    be.add_argument("--no-compile", action="store_true", help="--camera: leave out the torch.compile baselines")
    be.add_argument("--peak", help="--camera: a benchmarks/cpu_peak.py result; rows then give their network GMAC/s "
                                   "as a fraction of this CPU's peak")
    be.add_argument("--folder-images", type=int, default=200, help="--folder: photos to score (default 200)")
    be.add_argument("--workers", type=int, help="--folder: decoding threads (default: the scorer's)")
    be.add_argument("--iters", type=int, default=5)
    be.add_argument("--min-time", type=float, default=2.0)
    be.add_argument("--out", help="also write the JSON report here")
    be.add_argument("--json", action="store_true")
    be.set_defaults(func=_cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import LmliqaError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LmliqaError as exc:       # bad input, file, option or environment: the message says which (exit 2)
        print(f"lmliqa: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
