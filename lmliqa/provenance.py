"""Where a result file came from: the command, the git commit of the tree, the package versions and the machine.
Every report `lmliqa` writes for `benchmarks/results/` carries this block."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the lmliqa source tree (with '+dirty' when its code has uncommitted changes), None outside
    git."""
    where = str(path or Path(__file__).resolve().parents[1])
    try:
        sha = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        # outputs kept in the tree (results, the shipped model) do not make the code dirty
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!benchmarks/results", ":!lmliqa/default_model/release"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    if not sha:   # a copy of the tree without .git (an accelerator machine, an unpacked archive) may say its commit
        return os.environ.get("LMLIQA_SOURCE_COMMIT") or None
    return sha + ("+dirty" if dirty else "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[str]:
    """The GPUs this process can see: torch's view when torch is already imported, else nvidia-smi's ([] = none)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def threads() -> int | None:
    """Intra-op threads of the run: torch's setting when torch is imported, else OMP_NUM_THREADS (None: unset)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.get_num_threads()
    env = os.environ.get("OMP_NUM_THREADS")
    return int(env) if env and env.isdigit() else None


def command() -> str:
    """The command line as typed: `lmliqa ...` for python -m lmliqa, a script by its path inside the repo."""
    prog = Path(sys.argv[0])
    repo = Path(__file__).resolve().parents[1]
    if prog.name == "__main__.py":
        name = "lmliqa"
    elif prog.suffix == ".py" and prog.resolve().is_relative_to(repo):
        name = f"python {prog.resolve().relative_to(repo)}"
    else:
        name = prog.name
    return " ".join([name] + sys.argv[1:])


_AT_START: dict[str, Any] = {}


def provenance() -> dict[str, Any]:
    """The block every result file carries. The first call in a process fixes the commit (long benchmarks call it
    when they start); a later call whose tree has moved on since says so in ``commit_at_end``, so a result is never
    credited to code that did not run."""
    from . import __version__
    from .targets import tool_versions

    commit = git_commit()
    if not _AT_START:
        _AT_START.update(commit=commit, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    out = {"command": command(), "commit": _AT_START["commit"], "started": _AT_START["started"],
           "lmliqa": __version__, "python": platform.python_version(), "versions": tool_versions(),
           "machine": {"cpu": cpu_name(), "cpus": os.cpu_count(), "threads": threads(), "gpus": gpus(),
                       "platform": platform.platform()}}
    if commit != _AT_START["commit"]:
        out["commit_at_end"] = commit
    return out
