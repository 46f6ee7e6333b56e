"""Write the two BIQ2021 training-split subsets the default model's quantization-aware fine-tuning and its release
use, as `folder:` data specs (hard links to the images, or copies, plus their scores.csv on the reader's 0-100 scale):

- ``OUT/biq_train_qat``: every 10th photo of the official training split (1,000), the QAT's training and the
  release's calibration photos (README "BIQ_TRAIN_1000");
- ``OUT/biq_train_val``: 96 other training-split photos, every 104th from the 6th (README "BIQ_TRAIN_OTHER_96"),
  the QAT's and the quantizers' validation photos.

Neither holds a photo of the official test split (the release's evaluation), and they share none.

    python benchmarks/biq_subsets.py --biq2021 ../data/biq2021 --out /work/exp/qatprobe
"""

from __future__ import annotations

import argparse
from pathlib import Path

from split_folders import write_folder

from lmliqa.data import open_dataset, resolve_split

SUBSETS = {"biq_train_qat": (0, 10, 1000), "biq_train_val": (5, 104, 96)}   # name: (first, step, count)


def subset_indices(train: list[int], first: int, step: int, count: int) -> list[int]:
    """Every STEP-th of the training split's indices (the reader's order) from FIRST, COUNT of them."""
    return train[first::step][:count]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--biq2021", required=True, help="the BIQ2021 repository as cloned")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    ds = open_dataset(f"biq2021:{args.biq2021}")
    train, _ = resolve_split("official-train", ds, seed=0)
    chosen = {name: subset_indices(train, *rule) for name, rule in SUBSETS.items()}
    assert not set.intersection(*(set(v) for v in chosen.values())), "the subsets overlap"
    for name, idx in chosen.items():
        folder = write_folder(ds, idx, Path(args.out) / name)
        print(f"{name}: {len(idx)} photos -> folder:{folder}")


if __name__ == "__main__":
    main()
