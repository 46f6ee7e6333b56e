"""The TensorRT target: the FP16 ONNX an engine is built from is written and reported even where TensorRT is not
installed (the export is PARTIAL, not failed), the INT8 form is symmetric Q/DQ, and the engine's own parity runs
where TensorRT exists."""

import importlib.util

import numpy as np
import pytest
from scipy import stats

from lmliqa.runtimes import load
from lmliqa.stages import Outcome

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_export_writes_the_engine_input_and_says_what_it_could_not_build(exported):
    _, out, results = exported
    trt = results["tensorrt"]
    if HAS_TENSORRT:
        assert trt.outcome is Outcome.OK
        return
    assert trt.outcome is Outcome.PARTIAL
    assert trt.reason.startswith("wrote mobile_fp16.onnx; engine not built: tensorrt is not importable")
    assert [p.rsplit("/", 1)[-1] for p in trt.paths] == ["mobile_fp16.onnx"]


def test_tensorrt_qdq_is_symmetric_int8(quantized, photos, fp32_scores):
    import onnx
    from onnx import numpy_helper

    _, out, report = quantized
    m = onnx.load(str(out / "mobile_int8_qdq.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    zps = [inits[n.input[2]] for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    # activation scales are per-tensor (TensorRT takes per-channel scales for weights only)
    act_scales = [inits[n.input[1]] for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    assert act_scales and all(s.size == 1 for s in act_scales)
    got = np.array([r.score for r in load(out / "mobile_int8_qdq.onnx").score_many(photos)])  # ONNX Runtime here
    assert stats.spearmanr(got, fp32_scores)[0] >= 0.98
    if not HAS_TENSORRT:
        (partial,) = [r for r in report.for_target("tensorrt") if r.outcome is Outcome.PARTIAL]
        assert partial.reason.startswith("wrote mobile_int8_qdq.onnx; engine not built")


@pytest.mark.skipif(not HAS_TENSORRT, reason="tensorrt is not installed (it needs an NVIDIA GPU machine)")
def test_tensorrt_engine_parity(exported, photos, torch_scores):
    _, out, _ = exported
    scores = np.array([r.score for r in load(out / "mobile_fp16.plan").score_many(photos)])
    assert np.abs(scores - torch_scores).max() <= 0.5
