"""IQA datasets: the 8 benchmarks in their native layouts, plain folders and the synthetic default.

A data spec string selects a reader (lmliqa.data.readers.READERS, one registered entry per database: its reader,
its name, its licence): ``livec:PATH``, ``koniq10k:PATH``, ``csiq:PATH``, ``live:PATH``, ``tid2013:PATH``,
``kadid10k:PATH``, ``spaq:PATH``, ``livefb:PATH``, ``biq2021:PATH``, ``folder:PATH`` or ``synthetic`` (optionally
``synthetic:PATH`` to build it in PATH instead of the cache). Several specs joined by commas read as one data set
for training on several at once (lmliqa.data.multi). A new data set is one ``register_reader(Reader(...))``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DatasetError
from .base import IQADataset, LabelSpec, Record
from .readers import ALIASES, READERS, Reader, register_reader
from .splits import resolve_split

__all__ = ["DatasetError", "IQADataset", "LabelSpec", "Record", "Reader", "open_dataset", "outside_root",
           "register_reader", "resolve_split", "licence_of", "spec_names", "spec_help", "training_photos",
           "PhotoSet", "evaluation_indices"]

SYNTHETIC_LICENCE = ("lmliqa's synthetic set: CC0 / public-domain photos shipped in scikit-image, scikit-learn and "
                     "matplotlib wheels, distorted, scored by SSIM (not human opinion)")


def spec_names() -> list[str]:
    return sorted(READERS) + ["synthetic"]


def spec_help() -> str:
    """The data specs, for --help texts."""
    return ", ".join(f"{n}:PATH" for n in READERS) + " or synthetic"


def licence_of(spec: str | None) -> str:
    """The licence of the data a spec names: its reader's; for a folder holding a copy of a registered database
    (recognised by the notice that must travel with every copy), that database's."""
    if not spec:
        return "unknown"
    from .multi import split_specs

    if len(specs := [s for step in spec.split(THEN) for s in split_specs(step)]) > 1:
        return "; ".join(dict.fromkeys(licence_of(s) for s in specs))         # each data set's licence once
    name, _, arg = spec.partition(":")
    name = ALIASES.get(name.lower(), name.lower())
    if name == "synthetic":
        return SYNTHETIC_LICENCE
    reader = READERS.get(name)
    if reader is None:
        return "unknown"
    if name == "folder" and arg:
        for r in READERS.values():
            if r.marker and (Path(arg).expanduser() / r.marker).is_file():
                return r.licence
    return reader.licence


def open_dataset(spec: str, seed: int = 0, strict: bool = True) -> IQADataset:
    """The dataset SPEC names. Every image path its label file gives must stay inside the dataset root (no
    absolute paths, no ``..`` out of it, no symlink that leads out): strict refuses the dataset when one does not
    (DatasetError naming them); strict=False drops those records and lists them in ``ds.refused`` (data check).

    ``A,B``: several data sets read as one (lmliqa.data.multi), each checked against its own root."""
    from .multi import combine, split_specs

    if len(specs := split_specs(spec)) > 1:
        parts = [open_dataset(s, seed, strict) for s in specs]
        ds = combine(parts, spec)
        ds.refused = [x for p in parts for x in p.refused]
        return ds
    ds = _read(spec, seed)
    ds.refused = [(r.path, why) for r in ds.records if (why := outside_root(ds.root, r.path))]
    if ds.refused:
        if strict:
            more = f" (and {len(ds.refused) - 5} more)" if len(ds.refused) > 5 else ""
            raise DatasetError(f"{spec}: the label file points outside the dataset root {ds.root}; refused: "
                               + "; ".join(f"{p}: {why}" for p, why in ds.refused[:5]) + more)
        refused = {p for p, _ in ds.refused}
        ds.records = [r for r in ds.records if r.path not in refused]
    return ds


def outside_root(root: Path, path: Path) -> str | None:
    """Why PATH is not inside ROOT (None when it is): an absolute or ``..`` path out of it, or a symlink (of the
    file or a folder on its way) that leads out of it."""
    lexical = Path(os.path.normpath(path))
    base = Path(os.path.normpath(root))
    if not lexical.is_relative_to(base):
        return "the label file names a path outside the dataset root"
    real, real_root = lexical.resolve(), base.resolve()
    if not real.is_relative_to(real_root):
        return f"a symlink leads outside the dataset root (to {real})"
    return None


