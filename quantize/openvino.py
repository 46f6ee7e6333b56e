"""OpenVINO INT8 with NNCF, from the FP32 IR parent: FakeQuantize on Conv/MatMul inputs, the float scope ignored,
ModelType.TRANSFORMER (SmoothQuant, alpha configurable) for ViT backbones; quantize_with_accuracy_control when a
maximum SRCC drop is given. The parent's keep-f32 marks (lmliqa export --keep-f32) and their record carry over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmliqa.export.openvino import OPENVINO_OPS, openvino_io_ops, openvino_ops

from .onnx import _nncf_common

PARENT = "openvino"


def quantize(ctx, max_drop: float | None = None, smooth_quant_alpha: float = 0.95,
             fast_bias_correction: bool = False):
    """The lmliqa.targets stage: M_int8_openvino/M_int8.xml."""
    from lmliqa.runtimes.openvino import model_file

    from . import QuantOutput

    dst = ctx.path("{m}_int8_openvino/{m}_int8.xml")
    info = quantize_openvino(model_file(ctx.parent.path), dst, ctx, max_drop, smooth_quant_alpha,
                             fast_bias_correction)
    return QuantOutput([dst.parent], info)


def quantize_openvino(fp32_xml: Path, dst: Path, ctx, max_drop: float | None = None,
                      smooth_quant_alpha: float | None = None, fast_bias_correction: bool = False) -> dict[str, Any]:
    import nncf
    import openvino as ov

    if dst.exists():   # never overwrite a file an earlier model still maps
        for f in (dst, dst.with_suffix(".bin")):
            f.unlink(missing_ok=True)
    model = ov.Core().read_model(str(fp32_xml))
    calib, val, scope, model_type = ctx.calib, ctx.val, ctx.scope, ctx.model_type
    kwargs = _nncf_common(calib, model_type, smooth_quant_alpha, fast_bias_correction=fast_bias_correction)
    names = openvino_ops(scope, model, ctx.program, ctx.metadata)
    names += [n for n in openvino_io_ops(model, ctx.program) if n not in names]   # always float
    kwargs["ignored_scope"] = nncf.IgnoredScope(names=names, types=list(scope.op_types(OPENVINO_OPS)), validate=False)
    n_ignored = len(names)
    if max_drop is None:
        q = nncf.quantize(model, **kwargs)
    else:
        from .accuracy import validation_fn

        adv = kwargs.pop("advanced_parameters", None)
        q = nncf.quantize_with_accuracy_control(
            model, validation_dataset=nncf.Dataset([(c, m) for c, m in zip(val.crops, val.mos)]),
            validation_fn=validation_fn(ctx.contract), max_drop=max_drop, advanced_quantization_parameters=adv,
            **kwargs)
    n_fq = sum(op.get_type_name() == "FakeQuantize" for op in q.get_ops())
    info = {"tool": f"nncf {nncf.__version__} (OpenVINO)", "model_type": model_type or "default",
            "smooth_quant_alpha": smooth_quant_alpha if model_type == "transformer" else None,
            "bias_correction": "fast" if fast_bias_correction else "full",
            "n_fake_quantize": n_fq, "n_ops_kept_float_by_name": n_ignored,
            "accuracy_control": None if max_drop is None else {"metric": "SRCC vs MOS", "max_drop": max_drop}}
    # written once: re-saving over a model OpenVINO has memory-mapped crashes the process (SIGBUS)
    q.set_rt_info(ctx.metadata_json(info), ["lmliqa", "metadata"])
    dst.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(q, str(dst), compress_to_fp16=False)
    return info
