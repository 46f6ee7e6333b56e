"""Release manifests: what a release folder holds, byte for byte, and the check that nothing in it changed.

``manifest.json`` lists every file of the folder (but itself) with its sha256 and size; an artifact's entry also
names its target and precision and the gates it passed. Torch-free (hashlib + json): `lmliqa verify` and the
runtime's refusal to load a tampered artifact (`guard`) use it on any install.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PrecisionUnsupported, ReleaseError

MANIFEST = "manifest.json"
FORMAT = 1


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_files(folder: Path) -> dict[str, dict[str, Any]]:
    """{relative posix path: {sha256, size}} of every file under FOLDER but the manifest itself, sorted."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != MANIFEST:
            out[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    return out


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ReleaseError(f"{folder}: no {MANIFEST}; not an lmliqa release folder (write one with `lmliqa release`)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "files" not in manifest:
        raise ReleaseError(f"{path}: not an lmliqa release manifest (format {FORMAT})")
    return manifest


@dataclass
class FileCheck:
    """The folder's files against its manifest."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def lines(self) -> list[str]:
        return ([f"changed: {f} (sha256 differs from the manifest)" for f in self.changed]
                + [f"missing: {f}" for f in self.missing]
                + [f"extra:   {f} (not in the manifest)" for f in self.extra])


def check_files(folder: str | Path, manifest: dict[str, Any] | None = None) -> FileCheck:
    """Re-hash every file of FOLDER against its manifest."""
    folder = Path(folder)
    manifest = manifest or read_manifest(folder)
    listed: dict[str, dict[str, Any]] = manifest["files"]
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST}
    res = FileCheck(missing=sorted(set(listed) - present), extra=sorted(present - set(listed)))
    for rel in sorted(set(listed) & present):
        res.checked += 1
        p = folder / rel
        if p.stat().st_size != listed[rel]["size"] or sha256_file(p) != listed[rel]["sha256"]:
            res.changed.append(rel)
    return res


def release_root(path: str | Path) -> Path | None:
    """The release folder holding PATH (the folder of the file, or of the IR folder, with a manifest.json)."""
    path = Path(path).resolve()
    for folder in (path.parent, path.parent.parent):
        if (folder / MANIFEST).is_file():
            return folder
    return None


def artifact_files(path: Path, root: Path) -> list[str]:
    """The files that make up the artifact at PATH, relative to ROOT: what its target says belongs to it (an IR
    folder's files, an IR's .xml and .bin); a file no target claims is itself."""
    from . import targets

    path = Path(path).resolve()
    try:
        files = targets.target_for(path).files(path)
    except targets.ArtifactError:
        files = [p for p in sorted(path.rglob("*")) if p.is_file()] if path.is_dir() else [path]
    return [f.relative_to(root).as_posix() for f in files]


def guard(path: str | Path, precision: str | None = None) -> None:
    """Refuse an artifact of a release folder that differs from the release's manifest, or that the manifest does
    not list: a corrupted or tampered file is never scored; and refuse PRECISION when the release withdrew it for this
    artifact (it missed its gate there). Artifacts outside release folders pass."""
    root = release_root(path)
    if root is None:
        return
    manifest = read_manifest(root)
    if precision is not None:
        rel = Path(path).resolve().relative_to(root.resolve()).as_posix()
        why = manifest.get("artifacts", {}).get(rel, {}).get("withdrawn", {}).get(str(precision))
        if why:
            raise PrecisionUnsupported(f"{path}: its release does not offer {precision}: {why}")
    listed = manifest["files"]
    for rel in artifact_files(Path(path), root):
        entry = listed.get(rel)
        if entry is None:
            raise ReleaseError(f"{root / rel}: not listed in the release manifest {root / MANIFEST}; refusing to load "
                               "a file the release does not vouch for")
        if sha256_file(root / rel) != entry["sha256"]:
            raise ReleaseError(f"{root / rel}: sha256 differs from the release manifest {root / MANIFEST} (corrupted "
                               "or modified); refusing to load it. `lmliqa verify` checks the whole release")


def write_manifest(folder: Path, body: dict[str, Any]) -> Path:
    """Hash every file of FOLDER and write the manifest: BODY (release-wide records) plus ``files``, where an
    entry of BODY["artifacts"] (keyed by path) adds its target, precision and gates to its files."""
    files = hash_files(folder)
    for rel, art in body.get("artifacts", {}).items():
        for f in artifact_files(folder / rel, folder.resolve()):
            files[f].update({"artifact": rel, "target": art["target"], "precision": art["precision"]})
    manifest = {"format": FORMAT, **body, "files": files}
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path
