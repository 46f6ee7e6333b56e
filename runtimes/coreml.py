"""Core ML scorer. MLModel.predict exists only on macOS; elsewhere loading raises BackendUnavailable and
the package can only be inspected (see lmliqa.runtimes.coreml_inspect)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .base import ArtifactError, BackendUnavailable, Scorer


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The lmliqa metadata of an .mlpackage, read from its spec (works on any platform)."""
    try:
        from lmliqa._quiet import quiet_imports

        with quiet_imports():
            import coremltools as ct
    except ImportError as exc:
        raise BackendUnavailable("coremltools is not installed: pip install 'lmliqa[export]'") from exc
    with quiet_imports():
        spec = ct.utils.load_spec(str(path))
    raw = spec.description.metadata.userDefined.get("lmliqa")
    if raw is None:
        raise ArtifactError(f"{path}: Core ML package without lmliqa metadata")
    return json.loads(raw)


class CoreMLScorer(Scorer):
    backend = "coreml"

    def __init__(self, path: str | Path, precision: str | None = None, threads: int | None = None,
                 compute_units: str = "CPU_ONLY") -> None:
        metadata = read_metadata(path)
        stored = metadata.get("precision", "fp32")
        if precision not in (None, stored):
            raise ValueError(f"{path} was converted with {stored} compute precision; export the other one")
        if sys.platform != "darwin":
            raise BackendUnavailable("Core ML prediction needs macOS (coremltools: 'Model prediction is only "
                                     "supported on macOS'); export and inspection work here")
        import coremltools as ct

        self.model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
        super().__init__(path, metadata, stored)
        self.input_name = metadata["input"]["name"]
        self.output_name = metadata["output"]["name"]

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict({self.input_name: crops})[self.output_name])
