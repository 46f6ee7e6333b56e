"""DEIQT's attention-panel quality decoder, with cross-attention weights available for saliency."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PanelDecoderLayer(nn.Module):
    """Pre-norm transformer decoder layer, numerically the same as
    ``nn.TransformerDecoderLayer(d, h, ffn, dropout=0, activation="gelu", batch_first=True, norm_first=True)``
    and with the same parameter names (state dicts load either way), but it can return the
    panel->token cross-attention map (averaged over heads), which LML's saliency needs.
    """

    def __init__(self, dim: int, heads: int, ffn: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.norm1(tgt)
        x = tgt + self.self_attn(x, x, x, need_weights=False)[0]
        y, attn = self.multihead_attn(self.norm2(x), memory, memory, need_weights=need_weights,
                                      average_attn_weights=True)
        x = x + y
        x = x + self.linear2(F.gelu(self.linear1(self.norm3(x))))
        return x, attn
