"""lmliqa.runtimes: score images with an exported model, without torch.

    from lmliqa.runtimes import load
    scorer = load("out/mobile.onnx")                 # the target is picked from the artifact
    scorer = load("out/mobile_openvino", precision="bf16", device="GPU")
    result = scorer.score("photo.jpg")               # ImageResult(image, score, crop_scores, error)
    for r in scorer.score_many(paths, batch_size=8): ...

Every backend reads the preprocessing contract carried by the artifact, so an image is decoded, cropped
and aggregated by the same code (lmliqa.contract) whatever executes the network. Which runtime runs which file
is the target registry's business (lmliqa.targets); only the torch reference (training checkpoints) and the
ExecuTorch Python bindings import torch.
"""

from __future__ import annotations

from pathlib import Path

from lmliqa import targets as _targets
from lmliqa.contract import ImageDecodeError, PreprocessContract, ScoreScale, load_rgb
from lmliqa.manifest import ReleaseError, guard
from lmliqa.targets import Precision

from .base import ArtifactError, BackendUnavailable, DeviceUnavailable, ImageResult, PrecisionUnsupported, Scorer


def backend_for(path: str | Path) -> str:
    """The runtime that executes the artifact at PATH."""
    return _targets.target_for(path).runtime


def load(path: str | Path | None = None, backend: str | None = None, precision: Precision | str | None = None,
         threads: int | None = None, device: str | None = None) -> Scorer:
    """A scorer for an exported artifact (or a training checkpoint, with the torch reference). PATH None or
    "default": the model that ships in the package (lmliqa.default_model).

    An artifact inside a release folder is loaded only when its files match the release's manifest.json.

    backend: a target or runtime name (default: from the file); precision: the precision to execute (default:
    the artifact's own); device: the target's device name (OpenVINO CPU/GPU/NPU/AUTO, ONNX Runtime cpu/cuda[:N],
    Core ML compute units, TensorRT cuda:N; default: the CPU or the only device); threads: CPU threads."""
    if path is None or str(path) == "default":
        from lmliqa.default_model import default_artifact

        path = default_artifact(backend)
    if not Path(path).exists():
        raise ArtifactError(f"{path}: no such file or folder")
    guard(path)
    target = _targets.get(backend) if backend else _targets.target_for(path)
    return target.load(path, precision=precision, device=device, threads=threads)


__all__ = ["load", "backend_for", "Scorer", "ImageResult", "BackendUnavailable", "PrecisionUnsupported",
           "DeviceUnavailable", "ArtifactError", "ReleaseError", "ImageDecodeError", "PreprocessContract",
           "ScoreScale", "load_rgb", "Precision"]
