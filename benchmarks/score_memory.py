"""Peak memory of `lmliqa score` against the number of inputs: bounded, whatever the count.

For each N (and batch size B) it builds a folder of N symlinks to the LIVE-C dev photos (repeated), runs
`lmliqa score FOLDER --jsonl OUT` in a fresh process and reads that process's own peak RSS (getrusage at exit),
its wall time and the rows it wrote. Equal peaks for N = 1,000 and 10,000 show the run streams (folder walk,
decoding, rows) instead of holding its inputs or results; the peak itself is set by the batch (the inference
runtime's activations for B x crops).

    python benchmarks/score_memory.py --runs 1000:8,10000:8,1000:1 --json benchmarks/results/DATE-score-memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs `lmliqa score` in this process and, at exit, writes its peak RSS (KiB on Linux) to the file in argv[1].
_CHILD = """
import atexit, json, resource, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
from lmliqa.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def run_once(photos: list[Path], n: int, work: Path, model: str, batch: int) -> dict:
    folder = work / f"n{n}b{batch}"
    folder.mkdir()
    for i in range(n):
        src = photos[i % len(photos)]
        (folder / f"{i:06d}_{src.name}").symlink_to(src)
    rows, peak = folder.with_suffix(".jsonl"), folder.with_suffix(".peak")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _CHILD, str(peak), "score", str(folder), "--model", model,
                        "--batch", str(batch), "--jsonl", str(rows), "--quiet"])
    wall = time.perf_counter() - t0
    lines = rows.read_text().splitlines()
    ok = sum(json.loads(line)["error"] == "" for line in lines)
    return {"n_inputs": n, "batch": batch, "rows": len(lines), "scored": ok, "exit_status": p.returncode,
            "peak_rss_mib": round(json.loads(peak.read_text()) / 1024, 1), "wall_s": round(wall, 1),
            "images_per_s": round(n / wall, 2)}


def main(argv: list[str] | None = None) -> int:
    from lmliqa.provenance import provenance

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default=os.path.join(os.environ.get("LMLIQA_SHARED", "../shared"),
                                                     "data/livec-dev/images"))
    ap.add_argument("--runs", default="1000:8,10000:8,1000:1", help="N:BATCH pairs, comma-separated")
    ap.add_argument("--model", default="default")
    ap.add_argument("--json", required=True, help="result file (benchmarks/results/...)")
    args = ap.parse_args(argv)
    provenance()                     # fixes the commit this run starts from
    photos = sorted(Path(args.photos).resolve().iterdir())
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.runs.split(","):
            n, batch = (int(v) for v in pair.split(":"))
            runs.append(run_once(photos, n, Path(tmp), args.model, batch))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    by_batch: dict[int, list[float]] = {}
    for r in runs:
        by_batch.setdefault(r["batch"], []).append(r["peak_rss_mib"])
    result = {"provenance": provenance(), "file": args.json, "model": args.model,
              "photos": f"{len(photos)} LIVE-C dev photos, repeated through symlinks", "runs": runs,
              "peak_growth_mib": {str(b): round(max(p) - min(p), 1) for b, p in by_batch.items()},
              "claim": "peak RSS of `lmliqa score` does not grow with the number of inputs"}
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("runs", "peak_growth_mib")}, indent=2))
    return 0 if all(r["rows"] == r["n_inputs"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
