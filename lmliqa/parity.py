"""Score-level parity of every exported artifact against the torch reference, on real images.

For each artifact x precision its target can execute here: max / mean / p95 |Δscore| in label units, SRCC and PLCC
between backend and torch, the rank-flip rate over image pairs, SRCC/PLCC against MOS for both, and the worst
images, held to the artifact's gate. Every artifact x precision gets a :class:`lmliqa.stages.StageResult`:

- ``verified``: it ran here and was compared with torch on the images (``gate_pass`` says whether it holds);
- ``simulated``: checked without executing it natively (Core ML off macOS: package spec and metadata);
- ``exported, not verified: reason``: the artifact exists but cannot run here;
- ``unsupported: reason``: the backend cannot run that precision; ``failed``: it ran but lost images.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from . import platforms as platform_registry
from . import targets as registry
from .data import open_dataset
from .errors import ArtifactError, BackendUnavailable, PlatformError, PrecisionUnsupported
from .fidelity import compare
from .runtimes import load
from .stages import NATIVE, Outcome, StageResult, Step
from .targets import Artifact, Precision


@dataclass
class ParityReport:
    """The reference's scores on the photos and one result per artifact x precision."""

    checkpoint: str
    checkpoint_sha256: str
    data: str
    images: list[str]                  # the photos the reference scored (the others failed in torch too)
    torch_scores: np.ndarray
    mos: np.ndarray                    # on the training label scale
    n_failed_reference: int
    results: list[StageResult] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> list[StageResult]:
        """The measured results (verified here, with fidelity and gate)."""
        return [r for r in self.results if r.fidelity is not None]

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def torch_vs_mos(self) -> dict[str, float]:
        return {"srcc": float(stats.spearmanr(self.torch_scores, self.mos)[0]),
                "plcc": float(stats.pearsonr(self.torch_scores, self.mos)[0])}

    def row(self, artifact: str, precision: Precision | str | None = None,
            platform: str = NATIVE) -> StageResult | None:
        """The measured result of ARTIFACT on PLATFORM (executed in PRECISION, when given)."""
        return next((r for r in self.rows if r.artifact == artifact and r.platform == platform
                     and (precision is None or r.precision is Precision(precision))), None)

    def to_dict(self, scores: bool = True) -> dict[str, Any]:
        """parity.json (SCORES False: without the per-photo lists, for a terminal)."""
        out = {"provenance": self.provenance, "checkpoint": self.checkpoint,
               "checkpoint_sha256": self.checkpoint_sha256, "data": self.data, "n_images": self.n_images,
               "n_failed_reference": self.n_failed_reference, "torch_vs_mos": self.torch_vs_mos,
               "results": [r.to_dict() for r in self.results]}
        if scores:
            out.update(images=self.images, torch_scores=self.torch_scores.tolist(), mos=self.mos.tolist())
        else:
            for r in out["results"]:
                r["details"].pop("scores", None)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParityReport:
        return cls(d["checkpoint"], d["checkpoint_sha256"], d["data"], list(d["images"]),
                   np.asarray(d["torch_scores"], dtype=np.float64), np.asarray(d["mos"], dtype=np.float64),
                   d["n_failed_reference"], [StageResult.from_dict(r) for r in d["results"]], d.get("provenance", {}))


