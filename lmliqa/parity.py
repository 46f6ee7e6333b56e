"""Score-level parity of every exported artifact against the torch reference, on real images.

For each artifact x precision that can run here: max / mean / p95 |Δscore| in label units, SRCC and PLCC
between backend and torch, the rank-flip rate over image pairs, SRCC/PLCC against MOS for both, and the
worst images. Every backend x precision also gets a capability status:

- ``verified``: it ran here and was compared with torch on the images;
- ``simulated``: checked without executing it natively (Core ML off macOS: package spec and metadata);
- ``exported, not verified: reason``: the artifact exists but cannot run here;
- ``unsupported: reason``: the backend cannot produce or run that precision.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from . import targets as registry
from .data import open_dataset
from .fidelity import compare
from .runtimes import load
from .runtimes.base import ArtifactError, BackendUnavailable, PrecisionUnsupported
from .targets import Artifact, Precision


class Outcome(str, Enum):
    VERIFIED = "verified"
    SIMULATED = "simulated"
    EXPORT_ONLY = "exported, not verified"
    UNSUPPORTED = "unsupported"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Status:
    outcome: Outcome
    note: str = ""

    def __str__(self) -> str:
        return f"{self.outcome}" + (f" ({self.note})" if self.note and self.outcome is Outcome.VERIFIED else
                                    f": {self.note}" if self.note else "")


def artifact_size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    if path.suffix == ".xml":
        return (path.stat().st_size + path.with_suffix(".bin").stat().st_size) / 1e6
    return path.stat().st_size / 1e6


def run_parity(checkpoint: str | Path, models: str | Path, data: str, limit: int | None = None,
               threads: int | None = None, out: str | Path | None = None, skip: Collection[str] = ()) -> dict[str, Any]:
    """Every artifact in MODELS x every precision its target can execute, against the torch reference, on the
    images of DATA (the first LIMIT of them, leaving out the paths in SKIP, e.g. the calibration images)."""
    from .manifest import sha256_file

    ds = open_dataset(data)
    records = [r for r in ds.records if str(r.path) not in skip]
    records = records[:limit] if limit else records
    names = [str(r.path) for r in records]
    mos = np.array([ds.label.to_training(r.mos) for r in records], dtype=np.float64)
    reference = load(checkpoint, backend="torch", threads=threads)
    ref_results = list(reference.score_many(names))
    ok = [i for i, r in enumerate(ref_results) if r.ok]
    ref = np.array([ref_results[i].score for i in ok])
    names_ok, mos_ok = [names[i] for i in ok], mos[ok]
    ckpt_sha = sha256_file(checkpoint)
    rows, capability = [], []
    for art in registry.discover(Path(models)):
        for precision in art.target.run_precisions(art.precision):
            row, status = _measure(art, precision, names_ok, ref, mos_ok, ckpt_sha, threads)
            capability.append({"artifact": art.name, "target": art.target.name, "backend": art.target.runtime,
                               "precision": (row or {}).get("precision") or (precision or art.precision).value,
                               "status": str(status), "outcome": status.outcome.value,
                               **({"gate_pass": row["gate_pass"]} if row else {})})
            if row:
                rows.append(row)
    torch_vs_mos = {"srcc": float(stats.spearmanr(ref, mos_ok)[0]), "plcc": float(stats.pearsonr(ref, mos_ok)[0])}
    from .provenance import provenance

    report = {"provenance": provenance(), "checkpoint": str(checkpoint), "checkpoint_sha256": ckpt_sha, "data": data,
              "n_images": len(ok),
              "n_failed_reference": len(names) - len(ok), "torch_vs_mos": torch_vs_mos, "rows": rows,
              "capability": capability, "images": names_ok, "torch_scores": ref.tolist(), "mos": mos_ok.tolist()}
    if out:
        write_report(report, Path(out))
    return report


def _measure(art: Artifact, precision: Precision | None, names: list[str], ref: np.ndarray, mos: np.ndarray,
             ckpt_sha: str, threads: int | None) -> tuple[dict[str, Any] | None, Status]:
    """(row, status) of one artifact x precision: a measured row when it runs here, else why not."""
    try:
        scorer = load(art.path, backend=art.target.name, precision=precision, threads=threads)
    except PrecisionUnsupported as exc:
        return None, Status(Outcome.UNSUPPORTED, str(exc))
    except BackendUnavailable:
        try:
            note = art.target.inspect(art.path)
        except Exception as inner:
            note, exc = None, inner
        return None, Status(Outcome.SIMULATED, note) if note else Status(Outcome.EXPORT_ONLY, str(exc))
    except (ArtifactError, ValueError) as exc:
        return None, Status(Outcome.UNSUPPORTED, str(exc))
    src = scorer.metadata.get("source_checkpoint_sha256")
    if src and src != ckpt_sha:
        return None, Status(Outcome.UNSUPPORTED, f"exported from another checkpoint (sha256 {src[:12]}..., not "
                                                 f"{ckpt_sha[:12]}...)")
    got = np.array([r.score if r.ok else np.nan for r in scorer.score_many(names)])
    if np.isnan(got).any():
        return None, Status(Outcome.FAILED, f"{int(np.isnan(got).sum())} images failed on this backend only")
    fid = compare(ref, got, mos, names)
    gate = art.target.gate(scorer.precision, scorer.weights)
    row: dict[str, Any] = {"artifact": art.name, "target": art.target.name, "backend": scorer.backend,
                           "precision": scorer.precision.value, "weights": scorer.weights.value,
                           **fid.to_dict(), "scores": got.tolist(), "size_mb": artifact_size_mb(art.path),
                           "gate": str(gate), "gate_pass": gate.check(fid)}
    if scorer.detail:
        row["detail"] = scorer.detail
    return row, Status(Outcome.VERIFIED, scorer.detail)


def markdown_table(report: dict[str, Any]) -> str:
    lines = [f"Parity against torch FP32 on {report['n_images']} images of `{report['data']}` "
             f"(torch vs MOS: SRCC {report['torch_vs_mos']['srcc']:.4f}, PLCC {report['torch_vs_mos']['plcc']:.4f})",
             "",
             "| artifact | target | runtime | precision | size MB | max abs | mean abs | p95 abs | SRCC vs torch | "
             "rank flips (all / > 1 apart) | SRCC vs MOS | PLCC vs MOS | gate |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['artifact']} | {r['target']} | {r['backend']} | {r['precision']} | "
                     f"{r.get('size_mb', float('nan')):.1f} | {r['max_abs']:.4g} | "
                     f"{r['mean_abs']:.4g} | {r['p95_abs']:.4g} | {r['srcc_vs_ref']:.5f} | "
                     f"{r['rank_flip_rate']:.4f} / {r['material_flip_rate']:.4f} | {r['srcc_vs_mos']:.4f} | "
                     f"{r['plcc_vs_mos']:.4f} | "
                     f"{'pass' if r['gate_pass'] else 'FAIL'} ({r['gate']}) |")
    lines += ["", "| artifact | target | precision | capability |", "|---|---|---|---|"]
    for c in report["capability"]:
        lines.append(f"| {c['artifact']} | {c['target']} | {c['precision']} | {c['status']} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """parity.json, parity.md and one scatter plot (backend vs torch) per verified row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "parity.json", out / "parity.md"]
    written[0].write_text(json.dumps(report, indent=2))
    written[1].write_text(markdown_table(report))
    ref = np.asarray(report["torch_scores"])
    for row in report["rows"]:
        got = np.asarray(row["scores"])
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(ref, got, s=8)
        lo, hi = float(min(ref.min(), got.min())), float(max(ref.max(), got.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("torch FP32 score")
        ax.set_ylabel(f"{row['backend']} {row['precision']} score")
        ax.set_title(f"{row['artifact']} ({row['precision']}): max |d| {row['max_abs']:.3g}", fontsize=9)
        fig.tight_layout()
        path = out / f"parity_{row['artifact'].replace('.', '_')}_{row['precision']}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
