"""The IQA metric that drives NNCF's accuracy control: SRCC of per-image scores against MOS on the validation
images, computed on the in-memory models NNCF hands its validation function (an OpenVINO CompiledModel or an ONNX
ModelProto). The validation numbers recorded for the written artifacts come from lmliqa.runtimes instead
(QuantizeContext.validate)."""

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
