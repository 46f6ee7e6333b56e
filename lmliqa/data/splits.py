"""Seeded, recorded train/test splits: by reference content for synthetic-distortion datasets,
by image otherwise (DEIQT's 10 x 80/20 protocol, but reproducible)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError
from .base import IQADataset


@dataclass(frozen=True)
class Split:
    seed: int
    train: list[int]
    test: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


def _unit_groups(ds: IQADataset) -> tuple[list[str], dict[str, list[int]]]:
    keys = [r.group if ds.split_by == "reference" else str(i) for i, r in enumerate(ds.records)]
    members: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        members.setdefault(k, []).append(i)
    return sorted(members), members


def random_splits(ds: IQADataset, n_splits: int = 10, train_fraction: float = 0.8, seed: int = 0) -> list[Split]:
    """n seeded splits; train gets the first round(train_fraction * units) units of a permutation."""
    units, members = _unit_groups(ds)
    if len(units) < 2:
        raise ValueError(f"{ds.spec}: {len(units)} split unit(s); need at least 2")
    out = []
    for k in range(n_splits):
        order = np.random.default_rng([seed, k]).permutation(len(units))
        n_train = min(max(1, round(train_fraction * len(units))), len(units) - 1)
        pick = lambda idx: sorted(i for u in idx for i in members[units[u]])  # noqa: E731
        out.append(Split(seed * 1000 + k, pick(order[:n_train]), pick(order[n_train:])))
    return out


def kfold_splits(ds: IQADataset, k: int = 5, seed: int = 0) -> list[Split]:
    """k folds over split units (references or images); fold j is the test set of split j."""
    units, members = _unit_groups(ds)
    if len(units) < k:
        raise ValueError(f"{ds.spec}: {len(units)} split units for {k} folds")
    order = np.random.default_rng(seed).permutation(len(units))
    folds = np.array_split(order, k)
    out = []
    for j in range(k):
        test = sorted(i for u in folds[j] for i in members[units[u]])
        test_set = set(test)
        out.append(Split(seed, [i for i in range(len(ds)) if i not in test_set], test))
    return out


def resolve_split(split: str, ds: IQADataset, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, test) indices of ds for a split spec: "all" (train on everything, no test), "random:J" (split J of the
    seeded 80/20 protocol) or "kfold:K:J" (fold J of K is the test set); SEED is the split seed."""
    kind, *args = split.split(":")
    if kind == "all":
        return list(range(len(ds))), []
    if kind == "random":
        j = int(args[0]) if args else 0
        s = random_splits(ds, n_splits=j + 1, seed=seed)[j]
        return s.train, s.test
    if kind == "kfold" and len(args) == 2:
        k, j = int(args[0]), int(args[1])
        s = kfold_splits(ds, k=k, seed=seed)[j]
        return s.train, s.test
    raise ConfigError(f"split {split!r}: use all, random:J or kfold:K:J")
