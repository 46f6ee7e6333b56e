"""The evaluation layout as a speed/accuracy choice: for each layout of lmliqa.contract.LAYOUTS, the accuracy of a
recipe's cross-validation folds (each fold's checkpoint scores the photos it held out, with that layout; pooled
SRCC/PLCC with 95 % bootstrap intervals, and per fold) and the camera-check latency of one artifact with that
layout (JPEG bytes -> score at batch 1, p50/p95 and the network's share), in one run.

    python benchmarks/layouts.py --runs runs/cv/fold0 ... runs/cv/fold4 --artifact dist/mobile_int8.onnx \\
        --json benchmarks/results/DATE-layouts-mobile-livec-dev-5fold.json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from lmliqa.bench.measure import measure_camera
    from lmliqa.contract import LAYOUTS
    from lmliqa.manifest import sha256_file
    from lmliqa.metrics import bootstrap_ci, iqa_metrics
    from lmliqa.provenance import provenance
    from lmliqa.runtimes import load
    from lmliqa.train.evaluate import fold_checkpoint, held_out

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="fold run folders (final.safetensors) of one partition")
    ap.add_argument("--artifact", required=True, help="the artifact whose camera-check latency is timed per layout")
    ap.add_argument("--image", help="the camera frame (default: the first held-out photo)")
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--runs-camera", type=int, default=100)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    provenance()                     # fixes the commit this run starts from
    layouts = args.layouts.split(",")

    ckpts = {r: fold_checkpoint(r) for r in args.runs}
    folds = [held_out(ckpts[r]) + (r,) for r in args.runs]
    scorers = {r: load(ckpts[r], target="torch", threads=args.threads) for r in args.runs}
    base = {r: s.contract for r, s in scorers.items()}
    frame = args.image or folds[0][2][0]
    artifact = load(args.artifact, threads=args.threads)
    art_contract = artifact.contract
    buf = io.BytesIO()
    Image.open(frame).convert("RGB").save(buf, "JPEG", quality=90)
    rows = []
    for name in layouts:
        preds, mos, per_fold = [], [], []
        for _spec, split, names, y, run in folds:
            scorer = scorers[run]
            scorer.contract = base[run].with_layout(name)
            got = np.array([r.score if r.ok else np.nan for r in scorer.score_many(names)])
            ok = ~np.isnan(got)
            m = iqa_metrics(got[ok], y[ok])
            per_fold.append({"split": split, "n": int(ok.sum()), "srcc": m["srcc"], "plcc": m["plcc"]})
            preds.append(got[ok])
            mos.append(y[ok])
        p, y = np.concatenate(preds), np.concatenate(mos)
        artifact.contract = art_contract.with_layout(name)
        cam = measure_camera(artifact, buf.getvalue(), warmup=10, runs=args.runs_camera)
        row = {"layout": name, "description": LAYOUTS[name], "crops": artifact.contract.n_eval_crops,
               "n": int(len(p)), "pooled": bootstrap_ci(p, y), "pooled_metrics": iqa_metrics(p, y),
               "median_fold_srcc": float(np.median([f["srcc"] for f in per_fold])),
               "median_fold_plcc": float(np.median([f["plcc"] for f in per_fold])), "folds": per_fold,
               "camera": cam}
        rows.append(row)
        print(f"{name:<13} crops {row['crops']}  SRCC {row['pooled']['srcc']['value']:.4f} "
              f"PLCC {row['pooled']['plcc']['value']:.4f}  camera p50 {cam['p50_ms']:.1f} ms "
              f"(network {cam['stages_p50_ms']['network']:.1f})", file=sys.stderr, flush=True)
    result = {"provenance": provenance(), "file": args.json, "data": ", ".join(sorted({f[0] for f in folds})),
              "protocol": f"{len(folds)} held-out folds: " + ", ".join(f[1] for f in folds) + "; torch reference",
              "checkpoints": {r: sha256_file(ckpts[r]) for r in args.runs},
              "camera_artifact": str(args.artifact), "camera_backend": artifact.backend,
              "camera_precision": artifact.precision.value, "camera_frame": str(frame), "rows": rows}
    Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
