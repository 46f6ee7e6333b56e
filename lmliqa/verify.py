"""`lmliqa verify DIR`: is this release folder the one that was released, and does it still score like it?

1. every file is re-hashed against ``manifest.json``: missing, extra and changed files are listed;
2. the golden probes are scored by every artifact whose target runs here and compared with the reference
   scores, within each artifact's tolerance; what cannot run here is listed with the reason.

Exit status 0 only when everything that was checked holds. Torch-free, like the runtimes it loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import golden
from .errors import BackendUnavailable
from .manifest import FileCheck, check_files, read_manifest
from .stages import Outcome, StageResult, Step


@dataclass
class VerifyReport:
    folder: Path
    files: FileCheck
    results: list[StageResult] = field(default_factory=list)    # one per artifact: probes checked, or why not

    @property
    def probes(self) -> list[StageResult]:
        return [r for r in self.results if r.fidelity is not None]

    @property
    def not_checked(self) -> list[StageResult]:
        return [r for r in self.results if r.outcome is Outcome.NOT_VERIFIED]

    @property
    def errors(self) -> list[StageResult]:
        return [r for r in self.results if r.outcome is Outcome.FAILED]

    @property
    def ok(self) -> bool:
        return self.files.ok and not any(r.failed for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "ok": self.ok,
                "files": {"checked": self.files.checked, "missing": self.files.missing, "extra": self.files.extra,
                          "changed": self.files.changed},
                "results": [r.to_dict() for r in self.results]}

    def text(self) -> str:
        f = self.files
        lines = [f"{self.folder}: {f.checked} files re-hashed against manifest.json: "
                 + ("all match" if f.ok else f"{len(f.changed)} changed, {len(f.missing)} missing, "
                                             f"{len(f.extra)} extra")]
        lines += [f"  {x}" for x in f.lines()]
        lines += [f"  {golden.probe_line(r)}" for r in self.probes]
        lines += [f"  FAIL {r.artifact}: {r.reason}" for r in self.errors]
        if self.not_checked:
            lines.append("not checked here:")
            lines += [f"  {r.artifact}" + ("" if r.platform == "native" else f" on {r.platform}") + f": {r.reason}"
                      for r in self.not_checked]
        lines.append("verify: OK" if self.ok else "verify: FAILED")
        return "\n".join(lines)


def verify_release(folder: str | Path, threads: int | None = None, platforms: tuple[str, ...] = ("native",),
                   unbundled: dict[str, str] | None = None) -> VerifyReport:
    """FOLDER's files against its manifest, and its golden probes on every platform of PLATFORMS that runs each
    artifact (an emulated platform that lacks an artifact's runtime is listed as not checked). UNBUNDLED: missing
    artifacts this install leaves out on purpose (file -> why), listed as not checked instead of failing."""
    from . import platforms as platform_registry

    chosen = [platform_registry.get(p) for p in platforms]
    folder = Path(folder)
    manifest = read_manifest(folder)
    report = VerifyReport(folder, check_files(folder, manifest))
    for name, why in (unbundled or {}).items():
        if name in report.files.missing and name in manifest["artifacts"]:
            report.files.missing.remove(name)
            report.results.append(StageResult(Step.VERIFY, manifest["artifacts"][name]["target"],
                                              Outcome.NOT_VERIFIED, why, artifact=name))
    gold_dir = folder / "golden"
    if not (gold_dir / golden.GOLDEN).is_file():
        report.results.append(_failed("golden", f"{gold_dir / golden.GOLDEN} is missing"))
        return report
    gold = golden.read_golden(gold_dir)
    bad = set(report.files.changed) | set(report.files.missing)
    if any(f.startswith("golden/") for f in bad):
        report.results.append(_failed("golden", "golden probe files differ from the manifest; no probe was scored"))
        return report
    for name, art in manifest["artifacts"].items():
        if name in (unbundled or {}) and not (folder / name).exists():
            continue
        if any(f == name or f.startswith(name + "/") for f in bad):
            report.results.append(_failed(name, "its files do not match the manifest; not scored", art["target"]))
            continue
        for where in chosen:
            if not where.covers(art["target"]):
                if not where.native:
                    report.results.append(StageResult(Step.VERIFY, art["target"], Outcome.NOT_VERIFIED,
                                                      f"{where.name}: {where.why_not(art['target'])}", artifact=name,
                                                      platform=where.name))
                continue
            report.results.append(_check(folder, name, art["target"], gold, threads, where.name))
    return report


def _check(folder: Path, name: str, target: str, gold: dict[str, Any], threads: int | None,
           platform: str = "native") -> StageResult:
    """One shipped artifact's probes on PLATFORM, or why they could not be scored here."""
    from .runtimes import load

    try:
        scorer = load(folder / name, target=target, threads=threads, platform=platform)
    except BackendUnavailable as exc:
        return StageResult(Step.VERIFY, target, Outcome.NOT_VERIFIED, str(exc), artifact=name, platform=platform)
    except Exception as exc:     # noqa: BLE001 - reported per artifact; the others are still checked
        return _failed(name, f"{type(exc).__name__}: {exc}", target)
    with scorer:
        got = golden.score_probes(scorer, folder / "golden")
    return golden.check_probes(gold, name, got, target=target, platform=platform)


def _failed(artifact: str, why: str, target: str = "") -> StageResult:
    return StageResult(Step.VERIFY, target, Outcome.FAILED, why, artifact=artifact)
