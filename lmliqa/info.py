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
    return {
        "lmliqa": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "presets": preset_rows(),
        "backends": backend_status(),
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
    return "\n".join(lines)
