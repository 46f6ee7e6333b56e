"""Which crop of an image is the salient one, as the teacher sees it (method.md §3.4)."""

from __future__ import annotations

import math

import torch
from torch import nn


def box_pool(attn: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Area-weighted mean of a (B, gh, gw) map over each box; boxes (B, N, 4) are x0, y0, x1, y1 in [0, 1]."""
    B, gh, gw = attn.shape
    ex = torch.arange(gw + 1, device=attn.device, dtype=attn.dtype) / gw
    ey = torch.arange(gh + 1, device=attn.device, dtype=attn.dtype) / gh
    x0, y0, x1, y1 = (boxes[..., i, None].to(attn.dtype) for i in range(4))
    ox = (torch.minimum(x1, ex[1:]) - torch.maximum(x0, ex[:-1])).clamp_min(0)   # (B, N, gw)
    oy = (torch.minimum(y1, ey[1:]) - torch.maximum(y0, ey[:-1])).clamp_min(0)   # (B, N, gh)
    w = oy[..., :, None] * ox[..., None, :]                                       # (B, N, gh, gw)
    return (w * attn[:, None]).sum((-1, -2)) / w.sum((-1, -2)).clamp_min(1e-12)


def salient_index(attn: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    return box_pool(attn, boxes).argmax(dim=1)


def to_grid(tokens_attn: torch.Tensor) -> torch.Tensor:
    """(B, T) attention over a square token grid -> (B, g, g)."""
    B, T = tokens_attn.shape
    g = math.isqrt(T)
    if g * g != T:
        raise ValueError(f"{T} tokens are not a square grid; saliency needs a square whole-image view")
    return tokens_attn.reshape(B, g, g)


@torch.no_grad()
def vit_cls_attention(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Last block's CLS->patch attention of a timm ViT, averaged over heads: (B, T_patches).

    timm's Attention uses fused SDPA and never materialises the probabilities, so they are recomputed
    from the block's (normalised) input with the block's own qkv projection.
    """
    block = vit.blocks[-1]
    attn_mod = block.attn
    captured = {}
    handle = attn_mod.register_forward_pre_hook(lambda m, args: captured.setdefault("x", args[0]))
    try:
        vit.forward_features(x)
    finally:
        handle.remove()
    h = captured["x"]
    B, T, C = h.shape
    heads = attn_mod.num_heads
    qkv = attn_mod.qkv(h).reshape(B, T, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k = attn_mod.q_norm(qkv[0]), attn_mod.k_norm(qkv[1])
    a = ((q[:, :, :1] * attn_mod.scale) @ k.transpose(-2, -1)).softmax(dim=-1)   # (B, H, 1, T)
    prefix = int(getattr(vit, "num_prefix_tokens", 1))
    return a[:, :, 0, prefix:].mean(dim=1).float()
