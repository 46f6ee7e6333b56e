"""Write benchmarks/results/INDEX.md: every result file with the command, commit, machine and versions it records,
or marked LEGACY when it records none of them (files written before lmliqa.provenance existed; their numbers are
kept for history, and the README does not rest on them alone).

    python benchmarks/results_index.py            # rewrite INDEX.md
    python benchmarks/results_index.py --check    # exit 1 when INDEX.md is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
INDEX = "INDEX.md"
REQUIRED = ("command", "commit", "versions", "machine")


def record(path: Path) -> dict[str, Any]:
    """What PATH says of where it came from (a .md report or a .png figure: its .json twin's record)."""
    src = path.with_suffix(".json") if path.suffix in (".md", ".png") else path
    prov = None
    if src.exists():
        try:
            data = json.loads(src.read_text())
            prov = data.get("provenance") if isinstance(data, dict) else None
        except ValueError:
            prov = None
    if not prov or any(k not in prov for k in REQUIRED):
        return {"file": path.name, "legacy": True}
    m = prov["machine"]
    gpu = ", ".join(m.get("gpus") or []) or "no GPU recorded" if "gpus" in m else "GPU not recorded"
    return {"file": path.name, "legacy": False, "command": prov["command"], "commit": prov["commit"],
            "commit_at_end": prov.get("commit_at_end"),
            "machine": f"{m.get('cpu')} ({m.get('cpus')} CPUs, threads {m.get('threads', 'not recorded')}; {gpu})",
            "versions": ", ".join(f"{k} {v}" for k, v in sorted(prov["versions"].items()) if k in
                                  ("torch", "onnxruntime", "openvino", "nncf", "ai-edge-litert", "executorch"))}


def render(folder: Path = RESULTS) -> str:
    rows = [record(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != INDEX]
    lines = ["# benchmarks/results", "",
             "Written by `python benchmarks/results_index.py` from the files themselves. Every result records the "
             "command that wrote it, the commit of the tree, the machine and the package versions "
             "(`lmliqa.provenance`). LEGACY files were written before that record existed: they are kept for "
             "history and marked as such wherever the README cites them.", "",
             "| file | command | commit | machine | versions |", "|---|---|---|---|---|"]
    for r in rows:
        if r["legacy"]:
            lines.append(f"| {r['file']} | LEGACY: no provenance record | - | - | - |")
        else:
            commit = r["commit"][:12] + ("+dirty" if "dirty" in r["commit"] else "")
            if r["commit_at_end"]:
                commit += f" (tree moved to {r['commit_at_end'][:12]} during the run)"
            lines.append(f"| {r['file']} | `{r['command']}` | {commit} | {r['machine']} | {r['versions']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when INDEX.md differs from what would be written")
    args = ap.parse_args(argv)
    text = render()
    path = RESULTS / INDEX
    if args.check:
        stale = not path.exists() or path.read_text() != text
        print(f"{path}: {'stale: run python benchmarks/results_index.py' if stale else 'up to date'}")
        return 1 if stale else 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
