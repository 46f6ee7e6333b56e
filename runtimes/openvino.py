"""OpenVINO scorer with the executed precision pinned: OpenVINO's CPU default is bf16 on AMX/AVX512-BF16
machines, so the hint is always set explicitly and read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import ArtifactError, BackendUnavailable, Scorer

HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
# OpenVINO's own precision attribute that `lmliqa export --keep-f32` writes on the layers kept f32 under bf16/f16;
# in a read model's rt_info it appears as f"{KEEP_F32_ATTRIBUTE}_0"
KEEP_F32_ATTRIBUTE = "DisablePrecisionConversion"


class OpenVinoScorer(Scorer):
    backend = "openvino"

    def __init__(self, path: str | Path, precision: str | None = None, threads: int | None = None,
                 device: str = "CPU") -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailable("openvino is not installed: pip install 'lmliqa[openvino]'") from exc
        path = Path(path)
        if path.is_dir():
            xmls = sorted(path.glob("*.xml"))
            if len(xmls) != 1:
                raise ArtifactError(f"{path}: expected one .xml model, found {[p.name for p in xmls]}")
            path = xmls[0]
        core = ov.Core()
        model = core.read_model(str(path))
        try:
            metadata = json.loads(model.get_rt_info(["lmliqa", "metadata"]).astype(str))
        except Exception as exc:
            raise ArtifactError(f"{path}: OpenVINO model without lmliqa metadata in rt_info") from exc
        # An INT8 (NNCF) model runs its FakeQuantize-d ops in int8; the hint sets the precision of the rest.
        quantized = metadata.get("precision") == "int8"
        precision = precision or "fp32"
        if quantized and precision == "int8":
            precision = "fp32"
        if precision not in HINTS:
            raise ValueError(f"OpenVINO precision must be one of {sorted(HINTS)}"
                             + (" (int8 models: the float parts' precision)" if quantized else ""))
        config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, device, config)
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        executed = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        reverse = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
        super().__init__(path, metadata, reverse.get(executed, executed))
        if self.precision != precision:
            raise BackendUnavailable(f"OpenVINO on {device} runs {self.precision}, not the requested {precision}")
        if quantized:
            self.precision = "int8" if precision == "fp32" else f"int8+{precision}"
        # layers the artifact keeps in f32 under bf16/f16 (lmliqa export --keep-f32): reported, not hidden
        self.kept_f32 = _kept_f32(model) if precision in ("bf16", "fp16") else []
        notes = ["fp16 weights"] if metadata.get("weights") == "fp16" else []
        if self.kept_f32:
            n, scope = len(self.kept_f32), metadata.get("reduced_precision", {}).get("keep_f32_scope")
            notes.append(f"{n} layer{'s' if n != 1 else ''} kept f32" + (f" ({scope})" if scope else ""))
        self.detail = ", ".join(notes)
        self.request = self.compiled.create_infer_request()
        self.threads = threads

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        return self.request.infer({0: crops})[0].copy()


def _kept_f32(model) -> list[str]:
    # (OpenVINO itself marks the Converts that decompress fp16 weights: those are not layers kept f32)
    key = f"{KEEP_F32_ATTRIBUTE}_0"
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if key in op.get_rt_info() and op.get_type_name() not in ("Convert", "Constant")]
