"""ONNX INT8 (Q/DQ): ONNX Runtime's quantize_static restricted to Conv/MatMul/Gemm with per-channel weights
(never the all-ops default: r ~ 0.6 measured here), or NNCF on the ONNX model (with accuracy control).

The same Q/DQ ONNX in symmetric form (zero points 0, int8 activations and weights) is what a strongly typed
TensorRT engine consumes (quantize/tensorrt.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .calib import ImageSet
from .scope import FloatScope


class _Reader:
    """onnxruntime CalibrationDataReader over the calibration crops, one image's crops per call."""

    def __init__(self, input_name: str, images: ImageSet) -> None:
        self.input_name = input_name
        self.items = iter(images.batches())

    def get_next(self):
        item = next(self.items, None)
        return None if item is None else {self.input_name: item}

    def rewind(self) -> None:  # pragma: no cover - some onnxruntime versions call it
        pass


def quantize_ort(src: Path, dst: Path, calib: ImageSet, scope: FloatScope, symmetric: bool = False,
                 method: str = "minmax") -> dict[str, Any]:
    """quantize_static, QDQ format. symmetric=False: uint8 activations (ONNX Runtime CPU's fast path on
    VNNI); symmetric=True: int8 activations and weights with zero points 0 (TensorRT's explicit-quantization
    form)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    _METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                "entropy": CalibrationMethod.Entropy}
    model = onnx.load(str(src))
    options = scope.ort_options(model)
    extra = {"ActivationSymmetric": symmetric, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = 99.99
    quantize_static(str(src), str(dst), _Reader(model.graph.input[0].name, calib), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=False,
                    activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=_METHODS[method], extra_options=extra, **options)
    return {"tool": "onnxruntime.quantize_static", "format": "QDQ", "per_channel": True, "calibration": method,
            "activations": "int8 symmetric" if symmetric else "uint8 asymmetric", "weights": "int8 symmetric",
            "op_types_to_quantize": options["op_types_to_quantize"],
            "n_nodes_kept_float": len(options["nodes_to_exclude"])}


def quantize_nncf_onnx(src: Path, dst: Path, calib: ImageSet, scope: FloatScope, model_type: str | None,
                       val: ImageSet | None = None, max_drop: float | None = None, contract=None,
                       smooth_quant_alpha: float | None = None, fast_bias_correction: bool = False) -> dict[str, Any]:
    import nncf
    import onnx

    model = onnx.load(str(src))
    kwargs = _nncf_common(calib, model_type, smooth_quant_alpha, input_name=model.graph.input[0].name,
                          fast_bias_correction=fast_bias_correction)
    kwargs["ignored_scope"] = scope.nncf_onnx(model)
    if max_drop is None:
        q = nncf.quantize(model, **kwargs)
    else:
        from .accuracy import validation_fn

        q = nncf.quantize_with_accuracy_control(
            model, validation_dataset=nncf.Dataset([(c, m) for c, m in zip(val.crops, val.mos)]),
            validation_fn=validation_fn(contract), max_drop=max_drop,
            advanced_quantization_parameters=kwargs.pop("advanced_parameters", None), **kwargs)
    onnx.save(q, str(dst))
    return {"tool": f"nncf {nncf.__version__} (ONNX)", "model_type": model_type or "default",
            "bias_correction": "fast" if fast_bias_correction else "full",
            "accuracy_control": None if max_drop is None else {"metric": "SRCC vs MOS", "max_drop": max_drop}}


def _nncf_common(calib: ImageSet, model_type: str | None, smooth_quant_alpha: float | None = None,
                 input_name: str | None = None, fast_bias_correction: bool = False) -> dict[str, Any]:
    """nncf.quantize keyword arguments shared by the OpenVINO and ONNX paths."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    # ONNX models take a feed dict, OpenVINO models a plain array
    transform = (lambda x: {input_name: x}) if input_name else None
    kwargs: dict[str, Any] = {"calibration_dataset": nncf.Dataset(calib.batches(), transform),
                              "subset_size": len(calib.crops),
                              # full BiasCorrection: measured on the CI model, mean |d| 1.11 -> 0.64 (OpenVINO)
                              "fast_bias_correction": fast_bias_correction}
    if model_type == "transformer":
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
        if smooth_quant_alpha is not None:
            kwargs["advanced_parameters"] = AdvancedQuantizationParameters(
                smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=smooth_quant_alpha))
    return kwargs


def set_onnx_metadata(path: Path, metadata_json: str) -> None:
    import onnx

    proto = onnx.load(str(path))
    found = False
    for entry in proto.metadata_props:
        if entry.key == "lmliqa":
            entry.value, found = metadata_json, True
    if not found:
        entry = proto.metadata_props.add()
        entry.key, entry.value = "lmliqa", metadata_json
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def count_qdq(path: Path) -> dict[str, int]:
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    return {"QuantizeLinear": ops.count("QuantizeLinear"), "DequantizeLinear": ops.count("DequantizeLinear")}


def ort_run(path: Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda crops: sess.run(None, {name: np.ascontiguousarray(crops, dtype=np.float32)})[0]
