"""Core ML mlprogram (.mlpackage), FP32 or FP16 compute, converted from the torch.export program.

Conversion runs on Linux; MLModel.predict exists only on macOS, so numbers are checked there
(tests marked `macos`) and, elsewhere, by inspecting the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmliqa import __version__

from ._graph import INPUT_NAME, MAX_BATCH, OUTPUT_NAME, ExportError, metadata_json


def export(ctx) -> list[Path]:
    """The lmliqa.targets stage: M_fp32.mlpackage and M_fp16.mlpackage (FP32 and FP16 compute)."""
    return [torch2coreml(ctx.program, ctx.path(f"{{m}}_{p}.mlpackage"), ctx.metadata, p) for p in ("fp32", "fp16")]


def torch2coreml(program: torch.export.ExportedProgram, path: Path, metadata: dict[str, Any],
                 precision: str = "fp32") -> Path:
    from lmliqa._quiet import quiet_imports

    with quiet_imports():
        import coremltools as ct

    s = metadata["contract"]["crop_size"]
    compute = {"fp32": ct.precision.FLOAT32, "fp16": ct.precision.FLOAT16}[precision]
    try:
        with quiet_imports():
            ml = ct.convert(program.run_decompositions({}), convert_to="mlprogram", compute_precision=compute,
                            inputs=[ct.TensorType(name=INPUT_NAME, dtype=np.float32,
                                                  shape=ct.Shape(shape=(ct.RangeDim(1, MAX_BATCH, 1), 3, s, s)))],
                            outputs=[ct.TensorType(name=OUTPUT_NAME)], minimum_deployment_target=ct.target.iOS16)
    except Exception as exc:
        raise ExportError(f"coremltools.convert failed: {exc}") from exc
    ml.user_defined_metadata["lmliqa"] = metadata_json(metadata, format="coreml", precision=precision)
    ml.user_defined_metadata["lmliqa.model"] = metadata["model"]
    ml.author = "lmliqa"
    ml.license = "model weights: see the training data's licence (LIVE-C: research use)"
    ml.version = __version__
    ml.short_description = (f"LML-IQA {metadata['model']} ({metadata['backbone']}): no-reference image quality, "
                            f"one score per {s}x{s} RGB crop of 0-255 pixels; average the contract's crops")
    ml.input_description[INPUT_NAME] = f"RGB crops, float32 0..255, shape (batch, 3, {s}, {s})"
    ml.output_description[OUTPUT_NAME] = "quality score per crop on the training label scale"
    path.parent.mkdir(parents=True, exist_ok=True)
    ml.save(str(path))
    return path
