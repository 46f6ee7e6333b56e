"""The "keep in float" scope, expressed once and translated to each quantization tool.

A scope is a set of categories. Op categories name numerics that INT8 ruins in ViT-style networks
(deployment.md §2.3); module categories name parts of the network by their PyTorch module path, which the
single torch.export program records for every node (ONNX nodes carry it in their ``name_scopes`` metadata;
OpenVINO keeps the aten node name in each op's friendly name).

Only the weight-bearing linear ops (Conv, MatMul/Gemm) are candidates for INT8 at all; everything in the
scope stays in float on top of that. The default was chosen by measurement (README, "Quantization").
"""

from __future__ import annotations

from dataclasses import dataclass

# op categories -> op types, per tool
# ("aten": the torch op a node was exported from, which also catches a decomposed op's pieces, e.g. GELU's
# Div/Erf/Add/Mul in opset 18)
OP_CATEGORIES: dict[str, dict[str, tuple[str, ...]]] = {
    "layernorm": {"onnx": ("LayerNormalization",), "openvino": ("MVN",), "aten": ("layer_norm",)},
    "softmax": {"onnx": ("Softmax",), "openvino": ("Softmax", "SoftMax"), "aten": ("softmax",)},
    "gelu": {"onnx": ("Gelu", "Erf"), "openvino": ("Gelu",), "aten": ("gelu",)},
    "residual_add": {"onnx": ("Add",), "openvino": ("Add",), "aten": ()},
    # activation x activation products inside attention (QK^T, AV): no weights, per-tensor scales only
    "attention_matmul": {"onnx": (), "openvino": ("ScaledDotProductAttention",),
                         "aten": ("scaled_dot_product_attention",)},
}
# module categories -> module-path prefixes in QualityNet
MODULE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "head": ("head", ""),                  # the final Linear to the score, and the network's root-level
                                           # ops (pixel normalisation in, score affine out)
    "decoder": ("decoder", "head", ""),    # the whole attention-panel decoder and the head
    "tokens": ("encoder.proj", "encoder.norm"),  # CNN presets: feature map -> tokens projection
    "stem": ("encoder.cnn.conv_stem", "encoder.cnn.bn1", "encoder.vit.patch_embed"),  # the pixel-facing conv
    "first_stage": ("encoder.cnn.blocks.0",),  # CNN presets: the first stage after the stem
    "second_stage": ("encoder.cnn.blocks.1",),
}
QUANTIZABLE_ONNX = ("Conv", "MatMul", "Gemm")
DEFAULT_SCOPE = ("layernorm", "softmax", "gelu", "residual_add", "head", "stem")
# kept in f32 when a float artifact runs in bf16/fp16 (OpenVINO's CPU bf16): the pixel-facing layers, where
# MobileNetV2 and EfficientNet-Lite0 lose most of their bf16 accuracy (README, "bf16 and the first layers")
REDUCED_PRECISION_SCOPE = ("stem", "first_stage", "second_stage")


@dataclass(frozen=True)
class FloatScope:
    categories: tuple[str, ...] = DEFAULT_SCOPE

    @classmethod
    def parse(cls, text: str | None, default: tuple[str, ...] = DEFAULT_SCOPE) -> FloatScope:
        if text is None or text == "default":
            return cls(default)
        cats: tuple[str, ...] = ()
        for c in (c.strip() for c in text.split(",")):
            if c == "default":
                cats += default
            elif c and c != "none":
                cats += (c,)
        cats = tuple(dict.fromkeys(cats))
        unknown = [c for c in cats if c not in OP_CATEGORIES and c not in MODULE_CATEGORIES]
        if unknown:
            raise ValueError(f"unknown float-scope categories {unknown}; choose from "
                             f"{sorted(OP_CATEGORIES) + sorted(MODULE_CATEGORIES)}")
        return cls(cats)

    def __str__(self) -> str:
        return ",".join(self.categories) or "none"

    def plus(self, *cats: str) -> FloatScope:
        return FloatScope(tuple(dict.fromkeys(self.categories + cats)))

    @property
    def module_prefixes(self) -> tuple[str, ...]:
        return tuple(p for c in self.categories for p in MODULE_CATEGORIES.get(c, ()))

    def op_types(self, tool: str) -> tuple[str, ...]:
        return tuple(t for c in self.categories for t in OP_CATEGORIES.get(c, {}).get(tool, ()))

    # ------------------------------------------------------------------ translations
    def onnx_nodes(self, model) -> list[str]:
        """Names of ONNX nodes kept in float: ops of the scope's types and every node under a scoped module."""
        types = set(self.op_types("onnx"))
        aten = self.op_types("aten")
        prefixes = self.module_prefixes
        out = []
        for node in model.graph.node:
            path, op = _onnx_scope(node)
            if (node.op_type in types or (path is not None and _under(path, prefixes))
                    or (op and op.startswith(aten))):
                out.append(node.name)
        return out

    def ort_options(self, model) -> dict:
        """onnxruntime.quantization.quantize_static keyword arguments."""
        return {"op_types_to_quantize": list(QUANTIZABLE_ONNX), "nodes_to_exclude": self.onnx_nodes(model)}

    def nncf_onnx(self, model):
        import nncf

        return nncf.IgnoredScope(names=self.onnx_nodes(model), validate=False)

    def openvino_ops(self, ov_model, program) -> list[str]:
        """Friendly names of the OpenVINO ops under the scope's modules (see ``openvino_ops_under``)."""
        return openvino_ops_under(ov_model, program, self.module_prefixes)

    def nncf_openvino(self, ov_model, program) -> object:
        """NNCF IgnoredScope for an OpenVINO model converted from PROGRAM (torch.export)."""
        import nncf

        return nncf.IgnoredScope(names=self.openvino_ops(ov_model, program), types=list(self.op_types("openvino")),
                                 validate=False)

    def coreml_op_names(self, program) -> list[str]:
        """aten node names under scoped modules (Core ML keeps them as MIL op names)."""
        return sorted(aten_nodes_under(program, self.module_prefixes))


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    # "" names the root module's own ops only, not everything below it
    return any(path == p or (p and path.startswith(p + ".")) for p in prefixes)


