"""Build tiny copies of each benchmark's native on-disk layout (method.md §6) for reader tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

from lmliqa.data.readers import LIVE_FOLDERS


def img(path: Path, size=(8, 8), value=128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def cell(strings: list[str], column: bool = False) -> np.ndarray:
    c = np.empty((len(strings), 1) if column else (1, len(strings)), dtype=object)
    for i, s in enumerate(strings):
        c.flat[i] = np.array([s])
    return c


def make_live(root: Path) -> dict:
    refs = ["bikes.bmp", "caps.bmp", "house.bmp"]
    for r in refs:
        img(root / "refimgs" / r)
    n = sum(k for _, k in LIVE_FOLDERS)
    names, dmos, orgs = [], [], []
    for folder, k in LIVE_FOLDERS:
        for i in range(1, k + 1):
            img(root / folder / f"img{i}.bmp")
    rng = np.random.default_rng(0)
    for j in range(n):
        names.append(refs[j % 3])
        orgs.append(1 if j % 5 == 0 else 0)
        dmos.append(0.0 if orgs[-1] else float(rng.uniform(10, 90)))
    savemat(root / "dmos_realigned.mat", {"dmos_new": np.array([dmos]), "orgs": np.array([orgs])})
    savemat(root / "refnames_all.mat", {"refnames_all": cell(names)})
    return {"n": n - sum(orgs), "mos": [d for d, o in zip(dmos, orgs) if not o]}


def make_csiq(root: Path, folder="dst_imgs_all") -> dict:
    lines, vals = [], []
    for ref in ("1600", "aerial_city", "boston"):
        img(root / "src_imgs" / f"{ref}.png")
        for t in ("AWGN", "JPEG", "BLUR"):
            for k in (1, 2):
                name = f"{ref}.{t}.{k}.png"
                img(root / folder / name)
                v = round(0.05 * k + len(lines) * 0.01, 6)
                lines.append(f"{name} {v}")
                vals.append(v)
    (root / "csiq_label.txt").write_text("\n".join(lines) + "\n")
    return {"n": len(lines), "mos": vals}


def make_tid2013(root: Path) -> dict:
    lines, vals = [], []
    for r in (1, 2, 25):
        img(root / "reference_images" / f"I{r:02d}.BMP")
        for t in (1, 10):
            for k in (1, 2):
                name = f"I{r:02d}_{t:02d}_{k}.bmp"
                img(root / "distorted_images" / name)
                listed = name.lower() if k == 2 else name  # the pitfall: lower-case names in the label file
                v = 5.0 - 0.5 * k + 0.01 * len(lines)
                lines.append(f"{v:.5f} {listed}")
                vals.append(round(v, 5))
    (root / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    return {"n": len(lines), "mos": vals}


def make_kadid(root: Path, folder="distorted_images") -> dict:
    rows, vals = [], []
    for r in (1, 2, 81):
        img(root / "reference_images" / f"I{r:02d}.png")
        for t in (1, 25):
            for k in (1, 5):
                name = f"I{r:02d}_{t:02d}_{k:02d}.png"
                img(root / folder / name)
                v = 1.0 + 0.7 * k - 0.01 * len(rows)
                rows.append([name, f"I{r:02d}.png", f"{v:.3f}", "0.25"])
                vals.append(round(v, 3))
    with open(root / "dmos.csv", "w", newline="") as f:
        csv.writer(f).writerows([["dist_img", "ref_img", "dmos", "var"]] + rows)
    return {"n": len(rows), "mos": vals}


def make_livec(root: Path, n_test: int = 1162) -> dict:
    names = [f"t{i}.bmp" for i in range(1, 8)] + [f"{i}.bmp" if i % 2 else f"{i}.JPG" for i in range(1, n_test + 1)]
    mos = np.linspace(3.42, 92.43, len(names))
    std = np.full(len(names), 15.0)
    for i, n in enumerate(names):
        img(root / "Images" / ("trainingImages" if i < 7 else "") / n)
    (root / "Data").mkdir(parents=True, exist_ok=True)
    savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": cell(names, column=True)})
    savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": mos[None, :]})
    savemat(root / "Data" / "AllStdDev_release.mat", {"AllStdDev_release": std[None, :]})
    return {"n": n_test, "mos": mos[7:].tolist()}


def make_koniq(root: Path) -> dict:
    rows, vals = [], []
    for i in range(6):
        name = f"{1000 + i}.jpg"
        img(root / "1024x768" / name)
        v = 10.0 + 12.5 * i
        rows.append([name, 0, 1, 2, 3, 4, 10, 3.1, 0.7, v])
        vals.append(v)
    with open(root / "koniq10k_scores_and_distributions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"])
        w.writerows(rows)
    return {"n": len(rows), "mos": vals}


def make_spaq(root: Path, preresized: bool = True) -> dict:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"])
    vals = []
    folder = root / ("SPAQ zip/512x384" if preresized else "TestImage")
    for i in range(1, 6):
        name = f"{i:05d}.jpg"
        img(folder / name)
        ws.append([name, 20.0 + 10 * i, 50, 50, 50, 50, 50])
        vals.append(20.0 + 10 * i)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    wb.save(root / "Annotations" / "MOS and Image attribute scores.xlsx")
    return {"n": len(vals), "mos": vals}


def make_livefb(root: Path) -> dict:
    names = ["voc_emotic_ava/AVA__129332.jpg", "voc_emotic_ava/VOC__1.jpg", "blur_dataset/motion0001.jpg"]
    vals = [58.65, 0.0, 71.2]
    for n in names:
        img(root / "database" / n)
    with open(root / "labels_image.csv", "w", newline="") as f:
        csv.writer(f).writerows([["name", "mos"]] + [[n, v] for n, v in zip(names, vals)])
    return {"n": len(names), "mos": vals}


def make_folder(root: Path, n: int = 5, size=(256, 256)) -> dict:
    vals = [10.0 + 15 * i for i in range(n)]
    for i in range(n):
        img(root / "images" / f"{i}.png", size=size, value=(40 * i) % 256)
    with open(root / "scores.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "mos", "mos_std"]] + [[f"{i}.png", v, 12.5] for i, v in enumerate(vals)])
    return {"n": n, "mos": vals}


def make_biq2021(root: Path, n_train: int = 10, n_test: int = 4, size=(8, 8)) -> dict:
    """BIQ2021's GitHub layout: Images/ with names like 'ss03 (7805).jpg' (one stored as .JPG while the label file
    says .jpg, as 'ss02 (1014).JPG' is in the repository), the training file with two empty trailing columns, MOS on
    0..1."""
    names = [f"ss0{1 + i % 3} ({100 + i}).jpg" for i in range(n_train + n_test)]
    vals = [round(0.05 + 0.9 * i / (len(names) - 1), 4) for i in range(len(names))]
    for i, n in enumerate(names):
        stored = n[:-4] + ".JPG" if i == 1 else n
        img(root / "Images" / stored, size=size, value=(30 * i) % 256)
    with open(root / "Train (Images and MOS).csv", "w", newline="") as f:
        csv.writer(f).writerows([["Image Name", "MOS", "", ""]] + [[n, v, "", ""] for n, v in
                                                                    zip(names[:n_train], vals[:n_train])])
    with open(root / "Test (Images and MOS).csv", "w", newline="") as f:
        csv.writer(f).writerows([["Image Name", "MOS"]] + [[n, v] for n, v in zip(names[n_train:], vals[n_train:])])
    return {"n": len(names), "mos": [100 * v for v in vals], "n_train": n_train, "n_test": n_test}


LAYOUTS = {
    "live": make_live, "csiq": make_csiq, "tid2013": make_tid2013, "kadid10k": make_kadid,
    "livec": make_livec, "koniq10k": make_koniq, "spaq": make_spaq, "livefb": make_livefb, "folder": make_folder,
    "biq2021": make_biq2021,
}
