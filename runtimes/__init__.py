"""lmliqa.runtimes: score images with an exported model, without torch.

    from lmliqa.runtimes import load
    scorer = load("out/mobile.onnx")                 # backend picked from the artifact
    result = scorer.score("photo.jpg")               # ImageResult(image, score, crop_scores, error)
    for r in scorer.score_many(paths, batch_size=8): ...

Every backend reads the preprocessing contract carried by the artifact, so an image is decoded, cropped
and aggregated by the same code (lmliqa.contract) whatever executes the network; only `torch` (the
reference, for training checkpoints) imports torch.
"""

from __future__ import annotations

from pathlib import Path

from lmliqa.contract import ImageDecodeError, PreprocessContract, ScoreScale, load_rgb

from .base import ArtifactError, BackendUnavailable, ImageResult, Scorer

# backend -> (module, class); the suffix table picks one from a path.
BACKENDS = {
    "onnxruntime": ("onnxruntime", "OnnxRuntimeScorer"),
    "openvino": ("openvino", "OpenVinoScorer"),
    "coreml": ("coreml", "CoreMLScorer"),
    "tensorrt": ("tensorrt", "TensorRTScorer"),
    "torch": ("torch", "TorchScorer"),
}
SUFFIXES = {".onnx": "onnxruntime", ".xml": "openvino", ".mlpackage": "coreml", ".plan": "tensorrt",
            ".engine": "tensorrt", ".safetensors": "torch"}


def backend_for(path: str | Path) -> str:
    path = Path(path)
    if path.is_dir() and path.suffix != ".mlpackage":
        if any(path.glob("*.xml")):
            return "openvino"
        raise ArtifactError(f"{path}: a folder that holds no OpenVINO .xml model")
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise ArtifactError(f"{path}: unknown artifact type; expected one of {sorted(SUFFIXES)}") from None


def load(path: str | Path, backend: str | None = None, precision: str | None = None,
         threads: int | None = None) -> Scorer:
    """A scorer for an exported artifact (or a training checkpoint, with the torch reference)."""
    import importlib

    if not Path(path).exists():
        raise ArtifactError(f"{path}: no such file or folder")
    backend = backend or backend_for(path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {sorted(BACKENDS)}")
    module, cls = BACKENDS[backend]
    scorer_cls = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    return scorer_cls(path, precision=precision, threads=threads)


__all__ = ["load", "backend_for", "BACKENDS", "Scorer", "ImageResult", "BackendUnavailable", "ArtifactError",
           "ImageDecodeError", "PreprocessContract", "ScoreScale", "load_rgb"]
