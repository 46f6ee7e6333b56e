"""LiteRT (TFLite) scorer: ``ai_edge_litert.interpreter.Interpreter`` with the XNNPACK delegate (LiteRT's CPU
default, the same kernels Android phones run), threads honoured. Torch-free: `ai_edge_litert` and the flatbuffer
schema it ships are all it needs.

The lmliqa metadata (contract, score scale, precision, fixed batch...) travels inside the .tflite, in the model's
``metadata`` table under the name ``lmliqa`` (a JSON buffer), so a phone app can read it with any flatbuffer
library. The model takes a fixed batch (one image's crops: litert-torch cannot convert a dynamic batch of this
network); the base scorer feeds it in chunks of that size.
"""

from __future__ import annotations

import os
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

METADATA_NAME = "lmliqa"


def _litert():
    return require("ai_edge_litert.interpreter", "litert")


def read_metadata_bytes(buf: bytes, name: str = "<model>") -> dict[str, Any]:
    """The lmliqa JSON in a .tflite flatbuffer's metadata table."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(buf, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() is None or entry.Name().decode() != METADATA_NAME:
            continue
        b = model.Buffers(entry.Buffer())
        if b.Offset() > 1:                  # large models keep buffers after the flatbuffer
            raw = buf[b.Offset():b.Offset() + b.Size()]
        else:
            raw = b.DataAsNumpy().tobytes()
        return parse_metadata(bytes(raw), name)
    raise ArtifactError(f"{name}: .tflite without lmliqa metadata (was it written by `lmliqa export`?)")


def read_metadata(path: str | Path) -> dict[str, Any]:
    try:
        buf = Path(path).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: {exc}") from exc
    try:
        return read_metadata_bytes(buf, str(path))
    except ImportError as exc:
        raise BackendUnavailable("ai-edge-litert is not installed: pip install 'lmliqa[android]'") from exc
    except (ArtifactError, BackendUnavailable):
        raise
    except Exception as exc:
        raise ArtifactError(f"{path}: not a readable .tflite flatbuffer ({type(exc).__name__}: {exc})") from exc


class LiteRTScorer(Scorer):
    backend = "litert"

    def __init__(self, path: str | Path, precision: Precision | None = None, device: str | None = None,
                 threads: int | None = None) -> None:
        interpreter = _litert()
        metadata = read_metadata(path)
        stored = stored_precision(metadata, precision, path, "LiteRT")
        if device not in (None, "cpu", "CPU"):
            raise DeviceUnavailable(f"LiteRT device {device!r}: this build runs on the CPU (XNNPACK); the GPU and "
                                    "NPU delegates live in the Android runtime")
        # None: every core, like the other runtimes (the interpreter's own default is one thread)
        self.interpreter = interpreter.Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._out = self.interpreter.get_output_details()[0]["index"]
        super().__init__(path, metadata, stored, "cpu")
        if self.weights is Precision.FP16 and stored is Precision.FP16:
            self.detail = "fp16 weights, f32 compute on this CPU"
        self.threads = threads

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in, crops)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out).copy()


SCORER = LiteRTScorer


def probe() -> list[Capability]:
    _litert()
    c = lambda p, s, n: Capability("litert", p, s, n)  # noqa: E731
    return [c(Precision.FP32, Support.RUNS, "XNNPACK, torch-free"),
            c(Precision.FP16, Support.RUNS, "fp16 weights, computed in f32 here (no fp16 arithmetic on this CPU; "
                                            "ARMv8.2+ phones may compute fp16: not verified)"),
            c(Precision.INT8, Support.RUNS, "XNNPACK QS8, torch-free")]
