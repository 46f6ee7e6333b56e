"""TensorRT scorer: a plan built by `lmliqa export --formats tensorrt`, with metadata in the sidecar JSON.

Device memory is handled with cuda-python (cuda.bindings), so this backend does not import torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import ArtifactError, BackendUnavailable, Scorer


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else rest


class TensorRTScorer(Scorer):
    backend = "tensorrt"

    def __init__(self, path: str | Path, precision: str | None = None, threads: int | None = None) -> None:
        path = Path(path)
        sidecar = path.with_suffix(path.suffix + ".json")
        if not sidecar.is_file():
            raise ArtifactError(f"{path}: sidecar {sidecar.name} with the lmliqa metadata is missing")
        metadata = json.loads(sidecar.read_text())
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except Exception as exc:
            raise BackendUnavailable(f"TensorRT needs the tensorrt and cuda-python packages and an NVIDIA GPU "
                                     f"({type(exc).__name__}: {exc})") from exc
        built = metadata.get("tensorrt", {}).get("version")
        if built and built != trt.__version__:
            raise BackendUnavailable(f"{path} was built with TensorRT {built}; this is {trt.__version__}: rebuild it")
        stored = metadata.get("precision", "fp16")
        if precision not in (None, stored):
            raise ValueError(f"{path} is a {stored} engine; build another for {precision}")
        self._trt, self._cudart = trt, cudart
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{path}: TensorRT could not deserialize the engine (other GPU or version?)")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        super().__init__(path, metadata, stored)
        self.input_name = metadata["input"]["name"]
        self.output_name = metadata["output"]["name"]

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        out = np.empty((crops.shape[0],), dtype=np.float32)
        self.context.set_input_shape(self.input_name, crops.shape)
        d_in = _check(cudart.cudaMalloc(crops.nbytes))
        d_out = _check(cudart.cudaMalloc(out.nbytes))
        try:
            kind = cudart.cudaMemcpyKind
            _check(cudart.cudaMemcpyAsync(d_in, crops.ctypes.data, crops.nbytes, kind.cudaMemcpyHostToDevice,
                                          self.stream))
            self.context.set_tensor_address(self.input_name, int(d_in))
            self.context.set_tensor_address(self.output_name, int(d_out))
            if not self.context.execute_async_v3(self.stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, d_out, out.nbytes, kind.cudaMemcpyDeviceToHost,
                                          self.stream))
            _check(cudart.cudaStreamSynchronize(self.stream))
        finally:
            cudart.cudaFree(d_in)
            cudart.cudaFree(d_out)
        return out
