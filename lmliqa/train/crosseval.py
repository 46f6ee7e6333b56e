"""Cross-dataset evaluation: a train-set x test-set table (`lmliqa eval --cross`), the record a model card quotes.

Each checkpoint (a row, named by the data it was trained on) scores each data set (a column) on that data set's
evaluation photos: its published test split when it has one (BIQ2021), else all of its photos, minus every photo
the checkpoint was trained on, found by content hash (so a LIVE-C model is never credited on its own training photos,
however the folder is spelled). A cell whose photos were all training photos says so instead of a number. SRCC and
PLCC come with 95 % bootstrap intervals (scipy.stats.bootstrap, photos resampled).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data import evaluation_indices, open_dataset, training_photos
from ..errors import DatasetError
from ..manifest import sha256_file
from ..metrics import bootstrap_ci, iqa_metrics
from ..models.checkpoint import load_checkpoint
from .evaluate import predict


def cross_dataset(checkpoints: list[str | Path], data: list[str], bootstrap: int = 1000, device: str = "cpu",
                  names: list[str] | None = None) -> dict[str, Any]:
    """The table: {"columns": [...], "rows": [{"checkpoint", "name", "trained_on", "cells": {spec: cell}}]}."""
    sets = {spec: open_dataset(spec) for spec in data}
    hashes = {spec: [sha256_file(r.path) for r in ds.records] for spec, ds in sets.items()}
    columns = [{"spec": spec, "name": column_name(spec, ds), "evaluates": evaluation_indices(ds)[1]}
               for spec, ds in sets.items()]
    rows = []
    for k, path in enumerate(checkpoints):
        model, meta = load_checkpoint(path, map_location=device)
        untraceable = ""
        try:
            trained_spec, trained = training_photos(meta)
        except DatasetError as exc:
            trained_spec, trained = meta.get("extra", {}).get("dataset"), None
            untraceable = str(exc)
        cells = {}
        for spec, ds in sets.items():
            idx, _ = evaluation_indices(ds)
            if trained is None:
                cells[spec] = {"status": f"not evaluated: {untraceable}"}
                continue
            keep = [i for i in idx if hashes[spec][i] not in trained]
            cells[spec] = _cell(model, ds, keep, len(idx) - len(keep), bootstrap, device)
        rows.append({"checkpoint": str(path), "name": names[k] if names else Path(path).parent.name,
                     "trained_on": trained_spec, "split": meta.get("extra", {}).get("split"), "cells": cells})
    return {"columns": columns, "rows": rows, "bootstrap_resamples": bootstrap}


def _cell(model, ds, indices: list[int], n_excluded: int, bootstrap: int, device: str) -> dict[str, Any]:
    if len(indices) < 3:
        return {"status": "trained on it: no photo left to evaluate" if n_excluded else "too few photos",
                "n_excluded_training": n_excluded}
    preds = predict(model, ds, indices, device=device)
    mos = ds.label.to_training(np.array([ds.records[i].mos for i in preds.indices]))
    cell = {"status": "ok", "n": len(preds.indices), "n_excluded_training": n_excluded,
            "n_failed": len(preds.errors), **{k: v for k, v in iqa_metrics(preds.scores, mos).items() if k != "n"}}
    if bootstrap:
        cell["ci95"] = bootstrap_ci(preds.scores, mos, n_resamples=bootstrap)
    return cell


def merge(tables: list[dict[str, Any]]) -> dict[str, Any]:
    """Several tables over the same columns (data specs) as one: their rows in order, each row keeping the command
    and commit of the run that measured it (so a published test split is scored once per model, not again for every
    new table)."""
    specs = [c["spec"] for c in tables[0]["columns"]]
    for t in tables[1:]:
        if [c["spec"] for c in t["columns"]] != specs:
            raise DatasetError(f"cross-dataset tables over different data sets cannot be merged: "
                               f"{[c['spec'] for c in t['columns']]} vs {specs}")
    rows = [{**row, "provenance": row.get("provenance") or {k: t.get("provenance", {}).get(k)
                                                           for k in ("command", "commit")}}
            for t in tables for row in t["rows"]]
    return {"columns": tables[0]["columns"], "rows": rows,
            "bootstrap_resamples": min(t.get("bootstrap_resamples", 0) for t in tables)}


def column_name(spec: str, ds) -> str:
    """A data set's short name: its reader's, or a folder's own name (folder:../livec-dev -> livec-dev)."""
    if ds.name == "folder":
        return Path(spec.split(":", 1)[1]).name or spec
    return ds.name


def markdown(table: dict[str, Any]) -> str:
    cols = table["columns"]
    lines = ["| trained on \\ tested on | " + " | ".join(f"{c['name']} ({c['evaluates']})" for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for row in table["rows"]:
        cells = []
        for c in cols:
            cell = row["cells"][c["spec"]]
            if cell["status"] != "ok":
                cells.append(cell["status"])
                continue
            ci = cell.get("ci95")
            srcc = f"{cell['srcc']:.3f}" + (f" [{ci['srcc']['low']:.3f}, {ci['srcc']['high']:.3f}]" if ci else "")
            plcc = f"{cell['plcc']:.3f}" + (f" [{ci['plcc']['low']:.3f}, {ci['plcc']['high']:.3f}]" if ci else "")
            cells.append(f"SRCC {srcc}, PLCC {plcc} (n={cell['n']})")
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
