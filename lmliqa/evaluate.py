"""Scoring a dataset with a torch model by the contract's crops, and the evaluation protocols."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from .contract import PreprocessContract
from .data.base import IQADataset
from .metrics import iqa_metrics
from .train.loader import EvalCrops, collate_eval


@dataclass
class Predictions:
    indices: list[int]
    scores: np.ndarray                  # image scores on the training label scale
    errors: dict[int, str] = field(default_factory=dict)  # dataset index -> why it was not scored

    def metrics(self, ds: IQADataset) -> dict:
        mos = ds.label.to_training(np.array([ds.records[i].mos for i in self.indices]))
        out = iqa_metrics(self.scores, mos)
        out["n_failed"] = len(self.errors)
        return out


@torch.no_grad()
def predict(model: torch.nn.Module, ds: IQADataset, indices: list[int] | None = None, batch_crops: int = 64,
            device: str = "cpu", random_crops: int = 0, seed: int = 0, workers: int = 0,
            progress: bool = False, contract: PreprocessContract | None = None) -> Predictions:
    """Score images: the contract's grid crops (or k random crops), per-crop scores aggregated.

    `model` maps crops (B, 3, s, s) pixels to scores (B,). Images that fail to load are reported in
    `errors` and skipped; the rest are scored. contract: another evaluation layout of the model's own contract
    (PreprocessContract.with_layout); default the model's.
    """
    if contract is None:
        contract = model.config.contract if hasattr(model, "config") else None
    if contract is None:
        raise ValueError("model has no preprocessing contract (model.config.contract)")
    indices = list(range(len(ds))) if indices is None else list(indices)
    crops_per_image = random_crops or contract.n_eval_crops
    loader = DataLoader(EvalCrops(ds, indices, contract, random_crops, seed),
                        batch_size=max(1, batch_crops // crops_per_image), collate_fn=collate_eval,
                        num_workers=workers)
    if progress:
        from tqdm import tqdm
        loader = tqdm(loader, desc="scoring", unit="batch")
    model.eval()
    done, scores, errors = [], [], {}
    for items in loader:
        ok = [(i, c) for i, c, e in items if not e]
        errors.update({i: e for i, _, e in items if e})
        if not ok:
            continue
        crops = torch.cat([c for _, c in ok]).to(device)
        s = model(crops).float().cpu().numpy()
        pos = 0
        for i, c in ok:
            scores.append(contract.aggregate(s[pos:pos + len(c)]))
            done.append(i)
            pos += len(c)
    return Predictions(done, np.array(scores, dtype=np.float64), errors)


def _same_dataset(extra: dict, ds: IQADataset) -> bool:
    """Was the checkpoint trained on this dataset (same reader, same folder, however the path was spelled)?"""
    from pathlib import Path

    if "dataset_root" in extra:
        return extra.get("dataset_name") == ds.name and Path(extra["dataset_root"]) == ds.root.resolve()
    return extra.get("dataset") == ds.spec


def evaluate_checkpoints(paths: list[str], data: str, split: str = "test", splits: int = 0,
                         protocol: str = "grid", crops: int = 10, seed: int = 0, device: str = "cpu") -> dict:
    """Evaluate one or more checkpoints on a dataset; with several, report the median too."""
    from pathlib import Path

    from .data import open_dataset
    from .models.checkpoint import load_checkpoint

    if splits:
        if len(paths) != 1 or not Path(paths[0]).is_dir():
            raise ValueError("--splits N takes one protocol folder (the --out of `lmliqa train --split repeat:N`)")
        paths = [str(Path(paths[0]) / f"split_{j}" / "final.safetensors") for j in range(splits)]
    ds = open_dataset(data, seed=seed)
    runs = []
    for path in paths:
        model, meta = load_checkpoint(path, map_location=device)
        extra = meta.get("extra", {})
        indices = None
        if split == "test" and _same_dataset(extra, ds) and extra.get("split", "all") != "all":
            from .train.config import TrainConfig
            from .train.engine import resolve_split

            _, indices = resolve_split(TrainConfig(split=extra["split"], split_seed=extra.get("split_seed", 0)), ds)
        preds = predict(model, ds, indices, device=device,
                        random_crops=crops if protocol == "deiqt-random" else 0, seed=seed)
        runs.append({"checkpoint": str(path), "protocol": protocol,
                     "split": "test" if indices is not None else "all", **preds.metrics(ds),
                     "failed": {str(ds.records[i].path): e for i, e in preds.errors.items()}})
    out = {"runs": runs}
    if len(runs) > 1:
        out["median"] = {k: float(np.median([r[k] for r in runs])) for k in ("srcc", "plcc", "krcc", "rmse")}
    return out
