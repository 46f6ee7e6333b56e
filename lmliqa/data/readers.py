"""Readers for the native on-disk layouts of the 8 IQA benchmarks (method.md §6) and a plain folder.

Each reader takes the dataset's root folder and returns an :class:`IQADataset`. Readers only parse
label files and resolve image paths; a label file that is missing or malformed raises
:class:`DatasetError` naming it. Image files are not opened here (``lmliqa data check`` does that),
and loading never substitutes anything for an unreadable image (DEIQT silently feeds random noise).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .base import DatasetError, IQADataset, LabelSpec, Record, first_existing_dir, parse_float, require_file

# LIVE Release 2: distortion folders in DEIQT's concatenation order and the number of entries
# (references included) each holds; dmos_realigned.mat indexes this concatenation (982 entries).
LIVE_FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
LIVEC_SKIP = 7  # the first 7 entries of AllImages_release are the t1..t7 training images


def _loadmat(path: Path) -> dict:
    try:
        from scipy.io import loadmat
    except ImportError as exc:  # pragma: no cover - scipy is in the [data] extra
        raise DatasetError("reading .mat files needs scipy: pip install 'lmliqa[data]'") from exc
    require_file(path, "MATLAB label file")
    try:
        return loadmat(str(path))
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read MATLAB file ({exc})") from exc


def _mat_var(mat: dict, name: str, path: Path):
    if name not in mat:
        have = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path}: variable {name!r} missing (has {have})")
    return mat[name]


def _mat_strings(cell) -> list[str]:
    """A MATLAB cell array of strings (any orientation) as a flat Python list."""
    return [str(item.flat[0]) if hasattr(item, "flat") and item.size else "" for item in cell.flat]


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    require_file(path, "label file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise DatasetError(f"{path}: column(s) {missing} missing; header is {header}")
        reader.fieldnames = header
        return [row for row in reader if any((v or "").strip() for v in row.values())]


def _two_columns(path: Path, form: str):
    """(line number, first, second) for each non-blank line of a whitespace-separated two-column label file."""
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DatasetError(f"{path}:{lineno}: expected '{form}', got {line!r}")
        yield lineno, parts[0], parts[1]


def _resolve_case(folder: Path, name: str, listing: dict[str, str] | None) -> Path:
    """TID2013 lists some names in lower case (i01_01_2.bmp) while the files are I01_01_2.BMP etc.; BIQ2021 lists
    'ss02 (1014).jpg' for the file 'ss02 (1014).JPG'."""
    p = folder / name
    if p.exists() or listing is None:
        return p
    return folder / listing.get(name.lower(), name)


# ------------------------------------------------------------------------------------------ readers
def read_live(root: Path) -> IQADataset:
    dmos_mat = _loadmat(root / "dmos_realigned.mat")
    dmos = _mat_var(dmos_mat, "dmos_new", root / "dmos_realigned.mat").ravel()
    orgs = _mat_var(dmos_mat, "orgs", root / "dmos_realigned.mat").ravel()
    refs = _mat_strings(_mat_var(_loadmat(root / "refnames_all.mat"), "refnames_all", root / "refnames_all.mat"))
    paths = [(folder, root / folder / f"img{i}.bmp") for folder, n in LIVE_FOLDERS for i in range(1, n + 1)]
    if not (len(dmos) == len(orgs) == len(refs) == len(paths)):
        raise DatasetError(f"{root}: dmos_new has {len(dmos)}, orgs {len(orgs)}, refnames_all {len(refs)} entries; "
                           f"LIVE Release 2 has {len(paths)}")
    records = [Record(p, float(d), None, ref, folder)
               for (folder, p), d, o, ref in zip(paths, dmos, orgs, refs) if int(o) == 0]
    return IQADataset("live", f"live:{root}", root, records,
                      LabelSpec(0.0, 100.0, higher_is_better=False, name="DMOS"), split_by="reference",
                      notes=["dmos_realigned.mat:dmos_new (DEIQT's label); reference copies (orgs==1) dropped"])


def read_csiq(root: Path) -> IQADataset:
    label = require_file(root / "csiq_label.txt", "CSIQ label file")
    images = first_existing_dir(root, ["dst_imgs_all", "dst_imgs"], "CSIQ distorted images")
    records = []
    for lineno, name, value in _two_columns(label, "<image> <dmos>"):
        fields = name.split(".")
        if len(fields) < 3:
            raise DatasetError(f"{label}:{lineno}: {name!r} is not '<ref>.<TYPE>.<level>.png'")
        records.append(Record(images / name, parse_float(value, f"{label}:{lineno}"), None, fields[0], fields[1]))
    return IQADataset("csiq", f"csiq:{root}", root, records,
                      LabelSpec(0.0, 1.0, higher_is_better=False, name="DMOS", train_scale=100.0),
                      split_by="reference")


def read_tid2013(root: Path) -> IQADataset:
    label = require_file(root / "mos_with_names.txt", "TID2013 label file")
    images = first_existing_dir(root, ["distorted_images"], "TID2013 distorted images")
    listing = {p.name.lower(): p.name for p in images.iterdir()}
    records = []
    for lineno, value, name in _two_columns(label, "<mos> <image>"):
        records.append(Record(_resolve_case(images, name, listing), parse_float(value, f"{label}:{lineno}"),
                              None, name[1:3], name[4:6]))
    return IQADataset("tid2013", f"tid2013:{root}", root, records,
                      LabelSpec(0.0, 9.0, name="MOS", train_scale=100.0 / 9.0), split_by="reference")


def read_kadid(root: Path) -> IQADataset:
    rows = _read_csv(root / "dmos.csv", ("dist_img", "ref_img", "dmos"))
    images = first_existing_dir(root, ["distorted_images", "images"], "KADID-10k images")
    records = []
    for i, row in enumerate(rows, 2):
        name = row["dist_img"]
        dist = name.split("_")[1] if "_" in name else ""
        std = parse_float(row["var"], f"{root / 'dmos.csv'}:{i}") ** 0.5 if row.get("var") else None
        records.append(Record(images / name, parse_float(row["dmos"], f"{root / 'dmos.csv'}:{i}"), std,
                              row["ref_img"][1:3], dist))
    # The column is called dmos but it is a 1-5 rating where higher is better.
    return IQADataset("kadid10k", f"kadid10k:{root}", root, records,
                      LabelSpec(1.0, 5.0, name="MOS (column 'dmos')", train_scale=25.0, train_offset=1.0),
                      split_by="reference")


def read_livec(root: Path) -> IQADataset:
    data = root / "Data"
    names = _mat_strings(_mat_var(_loadmat(data / "AllImages_release.mat"), "AllImages_release",
                                  data / "AllImages_release.mat"))
    mos = _mat_var(_loadmat(data / "AllMOS_release.mat"), "AllMOS_release", data / "AllMOS_release.mat").ravel()
    std_path = data / "AllStdDev_release.mat"
    std = (_mat_var(_loadmat(std_path), "AllStdDev_release", std_path).ravel() if std_path.is_file() else None)
    if len(names) != len(mos) or (std is not None and len(std) != len(mos)):
        raise DatasetError(f"{data}: {len(names)} image names but {len(mos)} MOS values"
                           + (f" and {len(std)} std values" if std is not None else ""))
    images = root / "Images"
    records = [Record(images / names[i], float(mos[i]), None if std is None else float(std[i]), names[i])
               for i in range(LIVEC_SKIP, len(names))]
    return IQADataset("livec", f"livec:{root}", root, records, LabelSpec(0.0, 100.0),
                      notes=[f"first {LIVEC_SKIP} entries (t1..t7 training images) dropped"])


def read_koniq(root: Path) -> IQADataset:
    path = root / "koniq10k_scores_and_distributions.csv"
    rows = _read_csv(path, ("image_name", "MOS_zscore"))
    images = first_existing_dir(root, ["1024x768", "512x384"], "KonIQ-10k images")
    records = [Record(images / r["image_name"], parse_float(r["MOS_zscore"], f"{path}:{i}"), None, r["image_name"])
               for i, r in enumerate(rows, 2)]
    return IQADataset("koniq10k", f"koniq10k:{root}", root, records, LabelSpec(0.0, 100.0, name="MOS_zscore"),
                      contract_hints={"resize": "fixed", "resize_size": [512, 384]},
                      notes=["DEIQT resizes every image to H=512, W=384 (portrait, distorting the 4:3 "
                             "landscape originals); kept as the dataset's contract hint for fidelity"])


def read_spaq(root: Path) -> IQADataset:
    path = require_file(root / "Annotations" / "MOS and Image attribute scores.xlsx", "SPAQ annotation workbook")
    try:
        from openpyxl import load_workbook
    except ImportError as exc:  # pragma: no cover - openpyxl is in the [data] extra
        raise DatasetError("reading SPAQ's .xlsx needs openpyxl: pip install 'lmliqa[data]'") from exc
    try:
        sheet = load_workbook(path, read_only=True, data_only=True).worksheets[0]
        rows = list(sheet.iter_rows(values_only=True))
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read workbook ({exc})") from exc
    header = [str(h).strip() if h is not None else "" for h in rows[0]] if rows else []
    for col in ("Image name", "MOS"):
        if col not in header:
            raise DatasetError(f"{path}: column {col!r} missing; header is {header}")
    ci, cm = header.index("Image name"), header.index("MOS")
    pre = root / "SPAQ zip" / "512x384"
    images = pre if pre.is_dir() else first_existing_dir(root, ["TestImage"], "SPAQ images")
    records = [Record(images / str(r[ci]), parse_float(r[cm], f"{path}:row {i}"), None, str(r[ci]))
               for i, r in enumerate(rows[1:], 2) if r[ci] is not None]
    hints = {} if images == pre else {"resize": "fixed", "resize_size": [512, 384]}
    return IQADataset("spaq", f"spaq:{root}", root, records, LabelSpec(0.0, 100.0), contract_hints=hints,
                      notes=["images read from " + str(images.relative_to(root)) +
                             ("" if hints else " (pre-resized to H=512, W=384 as DEIQT's spaq_downsample.py)")])


def read_livefb(root: Path) -> IQADataset:
    path = root / "labels_image.csv"
    rows = _read_csv(path, ("name", "mos"))
    images = first_existing_dir(root, ["database"], "LIVEFB images")
    records = [Record(images / r["name"], parse_float(r["mos"], f"{path}:{i}"), None, r["name"])
               for i, r in enumerate(rows, 2)]
    return IQADataset("livefb", f"livefb:{root}", root, records, LabelSpec(0.0, 100.0),
                      notes=["some images are smaller than 224 px: the contract upscales them (small_image)"])


def read_folder(root: Path) -> IQADataset:
    """``PATH/scores.csv`` (``image,mos[,mos_std][,ref][,distortion]``) + ``PATH/images/``.

    With a ``ref`` column the split follows reference content, otherwise the image."""
    path = root / "scores.csv"
    rows = _read_csv(path, ("image", "mos"))
    images = first_existing_dir(root, ["images"], "folder dataset images")
    records = []
    for i, r in enumerate(rows, 2):
        std = r.get("mos_std")
        records.append(Record(images / r["image"], parse_float(r["mos"], f"{path}:{i}"),
                              parse_float(std, f"{path}:{i}") if std not in (None, "") else None,
                              r.get("ref") or r["image"], r.get("distortion") or ""))
    split_by = "reference" if rows and "ref" in rows[0] else "image"
    return IQADataset("folder", f"folder:{root}", root, records, LabelSpec(0.0, 100.0), split_by=split_by)


BIQ2021_TRAIN, BIQ2021_TEST = "Train (Images and MOS).csv", "Test (Images and MOS).csv"


def read_biq2021(root: Path) -> IQADataset:
    """BIQ2021 as its GitHub repository lays it out: ``Images/`` (12,000 JPEGs named like ``ss03 (7805).jpg``) and the
    official split's two label files (``Image Name,MOS`` with MOS scaled to 0..1; the training file has two empty
    trailing columns). MOS is read on 0..100. The subset (ss01 personal gallery, ss02 deliberately distorted
    captures, ss03 Unsplash) is each record's ``distortion`` field, so the card breaks results down by it."""
    images = first_existing_dir(root, ["Images"], "BIQ2021 images")
    listing = {p.name.lower(): p.name for p in images.iterdir()}   # the repository has 'ss02 (1014).JPG'
    records, official = [], {"train": [], "test": []}
    seen: dict[str, str] = {}
    for part, name in (("train", BIQ2021_TRAIN), ("test", BIQ2021_TEST)):
        path = root / name
        for i, r in enumerate(_read_csv(path, ("Image Name", "MOS")), 2):
            image = r["Image Name"].strip()
            if not image:
                continue
            if image in seen:
                raise DatasetError(f"{path}:{i}: {image!r} is listed twice (first in the {seen[image]} split)")
            seen[image] = part
            official[part].append(len(records))
            records.append(Record(_resolve_case(images, image, listing), parse_float(r["MOS"], f"{path}:{i}") * 100.0,
                                  None, image,
                                  image.split(" ")[0] if image.startswith("ss") else ""))
    return IQADataset("biq2021", f"biq2021:{root}", root, records, LabelSpec(0.0, 100.0), official=official,
                      notes=["MOS scaled from the repository's 0..1 to 0..100",
                             f"official split: {len(official['train'])} train / {len(official['test'])} test "
                             "(split official, official-train, official:kfold:K:J)"])


