"""The LML-IQA / DEIQT network: any timm backbone -> tokens -> attention-panel decoder -> one score.

Input is what the preprocessing contract hands over (float32 NCHW RGB pixels 0..255); the
ImageNet normalisation is the network's first operation, so exported graphs take pixels too.
"""

from __future__ import annotations

from typing import NamedTuple

import timm
import torch
from torch import nn

from ..config import ModelConfig
from ..errors import first_line
from .decoder import PanelDecoderLayer
from .weights import WeightsError, load_offline_weights


class Tokens(NamedTuple):
    cls: torch.Tensor     # (B, D) the global feature the panels are conditioned on
    patches: torch.Tensor  # (B, T, D) the memory the panels attend to


class QualityOutput(NamedTuple):
    score: torch.Tensor    # (B,) on the label scale
    feature: torch.Tensor  # (B, D) mean of the panel outputs: the representation LML contrasts
    cls: torch.Tensor      # (B, D) the encoder's global feature (F_cls), the alternative representation
    attn: torch.Tensor | None  # (B, panels, T) cross-attention, when asked for


class ViTTokens(nn.Module):
    """timm ViT: CLS token and patch tokens after the final norm (DEIQT's F_cls, F_p)."""

    kind = "vit"   # how lmliqa.presets.Backbone entries name it

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit
        self.prefix = int(getattr(vit, "num_prefix_tokens", 1))
        self.width = int(vit.embed_dim)

    def forward(self, x: torch.Tensor) -> Tokens:
        z = self.vit.forward_features(x)
        return Tokens(z[:, 0], z[:, self.prefix:])


