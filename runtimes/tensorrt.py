"""TensorRT scorer: a plan built by `lmliqa export --formats tensorrt` (or `lmliqa quantize`), with metadata in
the sidecar JSON. Device memory is handled with cuda-python (cuda.bindings), so this backend does not import
torch; the input and output buffers are allocated once, for the largest batch seen, not per call.
Devices: cuda / cuda:N."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.targets import Capability, Precision, Support

from .base import ArtifactError, BackendUnavailable, DeviceUnavailable, Scorer, parse_metadata, stored_precision


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else rest


def read_metadata(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    sidecar = path.with_suffix(path.suffix + ".json")
    if not sidecar.is_file():
        raise ArtifactError(f"{path}: sidecar {sidecar.name} with the lmliqa metadata is missing")
    return parse_metadata(sidecar.read_bytes(), path)


class TensorRTScorer(Scorer):
    backend = "tensorrt"

    def __init__(self, path: str | Path, precision: Precision | None = None, device: str | None = None,
                 threads: int | None = None) -> None:
        path = Path(path)
        metadata = read_metadata(path)
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except Exception as exc:
            raise BackendUnavailable(f"TensorRT needs the tensorrt and cuda-python packages and an NVIDIA GPU "
                                     f"({type(exc).__name__}: {exc})") from exc
        built = metadata.get("tensorrt", {}).get("version")
        if built and built != trt.__version__:
            raise BackendUnavailable(f"{path} was built with TensorRT {built}; this is {trt.__version__}: rebuild it")
        stored = stored_precision(metadata, precision, path, "TensorRT")
        device = device or "cuda:0"
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        count = _check(cudart.cudaGetDeviceCount())
        if not device.startswith("cuda") or index >= count:
            raise DeviceUnavailable(f"TensorRT device {device!r}: this machine has {count} CUDA device(s) "
                                    f"(cuda:0..cuda:{count - 1})")
        _check(cudart.cudaSetDevice(index))
        self._cudart = cudart
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{path}: TensorRT could not deserialize the engine (other GPU or version?)")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        super().__init__(path, metadata, stored, device)
        self.input_name = metadata["input"]["name"]
        self.output_name = metadata["output"]["name"]
        self._capacity = 0                      # crops the device buffers hold
        self._d_in = self._d_out = None

    def _reserve(self, n: int, crop_bytes: int) -> None:
        if n <= self._capacity:
            return
        self._free()
        self._d_in = _check(self._cudart.cudaMalloc(n * crop_bytes))
        self._d_out = _check(self._cudart.cudaMalloc(n * 4))
        self._capacity = n
        self.context.set_tensor_address(self.input_name, int(self._d_in))
        self.context.set_tensor_address(self.output_name, int(self._d_out))

    def _free(self) -> None:
        for ptr in (self._d_in, self._d_out):
            if ptr is not None:
                self._cudart.cudaFree(ptr)
        self._d_in = self._d_out = None
        self._capacity = 0

    def __del__(self) -> None:
        if getattr(self, "_cudart", None) is not None:
            self._free()

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        cudart, kind = self._cudart, self._cudart.cudaMemcpyKind
        n = crops.shape[0]
        self._reserve(n, crops[0].nbytes)
        out = np.empty((n,), dtype=np.float32)
        self.context.set_input_shape(self.input_name, crops.shape)
        _check(cudart.cudaMemcpyAsync(self._d_in, crops.ctypes.data, crops.nbytes, kind.cudaMemcpyHostToDevice,
                                      self.stream))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        _check(cudart.cudaMemcpyAsync(out.ctypes.data, self._d_out, out.nbytes, kind.cudaMemcpyDeviceToHost,
                                      self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return out


SCORER = TensorRTScorer


def probe() -> list[Capability]:
    try:
        import tensorrt  # noqa: F401
        ok, why = True, ""
    except Exception as exc:  # the PyPI stub raises at import when its libraries cannot be fetched
        ok, why = False, f"tensorrt not importable ({type(exc).__name__})"
    if importlib.util.find_spec("tensorrt") is None:
        ok, why = False, "tensorrt not installed"
    out = []
    for p, onnx in ((Precision.FP16, "FP16"), (Precision.INT8, "Q/DQ")):
        if ok:
            out.append(Capability("tensorrt", p, Support.RUNS, "engine built on this GPU"))
        else:
            out.append(Capability("tensorrt", p, Support.EXPORT_ONLY,
                                  f"{why}; the {onnx} ONNX it builds from runs here under ONNX Runtime"))
    return out
