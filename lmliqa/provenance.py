"""Where a result file came from: the command, the git commit of the tree, the package versions and the machine.
Every report `lmliqa` writes for `benchmarks/results/` carries this block."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the lmliqa source tree (with '+dirty' when it has uncommitted changes), None outside git."""
    where = str(path or Path(__file__).resolve().parents[1])
    try:
        sha = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("+dirty" if dirty else "")) if sha else None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict[str, Any]:
    from . import __version__
    from .targets import tool_versions

    prog = Path(sys.argv[0]).name
    prog = "lmliqa" if prog == "__main__.py" else prog       # python -m lmliqa
    return {"command": " ".join([prog] + sys.argv[1:]), "commit": git_commit(),
            "lmliqa": __version__, "python": platform.python_version(), "versions": tool_versions(),
            "machine": {"cpu": cpu_name(), "cpus": os.cpu_count(), "platform": platform.platform()}}
