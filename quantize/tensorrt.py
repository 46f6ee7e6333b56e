"""TensorRT INT8: explicit quantization. A symmetric Q/DQ ONNX (int8 activations and per-channel int8 weights,
zero points 0, the float scope left in float) is what a strongly typed TensorRT network builds from:
TensorRT 10.12+/11 take precision from the graph (the implicit INT8 calibrators are gone), and its
QuantizeLinear/DequantizeLinear accept signed int8 only.

Recipe: NNCF on the FP32 ONNX with the PERFORMANCE preset (symmetric activations), then every unsigned
activation quantizer NNCF chose (uint8, zero point 0, after ReLU6) is made signed int8 with zero point 0: exactly,
by shifting the tensor by -128 x scale and folding the shift into the neighbouring convs' biases, where the graph
allows it, else over the same range at 255/127 x the scale (one bit of resolution lost; to_signed_int8). Here the
Q/DQ ONNX is executed with ONNX Runtime (the quantization arithmetic is fixed in the graph), so its numbers are real;
the engine is `exported, not verified` wherever TensorRT is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.scope import FloatScope

from .calib import ImageSet
from .onnx import GraphIndex

PARENT = "onnx"


def quantize(ctx, smooth_quant_alpha: float = 0.95, fast_bias_correction: bool = False):
    """The lmliqa.targets stage: M_int8_qdq.onnx from the FP32 ONNX, then M_int8.plan where TensorRT exists
    (partial without it: the Q/DQ ONNX is kept, validated under ONNX Runtime)."""
    from lmliqa.export.tensorrt import onnx2engine

    from . import QuantOutput
    from .onnx import set_onnx_metadata

    qdq, plan = ctx.path("{m}_int8_qdq.onnx"), ctx.path("{m}_int8.plan")
    info = qdq_for_tensorrt(ctx.parent.path, qdq, ctx.calib, ctx.scope, ctx.metadata, ctx.model_type,
                            fast_bias_correction, smooth_quant_alpha)
    set_onnx_metadata(qdq, ctx.metadata_json(info, format="tensorrt-qdq-onnx"))
    try:
        onnx2engine(qdq, plan, json.loads(ctx.metadata_json(info)), precision="int8")
    except ImportError as exc:
        return QuantOutput([qdq], info, partial=f"wrote {qdq.name}; engine not built: {exc}")
    return QuantOutput([qdq, plan], info)


def qdq_for_tensorrt(src: Path, dst: Path, calib: ImageSet, scope: FloatScope, metadata: dict[str, Any],
                     model_type: str | None = None, fast_bias_correction: bool = False,
                     smooth_quant_alpha: float | None = None) -> dict[str, Any]:
    import nncf
    import onnx

    q = nncf_symmetric_qdq(src, calib, scope, metadata, model_type, fast_bias_correction, smooth_quant_alpha)
    converted = to_signed_int8(q)
    onnx.save(q, str(dst))
    return {"tool": f"nncf {nncf.__version__} (ONNX, PERFORMANCE preset: symmetric)", "format": "QDQ",
            "activations": "int8 symmetric per-tensor", "weights": "int8 symmetric per-channel",
            "unsigned_quantizers_made_signed": converted,
            "consumer": "TensorRT strongly typed network (explicit quantization)"}


def nncf_symmetric_qdq(src: Path, calib: ImageSet, scope: FloatScope, metadata: dict[str, Any],
                       model_type: str | None = None, fast_bias_correction: bool = False,
                       smooth_quant_alpha: float | None = None):
    """NNCF's symmetric Q/DQ model of SRC (ONNX ModelProto): per-tensor activations, int8 or, where NNCF finds a
    tensor non-negative, uint8 with zero point 0 (what to_signed_int8 then rewrites)."""
    import nncf
    import onnx

    from .onnx import _nncf_common, onnx_nodes

    model = onnx.load(str(src))
    # TensorRT's explicit quantization takes per-channel scales for weights only: activations per-tensor (NNCF
    # otherwise gives depthwise-conv inputs per-channel scales; measured on the ONNX target, benchmarks/onnx_int8.py)
    kwargs = _nncf_common(calib, model_type, smooth_quant_alpha, input_name=model.graph.input[0].name,
                          fast_bias_correction=fast_bias_correction, per_tensor_activations=True)
    kwargs["ignored_scope"] = nncf.IgnoredScope(names=onnx_nodes(scope, model, metadata), validate=False)
    return nncf.quantize(model, preset=nncf.QuantizationPreset.PERFORMANCE, **kwargs)


def to_signed_int8(model, exact: bool = True) -> dict[str, int]:
    """Make every uint8 activation quantizer (zero point 0) int8 with zero point 0, as TensorRT requires. Where the
    tensor is a Conv -> Clip output read only by convs (MobileNetV2's ReLU6 outputs), exactly: the tensor is shifted
    down by 128 x scale, folded into the producer's bias and clip bounds and back into each consumer's bias, so
    round(x / s) - 128 is the int8 code, the uint8 code moved by 128, at the same scale (a consumer's zero padding
    becomes an explicit Pad of the shifted value before the quantizer). Elsewhere, approximately: the same range at
    255/127 x the scale (one bit lost). On the suite's CI model the lossy form for all 36 quantizers moved INT8 from
    mean |d| 0.50 to 1.18 on the gate photos (benchmarks/tensorrt_qdq.py). EXACT=False: the lossy form for every
    tensor (for that comparison). Returns both counts. Not verified with TensorRT (none here): that its builder keeps
    each DQ -> Conv pair an int8 conv with the float Pad before the Q (ONNX Runtime's numbers are real)."""
    index = GraphIndex(model)
    shifted = sum(_shift_exactly(index, q) for q in _unsigned_activation_quantizers(index)) if exact else 0
    return {"shifted": shifted, "rescaled": _rescale(index)}


def _unsigned_activation_quantizers(ix: GraphIndex) -> list:
    return [n for n in ix.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in ix.inits
            and len(n.input) > 2 and n.input[2] in ix.inits and ix.array(n.input[2]).dtype == np.uint8]


def _conv_weight(ix: GraphIndex, conv) -> np.ndarray:
    """CONV's weights as it computes with them (dequantized when they come through a DequantizeLinear)."""
    name = conv.input[1]
    if name in ix.inits:
        return ix.array(name).astype(np.float64)
    dq = ix.producer[name]
    w = ix.array(dq.input[0]).astype(np.float64)
    shape = [1] * w.ndim
    shape[next((a.i for a in dq.attribute if a.name == "axis"), 1)] = -1
    scale = ix.array(dq.input[1])
    zero = ix.array(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else np.zeros((), w.dtype)
    return (w - zero.reshape(shape if zero.ndim else ())) * scale.reshape(shape if scale.ndim else ())


def _attr(node, name: str, default=None):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _shiftable(ix: GraphIndex, q):
    """(clip, producer conv, consumer convs) when Q's tensor is Conv -> Clip -> Q -> DQ(s) -> Conv(s), the convs with
    bias initializers of their own and the consumers with one explicit padding, and Q's scale and zero point (0) its
    own; else None."""
    clip = ix.producer.get(q.input[0])
    conv = ix.producer.get(clip.input[0]) if clip is not None and clip.op_type == "Clip" else None
    if conv is None or conv.op_type != "Conv" or len(ix.consumers[clip.input[0]]) != 1:
        return None
    dqs = ix.consumers.get(q.output[0], [])
    users = [u for d in dqs for u in ix.consumers.get(d.output[0], [])]
    with_bias = [conv, *users]
    if not (users and len(ix.consumers[q.input[0]]) == 1 and all(d.op_type == "DequantizeLinear" for d in dqs)
            and all(c.op_type == "Conv" and len(c.input) == 3 and c.input[2] in ix.inits for c in with_bias)
            and all(len(ix.consumers[c.input[2]]) == 1 for c in with_bias)
            and all(len(ix.consumers[q.input[i]]) == 1 + len(dqs) for i in (1, 2)) and not ix.array(q.input[2]).any()
            and all(not n or n in ix.inits for n in clip.input[1:])
            and all(_attr(u, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET") for u in users)
            and len({tuple(_attr(u, "pads", ())) for u in users}) == 1):
        return None
    return clip, conv, users


def _shift_exactly(ix: GraphIndex, q) -> bool:
    """Shift Q's tensor by -128 x scale (to_signed_int8); False, leaving it alone, where _shiftable says no."""
    found = _shiftable(ix, q)
    if found is None:
        return False
    clip, conv, users = found
    c = 128.0 * float(ix.array(q.input[1]))
    ix.set_array(conv.input[2], (ix.array(conv.input[2]) - c).astype(np.float32))
    names = [*clip.input[1:3], "", ""][:2]            # Clip's optional min and max ("" or absent: unbounded)
    bounds = [float(ix.array(n)) if n else default for n, default in zip(names, (-np.inf, np.inf))]
    del clip.input[1:]
    clip.input.extend(ix.add(f"{clip.name}_{side}_shifted", np.array(b - c, np.float32))
                      for side, b in zip(("min", "max"), bounds))
    for u in users:
        bias = ix.array(u.input[2]).astype(np.float64) + c * _sum_per_output(_conv_weight(ix, u))
        ix.set_array(u.input[2], bias.astype(np.float32))
    pad = list(_attr(users[0], "pads", ()))
    if any(pad):
        _pad_before(ix, q, pad, -c, users)
    ix.set_array(q.input[2], np.zeros_like(ix.array(q.input[2]), dtype=np.int8))
    ix.forget_types({q.output[0], q.input[2]})
    return True


def _sum_per_output(w: np.ndarray) -> np.ndarray:
    """Each output channel's sum of its weights: what a constant input of 1 adds to it (any group count)."""
    return w.sum(axis=tuple(range(1, w.ndim)))


def _pad_before(ix: GraphIndex, q, pads: list[int], value: float, users) -> None:
    """Move USERS' zero padding in front of Q as a Pad of VALUE (the shifted tensor's zero)."""
    from onnx import helper

    k = len(pads) // 2
    spec = ix.add(f"{q.name}_pads", np.array([0, 0, *pads[:k], 0, 0, *pads[k:]], np.int64))
    fill = ix.add(f"{q.name}_pad_value", np.array(value, np.float32))
    padded = f"{q.input[0]}_padded"
    node = helper.make_node("Pad", [q.input[0], spec, fill], [padded], name=f"{q.name}_pad", mode="constant")
    ix.graph.node.insert(list(ix.graph.node).index(q), node)
    changed = {q.output[0], *(d.output[0] for d in ix.consumers[q.output[0]])}
    q.input[0] = padded
    for u in users:
        for a in u.attribute:
            if a.name == "pads":
                a.ints[:] = [0] * len(pads)
    ix.forget_types(changed)


def _rescale(ix: GraphIndex) -> int:
    """Rewrite the remaining uint8 Q/DQ with zero point 0 as int8 over the same range (scale x 255/127); returns
    how many tensors changed."""
    import onnx

    done_zp, done_scale, q_outputs = set(), set(), set()
    for node in ix.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp_name, scale_name = node.input[2], node.input[1]
        if zp_name not in ix.inits:
            continue
        z = ix.array(zp_name)
        if z.dtype != np.uint8 and zp_name not in done_zp:
            continue
        if node.op_type == "QuantizeLinear":
            q_outputs.add(node.output[0])
        if zp_name not in done_zp:
            if z.any():
                raise ValueError(f"{zp_name}: asymmetric uint8 zero point; quantize with the PERFORMANCE preset")
            ix.set_array(zp_name, np.zeros_like(z, dtype=np.int8))
            done_zp.add(zp_name)
        if scale_name not in done_scale:
            scale = ix.array(scale_name)
            ix.set_array(scale_name, (scale * (255.0 / 127.0)).astype(scale.dtype))
            done_scale.add(scale_name)
    # the quantized tensors' and zero points' recorded element type follows
    ix.set_elem_type(q_outputs | done_zp, onnx.TensorProto.INT8)
    return len(done_zp)
