"""Student (network + projection head) and the EMA teacher of LML-IQA (method.md §3.2)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..models.network import QualityNet, ViTTokens
from .saliency import salient_index, to_grid, vit_cls_attention


class ProjectionHead(nn.Module):
    """g(h) = W_b GELU(W_a h + a) + b (384 -> 384 -> 128 for the paper preset); training only."""

    def __init__(self, dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(h)))


class LMLModel(nn.Module):
    """What the optimizer trains and the teacher averages: the quality network and its projection head."""

    def __init__(self, net: QualityNet, proj_hidden: int | None = None, proj_dim: int = 128,
                 feature: str = "panels") -> None:
        super().__init__()
        if feature not in ("panels", "cls"):
            raise ValueError("feature must be 'panels' (mean of the decoder outputs) or 'cls'")
        self.net = net
        self.feature = feature
        dim = net.config.dim
        self.proj = ProjectionHead(dim, proj_hidden or dim, proj_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """crops -> (scores (B,), L2-normalised embeddings (B, proj_dim))."""
        out = self.net.forward_all(x)
        h = out.feature if self.feature == "panels" else out.cls
        return out.score, F.normalize(self.proj(h).float(), dim=-1)


class EMATeacher(nn.Module):
    """xi <- m xi + (1 - m) theta after every optimizer step, over all parameters and buffers' copies.

    A deep copy of the student at step 0, never trained by gradients. (timm's ModelEmaV3 does the same
    update; this class keeps the update explicit so a test can check it to the last bit.)
    """

    def __init__(self, student: nn.Module, momentum: float) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError("EMA momentum must be in [0, 1)")
        self.module = copy.deepcopy(student).eval().requires_grad_(False)
        self.momentum = momentum

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        m = self.momentum
        for t, s in zip(self.module.parameters(), student.parameters()):
            t.mul_(m).add_(s.detach(), alpha=1.0 - m)
        for t, s in zip(self.module.buffers(), student.buffers()):
            if t.shape != s.shape:      # an observer sizes its buffers on first use (QAT: per-channel weight ranges)
                t.resize_(s.shape)
            t.copy_(s)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.module(x)

    @torch.no_grad()
    def salient(self, whole: torch.Tensor, boxes: torch.Tensor, source: str = "auto") -> torch.Tensor:
        """Index of the salient crop per image from the teacher's attention on the whole-image view.

        source "vit_cls": last encoder block's CLS->patch attention (ViT backbones);
        "decoder": the panels' cross-attention to the tokens (any backbone); "auto": vit_cls when the
        backbone is a ViT, decoder otherwise.
        """
        net: QualityNet = self.module.net
        if source == "auto":
            source = "vit_cls" if isinstance(net.encoder, ViTTokens) else "decoder"
        x = (whole - net.pixel_mean) / net.pixel_std
        if source == "vit_cls":
            if not isinstance(net.encoder, ViTTokens):
                raise ValueError("saliency 'vit_cls' needs a ViT backbone; use 'decoder'")
            attn = vit_cls_attention(net.encoder.vit, x)
        elif source == "decoder":
            attn = net.forward_all(whole, need_attn=True).attn.mean(dim=1).float()
        else:
            raise ValueError(f"unknown saliency source {source!r}")
        return salient_index(to_grid(attn), boxes)
