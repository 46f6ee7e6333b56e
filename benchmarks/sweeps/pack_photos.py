"""Pack a `folder:` photo set for a machine that takes at most ~45 MB per transfer (the lent GPU's 64 MiB working-tree
limit, less the repo): PNGs become lossless WebP (pixels checked identical after decoding), other files are copied
as they are, scores.csv keeps its row order (so k-fold splits are the same), and the files are spread over parts
of at most --part-mb. Then one warm call per part copies it to a folder outside the repo on that machine (a part
that a later call does not carry is deleted from the working tree there); benchmarks/sweeps/gpu_sweep.sh runs the
sweep from the gathered parts.

    python benchmarks/sweeps/pack_photos.py ../shared/data/livec-dev .gpu --part-mb 43
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="a folder: dataset (scores.csv + images/)")
    ap.add_argument("out", help="parts go to OUT/p0, OUT/p1, ...; scores.csv to OUT/p0")
    ap.add_argument("--part-mb", type=float, default=43.0)
    args = ap.parse_args(argv)
    src, out = Path(args.src), Path(args.out)
    rows = list(csv.DictReader(open(src / "scores.csv", newline="")))
    cap = args.part_mb * 1e6
    part, used, written = 0, 0, []
    for r in rows:
        path = src / "images" / r["image"]
        if path.suffix.lower() == ".png":
            with Image.open(path) as im:
                im.load()
                buf = io.BytesIO()
                im.save(buf, "WEBP", lossless=True, quality=100, method=4)
                data = buf.getvalue()
                back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                if not np.array_equal(back, np.asarray(im.convert("RGB"))):
                    raise SystemExit(f"{path}: lossless WebP did not keep the pixels; carry it as it is")
            name = path.with_suffix(".webp").name
        else:
            data, name = path.read_bytes(), path.name
        if used + len(data) > cap:
            part, used = part + 1, 0
        folder = out / f"p{part}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        used += len(data)
        written.append({**r, "image": name})
    with open(out / "p0" / "scores.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(written)
    print(f"{len(written)} photos in {part + 1} parts under {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
