"""Write a checkpoint's recorded train/test split as two `folder:` data specs (hard links to the images, or copies,
plus their scores.csv), so that `lmliqa quantize --calib` can calibrate on the photos the model was trained on and
`lmliqa parity --data` can measure it on the photos it never saw.

    python benchmarks/split_folders.py --checkpoint runs/cv/fold_0/final.safetensors --out work/fold0
    # -> work/fold0/train, work/fold0/test
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from lmliqa.data import open_dataset, resolve_split
from lmliqa.data.base import link_or_copy
from lmliqa.models.checkpoint import read_metadata
from lmliqa.train.config import resolve_config


def write_folder(ds, indices: list[int], out: Path) -> Path:
    (out / "images").mkdir(parents=True, exist_ok=True)
    with open(out / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "mos"])
        for i in indices:
            rec = ds.records[i]
            link = out / "images" / Path(rec.path).name
            if not link.exists():
                link_or_copy(Path(rec.path), link)
            w.writerow([link.name, rec.mos])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    extra = read_metadata(args.checkpoint)["extra"]
    cfg = resolve_config(extra["train_config"]["preset"], None, data=f"folder:{extra['dataset_root']}"
                         if extra["dataset_name"] == "folder" else extra["dataset"], split=extra["split"],
                         split_seed=extra["split_seed"])
    ds = open_dataset(cfg.data)
    train, test = resolve_split(cfg.split, ds, seed=cfg.split_seed)
    for name, idx in (("train", train), ("test", test)):
        folder = write_folder(ds, idx, Path(args.out) / name)
        print(f"{name}: {len(idx)} images -> folder:{folder}")


if __name__ == "__main__":
    main()
