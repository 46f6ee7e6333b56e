"""`lmliqa train`: one run, or one run per split of a protocol (kfold:K, repeat:N)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

# the graph QAT recipe's defaults: what was measured on the default model (README "Quantization-aware fine-tuning")
QAT_STEPS = 1500
QAT_STATE = "qat_state.pt"        # the graph recipe's progress in OUT, saved every 100 steps (--resume continues it)
GRAPH_QAT_SETTINGS = ("lr", "seed", "float_weight")          # the QATOptions fields --set may change
GRAPH_QAT_DEFAULTS = {"float_weight": 1.0}


def register(sub) -> None:
    from .. import presets

    p = sub.add_parser("train", help="train LML-IQA (or the plain-regression baseline)",
                       description="Layers: defaults < the preset's recipe (lmliqa/recipes/RECIPE.yaml) < --config < "
                                   "flags < --set. Under torchrun every process runs this command (DDP).")
    p.add_argument("--preset", choices=presets.names(), help="the recipe (required, except for --qat-from with the "
                   "graph recipe: the checkpoint names its network)")
    p.add_argument("--data", action="append", help="data spec (default: the recipe's, else synthetic); repeat it (or "
                   "join specs with commas) to train on several data sets at once")
    p.add_argument("--data-weights", help="with several data sets: photos of each per epoch, as a fraction of its "
                   "training photos, comma-separated in --data order (default 1 each)")
    p.add_argument("--out", help="output folder (default runs/default)")
    p.add_argument("--config", help="YAML file of training options")
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"],
                   help="auto: bf16 on GPUs that have it (else fp16) and on CPUs with native bf16, fp32 on other CPUs")
    p.add_argument("--split", help="all | random:J | kfold:K:J | kfold:K (all folds) | repeat:N (N x 80/20) | "
                   "official | official-train | official:kfold:K:J; several data sets: one each, comma-separated")
    p.add_argument("--seed", type=int)
    p.add_argument("--pretrained", help="none | offline | hub | a weights file (default: the preset's)")
    p.add_argument("--lml-weight", type=float, help="lambda of the LML loss; 0 = plain regression baseline")
    p.add_argument("--threads", type=int)
    p.add_argument("--resume", action="store_true",
                   help=f"continue OUT/last.pt (--qat-from, graph recipe: OUT/{QAT_STATE})")
    p.add_argument("--qat-from", metavar="CKPT", help="quantization-aware fine-tuning of a trained checkpoint "
                   "('default': the package's model) into an ordinary checkpoint OUT/final.safetensors whose INT8 "
                   "artifacts need no float scope; then `lmliqa quantize/release --float-scope none` (see "
                   "--qat-recipe)")
    p.add_argument("--qat-recipe", choices=["graph", "eager"], default="graph",
                   help="graph (default): PT2E QAT of the whole exported network through LiteRT's INT8 quantizer, "
                   "distilling the checkpoint's crop scores with and without fake quantization (--max-steps, default "
                   f"{QAT_STEPS}; --set lr=/seed=/float_weight=; --qat-val: validation photos it never trains on); "
                   "eager: every Conv2d and Linear fake-quantized in the training engine (2 epochs, a tenth of the "
                   "recipe's learning rate, no warm-up; DDP, AMP and --resume as any run)")
    p.add_argument("--qat-val", metavar="SPEC", help="graph recipe: the validation photos (default: some of --data, "
                   "then left out of training)")
    p.add_argument("--qat-val-images", type=int, default=96, metavar="N", help="graph recipe: how many validation "
                   "photos measure the float network's drift (default 96)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any training option (repeatable)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..train.config import parse_set, resolve_config
    from ..train.protocol import expand_split, run_protocol

    if args.qat_from and args.qat_recipe == "graph":
        return _qat_checkpoint(args)
    if not args.preset:
        raise ConfigError("lmliqa train: --preset is required (except for --qat-from with --qat-recipe graph)")

    weights = [float(w) for w in args.data_weights.split(",")] if args.data_weights else None
    overrides = {"data": ",".join(args.data) if args.data else None, "data_weights": weights,
                 "out": args.out, "epochs": args.epochs, "device": args.device,
                 "resume": args.resume or None, "split": args.split, "max_steps": args.max_steps,
                 "seed": args.seed, "pretrained": args.pretrained, "amp": args.amp,
                 "lml_weight": args.lml_weight, "threads": args.threads}
    overrides.update(parse_set(args.set or []))
    if args.qat_from:
        overrides.update(init_from=args.qat_from, qat=True)
        overrides["epochs"] = overrides["epochs"] or 2
        overrides.setdefault("warmup_epochs", 0.0)
    cfg = resolve_config(args.preset, args.config, **overrides)
    if args.qat_from and "lr" not in overrides:
        cfg = dataclasses.replace(cfg, lr=cfg.lr / 10)
    splits = expand_split(cfg.split)
    if splits:
        result = run_protocol(cfg, splits)
        med = result["median_final"]
        print(json.dumps(result, indent=2) if args.json else
              f"{cfg.split}: median SRCC {med.get('srcc', float('nan')):.4f} PLCC {med.get('plcc', float('nan')):.4f} "
              f"over {len(splits)} splits -> {cfg.out}/protocol_summary.json")
        return 0
    from ..train.engine import train

    summary = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2) if args.json else _format_summary(cfg.out, summary))
    return 0


def _qat_checkpoint(args: argparse.Namespace) -> int:
    """--qat-from with the graph recipe: lmliqa.quantize._qat.fine_tune_checkpoint into OUT/final.safetensors."""
    from ..errors import ConfigError
    from ..quantize._qat import QATOptions, fine_tune_checkpoint
    from ..train.config import parse_set
    from ._common import checkpoint_path

    if not args.data or not args.out:
        raise ConfigError("lmliqa train --qat-from (graph recipe): --data (the photos it fine-tunes on) and --out "
                          "are required")
    ignored = [flag for flag, value in (("--epochs", args.epochs), ("--split", args.split),
                                        ("--config", args.config), ("--data-weights", args.data_weights),
                                        ("--pretrained", args.pretrained), ("--lml-weight", args.lml_weight),
                                        ("--amp", args.amp)) if value]
    if ignored:
        raise ConfigError(f"{', '.join(ignored)}: the training engine's options; the graph QAT recipe takes --data, "
                          "--out, --resume, --max-steps, --device, --seed, --threads, --qat-val, --qat-val-images and "
                          "--set "
                          f"{'/'.join(GRAPH_QAT_SETTINGS)} (or use --qat-recipe eager)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for key in (item.partition("=")[0] for item in args.set or []):
        if key not in GRAPH_QAT_SETTINGS:
            raise ConfigError(f"--set {key}: the graph QAT recipe takes {', '.join(GRAPH_QAT_SETTINGS)} (the training "
                              "engine's options belong to --qat-recipe eager)")
    fields = {f.name: f for f in dataclasses.fields(QATOptions) if f.name in GRAPH_QAT_SETTINGS}
    settings = {**GRAPH_QAT_DEFAULTS, **parse_set(args.set or [], fields)}
    if args.seed is not None:
        settings["seed"] = args.seed
    options = QATOptions(steps=args.max_steps or QAT_STEPS, device=args.device or "auto",
                         state_file=Path(args.out) / QAT_STATE, resume=bool(args.resume), **settings)
    out = os.path.join(args.out, "final.safetensors")
    record = fine_tune_checkpoint(checkpoint_path(args.qat_from), ",".join(args.data), out, options,
                                  n_val=args.qat_val_images, val_spec=args.qat_val)
    drift = record["validation"]["float_before_vs_after"]
    summary = {"checkpoint": out, "steps": record["steps"], "train_seconds": record["train_seconds"],
               "loss_first": record["loss_first"], "loss_last": record["loss_last"],
               "float_before_vs_after": {k: drift[k] for k in ("mean_abs", "max_abs", "srcc_vs_mos",
                                                                "srcc_vs_mos_ref")}}
    print(json.dumps(summary, indent=2) if args.json else
          f"QAT {record['steps']} steps in {record['train_seconds']:.0f} s -> {out}\nits float network against the "
          f"start on {record['validation']['n_images']} validation photos: mean / max |d| {drift['mean_abs']:.3f} / "
          f"{drift['max_abs']:.3f}, SRCC vs MOS {drift['srcc_vs_mos']:.4f} (start {drift['srcc_vs_mos_ref']:.4f})\n"
          f"next: lmliqa quantize --checkpoint {out} --float-scope none ...")
    return 0


def _format_summary(out: str, s: dict) -> str:
    line = f"trained {s['steps']} steps in {s['wall_s']:.0f} s -> {out}/final.safetensors"
    if "final" in s:
        f = s["final"]
        line += f"\ntest split (n={f['n']}): SRCC {f['srcc']:.4f}  PLCC {f['plcc']:.4f}  KRCC {f['krcc']:.4f}  " \
                f"RMSE {f['rmse']:.3f}"
    return line
