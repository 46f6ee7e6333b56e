"""The PyTorch reference scorer (the only backend that needs torch and timm): a training checkpoint, eager."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.targets import Capability, Precision, Support

from .base import BackendUnavailable, DeviceUnavailable, PrecisionUnsupported, Scorer


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's header (config, training record), without building the network."""
    from lmliqa.models.checkpoint import read_metadata as read_header

    return {"precision": "fp32", **read_header(path)}


class TorchScorer(Scorer):
    backend = "torch"

    def __init__(self, path: str | Path, precision: Precision | None = None, device: str | None = None,
                 threads: int | None = None) -> None:
        try:
            import torch

            from lmliqa.models.checkpoint import load_checkpoint
        except ImportError as exc:
            raise BackendUnavailable("the torch reference needs pip install 'lmliqa[train]'") from exc
        precision = precision or Precision.FP32
        if precision not in (Precision.FP32, Precision.BF16):
            raise PrecisionUnsupported("torch reference precision: fp32 or bf16 (autocast)")
        device = device or "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise DeviceUnavailable(f"torch device {device!r}: CUDA is not available here")
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.model, _ = load_checkpoint(path, map_location=device)
        self.model.eval()
        cfg = self.model.config
        metadata = {"model": cfg.name, "backbone": cfg.backbone, "contract": cfg.contract.to_dict(),
                    "score": cfg.score.to_dict(), "precision": precision.value}
        super().__init__(path, metadata, precision, device)

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(crops).to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16,
                                                    enabled=self.precision is Precision.BF16):
            return self.model(x).float().cpu().numpy()


SCORER = TorchScorer


def probe() -> list[Capability]:
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable("torch is not installed") from exc
    where = "CPU" + (" and CUDA" if torch.cuda.is_available() else "")
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    native = caps.get("avx512_bf16") or caps.get("amx_bf16") or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    bf16 = f"autocast, {where}" + ("" if native else " (this CPU has no bf16 instructions: emulated, slower than fp32)")
    return [Capability("torch", Precision.FP32, Support.RUNS, f"reference, {where}"),
            Capability("torch", Precision.BF16, Support.RUNS, bf16)]
