"""ExecuTorch INT8 (.pte): the XNNPACK quantizer (PT2E: static int8 activations, per-channel symmetric int8
weights) on the same fixed-batch program as the FP32 parent, calibrated on the contract's eval crops, the float
scope excluded through the quantizer's filter function, then lowered to XNNPACK like the FP32 program (a
convolution or matmul left outside the delegate fails it)."""

from __future__ import annotations

import torch

from lmliqa.export.executorch import lower

from ._pt2e import count_kept, keep_float

PARENT = "executorch"


# as LiteRT's: with --qat-steps and no --float-scope the ladder starts at the narrow scope (no regions)
NARROW_FIRST_WITH = ("qat_steps",)


def quantize(ctx, qat_steps: int = 0, qat_lr: float = 1e-5, qat_device: str = "auto"):
    """The lmliqa.targets stage: M_int8.pte; with QAT_STEPS, the quantized graph is first fine-tuned
    (quantize/_qat.py, the same recipe as LiteRT's) on the calibration spec's photos that are not validation
    photos."""
    import torchao
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    from . import QuantOutput
    from ._qat import pt2e_quantized

    batch = int(ctx.parent.metadata["batch"])
    keep = keep_float(ctx.scope, ctx.metadata, ctx.program)

    def quantizer(cfg):
        q = XNNPACKQuantizer().set_global(cfg)
        q.set_filter_function(lambda node: not keep(node))
        return q

    module, example, qat = pt2e_quantized(ctx, get_symmetric_quantization_config(is_per_channel=True), quantizer,
                                          fold_quantize=True, qat_steps=qat_steps, qat_lr=qat_lr,
                                          qat_device=qat_device)
    info = {"tool": f"executorch XNNPACKQuantizer (torchao {torchao.__version__})",
            "activations": "int8 per-tensor affine", "weights": "int8 per-channel symmetric",
            "n_ops_kept_float": count_kept(ctx.program, keep)}
    if qat:
        info["qat"] = qat
    path = ctx.path("{m}_int8.pte")
    ep = torch.export.export(module, (example,), strict=False)
    lower(ep, path, ctx.artifact_metadata(info), batch)
    return QuantOutput([path], info)
