"""Quantization-aware fine-tuning against post-training quantization, paired fold by fold (issue 25).

    python benchmarks/qat_cv.py --runs runs/sweep2/livec/s0_f0 ... runs/sweep2/livec/s0_f4 --targets litert,onnx \
        --work runs/qat_cv --out benchmarks/results/DATE-qat-cv.json

For each cross-validation fold model (a run folder of `lmliqa train --split kfold:K:J`, e.g. from cv_sweep.py):

1. PTQ: the fold model quantized for each target as `lmliqa quantize` does (its float-scope ladder; calibrated on
   32 of the fold's training photos, validated on others of them);
2. QAT: the fold model fine-tuned with `lmliqa train --qat-from` on the same training photos, then quantized with
   no float scope (`--float-scope none`), same calibration;
3. both scored on the fold's held-out photos: each INT8 artifact against its own float reference (the INT8 gate,
   which with QAT must hold with an empty scope) and against people's opinions (SRCC / PLCC vs MOS).

The paired difference QAT - PTQ of SRCC vs MOS per fold is the issue's criterion (median >= -0.005).

`--recipe graph` replaces step 2 by `lmliqa quantize --float-scope none --qat-steps N`: the fold model itself, each
target's own INT8 graph fine-tuned through its quantizers against the float model (quantize/_qat.py; the targets
with that option), on the fold's training photos that are not its validation photos:

    python benchmarks/qat_cv.py --recipe graph --qat-steps 600 --targets litert --runs runs/sweep-biq/livec/s0_f0 \
        --work runs/qat_graph --out benchmarks/results/DATE-qat-graph-fold0.json
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

from lmliqa.provenance import provenance


def fold_folder(ds, train_idx: list[int], out: Path) -> str:
    """A folder spec of the fold's training photos (hard links), for calibration that never sees held-out photos."""
    from lmliqa.data.base import link_or_copy

    (out / "images").mkdir(parents=True, exist_ok=True)
    with open(out / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "mos"])
        for k, i in enumerate(train_idx):
            r = ds.records[i]
            name = f"{k:05d}_{r.path.name}"
            if not (out / "images" / name).exists():
                link_or_copy(r.path, out / "images" / name)
            w.writerow([name, r.mos])
    return f"folder:{out}"


def quantized(ckpt: Path, out: Path, targets: list[str], calib: str, scope: str | None, **options) -> dict[str, Path]:
    from lmliqa.export import export_checkpoint
    from lmliqa.quantize import quantize_models

    export_checkpoint(ckpt, targets, out)
    report = quantize_models(out, targets, calib=calib, scope=scope, n_calib=32, n_val=48, **options)
    paths = {}
    for r in report.results:
        if r.artifact and r.fidelity is not None:
            qat = (r.details.get("quantization") or {}).get("qat")
            paths[r.target] = (out / r.artifact, r.details.get("scope"), r.gate_pass, qat)
    return paths


def scores(model: Path, images: list[str]) -> np.ndarray:
    from lmliqa.runtimes import load

    with load(model) as scorer:
        return np.array([r.score for r in scorer.score_many(images)])


def graph_qat_targets(targets: list[str]) -> list[str]:
    """The targets whose quantizer fine-tunes its own INT8 graph (the `qat_steps` quantize option)."""
    from lmliqa import targets as registry

    return [t for t in targets if any(o.name == "qat_steps" for o in registry.get(t).options_for(
        registry.Stage.QUANTIZE))]


def variants(run: Path, work: Path, targets: list[str], extra: dict, recipe: str, qat_steps: int,
             threads: int, qat_scope: str = "none") -> list[tuple[str, Path, str | None, list[str], dict]]:
    """(name, checkpoint, float scope, targets, quantize options) of PTQ and QAT. RECIPE "train": QAT is
    `lmliqa train --qat-from` (eager fake quant of every Conv/Linear), then quantized with no float scope; "graph":
    the same checkpoint, each target's own INT8 graph fine-tuned by `lmliqa quantize --qat-steps` with QAT_SCOPE
    (a --float-scope value; "none": every op quantized)."""
    ckpt = run / "final.safetensors"
    ptq = ("ptq", ckpt, None, targets, {})
    if recipe == "graph":
        return [ptq, ("qat", ckpt, qat_scope, graph_qat_targets(targets), {"qat_steps": qat_steps})]
    qat_dir = work / "qat"
    if not (qat_dir / "final.safetensors").is_file():
        cmd = [sys.executable, "-m", "lmliqa", "train", "--preset", extra["train_config"]["preset"], "--qat-from",
               str(ckpt), "--data", extra["dataset"], "--split", extra["split"], "--threads", str(threads),
               "--set", f"split_seed={extra['split_seed']}", "--set", "eval_every=0", "--out", str(qat_dir)]
        subprocess.run(cmd, check=True)
    return [ptq, ("qat", qat_dir / "final.safetensors", "none", targets, {})]


