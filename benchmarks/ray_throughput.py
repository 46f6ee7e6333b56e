"""Throughput of `lmliqa score --ray local` with 1 and 2 actors next to the single-process run, on the same photos,
with the scores compared (max |difference| against the single-process rows).

    python benchmarks/ray_throughput.py --photos ../shared/data/livec-dev/images --n 200 \\
        --json benchmarks/results/DATE-ray-throughput.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], out: Path) -> tuple[float, list[dict]]:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "lmliqa", "score", *args, "--jsonl", str(out), "--quiet"])
    wall = time.perf_counter() - t
    if p.returncode not in (0, 1):
        raise SystemExit(f"lmliqa score {' '.join(args)} exited {p.returncode}")
    return wall, [json.loads(line) for line in out.read_text().splitlines()]


def main(argv: list[str] | None = None) -> int:
    from lmliqa.provenance import provenance

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--model", default="default")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--actors", default="1,2")
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    provenance()                     # fixes the commit this run starts from
    photos = sorted(str(p) for p in Path(args.photos).iterdir())[:args.n]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.txt"
        listing.write_text("\n".join(photos) + "\n")
        base = ["--files-from", str(listing), "--model", args.model, "--batch", str(args.batch)]
        wall, ref = run(base, Path(tmp) / "single.jsonl")
        rows.append({"mode": "single process", "actors": None, "wall_s": wall, "images_per_s": len(ref) / wall,
                     "max_abs_diff_vs_single": 0.0})
        for n in (int(a) for a in args.actors.split(",")):
            wall, got = run(base + ["--ray", "local", "--ray-actors", str(n), "--threads", "1"],
                            Path(tmp) / f"ray{n}.jsonl")
            assert [r["image"] for r in got] == [r["image"] for r in ref], "Ray changed the order of the rows"
            diff = max(abs(a["score"] - b["score"]) for a, b in zip(ref, got) if a["score"] is not None)
            rows.append({"mode": "ray local", "actors": n, "wall_s": wall, "images_per_s": len(got) / wall,
                         "max_abs_diff_vs_single": diff})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    result = {"provenance": provenance(), "file": args.json, "n_images": len(photos), "model": args.model,
              "batch": args.batch, "rows": rows,
              "note": "wall time of the whole command: Ray start-up and one model load per actor included; "
                      "each actor runs inference on 1 thread"}
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
