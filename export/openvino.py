"""OpenVINO IR, converted from the torch.export program; FP32 weights unless fp16 weights are asked for.

Reduced-precision execution (the CPU plugin's bf16, f16 on GPUs and ARM) keeps a scope of layers in f32:
by default the network's pixel-facing layers (for CNNs the stem and the first two stages), where MobileNetV2 and
EfficientNet-Lite0 lose most of their bf16 accuracy (measured: README, "bf16 and the first layers"). The marks
are OpenVINO's own precision attribute (``DisablePrecisionConversion``, which the CPU plugin honours for bf16
and ``ConvertPrecision`` for f16) in each kept layer's rt_info; an f32 run ignores them.

This file also translates a float scope into OpenVINO op names (``OPENVINO_OPS``, ``openvino_ops``), for the
keep-f32 marks here and for NNCF's ignored scope in quantize/openvino.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmliqa.runtimes.openvino import KEEP_F32_ATTRIBUTE
from lmliqa.scope import FloatScope

from ._graph import INPUT_NAME, OUTPUT_NAME, ExportError, metadata_json, nodes_under, scope_prefixes

KEEP_F32_VALUE = "dynamic:bf16,f16"                 # from any type, never to bf16 or f16
OV_CONVS = ("Convolution", "GroupConvolution")
ELEMENTWISE = ("Add", "Subtract", "Multiply", "Divide", "Convert")
# lmliqa.scope's op categories as OpenVINO op types
OPENVINO_OPS: dict[str, tuple[str, ...]] = {
    "layernorm": ("MVN",), "softmax": ("Softmax", "SoftMax"), "gelu": ("Gelu",), "residual_add": ("Add",),
    "attention_matmul": ("ScaledDotProductAttention",),
}


def export(ctx, keep_f32: str | None = None, openvino_fp16_weights: bool = False) -> list[Path]:
    """The lmliqa.targets stage: M_openvino/M.xml (+ .bin), checked in f32 against the program."""
    from lmliqa.runtimes.openvino import OpenVinoScorer

    from ._graph import check_against_program

    path = torch2openvino(ctx.program, ctx.path("{m}_openvino/{m}.xml"), ctx.metadata,
                          compress_to_fp16=openvino_fp16_weights, keep_f32=keep_f32)
    check_against_program(ctx.program, OpenVinoScorer(path))
    return [path]


def torch2openvino(program: torch.export.ExportedProgram, path: Path, metadata: dict[str, Any],
                   compress_to_fp16: bool = False, keep_f32: str | None = None) -> Path:
    """Write PATH (model.xml + model.bin). The weights' precision is recorded in rt_info; the precision
    that executes is chosen at load time (lmliqa.runtimes pins INFERENCE_PRECISION_HINT). KEEP_F32 is a float
    scope (lmliqa.scope categories; None/"default" = the network's default, "none") kept f32 under bf16/f16."""
    import openvino as ov

    try:
        model = ov.convert_model(program)
    except Exception as exc:
        raise ExportError(f"openvino.convert_model failed: {exc}") from exc
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    if not model.inputs[0].get_partial_shape()[0].is_dynamic:
        raise ExportError("OpenVINO model has a static batch dimension")
    scope = FloatScope.parse(keep_f32, default=tuple(reduced_precision_scope(metadata)))
    try:
        kept = openvino_ops(scope, model, program, metadata)
    except ValueError as exc:
        raise ExportError(f"cannot place the bf16 keep-f32 scope {scope}: {exc}") from exc
    by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    skipped = [n for n in kept if _fuses_residual_add(by_name[n])]
    kept = [n for n in kept if n not in skipped]
    weights = "fp16" if compress_to_fp16 else "fp32"
    reduced = {"keep_f32_scope": str(scope), "keep_f32_ops": len(kept), "keep_f32_skipped": skipped}
    model.set_rt_info(metadata_json(metadata, format="openvino", precision="fp32", weights=weights,
                                    reduced_precision=reduced), ["lmliqa", "metadata"])
    model.set_rt_info(metadata["model"], ["lmliqa", "model"])
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path), compress_to_fp16=compress_to_fp16)
    if kept:
        xml = mark_keep_f32(path.read_text(), kept)
        s = int(metadata["contract"]["crop_size"])
        pixels = np.random.default_rng(0).uniform(0, 255, (2, 3, s, s)).astype(np.float32)
        check_reduced_precision(xml, path.with_suffix(".bin"), pixels)
        path.write_text(xml)
    return path


def reduced_precision_scope(metadata: dict[str, Any]) -> list[str]:
    """What the program's network keeps f32 under bf16/f16 by default (older programs: its backbone's entry)."""
    if "float_scopes" in metadata:
        return metadata["float_scopes"]["reduced_precision"]
    from lmliqa import presets

    return list(presets.get_backbone(metadata["backbone"]).reduced_precision_scope)


