"""The ONNX target: a checked, dynamic-batch graph that carries its metadata, ONNX Runtime's device handling, and
INT8 that quantizes only the linear ops and keeps the float scope float."""

import json

import numpy as np
import pytest

from lmliqa.runtimes import DeviceUnavailable, load


def test_onnx_artifact_is_checked_dynamic_and_carries_metadata(exported):
    import onnx

    from lmliqa.export.onnx import check_onnx
    from lmliqa.manifest import sha256_file

    ckpt, out, _ = exported
    proto = onnx.load(str(out / "mobile.onnx"))
    check_onnx(proto)
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["lmliqa"])
    assert meta["source_checkpoint_sha256"] == sha256_file(ckpt)
    assert meta["contract"]["crop_size"] == 224 and meta["score"]["higher_is_better"] is True
    assert {"torch", "onnx", "onnxruntime"} <= set(meta["tools"])
    assert meta["encoder_kind"] == "cnn" and meta["regions"]["stem"] == ["encoder.cnn.conv_stem", "encoder.cnn.bn1"]
    assert meta["float_scopes"]["wider"] == ["second_stage"]
    scorer = load(out / "mobile.onnx")
    for b in (1, 13):  # any batch
        assert scorer.infer(np.full((b, 3, 224, 224), 128, np.float32)).shape == (b,)


def test_an_absent_execution_provider_is_an_error_not_a_fallback(exported):
    _, out, _ = exported
    with pytest.raises(DeviceUnavailable, match="lacks"):
        load(out / "mobile.onnx", device="cuda:0")


def test_onnx_int8_quantizes_only_linear_ops_and_keeps_the_scope_float(quantized):
    import onnx

    from lmliqa.quantize.onnx import _onnx_scope
    from lmliqa.runtimes.onnxruntime import read_metadata

    _, out, _ = quantized
    path = out / "mobile_int8.onnx"
    scope = read_metadata(path)["quantization"]["scope"]     # narrow first, the default when narrow failed its gate
    assert {"layernorm", "softmax", "gelu", "head"} <= set(scope)
    g = onnx.load(str(path)).graph
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in g.node for o in n.output}
    dq_feeds = [c.op_type for n in g.node if n.op_type == "DequantizeLinear" for c in consumers.get(n.output[0], [])]
    # quantized tensors reach linear ops (possibly through a layout op), pooling and (outside the scope) the
    # residual adds, never the float scope's numerics (LayerNorm, softmax, GELU's Erf/Div, the score affine)
    # (Slice: the tokens' LayerNorm output is quantized for the cross-attention's K/V projection, then sliced)
    allowed = {"Conv", "MatMul", "Gemm", "Transpose", "Reshape", "Slice", "ReduceMean"}
    assert dq_feeds and set(dq_feeds) <= allowed | ({"Add"} if "residual_add" not in scope else set())
    assert not {"LayerNormalization", "Softmax", "Erf", "Div", "Mul"} & set(dq_feeds)
    assert ("Add" in dq_feeds) == ("residual_add" not in scope)
    assert {"Conv", "MatMul"} <= set(dq_feeds)
    assert {"LayerNormalization", "Softmax"} <= {n.op_type for n in g.node}       # still float ops
    head = [n for n in g.node if n.op_type in ("MatMul", "Gemm") and _onnx_scope(n)[0] == "head"]
    assert len(head) == 1 and not any(i in producer and producer[i].op_type == "DequantizeLinear"
                                      for i in head[0].input)
    stem = [n for n in g.node if n.op_type == "Conv"][0]                              # the pixel-facing conv
    assert any(i in producer and producer[i].op_type == "DequantizeLinear" for i in stem.input) == (
        "stem" not in scope)
    assert sum(n.op_type == "QuantizeLinear" for n in g.node) > 20


