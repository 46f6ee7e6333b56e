"""Training configuration: defaults < the preset's recipe (lmliqa/recipes/<recipe>.yaml, named by its model-registry
entry) < --config FILE < CLI flags < --set."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ResumeError  # noqa: F401 - ResumeError: importable from here


@dataclass
class TrainConfig:
    preset: str = "mobile"
    data: str = "synthetic"
    out: str = "runs/default"
    pretrained: str | None = None     # None: the preset's own (offline / hub); or none / hub / a file
    # split: "all" (train on everything), "random:J" (split J of the seeded 80/20 protocol),
    # "kfold:K:J" (fold J of K is the test set); a data set with a published split: "official", "official-train",
    # "official:kfold:K:J". Several data sets (data "A,B"): one split each, comma-separated (lmliqa.data.splits).
    split: str = "all"
    # Several data sets: how many of each one's training photos an epoch visits (1 = each once; one value per data
    # set, in the order of data; empty = 1 for all). Each step's batch comes from one data set (lmliqa.data.multi).
    data_weights: list[float] = field(default_factory=list)
    split_seed: int = 0
    seed: int = 0
    epochs: float = 9
    max_steps: int = 0                # stop after this many optimizer steps (0: no cap)
    images_per_step: int = 8          # B (per process)
    crops_per_image: int = 8          # N
    repeats: int = 1                  # each training image is visited this many times per epoch
    # optimisation (DEIQT: AdamW 2e-4, wd 0.05, step schedule with its quirk, clip 5)
    lr: float = 2e-4
    warmup_lr: float = 2e-7
    min_lr: float = 2e-7
    weight_decay: float = 0.05
    schedule: str = "deiqt-step"      # deiqt-step | cosine
    warmup_epochs: float = 3.0
    decay_epochs: float = 3.0         # deiqt-step: lr x0.1 every decay_epochs, counted from step 0
    backbone_lr_scale: float = 1.0
    clip_grad: float = 5.0
    # DEIQT regresses raw labels with SmoothL1. label_norm instead fixes the network's output affine to the
    # training labels' mean/std and applies SmoothL1 in those normalised units (faster start, same scale out).
    label_norm: bool = False
    freeze: list[str] = field(default_factory=list)   # parameter-name prefixes kept frozen
    # start from a trained lmliqa checkpoint of the same network (every weight, the decoder included) instead of the
    # ImageNet backbone: e.g. a model trained on BIQ2021 fine-tuned on LIVE-C. The label affine is set again from
    # this run's training labels when label_norm is on.
    init_from: str | None = None
    # quantization-aware training (lmliqa.train.qat): every Conv2d and Linear computes with fake-quantized int8
    # weights and uint8 inputs, so that the targets' INT8 quantizers need no float scope afterwards; the saved
    # checkpoint is the float network. Usually a short fine-tune of a trained model (`lmliqa train --qat-from CKPT`).
    qat: bool = False
    # What the score is trained on: reg_weight x SmoothL1 + plcc_weight x (1 - PLCC)/2 over the batch's crops +
    # rank_weight x the pairwise fidelity loss over crops of different images (losses.py). The ranking and
    # linearity terms reward what SRCC/PLCC measure; SmoothL1 alone does not.
    reg_weight: float = 1.0
    plcc_weight: float = 0.0
    rank_weight: float = 0.0
    rank_sigma: float = 1.0           # fidelity loss: score difference (label-std units) that reads as 76 % sure
    # LML (method.md §3; every choice marked [inferred] there)
    lml_weight: float = 1.0           # lambda; 0 = plain regression (the DEIQT-style baseline), no teacher
    tau: float = 0.1
    ema_momentum: float = 0.996
    proj_dim: int = 128
    proj_hidden: int | None = None
    feature: str = "panels"           # panels | cls
    saliency: str = "auto"            # auto | vit_cls | decoder
    distill_weight: float = 0.0       # optional SmoothL1(student, teacher) on the salient crop
    whole_size: int | None = None     # teacher's whole-image view; default: the crop size
    deploy: str = "student"           # student | teacher: the network written to final/best (and evaluated)
    # engine
    device: str = "auto"              # auto | cpu | cuda
    amp: str = "auto"                 # auto | off | bf16 | fp16
    channels_last: str = "auto"       # auto (CNN backbones) | on | off
    threads: int = 0
    workers: int = 0
    cache_images: bool = True
    eval_every: int = 1               # epochs between evaluations of the test split (0: never)
    eval_teacher: bool = True
    log_every: int = 10
    checkpoint_every: int = 50        # steps between resumable checkpoints (and at every epoch end)
    resume: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}


# Options a resumed run may change: where and how fast it runs, what it logs, when it stops. Any other option
# changed between a run and its resumption would mix two trainings in one set of weights, so resume refuses it.
RESUME_MAY_CHANGE = frozenset({"out", "resume", "device", "threads", "workers", "cache_images", "eval_every",
                               "eval_teacher", "log_every", "checkpoint_every", "max_steps", "epochs"})


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    unknown = set(data) - set(TrainConfig.fields())
    if unknown:
        raise ConfigError(f"{path}: unknown training options {sorted(unknown)}")
    fields = TrainConfig.fields()
    return {k: _coerce(fields[k], v) for k, v in data.items()}


def resolve_config(preset: str, config_file: str | None = None, **overrides: Any) -> TrainConfig:
    """Merge the layers; overrides whose value is None are ignored (flags not given)."""
    from .. import presets

    values: dict[str, Any] = {"preset": preset}
    recipe = presets.get(preset).recipe_path
    if recipe is not None:
        values.update(_load_yaml(recipe))
    if config_file:
        values.update(_load_yaml(Path(config_file)))
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["preset"] = preset
    return TrainConfig(**values)


def parse_set(items: list[str], fields: dict[str, dataclasses.Field] | None = None) -> dict[str, Any]:
    """--set key=value pairs, values parsed as YAML scalars/lists (so every option is overridable) and coerced to the
    type of their field in FIELDS (default: TrainConfig's)."""
    import yaml

    out = {}
    fields = TrainConfig.fields() if fields is None else fields
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(fields)}")
        out[key] = _coerce(fields[key], yaml.safe_load(raw))
    return out


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """YAML 1.1 reads '3e-4' as a string; numbers go to the field's type."""
    kind = type(f.default) if f.default is not dataclasses.MISSING else None
    if kind in (int, float) and isinstance(value, str):
        try:
            return kind(float(value)) if kind is int else float(value)
        except ValueError:
            raise ConfigError(f"{f.name}: {value!r} is not a number") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
