"""The single export source: a torch.export program of the inference network, and the metadata every
artifact carries."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import torch

from lmliqa import __version__
from lmliqa.models.checkpoint import load_checkpoint
from lmliqa.models.network import QualityNet
from lmliqa.models.weights import sha256_file

INPUT_NAME = "pixels"
OUTPUT_NAME = "score"
MAX_BATCH = 256
EXAMPLE_BATCH = 2  # >= 2: with 1, torch.export specialises the batch dimension to 1


class ExportError(RuntimeError):
    """An export step failed; the message says which and why."""


def load_for_export(checkpoint: str | Path) -> tuple[QualityNet, dict[str, Any]]:
    model, meta = load_checkpoint(checkpoint)
    model.eval().requires_grad_(False)
    metadata = artifact_metadata(model, meta, Path(checkpoint))
    return model, metadata


def artifact_metadata(model: QualityNet, ckpt_meta: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    cfg = model.config
    return {
        "lmliqa_version": __version__,
        "model": cfg.name,
        "backbone": cfg.backbone,
        "contract": cfg.contract.to_dict(),
        "score": cfg.score.to_dict(),
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, cfg.contract.crop_size, cfg.contract.crop_size],
                  "dtype": "float32", "range": [0, 255], "layout": "NCHW", "channels": "RGB"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch"], "meaning": "quality score per crop on the label scale"},
        "source_checkpoint": checkpoint.name,
        "source_checkpoint_sha256": sha256_file(checkpoint),
        "trained_on": ckpt_meta.get("extra", {}).get("dataset"),
        "tools": tool_versions(),
    }


def tool_versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime", "openvino", "coremltools", "tensorrt", "nncf"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def example_input(model: QualityNet, batch: int = EXAMPLE_BATCH) -> torch.Tensor:
    s = model.config.contract.crop_size
    return torch.rand(batch, 3, s, s, generator=torch.Generator().manual_seed(0)) * 255


def export_program(model: QualityNet) -> torch.export.ExportedProgram:
    """torch.export of pixels (batch, 3, s, s) -> scores (batch,), batch dynamic in [1, MAX_BATCH]."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        return torch.export.export(model, (example_input(model),), dynamic_shapes=({0: batch},), strict=False)
    except Exception as exc:
        raise ExportError(f"torch.export failed for {model.config.name}: {exc}") from exc


def metadata_json(metadata: dict[str, Any], **extra: Any) -> str:
    return json.dumps({**metadata, **extra}, sort_keys=True)
