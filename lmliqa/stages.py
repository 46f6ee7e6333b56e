"""What each step on a model's way to a device reports: one outcome vocabulary and one result type, shared by
export, quantize, parity, the golden probes and verify (torch-free).

A :class:`StageResult` says, for one target (and, where the step checks an artifact, one artifact x executed
precision x platform), what happened (:class:`Outcome`), why in words when it did not simply work, the files it
wrote, and, when it measured fidelity, the numbers (:class:`lmliqa.fidelity.Fidelity`) and the gate they were held
to. Modules pass these objects to each other; JSON exists only at the edges (``to_dict`` for evidence files and
manifests, ``from_dict`` to read them back).

``Outcome`` is what a step *did*; :class:`lmliqa.targets.Support` is what a machine *can* do with a target x
precision before anything runs (``Support.outcome`` maps one onto the other for the steps that could not run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .fidelity import Fidelity, Gate
from .targets import Precision, Support

NATIVE = "native"      # the platform every step runs on unless it says otherwise: this machine's own CPU


class Step(str, Enum):
    """The steps a model goes through (each reports StageResults)."""

    EXPORT = "export"
    QUANTIZE = "quantize"
    PARITY = "parity"
    GOLDEN = "golden"
    VERIFY = "verify"

    def __str__(self) -> str:
        return self.value


class Outcome(str, Enum):
    """What one step did for one target or artifact."""

    OK = "ok"                                   # written (export, quantize)
    PARTIAL = "partial"                         # some files written; the rest needs what this machine lacks
    VERIFIED = "verified"                       # ran here and was compared with the reference (see gate_pass)
    SIMULATED = "simulated"                     # checked without executing it natively (Core ML off macOS)
    NOT_VERIFIED = "exported, not verified"     # the artifact exists but cannot run here
    UNAVAILABLE = "unavailable"                 # the step's tools are not installed here
    UNSUPPORTED = "unsupported"                 # the target cannot produce or run this precision (here)
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    @property
    def wrote(self) -> bool:
        """Did the step leave files to use (OK or PARTIAL)?"""
        return self in (Outcome.OK, Outcome.PARTIAL)


# what a check step reports for an artifact whose target this machine supports only so far
FROM_SUPPORT = {Support.RUNS: Outcome.VERIFIED, Support.SIMULATED: Outcome.SIMULATED,
                Support.EXPORT_ONLY: Outcome.NOT_VERIFIED, Support.UNSUPPORTED: Outcome.UNSUPPORTED}


@dataclass
class StageResult:
    """One step's outcome for one target (export) or one artifact x executed precision x platform (the checks)."""

    step: Step
    target: str
    outcome: Outcome
    reason: str = ""                             # why, in words, when the outcome is not simply OK / VERIFIED
    artifact: str = ""                           # file (or IR folder) name
    precision: Precision | None = None           # the precision that executed (checks) or is stored (writes)
    weights: Precision | None = None             # how the artifact stores its weights, when not as it executes
    platform: str = NATIVE
    paths: list[str] = field(default_factory=list)
    fidelity: Fidelity | None = None
    gate: Gate | None = None
    details: dict[str, Any] = field(default_factory=dict)   # the step's own record (JSON-ready)

    @property
    def gate_pass(self) -> bool | None:
        """Whether the measured fidelity holds its gate (None: nothing was measured against a gate)."""
        if self.fidelity is None or self.gate is None:
            return None
        return self.gate.check(self.fidelity)

    @property
    def failed(self) -> bool:
        """A failure a release must stop on: the step failed, or what it measured misses its gate."""
        return self.outcome is Outcome.FAILED or self.gate_pass is False

    @property
    def status(self) -> str:
        """The outcome with its reason, as one phrase ('verified', 'simulated: package inspected', ...)."""
        if not self.reason:
            return str(self.outcome)
        if self.outcome is Outcome.VERIFIED:
            return f"{self.outcome} ({self.reason})"
        return f"{self.outcome}: {self.reason}"

    def line(self) -> str:
        """One line for a terminal."""
        name = self.artifact or self.target
        head = f"{name:<10} {self.outcome}" + (f" {self.precision}" if self.precision and self.artifact else "")
        if self.reason and self.outcome is not Outcome.VERIFIED:
            head += f": {self.reason}"
        if self.fidelity is not None:
            f = self.fidelity
            head += (f": SRCC vs reference {f.srcc_vs_ref:.4f}, mean |d| {f.mean_abs:.3f}, max |d| {f.max_abs:.3f}"
                     + (f", SRCC vs MOS {f.srcc_vs_mos:.4f} (reference {f.srcc_vs_mos_ref:.4f})"
                        if f.srcc_vs_mos is not None else ""))
            if self.gate is not None:
                head += f"; gate {self.gate}: {'pass' if self.gate_pass else 'FAIL'}"
        if self.paths and self.step is Step.EXPORT:
            head += f"  -> {', '.join(self.paths)}"
        return head

    # ------------------------------------------------------------------ the JSON edge
    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step.value, "target": self.target, "artifact": self.artifact,
                "outcome": self.outcome.value, "status": self.status, "reason": self.reason,
                "precision": self.precision.value if self.precision else None,
                "weights": self.weights.value if self.weights else None, "platform": self.platform,
                "paths": list(self.paths), "fidelity": self.fidelity.to_dict() if self.fidelity else None,
                "gate": self.gate.to_dict() if self.gate else None, "gate_text": str(self.gate) if self.gate else None,
                "gate_pass": self.gate_pass, "details": self.details}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageResult:
        return cls(Step(d["step"]), d["target"], Outcome(d["outcome"]), d.get("reason", ""), d.get("artifact", ""),
                   Precision(d["precision"]) if d.get("precision") else None,
                   Precision(d["weights"]) if d.get("weights") else None, d.get("platform", NATIVE),
                   list(d.get("paths", [])), Fidelity(**d["fidelity"]) if d.get("fidelity") else None,
                   Gate(**d["gate"]) if d.get("gate") else None, dict(d.get("details", {})))


def failures(results: list[StageResult]) -> list[str]:
    """One sentence per result a release must stop on."""
    out = []
    for r in results:
        if not r.failed:
            continue
        what = f"{r.step} {r.artifact or r.target}" + (f" {r.precision}" if r.precision and r.artifact else "")
        if r.outcome is Outcome.FAILED:
            out.append(f"{what}: {r.reason}")
        else:
            f = r.fidelity
            out.append(f"{what}: {r.gate} (max |d| {f.max_abs:.4g}, mean |d| {f.mean_abs:.4g}, SRCC "
                       f"{f.srcc_vs_ref:.5f}, flips {f.rank_flip_rate:.2%} / {f.material_flip_rate:.2%} of pairs > 1 "
                       "apart)")
    return out
