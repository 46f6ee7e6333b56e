"""Quantization-aware fine-tuning: the network computes as its INT8 artifacts will while it trains, so that the
post-training quantizers of every target (NNCF, PT2E for LiteRT and ExecuTorch, ONNX Runtime) then quantize it with no
float scope and stay inside the INT8 gate.

One recipe for every target, in eager PyTorch (each target keeps its own PTQ tool and calibration afterwards): every
Conv2d and Linear of the network (the stem and the score head included: the float scope is what QAT removes) runs
with fake-quantized int8 weights (per output channel, symmetric: invariant to the BatchNorm folding every exporter
applies, since that scales each output channel) and fake-quantized uint8 inputs (per tensor, moving-average
min/max). The straight-through estimator passes gradients. What is saved is the float network (the wrappers
removed): an ordinary checkpoint, which `lmliqa quantize --float-scope none` turns into INT8 artifacts.

    lmliqa train --preset mobile --qat-from runs/default/final.safetensors --data ... --out runs/qat
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver


class FakeQuantized(nn.Module):
    """A Conv2d or Linear computing as its INT8 deployment: int8 per-channel weights, uint8 per-tensor input."""

    def __init__(self, inner: nn.Conv2d | nn.Linear) -> None:
        super().__init__()
        self.inner = inner
        self.act = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8,
                                qscheme=torch.per_tensor_affine, reduce_range=False)
        self.weight_fq = FakeQuantize(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-127, quant_max=127,
                                      dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        w = self.weight_fq(self.inner.weight)
        if isinstance(self.inner, nn.Conv2d):
            return self.inner._conv_forward(x, w, self.inner.bias)
        return F.linear(x, w, self.inner.bias)


def prepare(net: nn.Module) -> int:
    """Wrap every Conv2d and Linear of NET (in place) that is called as a module; returns how many. (The decoder's
    attention projections are parameters that nn.MultiheadAttention uses directly: they train in float.)"""
    targets = [(name, m) for name, m in net.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, attr, FakeQuantized(module))
    return len(targets)


def unwrapped(net: nn.Module) -> nn.Module:
    """A copy of NET with the fake-quant wrappers removed: the float network with the weights QAT trained."""
    out = copy.deepcopy(net)
    for name, module in list(out.named_modules()):
        if isinstance(module, FakeQuantized):
            parent_name, _, attr = name.rpartition(".")
            setattr(out.get_submodule(parent_name) if parent_name else out, attr, module.inner)
    return out


def is_prepared(net: nn.Module) -> bool:
    return any(isinstance(m, FakeQuantized) for m in net.modules())
