"""Where lmliqa keeps what it downloads or builds once (onnxruntime-web, platform sysroots, the synthetic set):
LMLIQA_CACHE, else ~/.cache/lmliqa. Torch-free."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("LMLIQA_CACHE") or Path.home() / ".cache" / "lmliqa")
