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


def _relu6_qdq_graph(reuse_clip_output: bool):
    """x -> Conv 1x1 -> Clip(0, 6) -> uint8 Q/DQ (zero point 0) -> depthwise Conv 3x3 (zero padding 1) -> y: NNCF's
    form of a MobileNetV2 ReLU6 output. REUSE_CLIP_OUTPUT adds a second reader of the Clip output (the exact shift
    then does not apply)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = 8
    inits = {"w1": rng.normal(0, 0.5, (c, 3, 1, 1)), "b1": rng.normal(1, 1, c), "w2": rng.normal(0, 0.5, (c, 1, 3, 3)),
             "b2": rng.normal(0, 0.1, c), "lo": np.array(0.0), "hi": np.array(6.0), "s": np.array(6.0 / 255)}
    tensors = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()]
    tensors.append(numpy_helper.from_array(np.array(0, np.uint8), "zp"))
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], kernel_shape=[1, 1]),
             helper.make_node("Clip", ["h", "lo", "hi"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "s", "zp"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "s", "zp"], ["rd"]),
             helper.make_node("Conv", ["rd", "w2", "b2"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=c)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", c, 9, 9])]
    if reuse_clip_output:
        nodes.append(helper.make_node("Relu", ["r"], ["z"]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", c, 9, 9]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 9, 9])
    graph = helper.make_graph(nodes, "relu6_qdq", [x], outputs, tensors)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def _run(model, x):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


@pytest.mark.parametrize("reuse_clip_output", [False, True])
def test_uint8_activations_become_int8_exactly_where_the_shift_folds(reuse_clip_output):
    """to_signed_int8: a ReLU6 output between convs becomes int8 with zero point 0 and the same scale, its shift
    folded into the biases and the consumer's padding, so the graph computes what the uint8 graph did (to float
    rounding); elsewhere it keeps the range at 255/127 x the scale and moves the output by about a uint8 step."""
    import copy

    import onnx
    from onnx import numpy_helper

    from lmliqa.quantize.tensorrt import to_signed_int8

    x = np.random.default_rng(1).uniform(-2, 2, (2, 3, 9, 9)).astype(np.float32)
    u8 = _relu6_qdq_graph(reuse_clip_output)
    s8 = copy.deepcopy(u8)
    counts = to_signed_int8(s8)
    onnx.checker.check_model(s8, full_check=True)
    zps = [numpy_helper.to_array(i) for i in s8.graph.initializer if i.name == "zp"]
    assert zps[0].dtype == np.int8 and not zps[0].any()
    diff = np.abs(_run(s8, x) - _run(u8, x)).max()
    if reuse_clip_output:
        assert counts == {"shifted": 0, "rescaled": 1}
        assert diff > 1e-3, diff                       # the lost bit shows
    else:
        assert counts == {"shifted": 1, "rescaled": 0}
        assert diff < 1e-4, diff
        assert [n.op_type for n in s8.graph.node].count("Pad") == 1
