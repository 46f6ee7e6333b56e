"""Cross-validated accuracy of a recipe, from its fold runs: each fold's checkpoint scores the photos it held out
(the test split its checkpoint records), the out-of-fold predictions are pooled, and SRCC/PLCC/KRCC/RMSE get 95 %
bootstrap intervals (lmliqa.metrics.bootstrap_ci). `lmliqa release --cv FILE` puts the result in the model card.

    python benchmarks/cv_accuracy.py --runs runs/fold0 runs/fold1 ... --json benchmarks/results/DATE-cv-....json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lmliqa.train.evaluate import fold_checkpoint, held_out


def main(argv: list[str] | None = None) -> int:
    from lmliqa.manifest import sha256_file
    from lmliqa.metrics import bootstrap_ci, iqa_metrics
    from lmliqa.provenance import provenance
    from lmliqa.runtimes import load

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="fold run folders (final.safetensors) or checkpoints")
    ap.add_argument("--json", required=True, help="write the result here")
    ap.add_argument("--note", default="", help="a sentence the card prints under the numbers")
    args = ap.parse_args(argv)
    provenance()                     # fixes the commit this run starts from

    folds, pred, mos, seen = [], [], [], set()
    for run in args.runs:
        ckpt = fold_checkpoint(run)
        spec, split, names, y = held_out(ckpt)
        if seen & set(names):
            raise SystemExit(f"{ckpt}: its held-out photos overlap another fold's; pass folds of one partition")
        seen |= set(names)
        scorer = load(ckpt, target="torch")
        got = np.array([r.score if r.ok else np.nan for r in scorer.score_many(names)])
        ok = ~np.isnan(got)
        m = iqa_metrics(got[ok], y[ok])
        folds.append({"checkpoint": str(ckpt), "sha256": sha256_file(ckpt), "split": split, "data": spec,
                      "n": int(ok.sum()), "n_failed": int((~ok).sum()), "srcc": m["srcc"], "plcc": m["plcc"],
                      "trained_at": scorer.metadata.get("lmliqa_version")})
        pred.append(got[ok])
        mos.append(y[ok])
        print(f"{split}: n={m['n']} SRCC {m['srcc']:.4f} PLCC {m['plcc']:.4f}", file=sys.stderr)
    p, y = np.concatenate(pred), np.concatenate(mos)
    specs = sorted({f["data"] for f in folds})
    result = {"provenance": provenance(), "file": args.json, "data": ", ".join(specs),
              "protocol": f"{len(folds)} held-out fold(s): " + ", ".join(f["split"] for f in folds),
              "n": int(len(p)), "pooled": bootstrap_ci(p, y), "pooled_metrics": iqa_metrics(p, y), "folds": folds,
              "note": args.note}
    Path(args.json).write_text(json.dumps(result, indent=2))
    ci = result["pooled"]["srcc"]
    print(f"pooled over {len(p)} held-out photos: SRCC {ci['value']:.4f} [{ci['low']:.4f}, {ci['high']:.4f}] -> "
          f"{args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
