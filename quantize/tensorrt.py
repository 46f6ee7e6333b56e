"""TensorRT INT8: explicit quantization. A symmetric Q/DQ ONNX (int8 activations and per-channel int8 weights,
zero points 0, the float scope left in float) is what a strongly typed TensorRT network builds from:
TensorRT 10.12+/11 take precision from the graph (the implicit INT8 calibrators are gone), and its
QuantizeLinear/DequantizeLinear accept signed int8 only.

Recipe: NNCF on the FP32 ONNX with the PERFORMANCE preset (symmetric activations), then every unsigned
activation quantizer NNCF chose (uint8, zero point 0, after ReLU6) is re-expressed as signed int8 over the same
range (scale x 255/127: one bit of resolution traded for TensorRT compatibility). Here the Q/DQ ONNX is
executed with ONNX Runtime (the quantization arithmetic is fixed in the graph), so its numbers are real; the
engine is `exported, not verified` wherever TensorRT is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.scope import FloatScope

from .calib import ImageSet

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

    from .onnx import _nncf_common, onnx_nodes

    model = onnx.load(str(src))
    # TensorRT's explicit quantization takes per-channel scales for weights only: activations per-tensor (NNCF
    # otherwise gives depthwise-conv inputs per-channel scales; measured on the ONNX target, benchmarks/onnx_int8.py)
    kwargs = _nncf_common(calib, model_type, smooth_quant_alpha, input_name=model.graph.input[0].name,
                          fast_bias_correction=fast_bias_correction, per_tensor_activations=True)
    kwargs["ignored_scope"] = nncf.IgnoredScope(names=onnx_nodes(scope, model, metadata), validate=False)
    q = nncf.quantize(model, preset=nncf.QuantizationPreset.PERFORMANCE, **kwargs)
    n_converted = to_signed_int8(q)
    onnx.save(q, str(dst))
    return {"tool": f"nncf {nncf.__version__} (ONNX, PERFORMANCE preset: symmetric)", "format": "QDQ",
            "activations": "int8 symmetric per-tensor", "weights": "int8 symmetric per-channel",
            "unsigned_quantizers_made_signed": n_converted,
            "consumer": "TensorRT strongly typed network (explicit quantization)"}


def to_signed_int8(model) -> int:
    """Rewrite uint8 Q/DQ with zero point 0 as int8 over the same range; returns how many tensors changed."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    done_zp, done_scale, q_outputs = set(), set(), set()
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp_name, scale_name = node.input[2], node.input[1]
        zp = inits.get(zp_name)
        if zp is None:
            continue
        z = numpy_helper.to_array(zp)
        if z.dtype != np.uint8 and zp_name not in done_zp:
            continue
        if node.op_type == "QuantizeLinear":
            q_outputs.add(node.output[0])
        if zp_name not in done_zp:
            if z.any():
                raise ValueError(f"{zp_name}: asymmetric uint8 zero point; quantize with the PERFORMANCE preset")
            zp.CopyFrom(numpy_helper.from_array(np.zeros_like(z, dtype=np.int8), zp_name))
            done_zp.add(zp_name)
        if scale_name not in done_scale:
            s = numpy_helper.to_array(inits[scale_name])
            inits[scale_name].CopyFrom(numpy_helper.from_array((s * (255.0 / 127.0)).astype(s.dtype), scale_name))
            done_scale.add(scale_name)
    import onnx

    for vi in model.graph.value_info:  # the quantized tensors' recorded element type follows
        if vi.name in q_outputs:
            vi.type.tensor_type.elem_type = onnx.TensorProto.INT8
    return len(done_zp)
