"""Choose the layers an OpenVINO IR keeps in f32 under bf16, by measurement: export one checkpoint once per
candidate keep-f32 scope, score photos with OpenVINO bf16 and compare with the torch FP32 reference
(max / mean / p95 |d| in score units, SRCC), and time each at one batch in the same run (interleaved rounds,
median), with the f32 run of the same IR for the ratio.

    python benchmarks/bf16_scope.py --checkpoint CKPT --data SPEC [--limit 122]
        [--scopes "none;stem;default;default,head;default,decoder"] [--batch 8] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

from lmliqa.data import open_dataset
from lmliqa.export import export_checkpoint
from lmliqa.runtimes import load

DEFAULT_SCOPES = "none;stem;default;default,head;default,decoder"


def _rate(scorer, crops: np.ndarray, images: int, rounds: int) -> list[float]:
    scorer.infer(crops)  # warm-up
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        scorer.infer(crops)
        out.append(images / (time.perf_counter() - t0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="photos to compare on (a data spec; never the training photos)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--scopes", default=DEFAULT_SCOPES, help="';'-separated keep-f32 scopes")
    ap.add_argument("--batch", type=int, default=8, help="images per timed call (x the contract's crops)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    ds = open_dataset(args.data)
    records = ds.records[:args.limit] if args.limit else ds.records
    names = [str(r.path) for r in records]
    torch_ref = load(args.checkpoint, target="torch")
    ref_results = list(torch_ref.score_many(names))
    keep = [i for i, r in enumerate(ref_results) if r.ok]
    names = [names[i] for i in keep]
    ref = np.array([ref_results[i].score for i in keep])
    crops = np.concatenate([torch_ref.contract.eval_crops(n) for n in names[:args.batch]])

    rows, scorers = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(args.scopes.split(";")):
            (res,) = export_checkpoint(args.checkpoint, ["openvino"], Path(tmp) / f"s{i}", keep_f32=text)
            if not res.outcome.wrote:
                rows.append({"scope": text, "status": res.status})
                print(f"{text:<28} {res.status}", flush=True)
                continue
            bf16 = load(res.paths[0], precision="bf16")
            got = np.array([r.score for r in bf16.score_many(names)])
            err = np.abs(got - ref)
            row = {"scope": text, "status": "ok", "kept_f32": len(bf16.kept_f32), "layers": bf16.kept_f32,
                   "max_abs": float(err.max()), "mean_abs": float(err.mean()),
                   "p95_abs": float(np.percentile(err, 95)), "srcc_vs_torch": float(stats.spearmanr(got, ref)[0])}
            rows.append(row)
            scorers[text] = bf16
            if not scorers.get("f32"):
                scorers["f32"] = load(res.paths[0], precision="fp32")
            print(f"{text:<28} kept f32 {row['kept_f32']:>3}  max|d| {row['max_abs']:.3f}  mean|d| "
                  f"{row['mean_abs']:.3f}  p95 {row['p95_abs']:.3f}  SRCC {row['srcc_vs_torch']:.5f}", flush=True)
        # timing: interleaved rounds over every scorer, so drift of a shared machine hits them alike
        rates: dict[str, list[float]] = {k: [] for k in scorers}
        for _ in range(args.rounds):
            for k, s in scorers.items():
                rates[k] += _rate(s, crops, args.batch, 1)
    f32 = float(np.median(rates.pop("f32")))
    for row in rows:
        if row["scope"] in rates:
            row["images_per_s"] = float(np.median(rates[row["scope"]]))
            row["x_f32"] = row["images_per_s"] / f32
            print(f"{row['scope']:<28} {row['images_per_s']:.1f} img/s at batch {args.batch} "
                  f"({row['x_f32']:.2f}x OpenVINO f32, {f32:.1f} img/s)")
    if args.json:
        from lmliqa.provenance import provenance

        Path(args.json).write_text(json.dumps({"provenance": provenance(), "checkpoint": args.checkpoint,
                                               "data": args.data, "n": len(names),
                                               "batch": args.batch, "f32_images_per_s": f32, "rows": rows},
                                              indent=2))


if __name__ == "__main__":
    main()
