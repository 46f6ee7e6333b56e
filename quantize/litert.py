"""LiteRT INT8 (.tflite): litert-torch's PT2E quantizer (static, symmetric int8 activations, per-channel int8
weights) on the same fixed-batch program as the FP32 parent, calibrated on the contract's eval crops, with the
float scope left unannotated; litert-torch lowers the Q/DQ graph to TFLite int8 kernels (XNNPACK QS8 on CPUs).

Why PT2E rather than ai-edge-quantizer's static int8 on the FP32 .tflite: measured on the fold-0 model
(`benchmarks/litert_int8_tools.py`, README "Targets"), and the float scope is expressed on the torch graph's
module paths, as for every other target; ai-edge-quantizer can only select ops by TFLite tensor-name regexes.
"""

from __future__ import annotations

from lmliqa.export.litert import torch2litert

from ._pt2e import count_kept, keep_float, quantize_program, strip_annotations

PARENT = "litert"
# With --qat-steps and no --float-scope, the ladder starts at the narrow scope (LayerNorm, softmax, GELU and the head
# float; stem, first stage and residual adds INT8): QAT makes the regions the PTQ gate needs unnecessary, and LiteRT
# runs those op categories faster in float than quantized (the default model, same run: QAT narrow 0.89x the PTQ
# file's time, QAT empty scope 1.12x on the fold-0 model; README "Quantization-aware fine-tuning").
NARROW_FIRST_WITH = ("qat_steps",)


def quantize(ctx, qat_steps: int = 0, qat_lr: float = 1e-5):
    """The lmliqa.targets stage: M_int8.tflite; with QAT_STEPS, the quantized graph is first fine-tuned
    (quantize/_qat.py) on the calibration spec's photos that are not validation photos."""
    import torchao
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    from . import QuantOutput
    from ._qat import PhotoBatches, QATOptions, fake_quant_config, qat_program

    batch = int(ctx.parent.metadata["batch"])
    keep = keep_float(ctx.scope, ctx.metadata, ctx.program)
    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    quantizer = strip_annotations(PT2EQuantizer().set_global(config), keep)
    info = {"tool": f"litert-torch PT2EQuantizer (torchao {torchao.__version__})", "activations": "int8 per-tensor "
            "symmetric (histogram observer)", "weights": "int8 per-channel symmetric",
            "n_ops_kept_float": count_kept(ctx.program, keep)}
    if qat_steps:
        qat_quantizer = strip_annotations(PT2EQuantizer().set_global(fake_quant_config(config)), keep)
        options = QATOptions(qat_steps, qat_lr)
        batches = PhotoBatches(ctx.train_photos, ctx.contract, batch, seed=options.seed)
        module, example, info["qat"] = qat_program(ctx.program, batch, qat_quantizer, ctx.calib, batches, options,
                                                   fold_quantize=False)
    else:
        module, example = quantize_program(ctx.program, batch, quantizer, ctx.calib, fold_quantize=False)
    path = ctx.path("{m}_int8.tflite")
    torch2litert(module, example, path, ctx.artifact_metadata(info), QuantConfig(pt2e_quantizer=quantizer))
    return QuantOutput([path], info)