def _onnx_scope(node) -> tuple[str | None, str | None]:
    """(module path, aten node name) of an ONNX node exported by torch.onnx (dynamo); the module path is ''
    for the root module's own ops and None when the node carries no such metadata."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            import ast

            try:
                scopes = [s for s in ast.literal_eval(prop.value) if s]
            except (ValueError, SyntaxError):
                return None, None
            # the last entry is the aten node's own name; the one before it its module
            return (scopes[-2] if len(scopes) >= 2 else ""), (scopes[-1] if scopes else None)
    return None, None


def aten_nodes_under(program, prefixes: tuple[str, ...]) -> set[str]:
    """Names of the torch.export graph nodes whose module path starts with one of PREFIXES."""
    out = set()
    if not prefixes:
        return out
    for node in program.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        paths = [v[0] for v in stack.values()]
        if node.op != "call_function":
            continue
        if _under(_clean(paths[-1]) if paths else "", prefixes):
            out.add(node.name)
    return out


OV_CONVS = ("Convolution", "GroupConvolution")


def openvino_ops_under(ov_model, program, prefixes: tuple[str, ...]) -> list[str]:
    """Friendly names of the ops of an OpenVINO model converted from PROGRAM that come from modules under
    PREFIXES. Most ops keep their aten node's name as the first part of their friendly name; a convolution
    with a folded BatchNorm is renamed after the Multiply it absorbed, so convolutions are matched to the
    program's convolutions by order (both are topological) and checked by weight shape."""
    aten = aten_nodes_under(program, prefixes)
    if not aten:
        return []
    names = [op.get_friendly_name() for op in ov_model.get_ordered_ops()
             if op.get_friendly_name().split("/", 1)[0] in aten and op.get_type_name() != "Constant"]
    ov_convs = [op for op in ov_model.get_ordered_ops() if op.get_type_name() in OV_CONVS]
    pt_convs = [n for n in program.graph.nodes if n.op == "call_function" and str(n.target).startswith(
        ("aten.conv2d", "aten.convolution", "aten._convolution"))]
    if len(ov_convs) != len(pt_convs):
        raise ValueError(f"cannot match convolutions: {len(ov_convs)} in OpenVINO, {len(pt_convs)} in torch.export")
    for op, node in zip(ov_convs, pt_convs):
        if _ov_conv_weight_shape(op) != tuple(node.args[1].meta["val"].shape):
            raise ValueError(f"cannot match convolutions: {op.get_friendly_name()} has weights "
                             f"{_ov_conv_weight_shape(op)}, torch {node.name} {tuple(node.args[1].meta['val'].shape)}")
        if node.name in aten and op.get_friendly_name() not in names:
            names.append(op.get_friendly_name())
    return names


def _ov_conv_weight_shape(op) -> tuple[int, ...]:
    """OpenVINO conv weights as torch lays them out: (out, in / groups, kh, kw)."""
    w = tuple(int(d) for d in op.input(1).get_partial_shape().to_shape())
    if op.get_type_name() == "GroupConvolution":    # (groups, out / groups, in / groups, kh, kw)
        return (w[0] * w[1],) + w[2:]
    return w


def _clean(path: str) -> str:
    # torch.export module paths look like "L__self___head" or "head" depending on the version
    return path.replace("L__self___", "").replace("L['self'].", "")
