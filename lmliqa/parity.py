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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from .data import open_dataset
from .runtimes import SUFFIXES, load
from .runtimes.base import ArtifactError, BackendUnavailable

# Gates (score units on the 0-100 scale): FP32 backends must agree with torch to 0.01, reduced precision to 0.5
# (max |d|); INT8 models keep the ranking (SRCC vs the FP32 parent >= 0.99) and mean |d| <= 1.0.
TOLERANCE = {"fp32": 0.01, "bf16": 0.5, "fp16": 0.5}
INT8_GATE = {"srcc_vs_torch": 0.99, "mean_abs": 1.0}


def gate(row: dict[str, Any]) -> tuple[bool, str]:
    """(pass, rule) for one verified row."""
    if str(row["precision"]).startswith("int8"):
        ok = row["srcc_vs_torch"] >= INT8_GATE["srcc_vs_torch"] and row["mean_abs"] <= INT8_GATE["mean_abs"]
        return ok, f"SRCC >= {INT8_GATE['srcc_vs_torch']}, mean <= {INT8_GATE['mean_abs']}"
    tol = TOLERANCE.get(row["precision"], 0.5)
    if row.get("weights") == "fp16":      # f32 compute on fp16 weights is a reduced-precision artifact
        tol = max(tol, TOLERANCE["fp16"])
    return row["max_abs"] <= tol, f"max <= {tol}"


def artifact_size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    if path.suffix == ".xml":
        return (path.stat().st_size + path.with_suffix(".bin").stat().st_size) / 1e6
    return path.stat().st_size / 1e6
PRECISIONS = {"onnxruntime": (None,), "openvino": ("fp32", "bf16", "fp16"), "coreml": (None,),
              "tensorrt": (None,)}


@dataclass
class Candidate:
    path: Path
    backend: str


def discover(models: Path) -> list[Candidate]:
    """Artifacts under a folder written by `lmliqa export` (one level deep: OpenVINO IR lives in a folder)."""
    out = []
    for p in sorted(models.iterdir()):
        if p.is_dir() and p.suffix != ".mlpackage":
            if any(p.glob("*.xml")):
                out.append(Candidate(p, "openvino"))
        elif p.suffix.lower() in SUFFIXES and SUFFIXES[p.suffix.lower()] != "torch":
            out.append(Candidate(p, SUFFIXES[p.suffix.lower()]))
    return out


