"""Torch datasets: B images x N crops of the same image for training, grid crops for evaluation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..contract import PreprocessContract
from ..data.base import IQADataset


class ImageCache:
    """Decoded, contract-resized images kept in memory (uint8), for small training sets."""

    def __init__(self, contract: PreprocessContract, enabled: bool) -> None:
        self.contract = contract
        self.enabled = enabled
        self._store: dict[str, np.ndarray] = {}

    def get(self, path) -> np.ndarray:
        key = str(path)
        if key in self._store:
            return self._store[key]
        arr = np.asarray(self.contract.load(path), dtype=np.uint8)
        if self.enabled:
            self._store[key] = arr
        return arr


class TrainCrops(Dataset):
    """Item i: N random crops of image i (+ flips), its whole-image view, the crop boxes, its label.

    Returns crops (N, 3, s, s) float32 pixels, whole (3, w, w) float32 pixels (the image resized to
    w x w for the teacher's saliency pass), boxes (N, 4) x0, y0, x1, y1 in [0, 1], label (training
    scale). Crops are drawn from a generator seeded by (seed, epoch, index): reproducible and resumable.
    """

    def __init__(self, ds: IQADataset, indices: list[int], contract: PreprocessContract, n_crops: int,
                 whole_size: int, seed: int, cache: bool = True) -> None:
        self.ds, self.indices, self.contract = ds, list(indices), contract
        self.n_crops, self.whole_size, self.seed = n_crops, whole_size, seed
        self.cache = ImageCache(contract, cache)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        rec = self.ds.records[self.indices[i]]
        arr = self.cache.get(rec.path)
        h, w = arr.shape[:2]
        rng = np.random.default_rng([self.seed, self.epoch, self.indices[i]])
        boxes = self.contract.random_boxes(h, w, self.n_crops, rng)
        crops = self.contract.crops_from_boxes(arr, boxes)
        s = self.contract.crop_size
        nboxes = np.stack([boxes[:, 1] / w, boxes[:, 0] / h, (boxes[:, 1] + s) / w, (boxes[:, 0] + s) / h], 1)
        whole = np.asarray(Image.fromarray(arr).resize((self.whole_size, self.whole_size),
                                                       Image.Resampling.BILINEAR), dtype=np.float32)
        y = float(self.ds.label.to_training(rec.mos))
        return (torch.from_numpy(crops), torch.from_numpy(np.ascontiguousarray(whole.transpose(2, 0, 1))),
                torch.from_numpy(nboxes.astype(np.float32)), torch.tensor(y, dtype=torch.float32))


class EvalCrops(Dataset):
    """Item i: the contract's deterministic grid crops of image i, or the error that stopped it.

    A bad image does not stop evaluation: it comes back with an empty crop tensor and its error
    message, and the caller reports it and scores the rest.
    """

    def __init__(self, ds: IQADataset, indices: list[int], contract: PreprocessContract,
                 random_crops: int = 0, seed: int = 0) -> None:
        self.ds, self.indices, self.contract = ds, list(indices), contract
        self.random_crops, self.seed = random_crops, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        idx = self.indices[i]
        rec = self.ds.records[idx]
        try:
            if self.random_crops:  # DEIQT's protocol: k random crops, no flip
                arr = np.asarray(self.contract.load(rec.path), dtype=np.uint8)
                rng = np.random.default_rng([self.seed, idx])
                boxes = self.contract.random_boxes(*arr.shape[:2], self.random_crops, rng)[:, :2]
                crops = self.contract.crops_from_boxes(arr, boxes)
            else:
                crops = self.contract.eval_crops(rec.path)
            return idx, torch.from_numpy(crops), ""
        except (ValueError, OSError) as exc:
            return idx, torch.empty(0), str(exc)


def collate_eval(items):
    return items