def _read(spec: str, seed: int) -> IQADataset:
    name, _, arg = spec.partition(":")
    name = ALIASES.get(name.lower(), name.lower())
    if name == "synthetic":
        from .synthetic import build_synthetic

        folder = build_synthetic(Path(arg).expanduser() if arg else None, seed=seed)
        ds = READERS["folder"].read(folder)
        ds.name, ds.spec = "synthetic", spec
        ds.notes.append("embedded demo/test set: pseudo-MOS = 100 x SSIM, not human opinion")
        return ds
    if name not in READERS:
        raise DatasetError(f"unknown dataset {name!r} in spec {spec!r}; use one of {spec_names()} as NAME:PATH")
    if not arg:
        raise DatasetError(f"spec {spec!r} needs a path: {name}:PATH")
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{name}: dataset root {root} is not a directory")
    ds = READERS[name].read(root)
    ds.spec = spec
    if not ds.records:
        raise DatasetError(f"{spec}: the label file lists no images")
    return ds


def evaluation_indices(ds: IQADataset) -> tuple[list[int], str]:
    """(indices, what they are) of a data set's evaluation photos: its published test split when it has one (BIQ2021:
    never its training photos), else all of it."""
    if ds.official is not None:
        return list(ds.official["test"]), "official test split"
    return list(range(len(ds))), "all photos"


class PhotoSet(frozenset):
    """Photos by the first 16 hex digits of their content's sha256 (64 bits: a collision among a few hundred thousand
    photos has a chance of about 1e-9), so that a model can carry its training photos' keys in a small header.
    ``sha256 in photos`` compares the same prefix; full digests and prefixes mix freely."""

    KEY = 16

    def __new__(cls, hashes=()):
        return super().__new__(cls, (h[:cls.KEY] for h in hashes))

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and frozenset.__contains__(self, digest[:self.KEY])

    def __or__(self, other):
        return PhotoSet(frozenset.__or__(self, PhotoSet(other)))


# what a checkpoint started from another records of it (init_from), for training_photos
THEN = ", then "    # joins the data of the checkpoint a model started from and its own (training_spec)
LINEAGE_KEYS = ("dataset", "dataset_name", "dataset_root", "split", "split_seed", "train_images_sha256", "init_from")


def init_record(path: str | Path, extra: dict, also: tuple[str, ...] = ()) -> dict:
    """What a checkpoint started from the one at PATH (with metadata EXTRA) records of it: its hash and the data it
    learned from (LINEAGE_KEYS and ALSO), that one's own start included, so that `training_photos` can name a
    model's training photos without the file."""
    from ..manifest import sha256_file

    return {"path": str(path), "sha256": sha256_file(path),
            **{k: extra[k] for k in LINEAGE_KEYS + also if k in extra}}


def training_photos(ckpt_meta: dict) -> tuple[str, PhotoSet]:
    """(data spec, every photo a checkpoint was trained on, by content hash): the hashes the checkpoint records, else
    rebuilt from the data spec and split it records; a model started from another (init_from) was trained on that
    one's photos too (unless the recorded hashes already cover them: ``train_images_complete``). DatasetError when
    this cannot be done here."""
    extra = ckpt_meta.get("extra", {})
    _, photos = _own_training_photos(extra)
    if extra.get("init_from") and not extra.get("train_images_complete"):
        photos = training_photos({"extra": extra["init_from"]})[1] | photos
    return training_spec(extra), photos


def training_spec(extra: dict, key: str = "dataset") -> str | None:
    """A checkpoint's data spec (KEY "dataset") or split (KEY "split") after those of the checkpoint it started from
    (init_from), "A, then B": a fine-tuned model (e.g. `lmliqa train --qat-from`) names all the data it learned from,
    whether or not its recorded photo hashes already cover its start's (``train_images_complete``)."""
    own = extra.get(key)
    before = training_spec(extra["init_from"], key) if extra.get("init_from") else None
    return f"{before}{THEN}{own}" if before and own else own


def _own_training_photos(extra: dict) -> tuple[str, PhotoSet]:
    from ..manifest import sha256_file

    spec = extra.get("dataset")
    if extra.get("train_images_sha256"):
        return spec, PhotoSet(extra["train_images_sha256"])
    if not spec:
        raise DatasetError("the checkpoint records no training data spec, so photos cannot be checked against its "
                           "training photos")
    tries = [spec]
    if ":" in spec and "," not in spec and extra.get("dataset_root"):
        tries.append(f"{spec.split(':', 1)[0]}:{extra['dataset_root']}")    # relative spec, recorded root
    last = None
    for s in tries:
        try:
            ds = open_dataset(s)
            break
        except Exception as exc:     # noqa: BLE001 - reported below with every spec tried
            last = exc
    else:
        raise DatasetError(f"the checkpoint's training data {spec!r} cannot be opened here ({last}); it is needed to "
                           "check photos against its training photos")
    train_idx, _ = resolve_split(extra.get("split", "all"), ds, seed=extra.get("split_seed", 0))
    return spec, PhotoSet(sha256_file(ds.records[i].path) for i in train_idx)
