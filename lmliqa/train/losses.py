"""The local-manifold contrastive loss (method.md §3.5) and the regression loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def local_manifold_loss(q: torch.Tensor, k: torch.Tensor, salient: torch.Tensor, tau: float,
                        k_global: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
    """InfoNCE over crops, anchored on every non-salient crop.

    q: (B, N, D) student embeddings (L2-normalised, with gradient); k: (B, N, D) teacher keys
    (L2-normalised, no gradient); salient: (B,) index of each image's salient crop.
    For anchor (i, n), n != s_i: the positive is k[i, s_i]; the intra-class negatives are k[i, m] for
    m not in {n, s_i}; the inter-class negatives are every crop of every other image. Under DDP,
    k_global (G, N, D) holds the keys of the global batch (all-gathered) and this rank's images are
    rows offset .. offset + B - 1, so the inter-class negatives cover the global batch.
    Returns the mean over the B (N - 1) anchors.
    """
    B, N, D = q.shape
    keys = (k if k_global is None else k_global).reshape(-1, D)
    logits = q.reshape(B * N, D) @ keys.t() / tau                      # (B N, G N)
    rows = torch.arange(B * N, device=q.device)
    img = rows // N
    own = (offset + img) * N + rows % N                                  # the anchor's own key
    logits = logits.masked_fill(F.one_hot(own, keys.shape[0]).bool(), float("-inf"))
    target = (offset + img) * N + salient.to(q.device)[img]
    anchors = (rows % N) != salient.to(q.device)[img]
    return F.cross_entropy(logits[anchors].float(), target[anchors])


def regression_loss(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """DEIQT's SmoothL1 (beta 1) on every crop; each crop carries its image's label."""
    return F.smooth_l1_loss(pred.float(), target.float(), beta=beta)


def plcc_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(1 - PLCC) / 2 over the batch: rewards linear agreement with the labels, blind to their scale and offset
    (the differentiable-PLCC term of norm-in-norm style IQA losses). 0 when perfectly linear, 1 when reversed."""
    p, t = pred.float(), target.float()
    p, t = p - p.mean(), t - t.mean()
    r = (p * t).sum() / (p.norm() * t.norm() + eps)
    return (1.0 - r) / 2.0


def fidelity_rank_loss(pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor | None = None,
                       sigma: float = 1.0) -> torch.Tensor:
    """Pairwise fidelity loss (Tsai et al. 2007, as in UNIQUE/LIQE) over every pair of the batch with different
    labels: P(i better than j) = Phi((s_i - s_j) / (sigma sqrt 2)) against the labels' order,
    1 - sqrt(p p*) - sqrt((1 - p)(1 - p*)). Scores in label-std units (sigma 1 = one std).
    group: (n,) image ids; pairs within one image (same label) are left out either way."""
    s, y = pred.float(), target.float()
    diff = (s[:, None] - s[None, :]) / (sigma * 2.0 ** 0.5)
    p = 0.5 * (1.0 + torch.erf(diff / 2.0 ** 0.5))
    pairs = y[:, None] != y[None, :]
    if group is not None:
        pairs &= group[:, None] != group[None, :]
    if not pairs.any():
        return s.sum() * 0.0
    # The labels' order is certain (p* is 0 or 1), so the loss is 1 - sqrt(P(the right order)).
    right = torch.where(y[:, None] > y[None, :], p, 1.0 - p)
    return (1.0 - torch.sqrt(right[pairs].clamp_min(1e-12))).mean()
