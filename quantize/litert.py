"""LiteRT INT8 (.tflite): litert-torch's PT2E quantizer (static, symmetric int8 activations, per-channel int8
weights) on the same fixed-batch program as the FP32 parent, calibrated on the contract's eval crops, with the
float scope left unannotated; litert-torch lowers the Q/DQ graph to TFLite int8 kernels (XNNPACK QS8 on CPUs).

Why PT2E rather than ai-edge-quantizer's static int8 on the FP32 .tflite: measured on the fold-0 model
(`benchmarks/litert_int8_tools.py`, README "Targets"), and the float scope is expressed on the torch graph's
module paths, as for every other target; ai-edge-quantizer can only select ops by TFLite tensor-name regexes.
"""

from __future__ import annotations

from lmliqa.export.litert import torch2litert

from ._pt2e import count_kept, keep_float, litert_quantizer

PARENT = "litert"
# With --qat-steps and no --float-scope, the ladder starts at the narrow scope (LayerNorm, softmax, GELU and the head
# float; stem, first stage and residual adds INT8), the regions the PTQ gate needs being what QAT is for; the default
# scope follows when its gate fails. Measured on the default model (README "Quantization-aware fine-tuning"): it
# passes on LIVE-C photos (mean |d| 0.74) but sits at the gate's edge on BIQ2021 ones (0.97, confidence 0.62), and
# it is not faster on LiteRT here (camera p50 22.3 ms against 22.0 for the PTQ file with its regions float).
NARROW_FIRST_WITH = ("qat_steps",)


def quantize(ctx, qat_steps: int = 0, qat_lr: float = 1e-5, qat_device: str = "auto"):
    """The lmliqa.targets stage: M_int8.tflite; with QAT_STEPS, the quantized graph is first fine-tuned
    (quantize/_qat.py) on the calibration spec's photos that are not validation photos."""
    import torchao
    from litert_torch.quantize.quant_config import QuantConfig

    from . import QuantOutput
    from ._qat import pt2e_quantized

    keep = keep_float(ctx.scope, ctx.metadata, ctx.program)
    config, quantizer = litert_quantizer(keep)

    info = {"tool": f"litert-torch PT2EQuantizer (torchao {torchao.__version__})", "activations": "int8 per-tensor "
            "symmetric (histogram observer)", "weights": "int8 per-channel symmetric",
            "n_ops_kept_float": count_kept(ctx.program, keep)}
    module, example, qat = pt2e_quantized(ctx, config, quantizer, fold_quantize=False, qat_steps=qat_steps,
                                          qat_lr=qat_lr, qat_device=qat_device)
    if qat:
        info["qat"] = qat
    path = ctx.path("{m}_int8.tflite")
    # litert-torch's lowering reads the quantization scheme from the (post-training) quantizer
    torch2litert(module, example, path, ctx.artifact_metadata(info), QuantConfig(pt2e_quantizer=quantizer(config)))
    return QuantOutput([path], info)
