"""IQA datasets: the 8 benchmarks in their native layouts, plain folders and the synthetic default.

A data spec string selects a reader: ``livec:PATH``, ``koniq10k:PATH``, ``csiq:PATH``, ``live:PATH``,
``tid2013:PATH``, ``kadid10k:PATH``, ``spaq:PATH``, ``livefb:PATH``, ``folder:PATH`` or ``synthetic``
(optionally ``synthetic:PATH`` to build it in PATH instead of the cache).
"""

from __future__ import annotations

from pathlib import Path

from .base import DatasetError, IQADataset, LabelSpec, Record
from .readers import ALIASES, READERS

__all__ = ["DatasetError", "IQADataset", "LabelSpec", "Record", "open_dataset", "SPEC_NAMES"]

SPEC_NAMES = sorted(READERS) + ["synthetic"]


def open_dataset(spec: str, seed: int = 0) -> IQADataset:
    name, _, arg = spec.partition(":")
    name = ALIASES.get(name.lower(), name.lower())
    if name == "synthetic":
        from .synthetic import build_synthetic

        folder = build_synthetic(Path(arg).expanduser() if arg else None, seed=seed)
        ds = READERS["folder"](folder)
        ds.name, ds.spec = "synthetic", spec
        ds.notes.append("embedded demo/test set: pseudo-MOS = 100 x SSIM, not human opinion")
        return ds
    if name not in READERS:
        raise DatasetError(f"unknown dataset {name!r} in spec {spec!r}; use one of {SPEC_NAMES} as NAME:PATH")
    if not arg:
        raise DatasetError(f"spec {spec!r} needs a path: {name}:PATH")
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{name}: dataset root {root} is not a directory")
    ds = READERS[name](root)
    ds.spec = spec
    if not ds.records:
        raise DatasetError(f"{spec}: the label file lists no images")
    return ds
