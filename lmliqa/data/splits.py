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
    seeded 80/20 protocol), "kfold:K:J" (fold J of K is the test set); for a data set with a published split
    (BIQ2021): "official" (its train / test), "official-train" (its training photos, no test: to add the data set to
    another's training) or "official:kfold:K:J" (k-fold within its training photos). SEED is the split seed.

    Several data sets read as one (``A,B``) take one split per data set, comma-separated in the same order (or one
    split for all): each is resolved within its own data set."""
    if ds.parts:
        return _resolve_parts(split, ds, seed)
    kind, *args = split.split(":")
    if ds.official is not None and not kind.startswith("official"):
        raise ConfigError(f"{ds.spec} has a published train/test split: use official, official-train or "
                          f"official:kfold:K:J (split {split!r} would mix its test photos into training)")
    if kind == "official" and not args:
        _need_official(ds, split)
        return list(ds.official["train"]), list(ds.official["test"])
    if kind == "official-train" and not args:
        _need_official(ds, split)
        return list(ds.official["train"]), []
    if kind == "official" and args:
        _need_official(ds, split)
        base = ds.official["train"]
        tr, te = resolve_split(":".join(args), _plain(ds.subset(base)), seed)
        return [base[i] for i in tr], [base[i] for i in te]
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
    raise ConfigError(f"split {split!r}: use all, random:J, kfold:K:J, official, official-train or official:kfold:K:J")


def _need_official(ds: IQADataset, split: str) -> None:
    if ds.official is None:
        raise ConfigError(f"split {split!r}: {ds.spec} has no published train/test split")


def _plain(ds: IQADataset) -> IQADataset:
    ds.official = None
    return ds


def _resolve_parts(split: str, ds: IQADataset, seed: int) -> tuple[list[int], list[int]]:
    splits = split.split(",")
    if len(splits) == 1:
        splits = splits * len(ds.parts)
    if len(splits) != len(ds.parts):
        raise ConfigError(f"split {split!r}: {len(ds.parts)} data sets need one split each (comma-separated, in the "
                          "order of --data) or one for all")
    train, test = [], []
    for j, (part_split, members) in enumerate(zip(splits, _members(ds))):
        sub = ds.subset(members)
        sub.parts, sub.sources, sub.official = [], [], _official_of(ds, j, members)
        sub.spec, sub.split_by = ds.parts[j]["spec"], ds.parts[j].get("split_by", "image")
        tr, te = resolve_split(part_split.strip(), sub, seed)
        train += [members[i] for i in tr]
        test += [members[i] for i in te]
    return train, test


def _members(ds: IQADataset) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in ds.parts]
    for i in range(len(ds)):
        out[ds.source_of(i)].append(i)
    return out


def _official_of(ds: IQADataset, part: int, members: list[int]) -> dict[str, list[int]] | None:
    """Part PART's published split in the part's own indices (None when it has none)."""
    official = ds.part_official[part] if ds.part_official else None
    if official is None:
        return None
    pos = {g: k for k, g in enumerate(members)}
    return {name: [pos[g] for g in idx] for name, idx in official.items()}
