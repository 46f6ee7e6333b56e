"""OpenVINO IR, converted from the torch.export program; FP32 weights unless compress_to_fp16."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ._graph import INPUT_NAME, OUTPUT_NAME, ExportError, metadata_json


def torch2openvino(program: torch.export.ExportedProgram, path: Path, metadata: dict[str, Any],
                   compress_to_fp16: bool = False) -> Path:
    """Write PATH (model.xml + model.bin). The weights' precision is recorded in rt_info; the precision
    that executes is chosen at load time (lmliqa.runtimes pins INFERENCE_PRECISION_HINT)."""
    import openvino as ov

    try:
        model = ov.convert_model(program)
    except Exception as exc:
        raise ExportError(f"openvino.convert_model failed: {exc}") from exc
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    if not model.inputs[0].get_partial_shape()[0].is_dynamic:
        raise ExportError("OpenVINO model has a static batch dimension")
    weights = "fp16" if compress_to_fp16 else "fp32"
    model.set_rt_info(metadata_json(metadata, format="openvino", weights=weights), ["lmliqa", "metadata"])
    model.set_rt_info(metadata["model"], ["lmliqa", "model"])
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path), compress_to_fp16=compress_to_fp16)
    return path
