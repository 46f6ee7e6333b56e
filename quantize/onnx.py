"""ONNX INT8 (Q/DQ) from the FP32 ONNX parent: NNCF on the ONNX model (default; with accuracy control), or ONNX
Runtime's quantize_static restricted to Conv/MatMul/Gemm with per-channel weights (never the all-ops default:
r ~ 0.6 measured here).

The same Q/DQ ONNX in symmetric form (zero points 0, int8 activations and weights) is what a strongly typed
TensorRT engine consumes (quantize/tensorrt.py). This file also translates a float scope into ONNX node names.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from lmliqa.scope import FloatScope, aten_op, under

from .calib import ImageSet

PARENT = "onnx"
# The artifact is quantized from the narrow scope first (the numerics and the head only) and widened to the
# backbone's default when it fails its gate: NNCF's bias correction keeps the stem and first stage inside the INT8
# gate where the PT2E quantizers cannot, and on ONNX Runtime those float convs cost ~40 % of the INT8 time
# (benchmarks/onnx_int8.py).
NARROW_FIRST = True
QUANTIZABLE_ONNX = ("Conv", "MatMul", "Gemm")
# lmliqa.scope's op categories as ONNX node types (nodes from the program's aten ops are matched too: ATEN_OPS)
ONNX_OPS: dict[str, tuple[str, ...]] = {
    "layernorm": ("LayerNormalization",), "softmax": ("Softmax",), "gelu": ("Gelu", "Erf"), "residual_add": ("Add",),
    "attention_matmul": (),
}


def quantize(ctx, onnx_tool: str = "nncf", max_drop: float | None = None, smooth_quant_alpha: float = 0.95,
             fast_bias_correction: bool = False):
    """The lmliqa.targets stage: M_int8.onnx next to its FP32 parent. With MAX_DROP and ONNX Runtime's tool (no
    accuracy control of its own), the float scope is widened to the whole decoder when the SRCC-vs-MOS drop on
    the validation images exceeds MAX_DROP."""
    from . import QuantOutput

    src, dst = ctx.parent.path, ctx.path("{m}_int8.onnx")
    scopes = [ctx.scope] if max_drop is None or onnx_tool == "nncf" else [ctx.scope, ctx.scope.plus("decoder")]
    for scope in scopes:
        if onnx_tool == "nncf":
            info = quantize_nncf_onnx(src, dst, ctx.calib, scope, ctx.metadata, ctx.model_type, ctx.val, max_drop,
                                      ctx.contract, smooth_quant_alpha, fast_bias_correction)
        else:
            info = quantize_ort(src, dst, ctx.calib, scope, ctx.metadata)
        info["scope"] = list(scope.categories)
        set_onnx_metadata(dst, ctx.metadata_json(info))
        if max_drop is None or onnx_tool == "nncf":
            break
        _, fid, _ = ctx.validate(dst)
        if fid.srcc_vs_mos is None or fid.srcc_vs_mos_ref - fid.srcc_vs_mos <= max_drop:
            break
    return QuantOutput([dst], info)


def onnx_nodes(scope: FloatScope, model, metadata: dict[str, Any]) -> list[str]:
    """Names of the ONNX nodes SCOPE keeps in float: nodes of its op types and every node exported from a module
    under its regions (torch.onnx records each node's module path in its ``name_scopes`` metadata), and always the
    network's input / output nodes (`io_nodes`)."""
    from lmliqa.export._graph import ATEN_OPS, scope_prefixes

    types = set(scope.op_types(ONNX_OPS))
    aten = scope.op_types(ATEN_OPS)
    prefixes = scope_prefixes(scope, metadata)
    io = set(io_nodes(model))
    out = []
    for node in model.graph.node:
        path, op = _onnx_scope(node)
        if (node.name in io or node.op_type in types or (path is not None and under(path, prefixes))
                or (op and aten_op(op) in aten)):
            out.append(node.name)
    return out


def io_nodes(model) -> list[str]:
    """Names of the network's input / output nodes, never quantized whatever the float scope (the rule and why:
    lmliqa.export._graph `io_node`): the root module's own nodes (``name_scopes`` path '') and the nodes whose
    every consumer is one of them."""
    root = {n.name for n in model.graph.node if _onnx_scope(n)[0] == ""}
    consumers: dict[str, list[str]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    feeds_root = {n.name for n in model.graph.node if n.name not in root
                  and (users := [u for o in n.output for u in consumers.get(o, [])]) and set(users) <= root}
    return [n.name for n in model.graph.node if n.name in root or n.name in feeds_root]


def _onnx_scope(node) -> tuple[str | None, str | None]:
    """(module path, aten node name) of an ONNX node exported by torch.onnx (dynamo); the module path is ''
    for the root module's own ops and None when the node carries no such metadata."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in ast.literal_eval(prop.value) if s]
            except (ValueError, SyntaxError):
                return None, None
            # the last entry is the aten node's own name; the one before it its module
            return (scopes[-2] if len(scopes) >= 2 else ""), (scopes[-1] if scopes else None)
    return None, None


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


def quantize_ort(src: Path, dst: Path, calib: ImageSet, scope: FloatScope, metadata: dict[str, Any],
                 symmetric: bool = False, method: str = "minmax") -> dict[str, Any]:
    """quantize_static, QDQ format. symmetric=False: uint8 activations (ONNX Runtime CPU's fast path on
    VNNI); symmetric=True: int8 activations and weights with zero points 0 (TensorRT's explicit-quantization
    form)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    _METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                "entropy": CalibrationMethod.Entropy}
    model = onnx.load(str(src))
    options = {"op_types_to_quantize": list(QUANTIZABLE_ONNX), "nodes_to_exclude": onnx_nodes(scope, model, metadata)}
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


def quantize_nncf_onnx(src: Path, dst: Path, calib: ImageSet, scope: FloatScope, metadata: dict[str, Any],
                       model_type: str | None, val: ImageSet | None = None, max_drop: float | None = None,
                       contract=None, smooth_quant_alpha: float | None = None,
                       fast_bias_correction: bool = False, per_tensor_activations: bool = True,
                       unsigned: bool = True) -> dict[str, Any]:
    """NNCF's Q/DQ model of SRC at DST, in the form ONNX Runtime runs fastest (per-tensor activations, all uint8; the
    two flags off give NNCF's own form, for benchmarks/onnx_int8.py's comparison)."""
    import nncf
    import onnx

    model = onnx.load(str(src))
    kwargs = _nncf_common(calib, model_type, smooth_quant_alpha, input_name=model.graph.input[0].name,
                          fast_bias_correction=fast_bias_correction,
                          per_tensor_activations=per_tensor_activations)
    kwargs["ignored_scope"] = nncf.IgnoredScope(names=onnx_nodes(scope, model, metadata), validate=False)
    if max_drop is None:
        q = nncf.quantize(model, **kwargs)
    else:
        from .accuracy import validation_fn

        q = nncf.quantize_with_accuracy_control(
            model, validation_dataset=nncf.Dataset([(c, m) for c, m in zip(val.crops, val.mos)]),
            validation_fn=validation_fn(contract), max_drop=max_drop,
            advanced_quantization_parameters=kwargs.pop("advanced_parameters", None), **kwargs)
    n_u8 = unsigned_activations(q) if unsigned else 0
    onnx.save(q, str(dst))
    return {"tool": f"nncf {nncf.__version__} (ONNX)", "model_type": model_type or "default",
            "activations": f"{'per-tensor' if per_tensor_activations else 'NNCF default'}, "
                           f"{'uint8' if unsigned else 'int8/uint8 as NNCF chose'}", "weights": "int8 per-channel",
            "n_activation_quantizers_made_unsigned": n_u8, "n_io_nodes_float": len(io_nodes(model)),
            "bias_correction": "fast" if fast_bias_correction else "full",
            "accuracy_control": None if max_drop is None else {"metric": "SRCC vs MOS", "max_drop": max_drop}}


def _nncf_common(calib: ImageSet, model_type: str | None, smooth_quant_alpha: float | None = None,
                 input_name: str | None = None, fast_bias_correction: bool = False,
                 per_tensor_activations: bool = False) -> dict[str, Any]:
    """nncf.quantize keyword arguments shared by the OpenVINO and ONNX paths. PER_TENSOR_ACTIVATIONS: one scale per
    activation tensor (NNCF otherwise gives depthwise-conv inputs per-channel scales, which ONNX Runtime cannot fuse
    into QLinearConv: the INT8 model then runs float convs between Q/DQ pairs, 2.2x slower than FP32)."""
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        QuantizationParameters,
    )

    # ONNX models take a feed dict, OpenVINO models a plain array
    transform = (lambda x: {input_name: x}) if input_name else None
    kwargs: dict[str, Any] = {"calibration_dataset": nncf.Dataset(calib.batches(), transform),
                              "subset_size": len(calib.crops),
                              # full BiasCorrection: measured on the CI model, mean |d| 1.11 -> 0.64 (OpenVINO)
                              "fast_bias_correction": fast_bias_correction}
    advanced: dict[str, Any] = {}
    if per_tensor_activations:
        advanced["activations_quantization_params"] = QuantizationParameters(per_channel=False)
    if model_type == "transformer":
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
        if smooth_quant_alpha is not None:
            advanced["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(matmul=smooth_quant_alpha)
    if advanced:
        kwargs["advanced_parameters"] = AdvancedQuantizationParameters(**advanced)
    return kwargs


class GraphIndex:
    """Producers, consumers and initializers of an ONNX graph, for the Q/DQ rewrites (here and quantize/tensorrt.py).
    Built once before a rewrite; nodes the rewrite inserts are not indexed."""

    def __init__(self, model) -> None:
        self.graph = model.graph
        self.inits = {i.name: i for i in model.graph.initializer}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def array(self, name: str):
        from onnx import numpy_helper

        return numpy_helper.to_array(self.inits[name])

    def set_array(self, name: str, value) -> None:
        from onnx import numpy_helper

        self.inits[name].CopyFrom(numpy_helper.from_array(value, name))

    def add(self, name: str, value) -> str:
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.inits[name] = self.graph.initializer[-1]
        return name

    def forget_types(self, names: set[str]) -> None:
        """Drop recorded value_info of NAMES (their element type or shape changed; ONNX Runtime infers them again)."""
        for vi in [v for v in self.graph.value_info if v.name in names]:
            self.graph.value_info.remove(vi)

    def set_elem_type(self, names: set[str], elem_type: int) -> None:
        """Record ELEM_TYPE (an onnx.TensorProto type) for the value_info of NAMES that the graph records."""
        for vi in self.graph.value_info:
            if vi.name in names:
                vi.type.tensor_type.elem_type = elem_type

    def drop_unused_initializers(self) -> None:
        used = {name for node in self.graph.node for name in node.input}
        for init in [i for i in self.graph.initializer if i.name not in used]:
            self.graph.initializer.remove(init)
            self.inits.pop(init.name, None)


def unsigned_activations(model) -> int:
    """Rewrite MODEL's int8 activation Q/DQ pairs as uint8 with the zero point moved by 128 (the same real values,
    so the same scores); returns how many. ONNX Runtime's CPU QLinearConv takes one activation type on both sides
    of a conv, and NNCF gives signed tensors (a block's projection conv, before its residual add) int8 but the
    ReLU6 outputs uint8: a conv between the two stays a float conv between Q/DQ pairs. Weight quantizers (on
    initializers) keep int8."""
    import numpy as np
    import onnx

    ix = GraphIndex(model)
    moved_outputs = set()
    for q in list(ix.graph.node):
        if q.op_type != "QuantizeLinear" or q.input[0] in ix.inits or len(q.input) < 3 or q.input[2] not in ix.inits:
            continue
        zero = ix.array(q.input[2])
        users = ix.consumers.get(q.output[0], [])
        if zero.dtype != np.int8 or not users or any(u.op_type != "DequantizeLinear" for u in users):
            continue
        moved = f"{q.input[2]}_uint8"                  # once per zero point (torch.onnx shares them among Qs)
        if moved not in ix.inits:
            ix.add(moved, (zero.astype(np.int16) + 128).astype(np.uint8))
        for node in (q, *users):
            node.input[2] = moved
        moved_outputs.add(q.output[0])
    ix.set_elem_type(moved_outputs, onnx.TensorProto.UINT8)
    ix.drop_unused_initializers()
    return len(moved_outputs)


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
