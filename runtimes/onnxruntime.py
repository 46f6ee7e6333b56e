"""ONNX Runtime scorer: CPU by default; ``device="cuda"`` / ``"cuda:N"`` (onnxruntime-gpu), or any installed
execution provider by name (``"TensorrtExecutionProvider"``, ...). An absent provider is an error, never a silent
CPU fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.targets import Capability, Precision, Support

from .base import ArtifactError, DeviceUnavailable, Scorer, parse_metadata, require, stored_precision


def _ort():
    return require("onnxruntime", "onnx")


def providers_for(device: str | None) -> list[Any]:
    """Execution providers for DEVICE, checked against what this onnxruntime build has."""
    ort = _ort()
    available = ort.get_available_providers()
    if device in (None, "cpu", "CPU"):
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        name, opts = "CUDAExecutionProvider", {"device_id": int(device.split(":", 1)[1]) if ":" in device else 0}
    else:
        name, opts = device, {}
    if name not in available:
        raise DeviceUnavailable(f"ONNX Runtime device {device!r} needs {name}, which this onnxruntime build lacks "
                                f"(available: {', '.join(available)})")
    return [(name, opts), "CPUExecutionProvider"]


def read_metadata(path: str | Path, session=None) -> dict[str, Any]:
    if session is None:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        raw = {p.key: p.value for p in proto.metadata_props}.get("lmliqa")
    else:
        raw = session.get_modelmeta().custom_metadata_map.get("lmliqa")
    if raw is None:
        raise ArtifactError(f"{path}: ONNX model without lmliqa metadata")
    return parse_metadata(raw, path)


class OnnxRuntimeScorer(Scorer):
    backend = "onnxruntime"

    def __init__(self, path: str | Path | bytes, precision: Precision | None = None, device: str | None = None,
                 threads: int | None = None) -> None:
        """PATH: an .onnx file, or the serialized model (bytes, e.g. a model being quantized)."""
        ort = _ort()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        model = path if isinstance(path, bytes) else str(path)
        self.session = ort.InferenceSession(model, opts, providers=providers_for(device))
        name = "<in memory>" if isinstance(path, bytes) else path
        metadata = read_metadata(name, self.session)
        super().__init__(name, metadata, stored_precision(metadata, precision, name, "ONNX Runtime"), device)
        self.input_name = self.session.get_inputs()[0].name
        self.threads = threads

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: crops})[0]


SCORER = OnnxRuntimeScorer


def probe() -> list[Capability]:
    ort = _ort()
    gpu = "CUDAExecutionProvider" in ort.get_available_providers()
    where = "CPU" + (" and CUDA" if gpu else "")
    return [Capability("onnx", Precision.FP32, Support.RUNS, where),
            Capability("onnx", Precision.FP16, Support.RUNS, f"the FP16 ONNX written for TensorRT, {where}"),
            Capability("onnx", Precision.INT8, Support.RUNS, f"Q/DQ, {where}")]
