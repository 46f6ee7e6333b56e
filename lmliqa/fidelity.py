"""How far an artifact's scores are from the reference's, and the gates they must pass: one comparison for
`lmliqa parity`, the validation in `lmliqa quantize` and the tests.

Scores are per image on the label scale (0-100 for LIVE-C), so every tolerance is in MOS units. Torch-free
(numpy + scipy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Pairs the reference scores closer than this (label units) are not gated on their order: LIVE-C's ratings have a
# median standard deviation of 19.3 MOS points over ~175 raters per photo, a standard error of ~1.5 points, so
# even the opinion scores do not order such pairs reliably. Both rates are always reported.
FLIP_MARGIN = 1.0
# Below this many photos the SRCC criterion of a gate is not applied: SRCC >= 0.99 over 8 photos allows no swap at all,
# so one pair the reference scores 0.3 apart decides it (measured: the HTP INT8 artifact on 8 photos, SRCC 0.976 from
# one such pair). The flip rate over pairs more than FLIP_MARGIN apart is the ranking criterion there.
MIN_SRCC_PHOTOS = 20


def rank_flip_rate(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> float:
    """Fraction of image pairs ordered differently by a and b, among the pairs a separates by more than MARGIN
    (margin 0: every pair not tied in a)."""
    diff_a = a[:, None] - a[None, :]
    da = np.sign(diff_a)
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(len(a), k=1)
    da, db, gap = da[iu], db[iu], np.abs(diff_a[iu])
    keep = (da != 0) & (gap > margin) if margin > 0 else da != 0
    return float(np.mean(da[keep] != db[keep])) if keep.any() else 0.0


@dataclass(frozen=True)
class Fidelity:
    """Agreement of GOT (an artifact's per-image scores) with REF (the reference's), and of both with MOS."""

    n: int
    max_abs: float
    mean_abs: float
    p95_abs: float
    srcc_vs_ref: float
    plcc_vs_ref: float
    rank_flip_rate: float                 # every pair
    material_flip_rate: float             # pairs the reference separates by more than FLIP_MARGIN (gated)
    srcc_vs_mos: float | None = None
    plcc_vs_mos: float | None = None
    srcc_vs_mos_ref: float | None = None
    worst: list[dict[str, Any]] = field(default_factory=list)
    p99_abs: float | None = None          # (None in records written before it was kept)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(ref: np.ndarray, got: np.ndarray, mos: np.ndarray | None = None, names: list[str] | None = None,
            worst: int = 5) -> Fidelity:
    from scipy import stats

    ref, got = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape or ref.ndim != 1 or len(ref) < 2:
        raise ValueError(f"need two equal-length score vectors of at least 2 images, got {ref.shape}, {got.shape}")
    err = np.abs(got - ref)
    out: dict[str, Any] = {
        "n": int(len(ref)), "max_abs": float(err.max()), "mean_abs": float(err.mean()),
        "p95_abs": float(np.percentile(err, 95)), "p99_abs": float(np.percentile(err, 99)),
        "srcc_vs_ref": float(stats.spearmanr(got, ref)[0]), "plcc_vs_ref": float(stats.pearsonr(got, ref)[0]),
        "rank_flip_rate": rank_flip_rate(ref, got),
        "material_flip_rate": rank_flip_rate(ref, got, FLIP_MARGIN),
    }
    if mos is not None:
        mos = np.asarray(mos, dtype=np.float64)
        keep = ~np.isnan(mos)
        if keep.sum() >= 3:
            out["srcc_vs_mos"] = float(stats.spearmanr(got[keep], mos[keep])[0])
            out["plcc_vs_mos"] = float(stats.pearsonr(got[keep], mos[keep])[0])
            out["srcc_vs_mos_ref"] = float(stats.spearmanr(ref[keep], mos[keep])[0])
    if names is not None:
        out["worst"] = [{"image": names[i], "reference": float(ref[i]), "artifact": float(got[i]),
                         "abs": float(err[i])} for i in np.argsort(-err)[:worst]]
    return Fidelity(**out)


@dataclass(frozen=True)
class Gate:
    """A fidelity tolerance; None = not checked. Score units on the label scale."""

    max_abs: float | None = None
    mean_abs: float | None = None
    min_srcc: float | None = None        # SRCC against the reference
    max_rank_flips: float | None = None  # fraction of the image pairs the reference separates by > FLIP_MARGIN

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)

    def check(self, f: Fidelity) -> bool:
        srcc_applies = self.min_srcc is not None and f.n >= MIN_SRCC_PHOTOS
        return ((self.max_abs is None or f.max_abs <= self.max_abs)
                and (self.mean_abs is None or f.mean_abs <= self.mean_abs)
                and (not srcc_applies or f.srcc_vs_ref >= self.min_srcc)
                and (self.max_rank_flips is None or f.material_flip_rate <= self.max_rank_flips))

    def __str__(self) -> str:
        parts = [f"max <= {self.max_abs}" if self.max_abs is not None else "",
                 f"SRCC >= {self.min_srcc}" if self.min_srcc is not None else "",
                 f"mean <= {self.mean_abs}" if self.mean_abs is not None else "",
                 f"flips of pairs > {FLIP_MARGIN:g} apart <= {self.max_rank_flips:.0%}" if self.max_rank_flips
                 is not None else ""]
        return ", ".join(p for p in parts if p)


def gate_confidence(gate: Gate, ref: np.ndarray, got: np.ndarray, n_boot: int = 400, seed: int = 0) -> float:
    """How sure a gate's verdict on a few dozen images is: the fraction of bootstrap resamples of the images (drawn
    with replacement, the same size) on which GOT still holds GATE against REF. A verdict near the gate's edge (an
    artifact passing at mean |d| 0.98 of 1.0 on 40 photos) comes out near 0.5, and such an artifact misses the gate
    on the next photos about as often as it passes (measured: ExecuTorch INT8 of the CI model passed on its 40
    validation photos and missed on 24 others)."""
    ref, got = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = len(ref)
    held = 0
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        r, g = ref[idx], got[idx]
        if np.ptp(r) == 0 or np.ptp(g) == 0:     # a degenerate draw (one image repeated): no ranking to check
            held += 1
            continue
        held += gate.check(compare(r, g))
    return held / n_boot


# FP32 artifacts agree with torch to 0.01; reduced float precision (fp16 / bf16 compute or fp16 weights) to 0.5
# (max |d|); quantized models keep the ranking: SRCC >= 0.99 against FP32, mean |d| <= 1.0, and <= 2 % of the pairs
# that FP32 separates by more than FLIP_MARGIN flipped.
EXACT = Gate(max_abs=0.01)
REDUCED = Gate(max_abs=0.5)
QUANTIZED = Gate(min_srcc=0.99, mean_abs=1.0, max_rank_flips=0.02)
