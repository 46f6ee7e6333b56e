"""The "keep in float" scope, in tool-neutral words (torch-free).

A scope is a set of categories, read by export (the layers an OpenVINO IR keeps f32 under bf16) and by every
quantizer (the ops INT8 leaves in float):

- **op categories** name numerics that reduced precision ruins (LayerNorm, softmax, GELU, residual adds, attention
  products). Each target translates them into its own tool's op names in its own stage file (ONNX node types in
  ``quantize/onnx.py``, OpenVINO op types in ``export/openvino.py``, the program's aten ops in ``export/_graph.py``).
- **region categories** name parts of the network. A backbone entry of the model registry (lmliqa.presets) binds
  each region it has to PyTorch module paths, which the single torch.export program records on every node; a ViT
  has no stages, so asking it for ``first_stage`` is an error, not a silent no-op.

Only the weight-bearing linear ops (Conv, MatMul/Gemm) are candidates for INT8 at all; everything in the scope
stays in float on top of that. The defaults live with each backbone (lmliqa.presets) and were chosen by
measurement (README, "Quantization" and "bf16 and the first layers").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ScopeError

OP_CATEGORIES: dict[str, str] = {
    "layernorm": "layer normalisation",
    "softmax": "softmax",
    "gelu": "GELU (and its decomposed pieces)",
    "residual_add": "residual additions",
    "attention_matmul": "activation x activation products inside attention (QK^T, AV): no weights, per-tensor "
                        "scales only",
}
REGION_CATEGORIES: dict[str, str] = {
    "head": "the score head and the root module's own ops (pixel normalisation in, score affine out)",
    "decoder": "the attention-panel decoder, with the head",
    "stem": "the pixel-facing layer (a CNN's first conv, a ViT's patch embedding)",
    "first_stage": "a CNN's first stage (MobileNetV2's first depthwise block)",
    "second_stage": "a CNN's second stage (MobileNetV2's 112 -> 56 expansion block)",
    "tokens": "a CNN's feature map -> decoder tokens (projection and norm)",
}

OpNames = Mapping[str, tuple[str, ...]]           # a tool's names for each op category


@dataclass(frozen=True)
class FloatScope:
    categories: tuple[str, ...]

    @classmethod
    def parse(cls, text: str | None, default: tuple[str, ...] = ()) -> FloatScope:
        """'default' (DEFAULT, the network's default scope), 'none' or comma-separated categories ('default,decoder'
        extends the default)."""
        if text is None or text == "default":
            return cls(tuple(default))
        cats: tuple[str, ...] = ()
        for c in (c.strip() for c in text.split(",")):
            if c == "default":
                cats += tuple(default)
            elif c and c != "none":
                cats += (c,)
        cats = tuple(dict.fromkeys(cats))
        unknown = [c for c in cats if c not in OP_CATEGORIES and c not in REGION_CATEGORIES]
        if unknown:
            raise ScopeError(f"unknown float-scope categories {unknown}; choose from "
                             f"{sorted(OP_CATEGORIES) + sorted(REGION_CATEGORIES)}")
        return cls(cats)

    def __str__(self) -> str:
        return ",".join(self.categories) or "none"

    def plus(self, *cats: str) -> FloatScope:
        return FloatScope(tuple(dict.fromkeys(self.categories + cats)))

    def op_types(self, names: OpNames) -> tuple[str, ...]:
        """The scope's op categories in one tool's vocabulary (NAMES: category -> that tool's op names)."""
        return tuple(t for c in self.categories for t in names.get(c, ()))

    def module_prefixes(self, regions: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
        """The module-path prefixes of the scope's regions in a network with REGIONS (region -> prefixes, as an
        artifact's metadata or a backbone entry gives them); a region the network does not have is an error."""
        missing = [c for c in self.categories if c in REGION_CATEGORIES and c not in regions]
        if missing:
            raise ScopeError(f"float-scope regions {missing} match nothing in this network "
                             f"(its regions: {sorted(regions)})")
        return tuple(p for c in self.categories if c in regions for p in regions[c])

    def regions_of(self, regions: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        self.module_prefixes(regions)   # validates
        return {c: tuple(regions[c]) for c in self.categories if c in regions}


def aten_op(name: str) -> str:
    """The aten op of a torch.export node name: 'layer_norm_2' -> 'layer_norm', 'add' -> 'add'."""
    return re.sub(r"_\d+$", "", name)


def under(path: str, prefixes: tuple[str, ...]) -> bool:
    """Is module PATH at or below one of PREFIXES? '' names the root module's own ops only."""
    return any(path == p or (p and path.startswith(p + ".")) for p in prefixes)
