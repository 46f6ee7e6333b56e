"""`lmliqa train`: one run, or one run per split of a protocol (kfold:K, repeat:N)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os


def register(sub) -> None:
    from .. import presets

    p = sub.add_parser("train", help="train LML-IQA (or the plain-regression baseline)",
                       description="Layers: defaults < the preset's recipe (lmliqa/recipes/RECIPE.yaml) < --config < "
                                   "flags < --set. Under torchrun every process runs this command (DDP).")
    p.add_argument("--preset", required=True, choices=presets.names())
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
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt")
    p.add_argument("--qat-from", metavar="CKPT", help="quantization-aware fine-tuning of a trained checkpoint (every "
                   "conv and linear fake-quantized as INT8 deploys it; defaults: 2 epochs, a tenth of the recipe's "
                   "learning rate, no warm-up); then `lmliqa quantize --float-scope none`")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any training option (repeatable)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.config import parse_set, resolve_config
    from ..train.protocol import expand_split, run_protocol

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


def _format_summary(out: str, s: dict) -> str:
    line = f"trained {s['steps']} steps in {s['wall_s']:.0f} s -> {out}/final.safetensors"
    if "final" in s:
        f = s["final"]
        line += f"\ntest split (n={f['n']}): SRCC {f['srcc']:.4f}  PLCC {f['plcc']:.4f}  KRCC {f['krcc']:.4f}  " \
                f"RMSE {f['rmse']:.3f}"
    return line
