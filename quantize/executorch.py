"""ExecuTorch INT8 (.pte): the XNNPACK quantizer (PT2E: static int8 activations, per-channel symmetric int8
weights) on the same fixed-batch program as the FP32 parent, calibrated on the contract's eval crops, the float
scope excluded through the quantizer's filter function, then lowered to XNNPACK like the FP32 program (a
convolution or matmul left outside the delegate fails it)."""

from __future__ import annotations

import torch

from lmliqa.export.executorch import lower

from ._pt2e import count_kept, keep_float, quantize_program

PARENT = "executorch"


def quantize(ctx):
    """The lmliqa.targets stage: M_int8.pte."""
    import torchao
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    from . import QuantOutput

    batch = int(ctx.parent.metadata["batch"])
    keep = keep_float(ctx.scope, ctx.metadata, ctx.program)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    quantizer.set_filter_function(lambda node: not keep(node))
    module, example = quantize_program(ctx.program, batch, quantizer, ctx.calib)
    info = {"tool": f"executorch XNNPACKQuantizer (torchao {torchao.__version__})",
            "activations": "int8 per-tensor affine", "weights": "int8 per-channel symmetric",
            "n_ops_kept_float": count_kept(ctx.program, keep)}
    path = ctx.path("{m}_int8.pte")
    ep = torch.export.export(module, (example,), strict=False)
    lower(ep, path, ctx.artifact_metadata(info), batch)
    return QuantOutput([path], info)