def test_onnx_runtime_runs_every_quantized_conv_as_an_integer_conv(quantized, livec_train_dir, tmp_path):
    """The INT8 recipe's point (issue 25): per-tensor, one-signedness activations, so that ONNX Runtime fuses each
    DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv. Checked on the graph ONNX Runtime builds at its
    hardware-independent level: no conv with quantized weights is left to run in float. Quantized here with the
    narrow scope the ladder tries first (whether the CI model keeps it depends on its gate)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from lmliqa.contract import PreprocessContract
    from lmliqa.quantize.calib import build_sets
    from lmliqa.quantize.onnx import quantize_nncf_onnx
    from lmliqa.scope import FloatScope

    _, out, _ = quantized
    meta = load(out / "mobile.onnx").metadata
    calib, _ = build_sets(f"folder:{livec_train_dir}", PreprocessContract.from_dict(meta["contract"]), 16, 1)
    model = tmp_path / "narrow_int8.onnx"
    quantize_nncf_onnx(out / "mobile.onnx", model, calib, FloatScope(tuple(meta["float_scopes"]["narrow"])), meta,
                       None)
    src = onnx.load(str(model)).graph
    producer = {o: n for n in src.node for o in n.output}
    n_quantized = sum(n.op_type == "Conv" and n.input[1] in producer
                      and producer[n.input[1]].op_type == "DequantizeLinear" for n in src.node)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    g = onnx.load(str(tmp_path / "optimized.onnx")).graph
    ops = [n.op_type for n in g.node]
    n_float = sum(n.op_type == "Conv" for n in src.node) - n_quantized
    assert n_quantized > 30 and ops.count("QLinearConv") == n_quantized
    assert ops.count("Conv") + ops.count("FusedConv") == n_float
    # activation quantizers are uint8 (weights int8): ONNX Runtime's CPU QLinearConv takes one activation type
    inits = {i.name: numpy_helper.to_array(i) for i in src.initializer}
    zero_points = [inits[n.input[2]].dtype.name for n in src.node
                   if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    assert zero_points and set(zero_points) == {"uint8"}


@pytest.mark.parametrize("shared_zero", [False, True], ids=["own zero points", "one shared zero point"])
def test_unsigned_activations_keeps_every_value(tmp_path, shared_zero):
    """Moving an int8 activation quantizer to uint8 (zero point + 128) changes no output: same scores, bit for bit;
    a zero point several quantizers share (torch.onnx's export) becomes one uint8 initializer."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from lmliqa.quantize.onnx import unsigned_activations

    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    wq = np.clip(np.round(w / 0.02), -127, 127).astype(np.int8)
    init = [numpy_helper.from_array(a, n) for a, n in (
        (np.float32(0.05), "xs"), (np.int8(-7), "xz"), (wq, "wq"), (np.full(4, 0.02, np.float32), "ws"),
        (np.zeros(4, np.int8), "wz"), (np.float32(0.1), "ys"), (np.int8(3), "yz"))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "ys", "xz" if shared_zero else "yz"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "ys", "xz" if shared_zero else "yz"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 8, 8])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    x = rng.normal(scale=4, size=(2, 3, 8, 8)).astype(np.float32)     # saturates at both ends too

    def run(m):
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
            None, {"x": x})[0]

    before = run(model)
    assert unsigned_activations(model) == 2
    onnx.checker.check_model(model)
    zps = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert {zps[n.input[2]].dtype.name for n in model.graph.node if n.input[0] in ("x", "xq", "c", "cq")} == {"uint8"}
    assert zps[nodes[2].input[2]].dtype.name == "int8"                 # the weight quantizer is left alone
    names = [i.name for i in model.graph.initializer]
    assert len(names) == len(set(names)) and len(names) == 7 - shared_zero
    np.testing.assert_array_equal(run(model), before)


def test_the_float_scope_in_onnx_node_names(exported, program):
    import onnx

    from lmliqa.quantize.onnx import onnx_nodes
    from lmliqa.scope import FloatScope

    _, out, _ = exported
    _, meta = program
    model = onnx.load(str(out / "mobile.onnx"))
    default = FloatScope(tuple(meta["float_scopes"]["default"]))
    nodes = set(onnx_nodes(default, model, meta))
    by_type = {n.name: n.op_type for n in model.graph.node}
    assert {by_type[n] for n in nodes} >= {"LayerNormalization", "Softmax", "Erf", "Add", "MatMul"}
    assert sum(by_type[n] == "Conv" for n in nodes) == 3        # the stem, block 0's depthwise and pointwise convs
    decoder, head = (set(onnx_nodes(FloatScope.parse(c), model, meta)) for c in ("decoder", "head"))
    assert len(decoder) > len(head)


def test_the_input_normalization_and_score_tail_stay_float_with_an_empty_scope(exported, program):
    """quantize/onnx.py io_nodes: with no float scope, the network's input / output nodes (the root module's own:
    input normalization, panel queries, the mean of the panel scores, label scale and shift; and the two that feed
    only them: the score head's MatMul and the class token's Gather) are still excluded from quantization, and
    nothing else is."""
    import onnx

    from lmliqa.quantize.onnx import io_nodes, onnx_nodes
    from lmliqa.scope import FloatScope

    _, out, _ = exported
    _, meta = program
    model = onnx.load(str(out / "mobile.onnx"))
    by_type = {n.name: n.op_type for n in model.graph.node}
    nodes = onnx_nodes(FloatScope(()), model, meta)
    assert sorted(nodes) == sorted(io_nodes(model))
    assert sorted(by_type[n] for n in nodes) == ["Add", "Add", "Div", "Gather", "MatMul", "Mul", "ReduceMean", "Sub",
                                                 "Unsqueeze"]
