"""Dataset records, dataset descriptions and the errors readers raise (torch-free)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError


@dataclass(frozen=True)
class Record:
    path: Path
    mos: float                  # the label exactly as the dataset gives it
    std: float | None = None    # the opinion scores' standard deviation, when the dataset gives it
    group: str = ""             # reference content (synthetic-distortion datasets) or the image itself
    distortion: str = ""


@dataclass(frozen=True)
class LabelSpec:
    """How a dataset's label reads: its nominal range, direction, and the affine map to the training
    scale (method.md §3.6: CSIQ x100, KADID (y-1)x25, TID2013 y x100/9; the others are already 0-100).
    The map is positive, so SRCC/PLCC do not change."""

    lo: float
    hi: float
    higher_is_better: bool = True
    name: str = "MOS"
    train_scale: float = 1.0
    train_offset: float = 0.0

    def to_training(self, y):
        return (y - self.train_offset) * self.train_scale

    def from_training(self, y):
        return y / self.train_scale + self.train_offset

    @property
    def training_range(self) -> tuple[float, float]:
        return (float(self.to_training(self.lo)), float(self.to_training(self.hi)))


@dataclass
class IQADataset:
    name: str
    spec: str
    root: Path
    records: list[Record]
    label: LabelSpec
    split_by: str = "image"     # "reference": split by group (reference content); "image": by image
    # Dataset-specific preprocessing that DEIQT applies (e.g. KonIQ's Resize((512, 384))): contract overrides.
    contract_hints: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)   # (path, why) left out: outside the root
    # The database's own published train/test split, by record index ({"train": [...], "test": [...]}); splits
    # named "official..." use it (lmliqa.data.splits).
    official: dict[str, list[int]] | None = None
    # Several data sets read as one (``--data A,B``): each record's source (an index into ``parts``), and per part
    # its name, spec, licence and how its labels were put on the first part's scale (lmliqa.data.multi).
    sources: list[int] = field(default_factory=list)
    parts: list[dict] = field(default_factory=list)
    part_official: list[dict[str, list[int]] | None] = field(default_factory=list)   # each part's, in ds indices

    def __len__(self) -> int:
        return len(self.records)

    @property
    def mos(self) -> np.ndarray:
        return np.array([r.mos for r in self.records], dtype=np.float64)

    @property
    def groups(self) -> list[str]:
        return [r.group for r in self.records]

    def subset(self, indices) -> IQADataset:
        indices = list(indices)
        return IQADataset(self.name, self.spec, self.root, [self.records[i] for i in indices], self.label,
                          self.split_by, dict(self.contract_hints), list(self.notes),
                          sources=[self.sources[i] for i in indices] if self.sources else [],
                          parts=[dict(p) for p in self.parts])   # (a subset's part_official would not map)

    def source_of(self, i: int) -> int:
        """The part (data set) record I comes from: 0 for a single data set."""
        return self.sources[i] if self.sources else 0

    def by_source(self, indices) -> dict[int, list[int]]:
        """INDICES grouped by the data set each comes from, in order."""
        out: dict[int, list[int]] = {}
        for i in indices:
            out.setdefault(self.source_of(i), []).append(i)
        return out


def parse_float(text: str, where: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise DatasetError(f"{where}: score {text!r} is not finite")
    return v


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    return path


def first_existing_dir(root: Path, candidates: list[str], what: str) -> Path:
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    raise DatasetError(f"{what}: none of {[str(root / c) for c in candidates]} exists")


def link_or_copy(src: Path, dst: Path) -> None:
    """Put SRC's file at DST for a dataset folder: a hard link where the filesystem allows, else a copy. Not a
    symlink: readers refuse symlinks that lead out of a dataset root (lmliqa.data.outside_root)."""
    import os
    import shutil

    try:
        os.link(Path(src).resolve(), dst)
    except OSError:
        shutil.copy2(Path(src).resolve(), dst)
