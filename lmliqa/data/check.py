"""`lmliqa data check`: read a dataset's labels, open every image header, report what is wrong."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from PIL import Image

from .base import IQADataset

MAX_LISTED = 50  # problems listed in full; the counts always cover all of them


class Problems:
    """What is wrong with a dataset: every problem counted, the first MAX_LISTED listed."""

    def __init__(self) -> None:
        self.listed: list[dict[str, str]] = []
        self.counts: Counter[str] = Counter()

    def add(self, kind: str, path: object, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append({"kind": kind, "file": str(path), "detail": detail})


def _check_labels(ds: IQADataset, problems: Problems) -> None:
    for path, why in ds.refused:             # label entries that leave the dataset root: never opened
        problems.add("outside_root", path, why)
    for path, n in Counter(r.path for r in ds.records).items():
        if n > 1:
            problems.add("duplicate", path, f"listed {n} times")
    lo, hi = ds.label.lo, ds.label.hi
    for r in ds.records:
        if not lo <= r.mos <= hi:
            problems.add("label_out_of_range", r.path, f"{r.mos} outside the nominal range [{lo}, {hi}]")


def _check_images(ds: IQADataset, problems: Problems, min_side: int, progress: bool) -> np.ndarray:
    """Open every image's header; returns the (width, height) of the readable ones."""
    records = ds.records
    if progress:
        from tqdm import tqdm
        records = tqdm(records, desc=f"checking {ds.name}", unit="img")
    sizes = []
    for r in records:
        if not r.path.is_file():
            problems.add("missing", r.path, "file not found")
            continue
        try:
            with Image.open(r.path) as im:  # reads the header only
                w, h = im.size
        except Exception as exc:
            problems.add("unreadable", r.path, f"{type(exc).__name__}: {exc}")
            continue
        sizes.append((w, h))
        if min(w, h) < min_side:
            problems.add("small", r.path, f"{w}x{h} is below {min_side}px; the contract upscales it")
    return np.array(sizes) if sizes else np.zeros((0, 2))


def check_dataset(ds: IQADataset, min_side: int = 224, progress: bool = False) -> dict[str, Any]:
    problems = Problems()
    _check_labels(ds, problems)
    wh = _check_images(ds, problems, min_side, progress)
    mos, counts = ds.mos, problems.counts
    stat = (lambda f: float(f(mos)) if len(mos) else float("nan"))  # noqa: E731
    return {
        "dataset": ds.name, "spec": ds.spec, "root": str(ds.root), "n": len(ds), "n_groups": len(set(ds.groups)),
        "split_by": ds.split_by, "label": ds.label.name, "higher_is_better": ds.label.higher_is_better,
        "label_range": [ds.label.lo, ds.label.hi], "training_scale": list(ds.label.training_range),
        "mos_min": stat(np.min), "mos_mean": stat(np.mean), "mos_max": stat(np.max), "mos_std": stat(np.std),
        "n_readable": len(wh),
        "width_range": [int(wh[:, 0].min()), int(wh[:, 0].max())] if len(wh) else None,
        "height_range": [int(wh[:, 1].min()), int(wh[:, 1].max())] if len(wh) else None,
        "distortions": dict(sorted(Counter(r.distortion for r in ds.records if r.distortion).items())),
        "contract_hints": ds.contract_hints, "notes": ds.notes,
        "problem_counts": dict(counts), "problems": problems.listed,
        "ok": not (counts["missing"] or counts["unreadable"] or counts["duplicate"] or counts["outside_root"]),
    }


def format_report(rep: dict[str, Any]) -> str:
    direction = "higher is better" if rep["higher_is_better"] else "LOWER is better"
    lines = [
        f"{rep['dataset']}  ({rep['spec']})",
        f"  images      {rep['n']}  ({rep['n_readable']} readable; {rep['n_groups']} split units, "
        f"split by {rep['split_by']})",
        f"  label       {rep['label']} in [{rep['label_range'][0]:g}, {rep['label_range'][1]:g}], {direction}; "
        f"trained on [{rep['training_scale'][0]:g}, {rep['training_scale'][1]:g}]",
        f"  MOS         min {rep['mos_min']:.3f}  mean {rep['mos_mean']:.3f}  max {rep['mos_max']:.3f}  "
        f"std {rep['mos_std']:.3f}",
    ]
    if rep["width_range"]:
        lines.append(f"  size        width {rep['width_range'][0]}-{rep['width_range'][1]}, "
                     f"height {rep['height_range'][0]}-{rep['height_range'][1]}")
    if rep["distortions"]:
        lines.append("  distortions " + ", ".join(f"{k} {v}" for k, v in rep["distortions"].items()))
    for note in rep["notes"]:
        lines.append(f"  note        {note}")
    if rep["problem_counts"]:
        lines.append("  problems    " + ", ".join(f"{k} {v}" for k, v in sorted(rep["problem_counts"].items())))
        for p in rep["problems"][:10]:
            lines.append(f"    {p['kind']:<18} {p['file']}: {p['detail']}")
        if sum(rep["problem_counts"].values()) > 10:
            lines.append(f"    ... (--json lists up to {MAX_LISTED})")
    else:
        lines.append("  problems    none")
    return "\n".join(lines)
