"""lmliqa.runtimes: score images with an exported model, without torch.

    from lmliqa.runtimes import load
    scorer = load("out/mobile.onnx")                 # the target is picked from the artifact (or target="onnx")
    scorer = load("out/mobile_openvino", precision="bf16", device="GPU")
    result = scorer.score("photo.jpg")               # ImageResult(image, score, crop_scores, error)
    for r in scorer.score_many(paths, batch_size=8): ...

Every backend reads the preprocessing contract carried by the artifact, so an image is decoded, cropped
and aggregated by the same code (lmliqa.contract) whatever executes the network. Which runtime runs which file
is the target registry's business (lmliqa.targets); only the torch reference (training checkpoints) and the
ExecuTorch Python bindings import torch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from lmliqa import platforms as _platforms
from lmliqa import targets as _targets
from lmliqa.contract import PreprocessContract, ScoreScale, load_rgb
from lmliqa.errors import (
    ArtifactError,
    BackendUnavailable,
    DeviceUnavailable,
    ImageDecodeError,
    PrecisionUnsupported,
    ReleaseError,
)
from lmliqa.manifest import guard
from lmliqa.targets import Precision

from .base import ImageResult, Scorer


def backend_for(path: str | Path) -> str:
    """The runtime that executes the artifact at PATH."""
    return _targets.target_for(path).runtime


def load(path: str | Path | None = None, target: str | None = None, precision: Precision | str | None = None,
         threads: int | None = None, device: str | None = None, backend: str | None = None,
         platform: str | None = None) -> Scorer:
    """A scorer for an exported artifact (or a training checkpoint, with the torch reference). PATH None or
    "default": the model that ships in the package (lmliqa.default_model).

    An artifact inside a release folder is loaded only when its files match the release's manifest.json.

    target: a target name (or its runtime's name; default: from the file); precision: the precision to execute
    (default: the artifact's own); device: the target's device name (OpenVINO CPU/GPU/NPU/AUTO, ONNX Runtime
    cpu/cuda[:N], Core ML compute units, TensorRT cuda:N; default: the CPU or the only device); threads: CPU
    threads. platform: where the network executes (lmliqa.platforms: "native", the default, or e.g. "arm64": the
    target's aarch64 runtime under emulation; decoding and cropping stay here). backend: the old name of ``target``
    (deprecated)."""
    if backend is not None:
        warnings.warn("load(backend=...) is deprecated; use load(target=...)", DeprecationWarning, stacklevel=2)
        target = target or backend
    if path is None or str(path) == "default":
        from lmliqa.default_model import default_artifact

        path = default_artifact(target)
    if not Path(path).exists():
        raise ArtifactError(f"{path}: no such file or folder")
    guard(path, None if precision is None else str(precision))
    chosen = _targets.get(target) if target else _targets.target_for(path)
    where = _platforms.get(platform)
    if not where.native:
        from .emulated import EmulatedScorer

        return EmulatedScorer(chosen, path, where, Precision(precision) if precision else None, device, threads)
    return chosen.load(path, precision=precision, device=device, threads=threads)


__all__ = ["load", "backend_for", "Scorer", "ImageResult", "BackendUnavailable", "PrecisionUnsupported",
           "DeviceUnavailable", "ArtifactError", "ReleaseError", "ImageDecodeError", "PreprocessContract",
           "ScoreScale", "load_rgb", "Precision"]
