"""The model that ships inside the package: a release folder (``release/``: artifacts, ``manifest.json``, golden
probes, ``MODEL_CARD.md``) made by ``benchmarks/make_default_model.py`` (the command, data hash and commit are in
its manifest). `lmliqa score` without ``--model`` and ``lmliqa.runtimes.load()`` / ``load("default")`` use it.

Which shipped artifact a default scorer runs: the fastest, by the release's own batch-1 timing (evidence/bench.json),
among those that passed every gate and whose runtime is installed (`lmliqa info` shows the order); the torch
reference (the FP16-stored checkpoint) only when no torch-free runtime is. Today's release ships the INT8 ONNX
(``pip install 'lmliqa[onnx]'``) and the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmliqa import targets
from lmliqa.manifest import read_manifest

RELEASE = Path(__file__).parent / "release"
# the order among shipped artifacts the release did not time (torch-free runtimes first, the torch reference last)
PREFERENCE = ("litert", "openvino", "onnx", "executorch", "torch")


def manifest() -> dict[str, Any]:
    return read_manifest(RELEASE)


def measured_ms(release: Path = RELEASE) -> dict[str, float]:
    """Artifact -> its ms per photo at batch 1 as the release measured it (evidence/bench.json; {} when untimed)."""
    import json

    path = release / "evidence" / "bench.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text()).get("rows", [])
    return {r["artifact"]: float(r["median_ms"]) for r in rows if r.get("batch") == 1 and r.get("median_ms")}


def ranked(artifacts: dict[str, dict[str, Any]], ms: dict[str, float]) -> list[str]:
    """The shipped artifacts a default scorer may use, best first: every gate passed; the torch reference last; the
    others by the release's measured batch-1 time, the untimed after the timed in PREFERENCE order."""
    def passed(a: dict[str, Any]) -> bool:
        return all(g.get("pass") is not False for g in a.get("gates", []))

    def key(name: str) -> tuple:
        t = artifacts[name]["target"]
        order = PREFERENCE.index(t) if t in PREFERENCE else len(PREFERENCE) - 1
        return (t == "torch", name not in ms, ms.get(name, 0.0), order)

    return sorted((n for n, a in artifacts.items() if passed(a)), key=key)


def default_artifact(backend: str | None = None) -> Path:
    """The shipped artifact to score with: BACKEND's if given, else the fastest (as the release measured it) whose
    runtime is installed here."""
    from lmliqa.errors import BackendUnavailable

    arts = manifest()["artifacts"]
    if backend:
        name = next((n for n in ranked(arts, measured_ms()) if arts[n]["target"] == targets.get(backend).name), None)
        if name is None:
            raise BackendUnavailable(f"the default model ships no {backend} artifact (it ships "
                                     f"{', '.join(sorted({a['target'] for a in arts.values()}))})")
        return RELEASE / name
    hints = []
    for name in ranked(arts, measured_ms()):
        target = targets.get(arts[name]["target"])
        if not target.missing(targets.Stage.RUNTIME):
            return RELEASE / name
        hints.append(target.requires_hint())
    raise BackendUnavailable("no runtime for the default model is installed: " + " or ".join(dict.fromkeys(hints)))


def summary() -> dict[str, Any] | None:
    """What `lmliqa info` shows: name, provenance and the card's headline numbers (None when not bundled)."""
    try:
        m = manifest()
    except ValueError:
        return None
    cv = m.get("cross_validation") or {}
    return {"name": m["name"], "path": str(RELEASE), "created": m["created"],
            "artifacts": {n: f"{a['target']} {a['precision']}" for n, a in m["artifacts"].items()},
            "measured_ms": measured_ms(), "order": ranked(m["artifacts"], measured_ms()),
            "trained_on": m["checkpoint"]["trained_on"], "checkpoint_sha256": m["checkpoint"]["sha256"],
            "commit": m["provenance"]["commit"], "command": m.get("built_by", {}).get("command")
            or m["provenance"]["command"],
            "cross_validation": {"protocol": cv.get("protocol"), "srcc": (cv.get("pooled") or {}).get("srcc"),
                                 "plcc": (cv.get("pooled") or {}).get("plcc")} if cv else None,
            "card": str(RELEASE / "MODEL_CARD.md")}