def rank_flip_rate(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of image pairs ordered differently by a and b (pairs tied in a are skipped)."""
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(len(a), k=1)
    da, db = da[iu], db[iu]
    keep = da != 0
    return float(np.mean(da[keep] != db[keep])) if keep.any() else 0.0


def compare(ref: np.ndarray, got: np.ndarray, mos: np.ndarray, names: list[str], worst: int = 5) -> dict[str, Any]:
    err = np.abs(got - ref)
    order = np.argsort(-err)[:worst]
    return {
        "n": int(len(ref)),
        "max_abs": float(err.max()), "mean_abs": float(err.mean()), "p95_abs": float(np.percentile(err, 95)),
        "srcc_vs_torch": float(stats.spearmanr(got, ref)[0]), "plcc_vs_torch": float(stats.pearsonr(got, ref)[0]),
        "rank_flip_rate": rank_flip_rate(ref, got),
        "srcc_vs_mos": float(stats.spearmanr(got, mos)[0]), "plcc_vs_mos": float(stats.pearsonr(got, mos)[0]),
        "worst": [{"image": names[i], "torch": float(ref[i]), "backend": float(got[i]), "abs": float(err[i])}
                  for i in order],
    }


def run_parity(checkpoint: str | Path, models: str | Path, data: str, limit: int | None = None,
               threads: int | None = None, out: str | Path | None = None) -> dict[str, Any]:
    from .models.weights import sha256_file

    ds = open_dataset(data)
    records = ds.records[:limit] if limit else ds.records
    names = [str(r.path) for r in records]
    mos = np.array([ds.label.to_training(r.mos) for r in records], dtype=np.float64)
    reference = load(checkpoint, backend="torch", threads=threads)
    ref_results = list(reference.score_many(names))
    ok = [i for i, r in enumerate(ref_results) if r.ok]
    ref = np.array([ref_results[i].score for i in ok])
    names_ok, mos_ok = [names[i] for i in ok], mos[ok]
    ckpt_sha = sha256_file(checkpoint)
    rows, capability = [], []
    for cand in discover(Path(models)):
        for precision in PRECISIONS[cand.backend]:
            row: dict[str, Any] = {"artifact": cand.path.name, "backend": cand.backend, "precision": precision}
            try:
                scorer = load(cand.path, backend=cand.backend, precision=precision, threads=threads)
            except BackendUnavailable as exc:
                status = _not_runnable(cand, precision, exc)
                capability.append({**row, "precision": precision or "stored", "status": status})
                continue
            except (ArtifactError, ValueError) as exc:
                capability.append({**row, "precision": precision or "stored", "status": f"unsupported: {exc}"})
                continue
            row["precision"] = scorer.precision
            if scorer.metadata.get("weights") == "fp16":
                row["weights"] = "fp16"
            src = scorer.metadata.get("source_checkpoint_sha256")
            if src and src != ckpt_sha:
                capability.append({**row, "status": "unsupported: exported from another checkpoint "
                                                     f"(sha256 {src[:12]}..., not {ckpt_sha[:12]}...)"})
                continue
            got_results = list(scorer.score_many([names[i] for i in ok]))
            got = np.array([r.score if r.ok else np.nan for r in got_results])
            if np.isnan(got).any():
                capability.append({**row, "status": "failed: some images failed on this backend only"})
                continue
            row.update(compare(ref, got, mos_ok, names_ok))
            row["scores"] = got.tolist()
            row["size_mb"] = artifact_size_mb(cand.path)
            row["gate_pass"], row["gate"] = gate(row)
            rows.append(row)
            if scorer.detail:
                row["detail"] = scorer.detail
            capability.append({**{k: row[k] for k in ("artifact", "backend", "precision")},
                               "status": "verified" + (f" ({scorer.detail})" if scorer.detail else ""),
                               "gate_pass": row["gate_pass"]})
    torch_vs_mos = {"srcc": float(stats.spearmanr(ref, mos_ok)[0]), "plcc": float(stats.pearsonr(ref, mos_ok)[0])}
    report = {"checkpoint": str(checkpoint), "checkpoint_sha256": ckpt_sha, "data": data, "n_images": len(ok),
              "n_failed_reference": len(names) - len(ok), "torch_vs_mos": torch_vs_mos, "rows": rows,
              "capability": capability, "images": names_ok, "torch_scores": ref.tolist(), "mos": mos_ok.tolist()}
    if out:
        write_report(report, Path(out))
    return report


def _not_runnable(cand: Candidate, precision: str | None, exc: Exception) -> str:
    if cand.backend == "coreml" and sys.platform != "darwin":
        from .runtimes.coreml import read_metadata

        try:  # inspect the package: metadata and spec readable off macOS
            meta = read_metadata(cand.path)
            rt = meta.get("weights_roundtrip")
            extra = (f"; weights round trip: min SQNR {rt['min_sqnr_db']:.1f} dB over {rt['n_weights_compared']} "
                     "compressed weights" if rt and rt.get("min_sqnr_db") is not None else "")
            return (f"simulated: package and metadata checked ({meta.get('precision')}{extra}); "
                    "predict needs macOS")
        except Exception as inner:
            return f"exported, not verified: {inner}"
    if cand.backend == "openvino" and "not the requested" in str(exc):
        return f"unsupported: {exc}"
    return f"exported, not verified: {exc}"


def markdown_table(report: dict[str, Any]) -> str:
    lines = [f"Parity against torch FP32 on {report['n_images']} images of `{report['data']}` "
             f"(torch vs MOS: SRCC {report['torch_vs_mos']['srcc']:.4f}, PLCC {report['torch_vs_mos']['plcc']:.4f})",
             "",
             "| artifact | backend | precision | size MB | max abs | mean abs | p95 abs | SRCC vs torch | rank flips | "
             "SRCC vs MOS | PLCC vs MOS | gate |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['artifact']} | {r['backend']} | {r['precision']} | {r.get('size_mb', float('nan')):.1f} | "
                     f"{r['max_abs']:.4g} | "
                     f"{r['mean_abs']:.4g} | {r['p95_abs']:.4g} | {r['srcc_vs_torch']:.5f} | "
                     f"{r['rank_flip_rate']:.4f} | {r['srcc_vs_mos']:.4f} | {r['plcc_vs_mos']:.4f} | "
                     f"{'pass' if r['gate_pass'] else 'FAIL'} ({r['gate']}) |")
    lines += ["", "| artifact | backend | precision | capability |", "|---|---|---|---|"]
    for c in report["capability"]:
        lines.append(f"| {c['artifact']} | {c['backend']} | {c['precision']} | {c['status']} |")
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
