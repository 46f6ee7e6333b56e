"""Several data sets read as one: ``--data livec:A,biq2021:B`` (lmliqa.data.open_dataset).

What the literature does when data sets rate on different scales (UNIQUE, LIQE, and the multi-database IQA
works after them), and what this module records:

- **labels on one scale**: each data set's labels are mapped linearly from its own nominal range (its reader's
  LabelSpec, e.g. BIQ2021 0..100, KADID 1..5) onto the first data set's range, which is the scale the deployed
  model scores on. The map needs no label statistics, so nothing about a held-out split leaks into it;
- **ranking and correlation only within one data set**: every training step draws its images from one data set
  (lmliqa.train: batches per source), so the PLCC and pairwise ranking losses never compare photos that people
  rated in different studies; the regression term sees the mapped labels;
- **sampling weights per data set** (``--data-weights``): how many of a data set's training photos one epoch visits
  (1: each once; 0.25: a quarter of them, a fresh draw each epoch; 2: each twice).

Each part keeps its name, spec and licence in ``ds.parts``; evaluation reports each part on its own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import DatasetError
from .base import IQADataset


def split_specs(spec: str) -> list[str]:
    """'a:P,b:Q' -> ['a:P', 'b:Q'] (a data spec never holds a comma of its own here)."""
    return [s.strip() for s in spec.split(",") if s.strip()]


def combine(datasets: list[IQADataset], spec: str) -> IQADataset:
    """One IQADataset over DATASETS, labels on the first one's scale, records in order (part by part)."""
    if len(datasets) < 2:
        raise DatasetError(f"{spec}: combining needs at least two data sets")
    anchor = datasets[0].label
    records, sources, parts, official = [], [], [], []
    for j, ds in enumerate(datasets):
        if ds.parts:
            raise DatasetError(f"{spec}: {ds.spec} is itself several data sets")
        if ds.contract_hints != datasets[0].contract_hints:
            raise DatasetError(f"{spec}: {ds.spec} asks for other preprocessing ({ds.contract_hints}) than "
                               f"{datasets[0].spec} ({datasets[0].contract_hints}): one model has one contract")
        lo, hi = ds.label.lo, ds.label.hi
        if ds.label.higher_is_better != anchor.higher_is_better:
            lo, hi = hi, lo                       # a DMOS data set beside a MOS one: the map flips it
        scale = (anchor.hi - anchor.lo) / (hi - lo)
        start = len(records)
        records += [replace(r, mos=anchor.lo + (r.mos - lo) * scale) for r in ds.records]
        sources += [j] * len(ds.records)
        official.append(None if ds.official is None else
                        {k: [start + i for i in v] for k, v in ds.official.items()})
        parts.append({"name": ds.name, "spec": ds.spec, "n": len(ds.records), "label": ds.label.name,
                      "label_range": [ds.label.lo, ds.label.hi], "higher_is_better": ds.label.higher_is_better,
                      "split_by": ds.split_by,
                      "to_anchor": {"scale": scale, "offset": anchor.lo - lo * scale},
                      "official_split": ds.official is not None})
    roots = [Path(ds.root) for ds in datasets]
    return IQADataset("+".join(ds.name for ds in datasets), spec, roots[0], records, anchor,
                      split_by=datasets[0].split_by if all(d.split_by == datasets[0].split_by for d in datasets)
                      else "image",
                      contract_hints=dict(datasets[0].contract_hints),
                      notes=[f"{p['spec']}: {p['n']} images, {p['label']} {p['label_range']} mapped onto "
                             f"{datasets[0].name}'s {[anchor.lo, anchor.hi]}" for p in parts],
                      sources=sources, parts=parts, part_official=official)
