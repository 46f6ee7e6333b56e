"""Model checkpoints: one .safetensors file whose header carries the config and contract as JSON.

safetensors holds only tensors, so loading a checkpoint never unpickles anything.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from .. import __version__
from ..config import ModelConfig
from ..errors import CheckpointError
from .network import QualityNet, build_model

META_KEY = "lmliqa"


def save_checkpoint(path: str | Path, model: QualityNet, extra: dict[str, Any] | None = None) -> Path:
    """Write weights + config atomically (a temp file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": 1, "lmliqa_version": __version__, "config": model.config.to_dict(), "extra": extra or {}}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={META_KEY: json.dumps(meta, sort_keys=True)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a safetensors file ({exc})") from exc
    if raw is None:
        raise CheckpointError(f"{path}: safetensors file without lmliqa metadata; not an lmliqa checkpoint")
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path}: its lmliqa metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path}: its lmliqa metadata has no model config; not an lmliqa checkpoint")
    return meta


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[QualityNet, dict[str, Any]]:
    """Rebuild the network from the checkpoint's own config and load its weights (strictly)."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    try:
        config = ModelConfig.from_dict(meta["config"])
    except (ValueError, TypeError, KeyError) as exc:       # ContractError included: e.g. a newer contract version
        raise CheckpointError(f"{path}: its model config cannot be read by this lmliqa ({exc})") from None
    model = build_model(config, pretrained="none")
    state = load_file(str(path), device=map_location)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit {config.name}: missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]}")
    return model.to(map_location), meta