def run_parity(checkpoint: str | Path, models: str | Path, data: str, limit: int | None = None,
               threads: int | None = None, out: str | Path | None = None, skip: Collection[str] = (),
               platforms: Collection[str] = (NATIVE,), emulated_limit: int | None = None,
               simulated_limit: int | None = None, off_native: Container[Artifact] | None = None) -> ParityReport:
    """Every artifact in MODELS x every precision its target can execute x every platform of PLATFORMS, against the
    torch reference, on the images of DATA (the first LIMIT of them, leaving out the paths in SKIP, e.g. the
    calibration images). An emulated platform scores the first EMULATED_LIMIT of those images, a simulated target
    the first SIMULATED_LIMIT (default: its ``check_photos``; both run ~50-100x slower than this CPU); each row says
    on how many photos it was measured. OFF_NATIVE, when given, limits the platforms other than native to those
    artifacts (a release measures every artifact it built here, and on the device code paths the ones it ships)."""
    from .manifest import sha256_file
    from .provenance import provenance

    ds = open_dataset(data)
    records = [r for r in ds.records if str(r.path) not in skip]
    records = records[:limit] if limit else records
    names = [str(r.path) for r in records]
    mos = np.array([ds.label.to_training(r.mos) for r in records], dtype=np.float64)
    reference = registry.reference()
    ref_results = list(reference.load(checkpoint, threads=threads).score_many(names))
    ok = [i for i, r in enumerate(ref_results) if r.ok]
    report = ParityReport(str(checkpoint), sha256_file(checkpoint), data, [names[i] for i in ok],
                          np.array([ref_results[i].score for i in ok]), mos[ok], len(names) - len(ok),
                          provenance=provenance())
    chosen = [platform_registry.get(p) for p in platforms]
    for art in registry.discover(Path(models)):
        for where in chosen:
            if not where.native and off_native is not None and art not in off_native:
                continue
            if not where.covers(art.target.name):
                if not where.native:
                    report.results.append(StageResult(Step.PARITY, art.target.name, Outcome.UNSUPPORTED,
                                                      where.why_not(art.target.name), art.name, art.precision,
                                                      platform=where.name))
                continue
            limits = [(simulated_limit or art.target.check_photos) if art.target.check_photos else None,
                      None if where.native else emulated_limit]
            n = min((v for v in limits if v), default=None)
            for precision in art.target.run_precisions(art.precision):
                report.results.append(measure(art, precision, report, threads, where.name, n))
    _against_native(report)
    if out:
        write_report(report, Path(out))
    return report


def measure(art: Artifact, precision: Precision | None, report: ParityReport, threads: int | None,
            platform: str = NATIVE, n: int | None = None) -> StageResult:
    """One artifact x precision on PLATFORM against the report's reference scores (its first N photos): measured when
    it runs here, else why not."""
    asked = precision or art.precision
    result = StageResult(Step.PARITY, art.target.name, Outcome.VERIFIED, artifact=art.name, precision=asked,
                         platform=platform)
    try:
        scorer = load(art.path, target=art.target.name, precision=precision, threads=threads, platform=platform)
    except PlatformError as exc:
        return _not_run(result, Outcome.NOT_VERIFIED, str(exc))
    except PrecisionUnsupported as exc:
        return _not_run(result, Outcome.UNSUPPORTED, str(exc))
    except BackendUnavailable:
        try:
            note = art.target.inspect(art.path)
        except Exception as inner:     # noqa: BLE001 - the inspection's own failure is the reason then
            note, exc = None, inner
        return _not_run(result, Outcome.SIMULATED, note) if note else _not_run(result, Outcome.NOT_VERIFIED, str(exc))
    except (ArtifactError, ValueError) as exc:
        return _not_run(result, Outcome.UNSUPPORTED, str(exc))
    with scorer:
        other = other_checkpoint(scorer.metadata, report.checkpoint_sha256)
        if other:
            return _not_run(result, Outcome.UNSUPPORTED, other)
        images = report.images[:n] if n else report.images
        got = np.array([r.score if r.ok else np.nan for r in scorer.score_many(images)])
        if np.isnan(got).any():
            return _not_run(result, Outcome.FAILED, f"{int(np.isnan(got).sum())} images failed on this backend only")
        result.precision, result.weights = scorer.precision, scorer.weights
        k = len(images)
        result.fidelity = compare(report.torch_scores[:k], got, report.mos[:k], images)
        result.gate = art.target.gate(scorer.precision, scorer.weights)
        result.reason = scorer.detail
        result.details = {"runtime": scorer.backend, "scores": got.tolist(), "size_mb": art.target.size_mb(art.path),
                          **({"platform_runtime": scorer.about} if platform != NATIVE else {})}
    return result


