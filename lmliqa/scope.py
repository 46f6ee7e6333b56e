"""The "keep in float" scope: named regions of the network and numerics that reduced precision ruins, declared
once here (torch-free) and read by export (the layers an OpenVINO IR keeps f32 under bf16) and by every quantizer
(the ops INT8 leaves in float). Each target translates a scope into its own tool's vocabulary in its own stage
file (ONNX node names, OpenVINO op names, Core ML op names, a PT2E node filter).

A scope is a set of categories:

- op categories name numerics (LayerNorm, softmax, GELU, residual adds, attention products), per tool op type;
- region categories name parts of the network by PyTorch module path, which the single torch.export program
  records on every node. The network declares which regions it has (``network_regions``): a CNN has stages, a
  ViT has none. Asking for a region a network does not have is an error, not a silent no-op.

Only the weight-bearing linear ops (Conv, MatMul/Gemm) are candidates for INT8 at all; everything in the scope
stays in float on top of that. The defaults were chosen by measurement (README, "Quantization" and "bf16 and the
first layers").
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LmliqaError

# op categories -> op types per tool ("aten": the torch op a node was exported from, which also catches a
# decomposed op's pieces, e.g. GELU's Div/Erf/Add/Mul in ONNX opset 18)
OP_CATEGORIES: dict[str, dict[str, tuple[str, ...]]] = {
    "layernorm": {"onnx": ("LayerNormalization",), "openvino": ("MVN",), "aten": ("layer_norm",)},
    "softmax": {"onnx": ("Softmax",), "openvino": ("Softmax", "SoftMax"), "aten": ("softmax",)},
    "gelu": {"onnx": ("Gelu", "Erf"), "openvino": ("Gelu",), "aten": ("gelu",)},
    "residual_add": {"onnx": ("Add",), "openvino": ("Add",), "aten": ("add",)},
    # activation x activation products inside attention (QK^T, AV): no weights, per-tensor scales only
    "attention_matmul": {"onnx": (), "openvino": ("ScaledDotProductAttention",),
                         "aten": ("scaled_dot_product_attention",)},
}

# Regions every QualityNet has ("" = the root module's own ops: pixel normalisation in, score affine out).
COMMON_REGIONS: dict[str, tuple[str, ...]] = {
    "head": ("head", ""),
    "decoder": ("decoder", "head", ""),
}
# Regions by encoder kind (lmliqa.models.network: ConvTokens = "cnn", ViTTokens = "vit").
ENCODER_REGIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "cnn": {
        "stem": ("encoder.cnn.conv_stem", "encoder.cnn.bn1"),   # the pixel-facing conv
        "first_stage": ("encoder.cnn.blocks.0",),
        "second_stage": ("encoder.cnn.blocks.1",),
        "tokens": ("encoder.proj", "encoder.norm"),              # feature map -> decoder tokens
    },
    "vit": {
        "stem": ("encoder.vit.patch_embed",),
    },
}
REGION_CATEGORIES = tuple(dict.fromkeys(c for r in (COMMON_REGIONS, *ENCODER_REGIONS.values()) for c in r))

# kept in float by every quantizer: the numerics INT8 ruins, the score head and the pixel-facing stem; for CNNs
# also the first stage (MobileNetV2's first depthwise block), without which the PT2E quantizers of LiteRT and
# ExecuTorch (no bias correction) miss the INT8 gate on the fold-0 model (SRCC 0.988, mean |d| 1.03 -> 0.997,
# 0.62: README "Targets")
DEFAULT_SCOPE = {"cnn": ("layernorm", "softmax", "gelu", "residual_add", "head", "stem", "first_stage"),
                 "vit": ("layernorm", "softmax", "gelu", "residual_add", "head", "stem")}
# added to the default scope one category at a time when a target's INT8 artifact fails its validation gate and no
# scope was chosen (lmliqa.quantize.quantize_target): MobileNetV2's second stage (the 112 -> 56 expansion block) is
# where per-tensor int8 activations lose heavily blurred photos. Measured on the PLCC+ranking recipe's default
# model calibrated on the synthetic set (benchmarks/quant_scope.py --bench, README "Quantization"): PT2E mean |d|
# 1.05 -> 0.40 (LiteRT), 1.07 -> 0.44 (ExecuTorch), for +21 % / +22 % latency, so it is a fallback, not the default.
WIDER_SCOPE = {"cnn": ("second_stage",), "vit": ()}
# kept in f32 when a float artifact runs in bf16/fp16 (OpenVINO's CPU bf16): the pixel-facing layers, where
# MobileNetV2 and EfficientNet-Lite0 lose most of their bf16 accuracy. A ViT has only its patch embedding
# there (unmeasured: no trained ViT exists here).
REDUCED_PRECISION_SCOPE = {"cnn": ("stem", "first_stage", "second_stage"), "vit": ("stem",)}


def network_regions(encoder_kind: str) -> dict[str, tuple[str, ...]]:
    """Region category -> module-path prefixes of a network with this encoder kind."""
    try:
        return {**COMMON_REGIONS, **ENCODER_REGIONS[encoder_kind]}
    except KeyError:
        raise ValueError(f"unknown encoder kind {encoder_kind!r}; known: {sorted(ENCODER_REGIONS)}") from None


class ScopeError(LmliqaError, ValueError):
    """A float scope names something unknown or something this network does not have."""


@dataclass(frozen=True)
class FloatScope:
    categories: tuple[str, ...]

    @classmethod
    def default(cls, encoder_kind: str) -> FloatScope:
        return cls(DEFAULT_SCOPE[encoder_kind])

    @classmethod
    def parse(cls, text: str | None, default: tuple[str, ...] = ()) -> FloatScope:
        """'default' (DEFAULT, the network's default scope), 'none' or comma-separated categories ('default,decoder'
        extends the default)."""
        if text is None or text == "default":
            return cls(default)
        cats: tuple[str, ...] = ()
        for c in (c.strip() for c in text.split(",")):
            if c == "default":
                cats += default
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

    def op_types(self, tool: str) -> tuple[str, ...]:
        return tuple(t for c in self.categories for t in OP_CATEGORIES.get(c, {}).get(tool, ()))

    def module_prefixes(self, regions: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
        """The module-path prefixes of the scope's regions in a network with REGIONS (``network_regions``);
        a region the network does not declare is an error."""
        missing = [c for c in self.categories if c in REGION_CATEGORIES and c not in regions]
        if missing:
            raise ScopeError(f"float-scope regions {missing} match nothing in this network "
                             f"(its regions: {sorted(regions)})")
        return tuple(p for c in self.categories if c in regions for p in regions[c])

    def regions_of(self, regions: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        self.module_prefixes(regions)   # validates
        return {c: regions[c] for c in self.categories if c in regions}


def aten_op(name: str) -> str:
    """The aten op of a torch.export node name: 'layer_norm_2' -> 'layer_norm', 'add' -> 'add'."""
    import re

    return re.sub(r"_\d+$", "", name)


def under(path: str, prefixes: tuple[str, ...]) -> bool:
    """Is module PATH at or below one of PREFIXES? '' names the root module's own ops only."""
    return any(path == p or (p and path.startswith(p + ".")) for p in prefixes)
