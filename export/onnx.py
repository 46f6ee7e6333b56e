"""ONNX: dynamo export, one file, opset >= 17 (LayerNorm stays one node), dynamic batch asserted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ._graph import INPUT_NAME, OUTPUT_NAME, ExportError, example_input, metadata_json

OPSET = 18


def export(ctx) -> list[Path]:
    """The lmliqa.targets stage: M.onnx (FP32), checked under ONNX Runtime against the program where it is installed."""
    import importlib.util

    path = torch2onnx(ctx.program, ctx.path("{m}.onnx"), ctx.metadata)
    if importlib.util.find_spec("onnxruntime"):
        from lmliqa.runtimes.onnxruntime import OnnxRuntimeScorer

        from ._graph import check_against_program

        check_against_program(ctx.program, OnnxRuntimeScorer(path))
    return [path]


def torch2onnx(program: torch.export.ExportedProgram, path: Path, metadata: dict[str, Any]) -> Path:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(program, (example_input(int(metadata["contract"]["crop_size"])),), str(path), dynamo=True,
                          external_data=False, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], verbose=False)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {exc}") from exc
    proto = onnx.load(str(path))
    fold_weight_splits(proto)
    check_onnx(proto)
    del proto.metadata_props[:]
    for key, value in (("lmliqa", metadata_json(metadata, format="onnx", precision="fp32")),
                       ("producer", "lmliqa"), ("model", metadata["model"])):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return path


def fold_weight_splits(proto) -> int:
    """Fold Split and Transpose nodes whose inputs are all initializers into initializers (the exporter's folding
    skips multi-output Split: nn.MultiheadAttention's packed q/k/v weight of the cross-attention stays a run-time
    Split, so quantizers, which quantize MatMul weights given as initializers, left that MatMul in float). Returns
    the number of nodes folded; the outputs are bit-identical."""
    import numpy as np
    from onnx import helper, numpy_helper

    folded = 0
    while True:
        inits = {i.name: i for i in proto.graph.initializer}
        node = next((n for n in proto.graph.node if n.op_type in ("Split", "Transpose")
                     and n.input and all(i in inits for i in n.input if i)), None)
        if node is None:
            return folded
        x = numpy_helper.to_array(inits[node.input[0]])
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Transpose":
            outs = [np.transpose(x, attrs.get("perm"))]
        else:
            sizes = numpy_helper.to_array(inits[node.input[1]]) if len(node.input) > 1 and node.input[1] else None
            axis = attrs.get("axis", 0)
            if sizes is None:
                outs = np.array_split(x, len(node.output), axis=axis)
            else:
                outs = np.split(x, np.cumsum(sizes)[:-1], axis=axis)
        for name, value in zip(node.output, outs):
            proto.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        proto.graph.node.remove(node)
        used = {i for n in proto.graph.node for i in n.input} | {o.name for o in proto.graph.output}
        for init in [i for i in proto.graph.initializer if i.name not in used]:
            proto.graph.initializer.remove(init)
        folded += 1


def check_onnx(proto) -> None:
    """Full checker, opset, one LayerNorm node per norm, symbolic batch on input and output."""
    import onnx

    onnx.checker.check_model(proto, full_check=True)
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 17:
        raise ExportError(f"opset {opset} < 17: LayerNorm would be decomposed")
    for value in (proto.graph.input[0], proto.graph.output[0]):
        dim0 = value.type.tensor_type.shape.dim[0]
        if dim0.HasField("dim_value") or not dim0.dim_param:
            raise ExportError(f"{value.name}: batch dimension is fixed ({dim0.dim_value}), not symbolic")
    if [i.name for i in proto.graph.input] != [INPUT_NAME] or [o.name for o in proto.graph.output] != [OUTPUT_NAME]:
        raise ExportError("unexpected graph inputs/outputs")