@dataclass(frozen=True)
class Reader:
    """A data-spec reader: ``NAME:PATH`` opens PATH (the database's root in its own layout) with ``read``."""

    name: str
    read: Callable[[Path], IQADataset]
    title: str                           # the database, as its authors name it
    licence: str = "see the database's own terms"
    aliases: tuple[str, ...] = ()
    marker: str | None = None            # a file that travels with every copy (a copyright notice): identifies a copy
                                         # of the database inside a folder: spec
    # results published on the database's own evaluation split, for a model card to stand beside:
    # (method, SRCC, PLCC, where it is published)
    published: tuple[tuple[str, float, float, str], ...] = ()


READERS: dict[str, Reader] = {}


def register_reader(reader: Reader) -> Reader:
    taken = [n for n in (reader.name, *reader.aliases) if n in READERS or n in ALIASES]
    if taken:
        raise ValueError(f"reader {reader.name!r}: {taken} already name a reader")
    READERS[reader.name] = reader
    ALIASES.update({a: reader.name for a in reader.aliases})
    return reader


ALIASES: dict[str, str] = {}
LIVEC_LICENCE = ("LIVE In the Wild Image Quality Challenge Database (Ghadiyaram and Bovik, UT Austin): research use; "
                 "cite the database's papers")

register_reader(Reader("live", read_live, "LIVE Image Quality Assessment Database, Release 2"))
register_reader(Reader("csiq", read_csiq, "CSIQ (Larson and Chandler)"))
register_reader(Reader("tid2013", read_tid2013, "TID2013 (Ponomarenko et al.)", aliases=("tid",)))
register_reader(Reader("kadid10k", read_kadid, "KADID-10k (Lin, Hosu and Saupe)", aliases=("kadid",)))
register_reader(Reader("livec", read_livec, "LIVE In the Wild Image Quality Challenge Database", LIVEC_LICENCE,
                       aliases=("livechallenge",), marker="LIVE_README.txt"))
