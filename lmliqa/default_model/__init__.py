"""The model that ships inside the package: a release folder (``release/``: artifacts, ``manifest.json``, golden
probes, ``MODEL_CARD.md``) made by ``benchmarks/make_default_model.py`` (the command, data hash and commit are in
its manifest). `lmliqa score` without ``--model`` and ``lmliqa.runtimes.load()`` / ``load("default")`` use it.

Torch-free: the ONNX INT8 artifact runs with ``pip install 'lmliqa[onnx]'``; the FP16-stored checkpoint is the torch
reference it was exported from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmliqa import targets
from lmliqa.manifest import read_manifest

RELEASE = Path(__file__).parent / "release"
PREFERENCE = ("onnx", "openvino", "litert", "torch")     # torch-free runtimes first


def manifest() -> dict[str, Any]:
    return read_manifest(RELEASE)


def default_artifact(backend: str | None = None) -> Path:
    """The shipped artifact to score with: BACKEND's if given, else the first whose runtime is installed here."""
    from lmliqa.errors import BackendUnavailable

    arts = manifest()["artifacts"]
    by_target = {a["target"]: name for name, a in arts.items()}
    if backend:
        name = by_target.get(targets.get(backend).name)
        if name is None:
            raise BackendUnavailable(f"the default model ships no {backend} artifact (it ships "
                                     f"{', '.join(sorted(by_target))})")
        return RELEASE / name
    hints = []
    for t in PREFERENCE:
        if t in by_target:
            target = targets.get(t)
            if not target.missing(targets.Stage.RUNTIME):
                return RELEASE / by_target[t]
            hints.append(target.requires_hint())
    raise BackendUnavailable("no runtime for the default model is installed: " + " or ".join(hints))


def summary() -> dict[str, Any] | None:
    """What `lmliqa info` shows: name, provenance and the card's headline numbers (None when not bundled)."""
    try:
        m = manifest()
    except ValueError:
        return None
    cv = m.get("cross_validation") or {}
    return {"name": m["name"], "path": str(RELEASE), "created": m["created"],
            "artifacts": {n: f"{a['target']} {a['precision']}" for n, a in m["artifacts"].items()},
            "trained_on": m["checkpoint"]["trained_on"], "checkpoint_sha256": m["checkpoint"]["sha256"],
            "commit": m["provenance"]["commit"], "command": m.get("built_by", {}).get("command")
            or m["provenance"]["command"],
            "cross_validation": {"protocol": cv.get("protocol"), "srcc": (cv.get("pooled") or {}).get("srcc"),
                                 "plcc": (cv.get("pooled") or {}).get("plcc")} if cv else None,
            "card": str(RELEASE / "MODEL_CARD.md")}
