"""Calibration and validation images for post-training quantization.

Both come from a data spec through the artifact's own preprocessing contract (the deterministic eval crops
the runtime feeds the network), so the quantizer sees exactly what deployment sees. Images are picked evenly
spaced over the spec's records (deterministic, no RNG); the validation images are disjoint from the
calibration images. The calibration crops are recorded by content hash (sha256 of the float32 tensor).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.contract import PreprocessContract
from lmliqa.errors import DatasetError

DEFAULT_CALIB_IMAGES = 32      # x 9 grid crops = 288 crops ("a few hundred")
DEFAULT_VAL_IMAGES = 96


@dataclass
class ImageSet:
    names: list[str]
    crops: list[np.ndarray]            # one (n_eval_crops, 3, s, s) float32 array per image
    mos: np.ndarray                    # training-scale labels (NaN where the spec has none)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def file_names(self) -> list[str]:
        """The images' file names (what reports list)."""
        return [n.rsplit("/", 1)[-1] for n in self.names]

    @property
    def n_crops(self) -> int:
        return int(sum(len(c) for c in self.crops))

    def head(self, n: int) -> ImageSet:
        """The first N images."""
        return ImageSet(self.names[:n], self.crops[:n], self.mos[:n], list(self.failed))

    def batches(self) -> list[np.ndarray]:
        """One item per image (its crops): what NNCF and ONNX Runtime calibrate on."""
        return self.crops

    def sha256(self) -> str:
        h = hashlib.sha256()
        for c in self.crops:
            h.update(np.ascontiguousarray(c, dtype=np.float32).tobytes())
        return h.hexdigest()

    def record(self, spec: str) -> dict[str, Any]:
        return {"spec": spec, "n_images": len(self.names), "n_crops": self.n_crops, "sha256": self.sha256(),
                "images": self.file_names}


def evenly(n_total: int, k: int, exclude: set[int] = frozenset()) -> list[int]:
    pool = [i for i in range(n_total) if i not in exclude]
    if k >= len(pool):
        return pool
    return [pool[int(j)] for j in np.linspace(0, len(pool) - 1, k).round().astype(int)]


def chosen_indices(spec: str, n_calib: int = DEFAULT_CALIB_IMAGES, n_val: int = DEFAULT_VAL_IMAGES,
                   val_spec: str | None = None) -> tuple[Any, list[int], Any, list[int]]:
    """(data set, calibration indices, data set, validation indices): calibration evenly over SPEC, validation evenly
    over VAL_SPEC (default: SPEC's other images; images of SPEC are never in both). What build_sets decodes and what
    a release checks its evaluation photos against."""
    from lmliqa.data import open_dataset

    ds = open_dataset(spec)
    if not ds.records:
        raise DatasetError(f"{spec}: no images")
    calib_idx = evenly(len(ds.records), n_calib)
    if val_spec in (None, spec):
        return ds, calib_idx, ds, evenly(len(ds.records), n_val, set(calib_idx))
    val_ds = open_dataset(val_spec)
    return ds, calib_idx, val_ds, evenly(len(val_ds.records), n_val)


def build_sets(spec: str, contract: PreprocessContract, n_calib: int = DEFAULT_CALIB_IMAGES,
               n_val: int = DEFAULT_VAL_IMAGES, val_spec: str | None = None) -> tuple[ImageSet, ImageSet]:
    """(calibration, validation) image sets of `chosen_indices`, decoded with CONTRACT."""
    ds, calib_idx, val_ds, val_idx = chosen_indices(spec, n_calib, n_val, val_spec)
    return _load(ds, calib_idx, contract), _load(val_ds, val_idx, contract)


def training_photos(spec: str, val: ImageSet) -> list[Path]:
    """SPEC's photos that are not in VAL: what quantization-aware training may fine-tune on."""
    from lmliqa.data import open_dataset

    held_out = set(val.names)
    return [r.path for r in open_dataset(spec).records if str(r.path) not in held_out]


def load_images(spec: str, contract: PreprocessContract, n: int | None = None, first: int | None = None) -> ImageSet:
    """N images evenly spaced over SPEC (all of them when N is None), or its FIRST images in its order (the parity
    subset `lmliqa parity --limit` takes), decoded with CONTRACT."""
    from lmliqa.data import open_dataset

    ds = open_dataset(spec)
    if first is not None:
        return _load(ds, list(range(min(first, len(ds.records)))), contract)
    return _load(ds, list(range(len(ds.records))) if n is None else evenly(len(ds.records), n), contract)


def _load(ds, indices: list[int], contract: PreprocessContract) -> ImageSet:
    names, crops, mos, failed = [], [], [], []
    for i in indices:
        rec = ds.records[i]
        try:
            crops.append(contract.eval_crops(rec.path))
        except Exception as exc:  # one bad image is reported, the rest are used
            failed.append((str(rec.path), str(exc)))
            continue
        names.append(str(rec.path))
        mos.append(ds.label.to_training(rec.mos) if rec.mos is not None else np.nan)
    if not crops:
        raise DatasetError(f"none of the {len(indices)} images could be read: {failed[:3]}")
    return ImageSet(names, crops, np.asarray(mos, dtype=np.float64), failed)


def image_scores(run_crops, images: ImageSet, contract: PreprocessContract) -> np.ndarray:
    """Per-image scores: RUN_CROPS maps (n, 3, s, s) float32 -> (n,) scores; aggregated like the runtime."""
    return np.array([contract.aggregate(np.asarray(run_crops(c), dtype=np.float64).reshape(-1))
                     for c in images.crops])