register_reader(Reader("koniq10k", read_koniq, "KonIQ-10k (Hosu et al.)", aliases=("koniq",)))
register_reader(Reader("spaq", read_spaq, "SPAQ (Fang et al.)"))
register_reader(Reader("livefb", read_livefb, "LIVE-FB / FLIVE (PaQ-2-PiQ, Ying et al.)", aliases=("flive",)))
BIQ2021_LICENCE = ("BIQ2021 (Ahmed and Asif, J. Electronic Imaging 2022; github.com/nisarahmedrana/BIQ2021): no "
                   "licence file; research use only, never redistribute its images (ss03 from Unsplash)")
_BIQ_README = "the BIQ2021 repository's README (official test split)"
register_reader(Reader("biq2021", read_biq2021, "BIQ2021 (Ahmed and Asif)", BIQ2021_LICENCE, aliases=("biq",),
                       published=(("DeepEns (2022)", 0.7922, 0.8098, _BIQ_README),
                                  ("NASNet-Large (the database's paper)", 0.6725, 0.7083, _BIQ_README),
                                  ("PIQI (2021)", 0.6698, 0.6721, _BIQ_README),
                                  ("Inception-ResNet-V2", 0.6624, 0.7002, _BIQ_README),
                                  ("ResNet-50", 0.6468, 0.6862, _BIQ_README),
                                  ("MobileNet-V2", 0.6189, 0.6613, _BIQ_README),
                                  ("BRISQUE", 0.6039, 0.6941, _BIQ_README))))
register_reader(Reader("folder", read_folder, "a folder: scores.csv + images/"))