def openvino_ops(scope: FloatScope, ov_model, program, metadata: dict[str, Any]) -> list[str]:
    """Friendly names of the OpenVINO ops (of a model converted from PROGRAM) that SCOPE keeps in float: the ops of
    its op types and every op from a module under its regions. Most ops keep their aten node's name as the first
    part of their friendly name; a convolution with a folded BatchNorm is renamed after the Multiply it absorbed,
    so convolutions are matched to the program's convolutions by order (both are topological) and checked by
    weight shape."""
    types = set(scope.op_types(OPENVINO_OPS))
    names = [op.get_friendly_name() for op in ov_model.get_ordered_ops() if op.get_type_name() in types]
    aten = nodes_under(program, scope_prefixes(scope, metadata, program))
    if not aten:
        return names
    names += [op.get_friendly_name() for op in ov_model.get_ordered_ops()
              if op.get_friendly_name().split("/", 1)[0] in aten and op.get_type_name() != "Constant"
              and op.get_friendly_name() not in names]
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


def openvino_io_ops(ov_model, program) -> list[str]:
    """Friendly names of the OpenVINO ops that come from the network's input / output ops (lmliqa.export._graph
    `io_node`), never quantized. They are found by aten node name, and then downstream: the conversion renumbers
    some elementwise ops (the score tail's Multiply and Add, the panel queries' Add), so an elementwise op whose
    every non-constant input comes from such an op is one too."""
    from ._graph import io_ops

    aten = io_ops(program)
    names: dict[str, None] = {}           # ordered, with set membership
    for op in ov_model.get_ordered_ops():
        kind, name = op.get_type_name(), op.get_friendly_name()
        if kind in ("Constant", "Parameter", "Result"):
            continue
        sources = [i.get_source_output().get_node() for i in op.inputs()]
        inputs = {s.get_friendly_name() for s in sources if s.get_type_name() != "Constant"}
        if name.split("/", 1)[0] in aten or (kind in ELEMENTWISE and inputs and inputs <= names.keys()):
            names[name] = None
    return list(names)


def _ov_conv_weight_shape(op) -> tuple[int, ...]:
    """OpenVINO conv weights as torch lays them out: (out, in / groups, kh, kw)."""
    w = tuple(int(d) for d in op.input(1).get_partial_shape().to_shape())
    if op.get_type_name() == "GroupConvolution":    # (groups, out / groups, in / groups, kh, kw)
        return (w[0] * w[1],) + w[2:]
    return w


def _fuses_residual_add(op) -> bool:
    """True for a convolution whose output (after its bias Adds) only feeds a residual Add: the CPU plugin
    fuses that Add into the convolution, and such a convolution kept f32 under bf16 fails at inference in
    OpenVINO 2026.4 ("object is not initialized"), so it is left out of the keep-f32 scope."""
    if op.get_type_name() not in OV_CONVS:
        return False
    node = op
    while True:
        consumers = [t.get_node() for t in node.output(0).get_target_inputs()]
        if len(consumers) != 1 or consumers[0].get_type_name() != "Add":
            return False
        add = consumers[0]
        others = [i.get_source_output().get_node() for i in add.inputs()
                  if i.get_source_output().get_node().get_friendly_name() != node.get_friendly_name()]
        if not all(o.get_type_name() == "Constant" for o in others):
            return True
        node = add


def mark_keep_f32(xml: str, names: list[str]) -> str:
    """IR text with each layer named in NAMES marked to stay f32 under reduced-precision inference."""
    root = ET.fromstring(xml)
    wanted, found = set(names), set()
    for layer in root.iter("layer"):
        if layer.get("name") not in wanted:
            continue
        rt = layer.find("rt_info")
        if rt is None:
            rt = ET.Element("rt_info")
            children = list(layer)
            at = 1 if children and children[0].tag == "data" else 0
            layer.insert(at, rt)
        if not any(a.get("name") == KEEP_F32_ATTRIBUTE for a in rt.iter("attribute")):
            ET.SubElement(rt, "attribute", {"name": KEEP_F32_ATTRIBUTE, "version": "0", "value": KEEP_F32_VALUE})
        found.add(layer.get("name"))
    ET.indent(root, space="\t")
    missing = wanted - found
    if missing:
        raise ExportError(f"layers to keep f32 not found in the saved IR: {sorted(missing)[:5]}")
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode")


def check_reduced_precision(xml: str, weights: Path, x: np.ndarray) -> None:
    """Compile the marked IR with bf16 on this CPU and run it once, when the CPU offers bf16: some kept layers
    (a convolution fused with a residual add) break the CPU plugin at inference time, and that must surface
    here, not on a device. The weights are read into memory: the .bin on disk is never memory-mapped here."""
    import openvino as ov

    core = ov.Core()
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" not in caps:
        return
    model = core.read_model(xml, ov.Tensor(np.fromfile(weights, dtype=np.uint8)))
    try:
        out = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})(x)[0]
    except RuntimeError as exc:
        raise ExportError(f"the bf16 keep-f32 marks break OpenVINO's CPU plugin ({str(exc).splitlines()[-1]}); "
                          "export with a different keep_f32 scope or 'none'") from exc
    if not np.isfinite(out).all():
        raise ExportError("bf16 inference with the keep-f32 marks gave non-finite scores")
