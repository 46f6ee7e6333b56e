"""What `lmliqa score` is asked to score: files, folders, globs and list files, expanded lazily (torch-free).

Rules (a careful user of ``find`` or ``exiftool`` expects them):

- a file named explicitly is always tried, whatever its name; a missing one becomes that input's error row;
- a folder is walked recursively in sorted order; files whose names are image names (:data:`IMAGE_SUFFIXES`) are
  inputs, others are *skipped* and counted (``Scan.skipped`` says which and why); a symlink with an image name is
  an input even when it is broken or loops (its row says so);
- symlinked folders are followed, once: a folder reached again (a symlink loop) is skipped, not walked forever;
- a glob is expanded in sorted order; a glob that matches nothing is reported as skipped;
- ``files_from`` reads one path per line (``-``: standard input), each treated as a file named explicitly.

Nothing is listed up front: a folder of a million photos costs one directory listing at a time.
"""

from __future__ import annotations

import glob
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp",
                            ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".heic", ".heif", ".avif"})


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class Scan:
    """Iterate over the inputs named by ``inputs`` (and ``files_from``); after (or during) iteration ``skipped``
    lists what a folder walk or a glob passed over, and ``given`` counts the inputs yielded."""

    inputs: Iterable[str]
    files_from: str | None = None
    skipped: list[Skipped] = field(default_factory=list)
    given: int = 0

    def __iter__(self) -> Iterator[str]:
        for path in self._paths():
            self.given += 1
            yield path

    def _paths(self) -> Iterator[str]:
        for item in self.inputs:
            p = Path(item)
            if p.is_dir():
                yield from self._walk(p, set())
            elif not os.path.lexists(item) and any(ch in item for ch in "*?["):
                matches = sorted(glob.glob(item, recursive=True))
                if not matches:
                    self.skipped.append(Skipped(item, "the pattern matched nothing"))
                for m in matches:
                    if Path(m).is_dir():
                        yield from self._walk(Path(m), set())
                    else:
                        yield m
            else:
                yield item     # tried whatever it is; a missing file becomes its row's error
        if self.files_from:
            yield from _lines(self.files_from)

    def _walk(self, folder: Path, seen: set[tuple[int, int]]) -> Iterator[str]:
        try:
            st = folder.stat()
        except OSError as exc:
            self.skipped.append(Skipped(str(folder), _why(exc)))
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            self.skipped.append(Skipped(str(folder), "symlink loop: this folder was already walked"))
            return
        seen = seen | {key}
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.skipped.append(Skipped(str(folder), _why(exc)))
            return
        for e in entries:
            path = os.path.join(folder, e.name)
            try:
                is_dir = e.is_dir()             # follows symlinks; False for broken or looping ones
            except OSError:
                is_dir = False
            if is_dir:
                yield from self._walk(Path(path), seen)
            elif Path(e.name).suffix.lower() in IMAGE_SUFFIXES:
                yield path
            else:
                self.skipped.append(Skipped(path, _kind_of(e)))


def _kind_of(entry: os.DirEntry) -> str:
    try:
        mode = entry.stat().st_mode
    except OSError:
        return "not an image file name (a broken or looping symlink)"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    suffix = Path(entry.name).suffix
    return f"not an image file name ({suffix or 'no extension'})"


def _why(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read folder: {exc.strerror or exc}"


def _lines(source: str) -> Iterator[str]:
    f = sys.stdin if source == "-" else open(source, encoding="utf-8")
    try:
        for line in f:
            line = line.rstrip("\r\n")
            if line:
                yield line
    finally:
        if f is not sys.stdin:
            f.close()
