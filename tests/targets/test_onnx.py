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

    _, out, _ = quantized
    g = onnx.load(str(out / "mobile_int8.onnx")).graph
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in g.node for o in n.output}
    dq_feeds = [c.op_type for n in g.node if n.op_type == "DequantizeLinear" for c in consumers.get(n.output[0], [])]
    # quantized tensors reach linear ops (possibly through a layout op) and pooling, never the float scope's
    # numerics (LayerNorm, softmax, GELU's Erf/Div, residual adds, the score affine)
    # (Slice: the tokens' LayerNorm output is quantized for the cross-attention's K/V projection, then sliced)
    assert dq_feeds and set(dq_feeds) <= {"Conv", "MatMul", "Gemm", "Transpose", "Reshape", "Slice", "ReduceMean"}
    assert not {"LayerNormalization", "Softmax", "Erf", "Div", "Add", "Mul"} & set(dq_feeds)
    assert {"Conv", "MatMul"} <= set(dq_feeds)
    assert {"LayerNormalization", "Softmax"} <= {n.op_type for n in g.node}       # still float ops
    head = [n for n in g.node if n.op_type in ("MatMul", "Gemm") and _onnx_scope(n)[0] == "head"]
    assert len(head) == 1 and not any(i in producer and producer[i].op_type == "DequantizeLinear"
                                      for i in head[0].input)
    stem = [n for n in g.node if n.op_type == "Conv"][0]                              # the pixel-facing conv
    assert not any(i in producer and producer[i].op_type == "DequantizeLinear" for i in stem.input)
    assert sum(n.op_type == "QuantizeLinear" for n in g.node) > 20


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
