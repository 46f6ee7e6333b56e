"""Check the package's layers with import-linter (the contracts are `[tool.importlinter]` in pyproject.toml).

import-linter finds a package's modules on disk under the package's own folder, but lmliqa installs three of its
subpackages from folders beside it (export/, quantize/, runtimes/: setuptools' package-dir). So this script stages
the package as it installs (lmliqa/ with those folders inside, Python files only) under build/importlinter and runs
`lint-imports` there. Exit status: lint-imports'.

    python .ci/lint_imports.py        (make lint runs it)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def stage(dest: Path) -> Path:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dirs = {"lmliqa": "lmliqa", **cfg["tool"]["setuptools"].get("package-dir", {})}
    shutil.rmtree(dest, ignore_errors=True)
    for package, folder in sorted(dirs.items()):
        target = dest.joinpath(*package.split("."))
        for src in (ROOT / folder).rglob("*.py"):
            out = target / src.relative_to(ROOT / folder)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
    return dest


def main() -> int:
    staged = stage(ROOT / "build" / "importlinter")
    env = {**os.environ, "PYTHONPATH": str(staged)}
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.call([str(lint), str(ROOT / "pyproject.toml")], cwd=staged, env=env)


if __name__ == "__main__":
    sys.exit(main())
