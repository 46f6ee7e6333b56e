"""Where `lmliqa score` writes its rows: CSV, JSON Lines or one JSON document, to a file or standard output
(``-``), written and flushed row by row so that an interrupted run keeps every finished row (torch-free).

A run into a file also writes ``OUT.run.json`` next to it: the model that scored (its files' sha256), the
decoding limit, the format, and at the end the counts. ``--resume`` reads both: it refuses to add rows from another
model (or limit) to the file, drops a row cut off by the interruption, and returns what is already done, so the
finished file equals an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .errors import OutputError, ResumeError
from .inputs import IMAGE_SUFFIXES
from .manifest import artifact_files, sha256_file

FORMATS = ("csv", "jsonl", "json")
COLUMNS = ("image", "score", "error", "error_kind")
RESUMABLE = ("csv", "jsonl")


@dataclass(frozen=True)
class Output:
    path: str            # "-": standard output
    format: str          # one of FORMATS

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise OutputError(f"unknown output format {self.format!r}; use one of {FORMATS}")
        if Path(self.path).suffix.lower() in IMAGE_SUFFIXES:
            raise OutputError(f"--{self.format} {self.path}: that is an image's name; results are not written over "
                              f"images (give the output file first, e.g. --{self.format} scores.{self.format}, or '-')")

    @property
    def to_stdout(self) -> bool:
        return self.path == "-"

    @property
    def record(self) -> Path:
        return Path(self.path + ".run.json")


def model_identity(scorer: Any, max_pixels: int | None) -> dict[str, Any]:
    """What must not change between a run and its resumption: the model's files, how it runs, the decode limit."""
    root = Path(scorer.path).resolve().parent
    files = [root / rel for rel in artifact_files(Path(scorer.path), root)]
    where = getattr(scorer, "platform", "native")
    return {"model_sha256": {f.name: sha256_file(f) for f in files}, "backend": scorer.backend,
            "precision": scorer.precision.value, "device": scorer.device, "max_pixels": max_pixels,
            **({"platform": where} if where != "native" else {})}


class ResultWriter:
    """Writes ImageResults in the chosen format, one flushed row at a time."""

    def __init__(self, out: Output, model: dict[str, Any], identity: dict[str, Any], append: bool = False) -> None:
        self.out, self.model, self.identity = out, model, identity
        self.counts: Counter[str] = Counter()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if out.to_stdout:
            self.f: TextIO = sys.stdout
        else:
            Path(out.path).parent.mkdir(parents=True, exist_ok=True)
            self.f = open(out.path, "a" if append else "w", newline="", encoding="utf-8")
            self._write_record(finished=False)
        self._csv = csv.writer(self.f, lineterminator="\n") if out.format == "csv" else None
        if not append:
            if self._csv:
                self._csv.writerow(COLUMNS)
            elif out.format == "json":
                self.f.write('{"model": ' + json.dumps(model) + ',\n "results": [')
            self.f.flush()

    def write(self, r: Any) -> None:
        self.counts["scored" if r.ok else "failed"] += 1
        if self._csv:
            self._csv.writerow([r.image, "" if r.score is None else f"{r.score:.4f}", r.error, r.error_kind])
        else:
            line = json.dumps(r.to_dict(), ensure_ascii=False)
            if self.out.format == "json":
                line = ("\n  " if self.counts.total() == 1 else ",\n  ") + line
            else:
                line += "\n"
            self.f.write(line)
        self.f.flush()

    def close(self, summary: dict[str, Any], interrupted: bool = False) -> None:
        if self.out.format == "json":
            self.f.write("\n ],\n \"summary\": " + json.dumps(summary) + "}\n")
        self.f.flush()
        if not self.out.to_stdout:
            self.f.close()
            self._write_record(finished=not interrupted, summary=summary)

    def _write_record(self, finished: bool, summary: dict[str, Any] | None = None) -> None:
        from . import __version__

        body = {"lmliqa_version": __version__, "format": self.out.format, "output": os.path.basename(self.out.path),
                "model": self.model, "identity": self.identity, "started": self.started,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z") if finished else None,
                "interrupted": summary is not None and not finished, "summary": summary}
        tmp = self.out.record.with_name(self.out.record.name + ".tmp")
        tmp.write_text(json.dumps(body, indent=2))
        os.replace(tmp, self.out.record)


@dataclass
class Done:
    """What an earlier run already wrote: rows per image (scored or failed: a row is final) and how many failed."""

    rows: Counter[str]
    failed: int = 0


def resume_state(out: Output, identity: dict[str, Any]) -> Done:
    """What OUT already holds, after checking that OUT was written by the same model and dropping a last row the
    interruption cut off. A missing OUT: nothing done."""
    if out.to_stdout:
        raise ResumeError("--resume needs an output file (--csv FILE or --jsonl FILE), not standard output")
    if out.format not in RESUMABLE:
        raise ResumeError(f"--resume appends rows; a {out.format.upper()} document cannot be appended to: use "
                          "--csv or --jsonl")
    path = Path(out.path)
    if not path.exists():
        return Done(Counter())
    if not out.record.is_file():
        raise ResumeError(f"{path} has no {out.record.name}, so which model wrote it is unknown; score into a new file")
    record = json.loads(out.record.read_text())
    if record.get("format") != out.format:
        raise ResumeError(f"{path} holds {record.get('format')} rows; resume it with the same format")
    old = record.get("identity", {})
    changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
    if changed:
        detail = "; ".join(f"{k}: {old.get(k)} -> {identity.get(k)}" for k in changed)
        raise ResumeError(f"{path} was written by another model or setting ({detail}); rows from two models must not "
                          "mix: score into a new file")
    _drop_partial_row(path)
    text = path.read_text(encoding="utf-8")
    done = Done(Counter())
    if out.format == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        if rows and tuple(rows[0]) != COLUMNS:
            raise ResumeError(f"{path}: the first row is not the header {','.join(COLUMNS)}")
        for r in rows[1:]:
            if len(r) != len(COLUMNS):
                raise ResumeError(f"{path}: a row of {len(r)} fields is not a row lmliqa wrote: {r[:4]}")
            done.rows[r[0]] += 1
            done.failed += bool(r[2])
    else:
        for i, line in enumerate(text.splitlines(), 1):
            try:
                row = json.loads(line)
                done.rows[row["image"]] += 1
                done.failed += bool(row["error"])
            except (ValueError, KeyError, TypeError):
                raise ResumeError(f"{path}:{i}: not a row lmliqa wrote") from None
    return done


def _drop_partial_row(path: Path) -> None:
    """Cut the file back to its last complete line (a row is written whole or, when killed mid-write, dropped)."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
