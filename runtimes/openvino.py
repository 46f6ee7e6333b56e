"""OpenVINO scorer with the executed precision pinned: OpenVINO's CPU default is bf16 on AMX/AVX512-BF16
machines, so the hint is always set explicitly and read back. Devices: CPU (default), GPU, GPU.N, NPU, AUTO."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.targets import Capability, Precision, Support

from .base import ArtifactError, DeviceUnavailable, PrecisionUnsupported, Scorer, parse_metadata, require

HINTS = {Precision.FP32: "f32", Precision.BF16: "bf16", Precision.FP16: "f16"}
# OpenVINO's own precision attribute that `lmliqa export --keep-f32` writes on the layers kept f32 under bf16/f16;
# in a read model's rt_info it appears as f"{KEEP_F32_ATTRIBUTE}_0"
KEEP_F32_ATTRIBUTE = "DisablePrecisionConversion"


def _ov():
    return require("openvino", "openvino")


def model_file(path: str | Path) -> Path:
    """The .xml of an IR given as the file or as the folder holding it."""
    path = Path(path)
    if path.is_dir():
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) != 1:
            raise ArtifactError(f"{path}: expected one .xml model, found {[p.name for p in xmls]}")
        return xmls[0]
    return path


def metadata_of(model, path: Any = "<model>") -> dict[str, Any]:
    try:
        raw = model.get_rt_info(["lmliqa", "metadata"]).astype(str)
    except Exception as exc:
        raise ArtifactError(f"{path}: OpenVINO model without lmliqa metadata in rt_info") from exc
    return parse_metadata(raw, path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    return metadata_of(_ov().Core().read_model(str(model_file(path))), path)


def run_precisions(stored: Precision) -> tuple[Precision, ...]:
    """An FP32 IR runs in f32, bf16 or f16 (the hint); an INT8 IR runs its float parts in f32 or bf16."""
    if stored is Precision.INT8:
        return (Precision.INT8, Precision.INT8_BF16)
    return (Precision.FP32, Precision.BF16, Precision.FP16)


def check_device(core, device: str) -> None:
    available = core.available_devices
    if device in ("AUTO",) or device.startswith(("AUTO:", "MULTI:", "HETERO:")) or device in available \
            or device.split(".", 1)[0] in available:
        return
    raise DeviceUnavailable(f"OpenVINO device {device!r} is not present (available: {', '.join(available)})")


class OpenVinoScorer(Scorer):
    backend = "openvino"

    def __init__(self, path: str | Path, precision: Precision | None = None, device: str | None = None,
                 threads: int | None = None) -> None:
        ov = _ov()
        path = model_file(path)
        core = ov.Core()
        device = device or "CPU"
        check_device(core, device)
        model = core.read_model(str(path))
        metadata = metadata_of(model, path)
        # An INT8 (NNCF) model runs its FakeQuantize-d ops in int8; the hint sets the precision of the rest.
        quantized = metadata.get("precision") == "int8"
        want = {None: Precision.FP32, Precision.INT8: Precision.FP32,
                Precision.INT8_BF16: Precision.BF16}.get(precision, precision)
        if want not in HINTS or (quantized and want is Precision.FP16) or \
                (not quantized and precision in (Precision.INT8, Precision.INT8_BF16)):
            allowed = run_precisions(Precision.INT8 if quantized else Precision.FP32)
            raise PrecisionUnsupported(f"{path.name}: OpenVINO runs this model in {[str(p) for p in allowed]}, "
                                       f"not {precision}")
        config = {"INFERENCE_PRECISION_HINT": HINTS[want], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, device, config)
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        executed = {v: k for k, v in HINTS.items()}.get(hint.get_type_name() if hasattr(hint, "get_type_name")
                                                          else str(hint))
        if executed is not want:
            raise PrecisionUnsupported(f"OpenVINO on {device} runs {executed}, not the requested {want}")
        if quantized:
            executed = Precision.INT8 if want is Precision.FP32 else Precision.INT8_BF16
        super().__init__(path, metadata, executed, device)
        # layers the artifact keeps in f32 under bf16/f16 (lmliqa export --keep-f32): reported, not hidden
        self.kept_f32 = _kept_f32(model) if want in (Precision.BF16, Precision.FP16) else []
        notes = ["fp16 weights"] if self.weights is Precision.FP16 else []
        if self.kept_f32:
            n, scope = len(self.kept_f32), metadata.get("reduced_precision", {}).get("keep_f32_scope")
            notes.append(f"{n} layer{'s' if n != 1 else ''} kept f32" + (f" ({scope})" if scope else ""))
        self.detail = ", ".join(notes)
        self.request = self.compiled.create_infer_request()
        self.threads = threads

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        return self.request.infer({0: crops})[0].copy()


SCORER = OpenVinoScorer


def _kept_f32(model) -> list[str]:
    # (OpenVINO itself marks the Converts that decompress fp16 weights: those are not layers kept f32)
    key = f"{KEEP_F32_ATTRIBUTE}_0"
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if key in op.get_rt_info() and op.get_type_name() not in ("Convert", "Constant")]


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def probe() -> list[Capability]:
    ov = _ov()
    core = ov.Core()
    caps = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    devices = ", ".join(core.available_devices)
    fp16 = "FP16" in caps and (sys.platform == "darwin" or _cpu_flags() & {"avx512_fp16", "amx_fp16"})
    c = lambda p, s, n: Capability("openvino", p, s, n)  # noqa: E731
    return [
        c(Precision.FP32, Support.RUNS, f"INFERENCE_PRECISION_HINT f32, pinned; devices: {devices}"),
        c(Precision.BF16, Support.RUNS, "the export's keep-f32 layers stay f32") if "BF16" in caps else
        c(Precision.BF16, Support.UNSUPPORTED, "this CPU has no bf16 instructions"),
        c(Precision.FP16, Support.RUNS, "f16 hint") if fp16 else
        c(Precision.FP16, Support.UNSUPPORTED, "no fp16 compute on this CPU (OpenVINO would run bf16; refused, "
          "not faked); Intel GPUs/NPUs run it"),
        c(Precision.INT8, Support.RUNS, "NNCF FakeQuantize; float parts f32"),
        c(Precision.INT8_BF16, Support.RUNS, "float parts bf16") if "BF16" in caps else
        c(Precision.INT8_BF16, Support.UNSUPPORTED, "this CPU has no bf16 instructions"),
    ]
