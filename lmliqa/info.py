"""What `lmliqa info` reports: version, presets with their cost, installed backends."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from typing import Any

from . import __version__
from ._quiet import quiet_imports
from .config import PRESETS

# (backend, import name, distribution, what it is for)
BACKENDS = (
    ("torch", "torch", "torch", "training and the reference scorer"),
    ("onnxruntime", "onnxruntime", "onnxruntime", "ONNX runtime"),
    ("openvino", "openvino", "openvino", "OpenVINO runtime"),
    ("coreml", "coremltools", "coremltools", "Core ML export; prediction only on macOS"),
    ("tensorrt", "tensorrt", "tensorrt", "TensorRT engines; needs an NVIDIA GPU"),
)


def backend_status() -> list[dict[str, Any]]:
    rows = []
    for name, module, dist, purpose in BACKENDS:
        row: dict[str, Any] = {"backend": name, "purpose": purpose, "version": None}
        try:
            row["version"] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            row["status"] = "not installed"
            rows.append(row)
            continue
        try:
            with quiet_imports():
                importlib.import_module(module)
        except Exception as exc:  # e.g. TensorRT's PyPI stub without its libraries
            row["status"] = f"installed, import failed: {type(exc).__name__}: {exc}"[:300]
        else:
            row["status"] = "available"
            if name == "coreml" and sys.platform != "darwin":
                row["status"] = "available (export only: Core ML prediction needs macOS)"
        rows.append(row)
    return rows


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def capability_matrix(backends: list[dict[str, Any]] | None = None) -> list[dict[str, str]]:
    """Every backend x precision with what this machine can do with it:

    - ``runs here``: `lmliqa parity` can execute and measure it (and then reports it ``verified``);
    - ``simulated: ...``: checked without native execution (Core ML off macOS: package inspection and a
      weights round trip);
    - ``exported, not verified: reason``: the artifact can be written here but not run;
    - ``unsupported: reason``: this backend cannot produce or run that precision.
    """
    status = {b["backend"]: b["status"] for b in (backends or backend_status())}
    flags = _cpu_flags()
    avail = {k: v.startswith("available") for k, v in status.items()}
    rows = []

    def add(backend: str, precision: str, state: str) -> None:
        rows.append({"backend": backend, "precision": precision, "status": state})

    missing = lambda b: f"unsupported here: {status.get(b)}"  # noqa: E731
    for p in ("fp32", "bf16"):
        add("torch", p, "runs here (reference)" if avail.get("torch") else missing("torch"))
    for p, note in (("fp32", ""), ("fp16", " (the FP16 ONNX written for TensorRT)"), ("int8", " (Q/DQ)")):
        add("onnxruntime", p, f"runs here{note}" if avail.get("onnxruntime") else missing("onnxruntime"))
    if avail.get("openvino"):
        add("openvino", "fp32", "runs here (INFERENCE_PRECISION_HINT f32, pinned)")
        add("openvino", "bf16", "runs here (the export's keep-f32 layers stay f32)"
            if flags & {"avx512_bf16", "amx_bf16"} else "unsupported: this CPU has no bf16 instructions")
        add("openvino", "fp16", "runs here" if flags & {"avx512_fp16", "amx_fp16"}
            else "unsupported: no fp16 compute on this CPU (OpenVINO would run bf16; refused, not faked)")
        add("openvino", "int8", "runs here (NNCF FakeQuantize; float parts f32 or bf16)")
    else:
        for p in ("fp32", "bf16", "fp16", "int8"):
            add("openvino", p, missing("openvino"))
    mac = sys.platform == "darwin"
    for p in ("fp32", "fp16", "w8 (int8 weights)", "pal6", "pal4"):
        if not avail.get("coreml"):
            add("coreml", p, missing("coreml"))
        elif mac:
            add("coreml", p, "runs here (MLModel.predict)")
        else:
            add("coreml", p, "simulated: package spec/metadata inspected" + (", weights round trip" if p not in
                ("fp32", "fp16") else "") + "; predict needs macOS")
    for p in ("fp16", "int8"):
        if avail.get("tensorrt"):
            add("tensorrt", p, "runs here (engine built on this GPU)")
        else:
            why = "tensorrt not installed" if status.get("tensorrt") == "not installed" else "tensorrt not importable"
            add("tensorrt", p, f"exported, not verified: {why}; the {'FP16' if p == 'fp16' else 'Q/DQ'} ONNX "
                               "it builds from runs here under ONNX Runtime")
    return rows


def preset_rows() -> list[dict[str, Any]]:
    try:
        import torch

        from .models.network import build_model, count_parameters, gmacs_per_crop
    except ImportError as exc:
        reason = f"torch not installed ({exc}); pip install 'lmliqa[train]'"
        return [{"preset": n, "backbone": c.backbone, "params": None, "gmac_per_crop": None, "note": reason}
                for n, c in PRESETS.items()]
    rows = []
    for name, cfg in PRESETS.items():
        with torch.device("meta"):
            params = count_parameters(build_model(cfg, pretrained="none"))
        rows.append({
            "preset": name,
            "backbone": cfg.backbone,
            "pretrained": cfg.pretrained,
            "params": params,
            "gmac_per_crop": round(gmacs_per_crop(cfg), 4),
            "crop_size": cfg.contract.crop_size,
            "eval_crops": cfg.contract.n_eval_crops,
            "description": cfg.description,
        })
    return rows


def gather() -> dict[str, Any]:
    backends = backend_status()
    return {"capabilities": capability_matrix(backends), **_gather(backends)}


def _gather(backends: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "lmliqa": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "presets": preset_rows(),
        "backends": backends,
    }


def format_info(info: dict[str, Any]) -> str:
    lines = [f"lmliqa {info['lmliqa']}  (Python {info['python']}, {info['platform']})", "", "presets:"]
    for p in info["presets"]:
        if p["params"] is None:
            lines.append(f"  {p['preset']:<13} {p['backbone']:<26} {p['note']}")
            continue
        lines.append(f"  {p['preset']:<13} {p['backbone']:<26} {p['params'] / 1e6:6.2f}M params  "
                     f"{p['gmac_per_crop']:6.3f} GMAC/crop  {p['crop_size']}px x {p['eval_crops']} crops  "
                     f"weights: {p['pretrained']}")
    lines += ["", "backends:"]
    for b in info["backends"]:
        lines.append(f"  {b['backend']:<12} {b['version'] or '-':<12} {b['status']}")
    lines += ["", "capabilities (backend x precision on this machine; `lmliqa parity` measures what runs here):"]
    for c in info.get("capabilities", []):
        lines.append(f"  {c['backend']:<12} {c['precision']:<18} {c['status']}")
    return "\n".join(lines)