def one_fold(run: Path, targets: list[str], work: Path, threads: int, recipe: str = "train",
             qat_steps: int = 0, qat_scope: str = "none") -> dict:
    from scipy import stats

    from lmliqa.data import resolve_split
    from lmliqa.fidelity import QUANTIZED, compare
    from lmliqa.train.evaluate import held_out_indices

    ckpt = run / "final.safetensors"
    ds, extra, test = held_out_indices(ckpt)
    train_idx, _ = resolve_split(extra["split"], ds, seed=extra["split_seed"])
    calib = fold_folder(ds, train_idx, work / "train_photos")
    images = [str(ds.records[i].path) for i in test]
    mos = np.array([ds.label.to_training(ds.records[i].mos) for i in test])
    out = {"run": str(run), "split": extra["split"], "n_held_out": len(test)}
    for name, model, scope, chosen, options in variants(run, work, targets, extra, recipe, qat_steps, threads,
                                                        qat_scope):
        ref = scores(model, images)
        rows = {"float": {"srcc_vs_mos": float(stats.spearmanr(ref, mos)[0]),
                          "plcc_vs_mos": float(stats.pearsonr(ref, mos)[0])}}
        for target, (path, used, gate_pass, qat) in quantized(model, work / name, chosen, calib, scope,
                                                              **options).items():
            got = scores(path, images)
            f = compare(ref, got, mos)
            rows[target] = {"artifact": path.name, "scope": used, "validation_gate_pass": gate_pass,
                            "gate_pass_held_out": QUANTIZED.check(f), "max_abs": f.max_abs, "mean_abs": f.mean_abs,
                            "srcc_vs_ref": f.srcc_vs_ref, "material_flip_rate": f.material_flip_rate,
                            "srcc_vs_mos": f.srcc_vs_mos, "plcc_vs_mos": f.plcc_vs_mos}
            if qat:                 # the quantizer's own record: steps, photos, seconds
                rows[target]["qat"] = qat
        out[name] = rows
    return out


def summary(folds: list[dict], targets: list[str]) -> dict:
    out = {}
    for t in ["float", *targets]:
        d = [f["qat"][t]["srcc_vs_mos"] - f["ptq"][t]["srcc_vs_mos"] for f in folds if t in f["qat"] and t in f["ptq"]]
        if not d:
            continue
        out[t] = {"median_srcc_qat_minus_ptq": median(d), "per_fold": d,
                  "median_srcc_ptq": median(f["ptq"][t]["srcc_vs_mos"] for f in folds),
                  "median_srcc_qat": median(f["qat"][t]["srcc_vs_mos"] for f in folds)}
        if t != "float":
            out[t]["qat_scopes"] = sorted({str(f["qat"][t]["scope"]) for f in folds})
            out[t]["qat_gate_held_out_all_folds"] = all(f["qat"][t]["gate_pass_held_out"] for f in folds)
            out[t]["ptq_scopes"] = sorted({str(f["ptq"][t]["scope"]) for f in folds})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--targets", default="litert,onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recipe", choices=("train", "graph"), default="train",
                    help="train: lmliqa train --qat-from; graph: lmliqa quantize --qat-steps (targets that have it)")
    ap.add_argument("--qat-steps", type=int, default=600, help="--recipe graph: fine-tuning steps")
    ap.add_argument("--qat-scope", default="none",
                    help="--recipe graph: the --float-scope QAT quantizes with (default none: every op INT8)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    prov = provenance()
    targets = args.targets.split(",")
    t0 = time.time()
    folds = []
    for k, run in enumerate(args.runs):
        folds.append(one_fold(Path(run), targets, Path(args.work) / f"fold{k}", args.threads, args.recipe,
                              args.qat_steps, args.qat_scope))
        graph = args.recipe == "graph"
        result = {"provenance": prov, "targets": targets, "recipe": args.recipe,
                  "qat_steps": args.qat_steps if graph else None, "qat_scope": args.qat_scope if graph else None,
                  "folds": folds,
                  "summary": summary(folds, targets),
                  "wall_s": round(time.time() - t0)}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
