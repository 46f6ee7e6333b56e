"""ONNX Runtime scorer (CPU; CUDA when onnxruntime-gpu is installed and asked for)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import ArtifactError, BackendUnavailable, Scorer


class OnnxRuntimeScorer(Scorer):
    backend = "onnxruntime"

    def __init__(self, path: str | Path, precision: str | None = None, threads: int | None = None,
                 device: str = "cpu") -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("onnxruntime is not installed: pip install 'lmliqa[onnx]'") from exc
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        raw = self.session.get_modelmeta().custom_metadata_map.get("lmliqa")
        if raw is None:
            raise ArtifactError(f"{path}: ONNX model without lmliqa metadata")
        metadata = json.loads(raw)
        stored = metadata.get("precision", "fp32")
        if precision not in (None, stored):
            raise ValueError(f"{path} carries {stored} weights; ONNX Runtime runs them as stored "
                             f"(asked for {precision}); export another precision instead")
        super().__init__(path, metadata, stored)
        self.input_name = self.session.get_inputs()[0].name
        self.threads = threads

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: crops})[0]
