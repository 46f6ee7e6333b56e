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

    ds = open_dataset(args.spec, seed=args.seed)
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


def _cmd_export(args: argparse.Namespace) -> int:
    from lmliqa.export import export_checkpoint

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    results = export_checkpoint(args.checkpoint, formats, args.out, verbose=args.verbose, keep_f32=args.keep_f32,
                                openvino_fp16_weights=args.openvino_fp16_weights)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.format:<9} {r.status}" + (f"  -> {', '.join(r.paths)}" if r.ok else ""))
    return 0 if all(r.ok or r.status.startswith("unavailable") for r in results) else 1


def _expand_inputs(inputs: list[str]) -> list[str]:
    import glob
    from pathlib import Path

    exts = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in exts and f.is_file())
        elif any(ch in item for ch in "*?["):
            out += sorted(glob.glob(item, recursive=True))
        else:
            out.append(item)  # a missing file is reported as that row's error
    return out


def _cmd_score(args: argparse.Namespace) -> int:
    import csv

    from lmliqa.runtimes import load

    scorer = load(args.model, backend=args.backend, precision=args.precision, threads=args.threads)
    images = _expand_inputs(args.inputs)
    if not images:
        print("lmliqa: error: no images matched", file=sys.stderr)
        return 2
    results = list(scorer.score_many(images, batch_size=args.batch, progress=sys.stderr.isatty()))
    if args.json:
        print(json.dumps({"model": scorer.describe(), "results": [r.to_dict() for r in results]}, indent=2))
    else:
        rows = [{"image": r.image, "score": "" if r.score is None else f"{r.score:.4f}", "error": r.error}
                for r in results]
        f = open(args.csv, "w", newline="") if args.csv else sys.stdout
        w = csv.DictWriter(f, fieldnames=["image", "score", "error"])
        w.writeheader()
        w.writerows(rows)
        if args.csv:
            f.close()
            print(f"{sum(r.ok for r in results)} scored, {sum(not r.ok for r in results)} failed -> {args.csv}",
                  file=sys.stderr)
    return 0 if any(r.ok for r in results) else 1


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
    from .quantize import QuantResult, quantize_checkpoint, status_line

    report = quantize_checkpoint(args.checkpoint, args.calib, [f.strip() for f in args.formats.split(",") if f.strip()],
                                 args.out, scope=args.float_scope, n_calib=args.calib_images, n_val=args.val_images,
                                 max_drop=args.max_drop, onnx_tool=args.onnx_tool,
                                 smooth_quant_alpha=args.smooth_quant_alpha,
                                 fast_bias_correction=args.fast_bias_correction, verbose=args.verbose)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        cal = report["calibration"]
        print(f"calibration: {cal['n_images']} images / {cal['n_crops']} crops of {cal['spec']} "
              f"(sha256 {cal['sha256'][:12]}...), float scope: {','.join(report['scope']) or 'none'}")
        for r in report["results"]:
            print(status_line(QuantResult(**r)))
    return 0 if all(r["status"] == "ok" or r["status"].startswith(("partial", "unavailable"))
                    for r in report["results"]) else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    from .benchmarks.bench import format_table, run_bench

    batches = [int(b) for b in args.batch.split(",")]
    report = run_bench(args.models, args.checkpoint, batches, threads=args.threads, image=args.image,
                       iters=args.iters, min_time=args.min_time,
                       progress=None if args.json else (lambda line: print(line, file=sys.stderr, flush=True)))
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
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

    ex = sub.add_parser("export", help="checkpoint -> ONNX / OpenVINO / Core ML / TensorRT")
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--formats", default="onnx,openvino,coreml,tensorrt")
    ex.add_argument("--out", required=True)
    ex.add_argument("--json", action="store_true")
    ex.add_argument("--verbose", action="store_true", help="print tracebacks of failed formats")
    ex.add_argument("--keep-f32", default="default", metavar="SCOPE",
                    help="layers an OpenVINO IR keeps in f32 when it runs bf16/f16: float-scope categories "
                         "(stem, first_stage, second_stage, head, decoder, layernorm, ...), 'default' = "
                         "stem,first_stage,second_stage, or 'none'")
    ex.add_argument("--openvino-fp16-weights", action="store_true",
                    help="store the OpenVINO IR's weights in fp16 (half the size, decompressed to f32 at load)")
    ex.set_defaults(func=_cmd_export)

    sc = sub.add_parser("score", help="score images with an exported model (or a checkpoint, via torch)")
    sc.add_argument("--model", required=True, help=".onnx, OpenVINO .xml or folder, .mlpackage, .plan, "
                                                   ".safetensors")
    sc.add_argument("--backend", choices=["onnxruntime", "openvino", "coreml", "tensorrt", "torch"])
    sc.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                    help="the precision to execute (OpenVINO: fp32 default, bf16/fp16 on request)")
    sc.add_argument("--threads", type=int)
    sc.add_argument("--batch", type=int, default=8, help="images per inference call")
    sc.add_argument("inputs", nargs="+", help="image files, folders (recursive) and globs")
    out = sc.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", metavar="OUT", help="write image,score,error rows to OUT")
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

    qu = sub.add_parser("quantize", help="post-training INT8 for OpenVINO, ONNX, Core ML and TensorRT",
                        description="Writes each INT8 artifact next to its FP32 parent under --out, and "
                                    "quantization.json (scope, calibration hash, validation agreement).")
    qu.add_argument("--checkpoint", required=True)
    qu.add_argument("--calib", help="data spec of the calibration/validation images (default: the checkpoint's "
                                    "training data)")
    qu.add_argument("--formats", default="openvino,onnx,coreml,tensorrt")
    qu.add_argument("--out", required=True)
    qu.add_argument("--float-scope", default="default",
                    help="categories kept in float, comma-separated: layernorm, softmax, gelu, residual_add, "
                         "attention_matmul, head, decoder, tokens, stem, first_stage, second_stage; 'default' = "
                         "layernorm,softmax,gelu,residual_add,head,stem; 'none'")
    qu.add_argument("--calib-images", type=int, default=32, help="images (x the contract's crops) to calibrate on")
    qu.add_argument("--val-images", type=int, default=96, help="validation images, disjoint from calibration")
    qu.add_argument("--max-drop", type=float, help="accuracy control: largest allowed SRCC-vs-MOS drop "
                                                   "(NNCF quantize_with_accuracy_control; ONNX Runtime: widen the "
                                                   "float scope)")
    qu.add_argument("--onnx-tool", default="nncf", choices=["nncf", "ort"],
                    help="nncf (default; measured best) or onnxruntime quantize_static")
    qu.add_argument("--smooth-quant-alpha", type=float, default=0.95, help="NNCF SmoothQuant alpha (ViT only)")
    qu.add_argument("--fast-bias-correction", action="store_true",
                    help="NNCF's fast bias correction (quicker; full correction measured more accurate here)")
    qu.add_argument("--json", action="store_true")
    qu.add_argument("--verbose", action="store_true")
    qu.set_defaults(func=_cmd_quantize)

    be = sub.add_parser("bench", help="speed of every runnable artifact next to torch eager FP32, in one run")
    be.add_argument("--models", required=True)
    be.add_argument("--checkpoint", required=True, help="the FP32 checkpoint (torch eager reference)")
    be.add_argument("--batch", default="1,8", help="images per call (each brings the contract's crops)")
    be.add_argument("--threads", type=int)
    be.add_argument("--image", help="photo to crop the input from (default: a wheel-shipped photo)")
    be.add_argument("--iters", type=int, default=5)
    be.add_argument("--min-time", type=float, default=2.0)
    be.add_argument("--out", help="also write the JSON report here")
    be.add_argument("--json", action="store_true")
    be.set_defaults(func=_cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .contract import ContractError
    from .data.base import DatasetError
    from .runtimes.base import ArtifactError, BackendUnavailable

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DatasetError, ContractError, ArtifactError, BackendUnavailable) as exc:
        print(f"lmliqa: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
