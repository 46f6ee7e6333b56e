"""The IQA metric that drives accuracy control: SRCC of per-image scores against MOS on validation images."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from scipy import stats


def runner(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A crops -> scores callable for what NNCF hands a validation function: an OpenVINO CompiledModel or an
    ONNX ModelProto (run with ONNX Runtime on CPU)."""
    if hasattr(model, "SerializeToString"):
        import onnxruntime as ort

        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda crops: sess.run(None, {name: crops})[0]
    return lambda crops: model(crops)[0]


def validation_fn(contract) -> Callable[[Any, Iterable[Any]], tuple[float, None]]:
    def validate(model: Any, items: Iterable[Any]) -> tuple[float, None]:
        run = runner(model)
        scores, mos = [], []
        for crops, y in items:
            scores.append(contract.aggregate(np.asarray(run(crops), dtype=np.float64).reshape(-1)))
            mos.append(y)
        return float(stats.spearmanr(scores, mos)[0]), None

    return validate


def agreement(ref: np.ndarray, got: np.ndarray, mos: np.ndarray) -> dict[str, float]:
    """How a quantized model's per-image scores compare with its FP32 parent's, and with MOS."""
    err = np.abs(got - ref)
    keep = ~np.isnan(mos)
    out = {"srcc_vs_fp32": float(stats.spearmanr(got, ref)[0]), "mean_abs": float(err.mean()),
           "max_abs": float(err.max())}
    if keep.sum() >= 3:
        out["srcc_vs_mos"] = float(stats.spearmanr(got[keep], mos[keep])[0])
        out["srcc_vs_mos_fp32"] = float(stats.spearmanr(ref[keep], mos[keep])[0])
    return out
