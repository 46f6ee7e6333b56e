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
from .manifest import FileCheck, check_files, read_manifest


@dataclass
class VerifyReport:
    folder: Path
    files: FileCheck
    probes: list[golden.ProbeCheck] = field(default_factory=list)
    not_checked: list[tuple[str, str]] = field(default_factory=list)   # (artifact, why)
    errors: list[tuple[str, str]] = field(default_factory=list)        # (artifact, what went wrong)

    @property
    def ok(self) -> bool:
        return self.files.ok and not self.errors and all(p.ok for p in self.probes)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "ok": self.ok,
                "files": {"checked": self.files.checked, "missing": self.files.missing, "extra": self.files.extra,
                          "changed": self.files.changed},
                "probes": [{"artifact": p.artifact, "n": p.n, "max_abs": p.max_abs, "tolerance": p.tolerance,
                            "worst": p.worst, "ok": p.ok} for p in self.probes],
                "not_checked": [{"artifact": a, "why": w} for a, w in self.not_checked],
                "errors": [{"artifact": a, "error": e} for a, e in self.errors]}

    def text(self) -> str:
        f = self.files
        lines = [f"{self.folder}: {f.checked} files re-hashed against manifest.json: "
                 + ("all match" if f.ok else f"{len(f.changed)} changed, {len(f.missing)} missing, "
                                             f"{len(f.extra)} extra")]
        lines += [f"  {x}" for x in f.lines()]
        lines += [f"  {p.line()}" for p in self.probes]
        lines += [f"  FAIL {a}: {e}" for a, e in self.errors]
        if self.not_checked:
            lines.append("not checked here:")
            lines += [f"  {a}: {w}" for a, w in self.not_checked]
        lines.append("verify: OK" if self.ok else "verify: FAILED")
        return "\n".join(lines)


def verify_release(folder: str | Path, threads: int | None = None) -> VerifyReport:
    from .runtimes import load
    from .runtimes.base import BackendUnavailable

    folder = Path(folder)
    manifest = read_manifest(folder)
    report = VerifyReport(folder, check_files(folder, manifest))
    gold_dir = folder / "golden"
    if not (gold_dir / golden.GOLDEN).is_file():
        report.errors.append(("golden", f"{gold_dir / golden.GOLDEN} is missing"))
        return report
    gold = golden.read_golden(gold_dir)
    bad = set(report.files.changed) | set(report.files.missing)
    if any(f.startswith("golden/") for f in bad):
        report.errors.append(("golden", "golden probe files differ from the manifest; no probe was scored"))
        return report
    for name, art in manifest["artifacts"].items():
        if any(f == name or f.startswith(name + "/") for f in bad):
            report.errors.append((name, "its files do not match the manifest; not scored"))
            continue
        try:
            scorer = load(folder / name, backend=art["target"], threads=threads)
        except BackendUnavailable as exc:
            report.not_checked.append((name, str(exc)))
            continue
        except Exception as exc:     # noqa: BLE001 - reported per artifact; the others are still checked
            report.errors.append((name, f"{type(exc).__name__}: {exc}"))
            continue
        report.probes.append(golden.check_probes(gold, name, golden.score_probes(scorer, gold_dir)))
    return report
