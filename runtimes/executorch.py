"""ExecuTorch scorer: a .pte program (XNNPACK delegate) run by ``executorch.runtime``.

The lmliqa metadata travels inside the .pte as a constant method, ``lmliqa_metadata``, that returns the JSON
as a uint8 tensor (any ExecuTorch runtime, C++ included, can read it). The program takes a fixed batch (one
image's crops), fed in chunks by the base scorer. The Python bindings import torch (tensors cross the boundary
as torch tensors); on a device the runtime is C++ and torch-free.
"""

from __future__ import annotations

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

METADATA_METHOD = "lmliqa_metadata"


def _runtime():
    require("executorch.kernels.quantized", "executorch")   # the Q/DQ kernels an INT8 program may use outside XNNPACK
    return require("executorch.runtime", "executorch").Runtime.get()


def _program(path: str | Path):
    try:
        return _runtime().load_program(Path(path))
    except BackendUnavailable:
        raise
    except Exception as exc:
        raise ArtifactError(f"{path}: ExecuTorch cannot load this program ({type(exc).__name__}: {exc})") from exc


def metadata_of(program, path: Any) -> dict[str, Any]:
    if METADATA_METHOD not in program.method_names:
        raise ArtifactError(f"{path}: .pte without the {METADATA_METHOD} method (was it written by `lmliqa export`?)")
    (blob,) = program.load_method(METADATA_METHOD).execute([])
    return parse_metadata(bytes(blob.numpy().astype(np.uint8).tolist()), path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    return metadata_of(_program(path), path)


class ExecuTorchScorer(Scorer):
    backend = "executorch"

    def __init__(self, path: str | Path, precision: Precision | None = None, device: str | None = None,
                 threads: int | None = None) -> None:
        import torch

        program = _program(path)
        metadata = metadata_of(program, path)
        stored = stored_precision(metadata, precision, path, "ExecuTorch")
        if device not in (None, "cpu", "CPU"):
            raise DeviceUnavailable(f"ExecuTorch device {device!r}: this program is lowered to XNNPACK (CPU)")
        if threads:   # XNNPACK's thread pool in ExecuTorch (process-wide)
            from executorch.extension.pybindings.portable_lib import (
                _threadpool_get_thread_count,
                _unsafe_reset_threadpool,
            )

            if _threadpool_get_thread_count() != threads:
                _unsafe_reset_threadpool(threads)
        self._torch = torch
        self.program = program               # the method refers to the program's memory: keep both
        self.method = program.load_method("forward")
        super().__init__(path, metadata, stored, "cpu")
        delegated = metadata.get("xnnpack", {})
        if delegated:
            self.detail = f"{delegated.get('delegated_ops', '?')} ops in {delegated.get('partitions', '?')} XNNPACK " \
                          "partitions"
        self.threads = threads

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        (out,) = self.method.execute([self._torch.from_numpy(crops)])
        return out.numpy().copy()


SCORER = ExecuTorchScorer


def probe() -> list[Capability]:
    _runtime()
    note = "XNNPACK; the Python runtime imports torch, the device runtime is C++"
    return [Capability("executorch", Precision.FP32, Support.RUNS, note),
            Capability("executorch", Precision.INT8, Support.RUNS, "XNNPACK QS8; " + note.split("; ", 1)[1])]
