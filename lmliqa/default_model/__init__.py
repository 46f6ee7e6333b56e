"""The model that ships inside the package: a release folder (``release/``: artifacts, ``manifest.json``, golden
probes, ``MODEL_CARD.md``) made by ``benchmarks/make_default_model.py`` (the command, data hash and commit are in
its manifest). `lmliqa score` without ``--model`` and ``lmliqa.runtimes.load()`` / ``load("default")`` use it.

Which shipped artifact a default scorer runs: the fastest, by the release's own batch-1 timing (evidence/bench.json),
among those that passed every gate and whose runtime is installed (`lmliqa info` shows the order); the torch
reference (the FP16-stored checkpoint) only when no torch-free runtime is.

The wheel is torch-free and holds the INT8 artifacts only: the torch reference checkpoint (fp16, ~10 MB) would push
the default model over the wheel's 15 MB budget, so the wheel leaves it out (WHEEL_EXCLUDES; pyproject's
exclude-package-data says the same and a test checks both). A source checkout has it in ``release/``; a wheel
install adds it once with ``lmliqa info --fetch-checkpoint FILE|URL``, which checks its sha256 against the manifest
and keeps it in the cache (``checkpoint_cache()``).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from lmliqa import targets
from lmliqa.manifest import read_manifest

RELEASE = Path(__file__).parent / "release"
# release files the wheel leaves out (glob patterns relative to this package, as pyproject's exclude-package-data)
WHEEL_EXCLUDES = ("release/*.safetensors",)
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


def left_out_of_wheel(rel: str) -> bool:
    """Whether the wheel leaves out the release file REL (a path inside the release folder): WHEEL_EXCLUDES."""
    return any(fnmatch.fnmatch(f"release/{rel}", pat) for pat in WHEEL_EXCLUDES)


def unbundled(release: Path | None = None) -> list[str]:
    """The released files the wheel leaves out (WHEEL_EXCLUDES) that this install does not have in the package."""
    release = release or RELEASE
    return sorted(f for f in read_manifest(release)["files"] if left_out_of_wheel(f) and not (release / f).exists())


def checkpoint_cache() -> Path:
    """Where a wheel install keeps the torch checkpoint it fetched: per checkpoint hash, so a newer release never
    picks up an older model's weights."""
    from lmliqa.cache import cache_dir

    return cache_dir() / "default_model" / manifest()["checkpoint"]["sha256"][:16]


def locate(name: str) -> Path | None:
    """A shipped artifact's path in this install: in the package, else (for a file the wheel leaves out) fetched
    into the cache; None when neither."""
    if (RELEASE / name).exists():
        return RELEASE / name
    cached = checkpoint_cache() / name
    return cached if left_out_of_wheel(name) and cached.is_file() else None


def fetch_checkpoint(source: str) -> Path:
    """Add the torch reference checkpoint to a wheel install: SOURCE (a file, or an http(s)/file URL of it: the
    source repository's lmliqa/default_model/release/NAME) is copied into checkpoint_cache() once its sha256 is the
    manifest's. Returns its path."""
    import shutil
    import tempfile
    import urllib.request

    from lmliqa.errors import ReleaseError
    from lmliqa.manifest import sha256_file

    m = manifest()
    name, want = m["checkpoint"]["file"], m["checkpoint"]["sha256"]
    dest = checkpoint_cache() / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        src = urllib.request.urlopen(source) if "://" in source else open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ReleaseError(f"{source}: cannot read the checkpoint ({exc})") from exc
    with src, tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        shutil.copyfileobj(src, tmp)
    digest = sha256_file(tmp.name)
    if digest != want:
        Path(tmp.name).unlink()
        raise ReleaseError(f"{source}: sha256 {digest[:16]}... is not the default model's checkpoint ({name}, sha256 "
                           f"{want[:16]}...); nothing was kept")
    Path(tmp.name).replace(dest)
    return dest


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
        return locate(name) or _not_installed(name)
    hints = []
    for name in ranked(arts, measured_ms()):
        target = targets.get(arts[name]["target"])
        runtime_missing, path = target.missing(targets.Stage.RUNTIME), locate(name)
        if not runtime_missing and path:
            return path
        hints.append(target.requires_hint() if runtime_missing else fetch_hint(name))
    raise BackendUnavailable("no runtime for the default model is installed: " + " or ".join(dict.fromkeys(hints)))


def fetch_hint(name: str) -> str:
    return (f"its torch checkpoint {name} is not in this install (the wheel leaves it out to stay within 15 MB): "
            f"add it with `lmliqa info --fetch-checkpoint FILE|URL` (the source repository's "
            f"lmliqa/default_model/release/{name})")


def _not_installed(name: str) -> Path:
    from lmliqa.errors import BackendUnavailable

    raise BackendUnavailable(f"the default model's {fetch_hint(name)}")


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
            "not_installed": [n for n in m["artifacts"] if locate(n) is None],
            "trained_on": m["checkpoint"]["trained_on"], "checkpoint_sha256": m["checkpoint"]["sha256"],
            "commit": m["provenance"]["commit"], "command": m.get("built_by", {}).get("command")
            or m["provenance"]["command"],
            "cross_validation": {"protocol": cv.get("protocol"), "srcc": (cv.get("pooled") or {}).get("srcc"),
                                 "plcc": (cv.get("pooled") or {}).get("plcc")} if cv else None,
            "accuracy": {"data": m["accuracy"]["data"], "n": m["accuracy"]["n"],
                         "srcc": m["accuracy"]["ci95"]["srcc"], "plcc": m["accuracy"]["ci95"]["plcc"]},
            "card": str(RELEASE / "MODEL_CARD.md")}
