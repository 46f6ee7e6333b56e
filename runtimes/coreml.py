"""Core ML scorer. MLModel.predict exists only on macOS; elsewhere loading raises BackendUnavailable and the
package can only be inspected (``inspect``: spec, metadata and, for compressed weights, the round trip recorded
at quantization). Devices are Core ML compute units: ALL (CPU, GPU and the Neural Engine), CPU_ONLY (default,
the deterministic one), CPU_AND_GPU, CPU_AND_NE."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.targets import Capability, Precision, Support

from .base import (
    ArtifactError,
    BackendUnavailable,
    DeviceUnavailable,
    Scorer,
    parse_metadata,
    require,
    stored_precision,
)

COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")


def _ct():
    from lmliqa._quiet import quiet_imports

    with quiet_imports():
        return require("coremltools", "coreml")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The lmliqa metadata of an .mlpackage, read from its spec (works on any platform)."""
    from lmliqa._quiet import quiet_imports

    ct = _ct()
    with quiet_imports():
        spec = ct.utils.load_spec(str(path))
    raw = spec.description.metadata.userDefined.get("lmliqa")
    if raw is None:
        raise ArtifactError(f"{path}: Core ML package without lmliqa metadata")
    return parse_metadata(raw, path)


class CoreMLScorer(Scorer):
    backend = "coreml"

    def __init__(self, path: str | Path, precision: Precision | None = None, device: str | None = None,
                 threads: int | None = None) -> None:
        metadata = read_metadata(path)
        stored = stored_precision(metadata, precision, path, "Core ML")
        device = device or "CPU_ONLY"
        if device not in COMPUTE_UNITS:
            raise DeviceUnavailable(f"Core ML device {device!r}: choose a compute unit from {COMPUTE_UNITS}")
        if sys.platform != "darwin":
            raise BackendUnavailable("Core ML prediction needs macOS (coremltools: 'Model prediction is only "
                                     "supported on macOS'); export and inspection work here")
        ct = _ct()
        self.model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, device))
        super().__init__(path, metadata, stored, device)
        self.input_name = metadata["input"]["name"]
        self.output_name = metadata["output"]["name"]

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict({self.input_name: crops})[self.output_name])


SCORER = CoreMLScorer


def inspect(path: Path) -> str:
    """What off-macOS checks say of a package (raises when even that fails)."""
    meta = read_metadata(path)
    rt = meta.get("weights_roundtrip")
    extra = (f"; weights round trip: min SQNR {rt['min_sqnr_db']:.1f} dB over {rt['n_weights_compared']} "
             "compressed weights" if rt and rt.get("min_sqnr_db") is not None else "")
    return f"package and metadata checked ({meta.get('precision')}{extra}); predict needs macOS"


def probe() -> list[Capability]:
    _ct()
    mac = sys.platform == "darwin"
    out = []
    for p in (Precision.FP32, Precision.FP16, Precision.W8, Precision.PAL6, Precision.PAL4):
        if mac:
            out.append(Capability("coreml", p, Support.RUNS, "MLModel.predict"))
        else:
            out.append(Capability("coreml", p, Support.SIMULATED, "package spec/metadata inspected"
                                  + (", weights round trip" if p.quantized else "") + "; predict needs macOS"))
    return out
