"""OpenVINO INT8 with NNCF: FakeQuantize on Conv/MatMul inputs, the float scope ignored, ModelType.TRANSFORMER
(SmoothQuant, alpha configurable) for ViT backbones; quantize_with_accuracy_control when a maximum SRCC drop
is given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .calib import ImageSet
from .onnx import _nncf_common
from .scope import FloatScope


def quantize_openvino(fp32_xml: Path, dst: Path, program, calib: ImageSet, scope: FloatScope,
                      model_type: str | None, metadata_for, val: ImageSet | None = None,
                      max_drop: float | None = None, contract=None,
                      smooth_quant_alpha: float | None = None, fast_bias_correction: bool = False) -> dict[str, Any]:
    import nncf
    import openvino as ov

    if dst.exists():   # never overwrite a file an earlier model still maps
        for f in (dst, dst.with_suffix(".bin")):
            f.unlink(missing_ok=True)
    model = ov.Core().read_model(str(fp32_xml))
    # the FP32 parent's keep-f32 marks (lmliqa export --keep-f32) survive NNCF; so does their record
    parent = json.loads(model.get_rt_info(["lmliqa", "metadata"]).astype(str))
    carried = {k: parent[k] for k in ("reduced_precision",) if k in parent}
    kwargs = _nncf_common(calib, model_type, smooth_quant_alpha, fast_bias_correction=fast_bias_correction)
    kwargs["ignored_scope"] = scope.nncf_openvino(model, program)
    n_ignored = len(kwargs["ignored_scope"].names)
    if max_drop is None:
        q = nncf.quantize(model, **kwargs)
    else:
        from .accuracy import validation_fn

        adv = kwargs.pop("advanced_parameters", None)
        q = nncf.quantize_with_accuracy_control(
            model, validation_dataset=nncf.Dataset([(c, m) for c, m in zip(val.crops, val.mos)]),
            validation_fn=validation_fn(contract), max_drop=max_drop, advanced_quantization_parameters=adv,
            **kwargs)
    n_fq = sum(op.get_type_name() == "FakeQuantize" for op in q.get_ops())
    info = {"tool": f"nncf {nncf.__version__} (OpenVINO)", "model_type": model_type or "default",
            "smooth_quant_alpha": smooth_quant_alpha if model_type == "transformer" else None,
            "bias_correction": "fast" if fast_bias_correction else "full",
            "n_fake_quantize": n_fq, "n_ops_kept_float_by_name": n_ignored,
            "accuracy_control": None if max_drop is None else {"metric": "SRCC vs MOS", "max_drop": max_drop}}
    # written once: re-saving over a model OpenVINO has memory-mapped crashes the process (SIGBUS)
    q.set_rt_info(metadata_for(info, **carried), ["lmliqa", "metadata"])
    dst.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(q, str(dst), compress_to_fp16=False)
    return info
