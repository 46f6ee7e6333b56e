"""lmliqa.runtimes: the torch-free scoring runtime.

Every backend reads the preprocessing contract (:mod:`lmliqa.contract`) carried by the artifact, so
an image is cropped and aggregated identically everywhere. The backend scorers (ONNX Runtime,
OpenVINO, Core ML, TensorRT, and torch as the reference) are the subject of the export/runtime
issue; until they land this package exposes the contract only. It must never import torch.
"""

from lmliqa.contract import ImageDecodeError, PreprocessContract, ScoreScale, load_rgb

__all__ = ["ImageDecodeError", "PreprocessContract", "ScoreScale", "load_rgb"]
