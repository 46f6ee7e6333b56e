"""lmliqa.export: one checkpoint -> ONNX, OpenVINO, Core ML and TensorRT artifacts.

One declarative table (FORMATS) drives the CLI, the exporter and the docs; one pure function per format
lives in its own module. Every format starts from the same torch.export program of the inference network
(pixels in, one score per crop out, dynamic batch) and carries the same metadata: the preprocessing
contract, model and backbone, label scale and direction, lmliqa version, the source checkpoint's sha256
and the export tools' versions.
"""

from __future__ import annotations

import importlib.util
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._graph import ExportError


@dataclass(frozen=True)
class Format:
    name: str
    artifacts: tuple[str, ...]     # file names, {m} = the model's preset name
    requires: tuple[str, ...]      # import names needed to export
    runtime: str                   # lmliqa.runtimes backend that runs it
    precisions: tuple[str, ...]
    description: str


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", ("{m}.onnx",), ("onnx", "onnxscript"), "onnxruntime", ("fp32",),
           "ONNX opset 18, one file, dynamic batch"),
    Format("openvino", ("{m}_openvino/{m}.xml",), ("openvino",), "openvino", ("fp32", "bf16", "fp16"),
           "OpenVINO IR with FP32 weights (fp16 on request)"),
    Format("coreml", ("{m}_fp32.mlpackage", "{m}_fp16.mlpackage"), ("coremltools",), "coreml", ("fp32", "fp16"),
           "Core ML mlprogram, FP32 and FP16 compute"),
    Format("tensorrt", ("{m}_fp16.onnx", "{m}_fp16.plan"), ("onnx", "onnxconverter_common"), "tensorrt",
           ("fp16",), "strongly typed TensorRT engine from an FP16 ONNX (LayerNorm/softmax FP32) + sidecar JSON"),
)}


@dataclass
class ExportResult:
    format: str
    status: str                    # ok | failed: reason | unavailable here: reason
    paths: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _missing(mods: tuple[str, ...]) -> list[str]:
    return [m for m in mods if importlib.util.find_spec(m) is None]


def export_checkpoint(checkpoint: str | Path, formats: list[str], out: str | Path,
                      verbose: bool = False, keep_f32: str | None = None,
                      openvino_fp16_weights: bool = False) -> list[ExportResult]:
    """Export one checkpoint to each requested format under OUT; never raises for one format's failure.
    KEEP_F32: the float scope an OpenVINO IR keeps in f32 when it runs in bf16/f16 (None: the default,
    stem and the first two stages; "none": nothing). OPENVINO_FP16_WEIGHTS: store the IR's weights in fp16 (half the
    size; they are decompressed to f32 at load, so parity treats the IR as reduced precision)."""
    from ._graph import export_program, load_for_export

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; choose from {sorted(FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, metadata = load_for_export(checkpoint)
    program = export_program(model)
    m = metadata["model"]
    results = []
    onnx_path: Path | None = None
    for name in formats:
        fmt = FORMATS[name]
        paths = [out / a.format(m=m) for a in fmt.artifacts]
        missing = _missing(fmt.requires)
        if missing:
            results.append(ExportResult(name, f"unavailable here: {', '.join(missing)} not installed "
                                              "(pip install 'lmliqa[export]')"))
            continue
        try:
            results.append(_export_one(name, model, program, metadata, paths, out, onnx_path, keep_f32,
                                       openvino_fp16_weights))
            if name == "onnx":
                onnx_path = paths[0]
        except ImportError as exc:
            results.append(ExportResult(name, f"unavailable here: {exc}", [str(p) for p in paths if p.exists()]))
        except Exception as exc:  # one format failing must not stop the others
            if verbose:
                traceback.print_exc()
            results.append(ExportResult(name, f"failed: {type(exc).__name__}: {exc}".splitlines()[0][:400]))
    return results


def _export_one(name: str, model, program, metadata: dict[str, Any], paths: list[Path], out: Path,
                onnx_path: Path | None, keep_f32: str | None = None,
                openvino_fp16_weights: bool = False) -> ExportResult:
    if name == "onnx":
        from .onnx import torch2onnx

        torch2onnx(model, program, paths[0], metadata)
    elif name == "openvino":
        from .openvino import torch2openvino

        torch2openvino(program, paths[0], metadata, compress_to_fp16=openvino_fp16_weights, keep_f32=keep_f32)
    elif name == "coreml":
        from .coreml import torch2coreml

        for path, precision in zip(paths, ("fp32", "fp16")):
            torch2coreml(program, path, metadata, precision)
    elif name == "tensorrt":
        from .onnx import torch2onnx
        from .tensorrt import onnx2engine, onnx_to_fp16

        if onnx_path is None:
            onnx_path = torch2onnx(model, program, out / f"{metadata['model']}.onnx", metadata)
        fp16 = onnx_to_fp16(onnx_path, paths[0], metadata)
        try:
            onnx2engine(fp16, paths[1], metadata)
        except ImportError as exc:
            raise ImportError(f"{exc}; wrote {fp16.name}: build the engine on the target GPU with "
                              f"`lmliqa export --formats tensorrt` there") from exc
    return ExportResult(name, "ok", [str(p) for p in paths])


__all__ = ["FORMATS", "Format", "ExportError", "ExportResult", "export_checkpoint"]
