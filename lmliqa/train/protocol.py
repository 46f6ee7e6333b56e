"""Multi-split protocols: k-fold cross-validation and DEIQT's 10 x 80/20 median, one run per split."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .config import TrainConfig
from .engine import train

METRICS = ("srcc", "plcc", "plcc_logistic", "krcc", "rmse")


def expand_split(split: str) -> list[str] | None:
    """'kfold:5' -> ['kfold:5:0', ..., 'kfold:5:4']; 'repeat:10' -> ['random:0', ..., 'random:9'] (DEIQT's
    10 x 80/20); None when the spec names one split. Several data sets' splits ('kfold:5,official-train'): the one
    protocol among them is expanded, the others kept ('kfold:5:0,official-train', ...)."""
    if "," in split:
        pieces = split.split(",")
        expanded = [(k, expand_split(s)) for k, s in enumerate(pieces)]
        found = [(k, e) for k, e in expanded if e]
        if len(found) > 1:
            raise ConfigError(f"split {split!r}: one protocol at a time (found {len(found)})")
        if not found:
            return None
        k, runs = found[0]
        return [",".join(pieces[:k] + [r] + pieces[k + 1:]) for r in runs]
    kind, *args = split.split(":")
    if kind == "kfold" and len(args) == 1:
        return [f"kfold:{args[0]}:{j}" for j in range(int(args[0]))]
    if kind == "repeat" and len(args) == 1:
        return [f"random:{j}" for j in range(int(args[0]))]
    return None


def run_protocol(cfg: TrainConfig, splits: list[str]) -> dict[str, Any]:
    """Train one model per split into OUT/split_J and summarise the median over splits."""
    out = Path(cfg.out)
    rows = []
    for j, split in enumerate(splits):
        sub = dataclasses.replace(cfg, split=split, out=str(out / f"split_{j}"))
        summary = train(sub)
        final, best = summary.get("final", {}), summary.get("best", {})
        rows.append({"split": split, "final": {k: final.get(k) for k in METRICS},
                     "best": {k: best.get(k) for k in METRICS} if isinstance(best, dict) else {},
                     "wall_s": summary["wall_s"]})
    result = {"protocol": cfg.split, "splits": rows, "median_final": _median(rows, "final"),
              "median_best": _median(rows, "best"), "train_config": cfg.to_dict()}
    (out / "protocol_summary.json").write_text(json.dumps(result, indent=2))
    return result


def _median(rows: list[dict], which: str) -> dict[str, float]:
    out = {}
    for k in METRICS:
        vals = [r[which][k] for r in rows if r[which].get(k) is not None]
        if vals:
            out[k] = float(np.median(vals))
    return out
