"""Scoring a dataset with a torch model by the contract's crops, and the evaluation protocols."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..contract import PreprocessContract
from ..data.base import IQADataset
from ..metrics import iqa_metrics
from .loader import EvalCrops, collate_eval


@dataclass
class Predictions:
    indices: list[int]
    scores: np.ndarray                  # image scores on the training label scale
    errors: dict[int, str] = field(default_factory=dict)  # dataset index -> why it was not scored

    def metrics(self, ds: IQADataset) -> dict:
        """Agreement with MOS. Several data sets (ds.parts): each part on its own (``parts``: name -> metrics), and
        the headline numbers are the mean over the parts scored (a pooled SRCC over photos rated in different
        studies would mostly measure how the scales line up)."""
        mos = ds.label.to_training(np.array([ds.records[i].mos for i in self.indices]))
        if not ds.parts:
            out = iqa_metrics(self.scores, mos)
            out["n_failed"] = len(self.errors)
            return out
        sources = np.array([ds.source_of(i) for i in self.indices])
        parts = {ds.parts[j]["name"]: iqa_metrics(self.scores[sources == j], mos[sources == j])
                 for j in sorted(set(sources.tolist())) if (sources == j).sum() >= 3}
        out = {k: float(np.mean([m[k] for m in parts.values()])) for k in next(iter(parts.values())) if k != "n"}
        out.update(n=int(len(self.indices)), n_failed=len(self.errors), parts=parts)
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
    if "dataset_root" in extra:
        return extra.get("dataset_name") == ds.name and Path(extra["dataset_root"]) == ds.root.resolve()
    return extra.get("dataset") == ds.spec


def evaluate_checkpoints(paths: list[str], data: str, split: str = "test", splits: int = 0,
                         protocol: str = "grid", crops: int = 10, seed: int = 0, device: str = "cpu") -> dict:
    """Evaluate one or more checkpoints on a dataset; with several, report the median too."""
    from ..data import open_dataset, resolve_split
    from ..errors import ConfigError
    from ..models.checkpoint import load_checkpoint

    if splits:
        if len(paths) != 1 or not Path(paths[0]).is_dir():
            raise ConfigError("--splits N takes one protocol folder (the --out of `lmliqa train --split repeat:N`)")
        paths = [str(Path(paths[0]) / f"split_{j}" / "final.safetensors") for j in range(splits)]
    ds = open_dataset(data, seed=seed)
    runs = []
    for path in paths:
        model, meta = load_checkpoint(path, map_location=device)
        extra = meta.get("extra", {})
        indices = None
        if split == "test" and _same_dataset(extra, ds) and extra.get("split", "all") != "all":
            _, indices = resolve_split(extra["split"], ds, seed=extra.get("split_seed", 0))
        preds = predict(model, ds, indices, device=device,
                        random_crops=crops if protocol == "deiqt-random" else 0, seed=seed)
        runs.append({"checkpoint": str(path), "protocol": protocol,
                     "split": "test" if indices is not None else "all", **preds.metrics(ds),
                     "failed": {str(ds.records[i].path): e for i, e in preds.errors.items()}})
    out = {"runs": runs}
    if len(runs) > 1:
        out["median"] = {k: float(np.median([r[k] for r in runs])) for k in ("srcc", "plcc", "krcc", "rmse")}
    return out


# ------------------------------------------------------------------------------------------ fold runs
def fold_checkpoint(run: str | Path) -> Path:
    """A fold run folder's final.safetensors, or RUN itself when it is a checkpoint file."""
    return Path(run) / "final.safetensors" if Path(run).is_dir() else Path(run)


def held_out_indices(checkpoint: Path) -> tuple[IQADataset, dict, list[int]]:
    """(the dataset, the checkpoint's recorded training extras, the indices of the photos it held out)."""
    from ..data import open_dataset, resolve_split
    from ..errors import ConfigError
    from ..models.checkpoint import read_metadata

    extra = read_metadata(checkpoint)["extra"]
    ds = open_dataset(extra["dataset"])
    _, test = resolve_split(extra["split"], ds, seed=extra["split_seed"])
    if not test:
        raise ConfigError(f"{checkpoint}: trained on split {extra['split']!r}, which holds nothing out")
    return ds, extra, test


def held_out(checkpoint: Path) -> tuple[str, str, list[str], np.ndarray]:
    """(data spec, split, held-out image paths, their training-scale MOS) recorded by a fold checkpoint."""
    ds, extra, test = held_out_indices(checkpoint)
    return extra["dataset"], extra["split"], [str(ds.records[i].path) for i in test], \
        np.array([ds.label.to_training(ds.records[i].mos) for i in test])