class ConvTokens(nn.Module):
    """timm CNN: the last feature map flattened to tokens and projected to the decoder width;
    the global-average-pooled map, projected the same way, stands in for the CLS feature."""

    kind = "cnn"   # how lmliqa.presets.Backbone entries name it

    def __init__(self, cnn: nn.Module, dim: int) -> None:
        super().__init__()
        self.cnn = cnn
        self.width = dim
        self.proj = nn.Linear(int(cnn.num_features), dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> Tokens:
        f = self.cnn.forward_features(x)                # (B, C, h, w)
        # The pooled feature and the h*w tokens go through proj and norm as one sequence: one call of each
        # module, not two. (Two calls of a shared Linear make ExecuTorch's XNNPACK partitioner merge them into
        # one delegate around the non-delegated LayerNorm between them: "found dependency cycles".) The pooling
        # keeps its dims so that it lowers to a global average pool.
        # The sequence is made contiguous first: a quantized Linear on the transposed view breaks ExecuTorch
        # 1.5.1's XNNPACK lowering (ConvertToLinearPass). (Flattening it to 2-D rows instead makes ONNX Runtime
        # 1.32 crash on the FP16 ONNX at full graph optimisation.) The math is the same either way.
        pooled = f.mean(dim=(2, 3), keepdim=True).flatten(2)          # (B, C, 1)
        seq = torch.cat([pooled, f.flatten(2)], dim=2).transpose(1, 2).contiguous()   # (B, 1 + h*w, C)
        z = self.norm(self.proj(seq))
        return Tokens(z[:, 0], z[:, 1:])


class QualityNet(nn.Module):
    def __init__(self, encoder: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.encoder = encoder
        if encoder.width != c.dim:
            raise ValueError(f"backbone width {encoder.width} != decoder dim {c.dim}")
        mean = torch.tensor(c.contract.mean).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(c.contract.std).view(1, 3, 1, 1) * 255.0
        # Not persistent: they come from the contract, so the state dict holds only learned weights.
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)
        # score = head output x score_scale + score_shift. DEIQT regresses raw labels (1, 0); training may
        # set them to the training labels' std and mean so the head learns a normalised target.
        self.register_buffer("score_scale", torch.ones(()))
        self.register_buffer("score_shift", torch.zeros(()))
        self.panels = nn.Parameter(torch.zeros(1, c.panels, c.dim))
        self.decoder = PanelDecoderLayer(c.dim, c.heads, c.ffn)
        self.head = nn.Linear(c.dim, 1, bias=False)
        self._init_new_modules()

    def _init_new_modules(self) -> None:
        # DEIQT: trunc_normal(0.02) for new Linear weights and embeddings, zero bias, LayerNorm (1, 0).
        nn.init.trunc_normal_(self.panels, std=0.02)
        new = [self.decoder, self.head] + ([self.encoder.proj] if isinstance(self.encoder, ConvTokens) else [])
        for module in new:
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        for attn in (self.decoder.self_attn, self.decoder.multihead_attn):
            nn.init.trunc_normal_(attn.in_proj_weight, std=0.02)
            nn.init.zeros_(attn.in_proj_bias)

    @property
    def backbone_entry(self):
        """This network's backbone in the model registry (lmliqa.presets): its float-scope regions and scopes."""
        from .. import presets

        entry = presets.get_backbone(self.config.backbone)
        if entry.kind != self.encoder.kind:
            raise ValueError(f"{self.config.backbone} is registered as a {entry.kind} backbone, built as "
                             f"{self.encoder.kind}")
        return entry

    @property
    def regions(self) -> dict[str, tuple[str, ...]]:
        """Float-scope region -> module-path prefixes in this network (lmliqa.scope, lmliqa.presets)."""
        return self.backbone_entry.network_regions

    def forward_all(self, x: torch.Tensor, need_attn: bool = False) -> QualityOutput:
        x = (x - self.pixel_mean) / self.pixel_std
        tok = self.encoder(x)
        queries = self.panels + tok.cls.unsqueeze(1)          # Q = T + F_cls
        out, attn = self.decoder(queries, tok.patches, need_weights=need_attn)
        score = self.head(out).mean(dim=(1, 2)) * self.score_scale + self.score_shift  # mean over panels
        return QualityOutput(score, out.mean(dim=1), tok.cls, attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, s, s) float32 0..255 -> scores (B,)."""
        return self.forward_all(x).score


def build_encoder(config: ModelConfig, pretrained: str | None = None) -> nn.Module:
    pretrained = config.pretrained if pretrained is None else pretrained
    hub = pretrained == "hub"
    try:
        backbone = timm.create_model(config.backbone, pretrained=hub, num_classes=0, **config.backbone_kwargs)
    except Exception as exc:  # timm raises several types when the hub is unreachable
        if hub:
            raise WeightsError(f"could not fetch timm hub weights for {config.backbone} ({exc}); without internet "
                               "use --pretrained none, or a local weights file") from exc
        raise
    if pretrained == "offline":
        load_offline_weights(backbone, config.backbone)
    elif pretrained not in ("none", "hub"):
        _load_local_weights(backbone, pretrained)
    if hasattr(backbone, "blocks") and hasattr(backbone, "embed_dim"):
        return ViTTokens(backbone)
    return ConvTokens(backbone, config.dim)


def _load_local_weights(backbone: nn.Module, path: str) -> None:
    import pickle

    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(path)
        else:       # weights_only: tensors and plain values, a pickle that would run code is refused
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("model", state) if isinstance(state, dict) else state
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise WeightsError(f"{path}: not a weights file lmliqa reads safely ({first_line(exc)})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    state = {k: v for k, v in state.items() if not k.startswith(("head.", "fc.", "classifier."))}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise WeightsError(f"{path} does not fit {type(backbone).__name__}: missing {missing[:4]}, "
                           f"unexpected {unexpected[:4]}")


def build_model(config: ModelConfig, pretrained: str | None = None) -> QualityNet:
    """Build the network for a config; pretrained overrides config.pretrained ("none" for a skeleton)."""
    return QualityNet(build_encoder(config, pretrained), config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gmacs_per_crop(config: ModelConfig) -> float:
    """Multiply-accumulates for one crop, counted by torch's FlopCounterMode (FLOPs / 2).

    Counted on the meta device: no memory, no compute, and the attention products are counted
    (on CPU tensors SDPA dispatches to a fused kernel the counter does not see).
    """
    from torch.utils.flop_counter import FlopCounterMode

    s = config.contract.crop_size
    with torch.device("meta"):
        model = build_model(config, pretrained="none")
        x = torch.zeros(1, 3, s, s)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2e9
