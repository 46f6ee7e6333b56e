"""OpenVINO IR, converted from the torch.export program; FP32 weights unless compress_to_fp16.

Reduced-precision execution (the CPU plugin's bf16, f16 on GPUs and ARM) keeps a scope of layers in f32:
by default the stem and the first two stages, where MobileNetV2 and EfficientNet-Lite0 lose most of their bf16
accuracy (measured: README, "bf16 and the first layers"). The marks are OpenVINO's own precision attribute
(``DisablePrecisionConversion``, which the CPU plugin honours for bf16 and ``ConvertPrecision`` for f16) in
each kept layer's rt_info; an f32 run ignores them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lmliqa.runtimes.openvino import KEEP_F32_ATTRIBUTE

from ._graph import INPUT_NAME, OUTPUT_NAME, ExportError, metadata_json

KEEP_F32_VALUE = "dynamic:bf16,f16"                 # from any type, never to bf16 or f16


def torch2openvino(program: torch.export.ExportedProgram, path: Path, metadata: dict[str, Any],
                   compress_to_fp16: bool = False, keep_f32: str | None = None) -> Path:
    """Write PATH (model.xml + model.bin). The weights' precision is recorded in rt_info; the precision
    that executes is chosen at load time (lmliqa.runtimes pins INFERENCE_PRECISION_HINT). KEEP_F32 is a float
    scope (lmliqa.quantize.scope categories, "default" = stem,first_stage,second_stage, "none") kept f32 under
    bf16/f16."""
    import openvino as ov
    from lmliqa.quantize.scope import REDUCED_PRECISION_SCOPE, FloatScope

    try:
        model = ov.convert_model(program)
    except Exception as exc:
        raise ExportError(f"openvino.convert_model failed: {exc}") from exc
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    if not model.inputs[0].get_partial_shape()[0].is_dynamic:
        raise ExportError("OpenVINO model has a static batch dimension")
    scope = FloatScope.parse(keep_f32, default=REDUCED_PRECISION_SCOPE)
    try:
        kept = scope.openvino_ops(model, program)
    except ValueError as exc:
        raise ExportError(f"cannot place the bf16 keep-f32 scope {scope}: {exc}; export with keep_f32='none'") from exc
    kept += [op.get_friendly_name() for op in model.get_ordered_ops()
             if op.get_type_name() in scope.op_types("openvino") and op.get_friendly_name() not in kept]
    by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    skipped = [n for n in kept if _fuses_residual_add(by_name[n])]
    kept = [n for n in kept if n not in skipped]
    weights = "fp16" if compress_to_fp16 else "fp32"
    reduced = {"keep_f32_scope": str(scope), "keep_f32_ops": len(kept), "keep_f32_skipped": skipped}
    model.set_rt_info(metadata_json(metadata, format="openvino", weights=weights, reduced_precision=reduced),
                      ["lmliqa", "metadata"])
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


def _fuses_residual_add(op) -> bool:
    """True for a convolution whose output (after its bias Adds) only feeds a residual Add: the CPU plugin
    fuses that Add into the convolution, and such a convolution kept f32 under bf16 fails at inference in
    OpenVINO 2026.4 ("object is not initialized"), so it is left out of the keep-f32 scope."""
    from lmliqa.quantize.scope import OV_CONVS

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