def other_checkpoint(metadata: dict[str, Any], checkpoint_sha256: str) -> str | None:
    """Why an artifact (its embedded METADATA) is not an export of the checkpoint with CHECKPOINT_SHA256, or None
    when it is (or does not say)."""
    src = metadata.get("source_checkpoint_sha256")
    if src and src != checkpoint_sha256:
        return f"exported from another checkpoint (sha256 {src[:12]}..., not {checkpoint_sha256[:12]}...)"
    return None


def _against_native(report: ParityReport) -> None:
    """Each emulated row's scores against the same artifact's native ones on the same photos (details["vs_native"]):
    how far the platform's kernels move the scores, apart from the artifact's own error against torch."""
    for r in report.rows:
        native = report.row(r.artifact, r.precision) if r.platform != NATIVE else None
        if native is None:
            continue
        got = np.asarray(r.details["scores"])
        ref = np.asarray(native.details["scores"])[:len(got)]
        d = np.abs(got - ref)
        r.details["vs_native"] = {"n": int(len(got)), "max_abs": float(d.max()), "mean_abs": float(d.mean())}


def _not_run(result: StageResult, outcome: Outcome, reason: str) -> StageResult:
    result.outcome, result.reason = outcome, reason
    return result


def markdown_table(report: ParityReport) -> str:
    tv = report.torch_vs_mos
    lines = [f"Parity against torch FP32 on {report.n_images} images of `{report.data}` "
             f"(torch vs MOS: SRCC {tv['srcc']:.4f}, PLCC {tv['plcc']:.4f})", "",
             "| artifact | target | runtime | platform | precision | photos | size MB | max abs | mean abs | p95 abs | "
             "SRCC vs torch | rank flips (all / > 1 apart) | SRCC vs MOS | PLCC vs MOS | gate |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report.rows:
        f = r.fidelity
        lines.append(f"| {r.artifact} | {r.target} | {r.details['runtime']} | {r.platform} | {r.precision} | {f.n} | "
                     f"{r.details.get('size_mb', float('nan')):.1f} | {f.max_abs:.4g} | {f.mean_abs:.4g} | "
                     f"{f.p95_abs:.4g} | {f.srcc_vs_ref:.5f} | {f.rank_flip_rate:.4f} / {f.material_flip_rate:.4f} | "
                     f"{_opt(f.srcc_vs_mos)} | {_opt(f.plcc_vs_mos)} | "
                     f"{'pass' if r.gate_pass else 'FAIL'} ({r.gate}) |")
    lines += ["", "| artifact | target | platform | precision | capability |", "|---|---|---|---|---|"]
    for r in report.results:
        lines.append(f"| {r.artifact} | {r.target} | {r.platform} | {r.precision} | {r.status} |")
    return "\n".join(lines) + "\n"


def _opt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def write_report(report: ParityReport, out: Path) -> list[Path]:
    """parity.json, parity.md and one scatter plot (backend vs torch) per verified row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "parity.json", out / "parity.md"]
    written[0].write_text(json.dumps(report.to_dict(), indent=2))
    written[1].write_text(markdown_table(report))
    for row in report.rows:
        got = np.asarray(row.details["scores"])
        ref = report.torch_scores[:len(got)]
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(ref, got, s=8)
        lo, hi = float(min(ref.min(), got.min())), float(max(ref.max(), got.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("torch FP32 score")
        ax.set_ylabel(f"{row.details['runtime']} {row.precision} score" + ("" if row.platform == NATIVE
                                                                            else f" ({row.platform})"))
        ax.set_title(f"{row.artifact} ({row.precision}): max |d| {row.fidelity.max_abs:.3g}", fontsize=9)
        fig.tight_layout()
        where = "" if row.platform == NATIVE else f"_{row.platform}"
        path = out / f"parity_{row.artifact.replace('.', '_')}_{row.precision}{where}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
