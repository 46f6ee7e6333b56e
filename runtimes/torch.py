"""The PyTorch reference scorer (the only backend that imports torch): a training checkpoint, eager."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import BackendUnavailable, Scorer


class TorchScorer(Scorer):
    backend = "torch"

    def __init__(self, path: str | Path, precision: str | None = None, threads: int | None = None,
                 device: str = "cpu") -> None:
        try:
            import torch

            from lmliqa.models.checkpoint import load_checkpoint
        except ImportError as exc:
            raise BackendUnavailable("the torch reference needs pip install 'lmliqa[train]'") from exc
        precision = precision or "fp32"
        if precision not in ("fp32", "bf16"):
            raise ValueError("torch reference precision: fp32 or bf16 (autocast)")
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.model, meta = load_checkpoint(path, map_location=device)
        self.model.eval()
        self.device = device
        cfg = self.model.config
        metadata = {"model": cfg.name, "backbone": cfg.backbone, "contract": cfg.contract.to_dict(),
                    "score": cfg.score.to_dict(), "precision": precision}
        super().__init__(path, metadata, precision)

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(crops).to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            return self.model(x).float().cpu().numpy()
