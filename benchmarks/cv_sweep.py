"""Repeated k-fold cross-validation of training recipes: every row of a sweep file, trained on each fold of each
split seed, each fold's model scoring the photos it held out with every evaluation layout asked for. One run of
one fold with one seed is not enough to see a 0.01 change (fold-to-fold noise is +-0.02-0.05 SRCC on 609 photos),
so a row's headline is over all its (seed, fold) runs, and each seed's out-of-fold predictions are also pooled.

    python benchmarks/cv_sweep.py --sweep benchmarks/sweeps/accuracy.yaml --data folder:../shared/data/livec-dev \\
        --seeds 0,1,2 --folds 5 --parallel 12 --device cuda --budget-s 480 --out runs/sweep \\
        --json benchmarks/results/DATE-cv-sweep.json
    python benchmarks/cv_sweep.py --report benchmarks/results/DATE-cv-sweep.json     # the README's table

The runs go fold by fold (every row on one seed's fold, then the next), several at once (--parallel: one process
each, --threads CPU threads each); the result file is rewritten after every run, so a sweep cut short by --budget-s
(no run is started that would not finish in time, by the slowest run so far; a run still going at the deadline is
stopped and recorded as cut) or by a kill keeps what finished. --resume skips runs whose result is already in
--out. A row: {preset, config (a training YAML), set: {option: value}, note}; see benchmarks/sweeps/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_rows(path: str, only: list[str] | None) -> dict[str, dict]:
    import yaml

    rows = yaml.safe_load(Path(path).read_text())["rows"]
    if only:
        missing = sorted(set(only) - set(rows))
        if missing:
            raise SystemExit(f"--rows: {missing} are not rows of {path} ({', '.join(rows)})")
        rows = {k: rows[k] for k in only}
    for name, row in rows.items():
        unknown = set(row) - {"preset", "config", "set", "note"}
        if unknown or "preset" not in row:
            raise SystemExit(f"{path}: row {name!r} needs a preset and may have config, set, note (got {sorted(row)})")
    return rows


def train_args(row: dict, data: str, folds: int, fold: int | str, seed: int | str, out: Path | str, device: str,
               threads: int, extra: list[str] = ()) -> list[str]:
    """The `lmliqa train` command line of one (row, seed, fold) run (fold "J", seed "S": the row's pattern)."""
    args = ["train", "--preset", row["preset"], "--data", data, "--split", f"kfold:{folds}:{fold}",
            "--device", device, "--threads", str(threads), "--out", str(out),
            "--set", f"split_seed={seed}", "--set", f"seed={seed}", "--set", "eval_every=0"]
    if row.get("config"):
        args += ["--config", str(REPO / row["config"]) if not Path(row["config"]).is_absolute() else row["config"]]
    for key, value in (row.get("set") or {}).items():
        args += ["--set", f"{key}={json.dumps(value) if isinstance(value, (list, dict)) else value}"]
    for item in extra:
        args += ["--set", item]
    return args


def run_one(spec: dict) -> dict:
    """Train one fold and score its held-out photos with each layout (the child process's work)."""
    import torch

    from lmliqa.cli import main as lmliqa_main
    from lmliqa.metrics import iqa_metrics
    from lmliqa.models.checkpoint import load_checkpoint
    from lmliqa.train.evaluate import held_out_indices, predict

    out = Path(spec["out"])
    t0 = time.perf_counter()
    rc = lmliqa_main(spec["train_args"])
    if rc:
        raise SystemExit(f"lmliqa train exited {rc}")
    train_s = time.perf_counter() - t0
    ckpt = out / "final.safetensors"
    ds, _, test = held_out_indices(ckpt)
    model, _ = load_checkpoint(ckpt, map_location=spec["device"])
    base = model.config.contract
    mos = ds.label.to_training(np.array([ds.records[i].mos for i in test]))
    layouts = {}
    for name in spec["layouts"]:
        with torch.autocast(spec["device"].split(":")[0], dtype=torch.bfloat16, enabled=spec["device"] != "cpu"):
            p = predict(model, ds, test, device=spec["device"], contract=base.with_layout(name))
        if p.errors:
            raise SystemExit(f"{len(p.errors)} held-out photo(s) failed: {list(p.errors.values())[:3]}")
        m = iqa_metrics(p.scores, mos)
        layouts[name] = {"srcc": m["srcc"], "plcc": m["plcc"], "pred": [round(float(v), 4) for v in p.scores]}
    summary = json.loads((out / "summary.json").read_text())
    return {"images": [str(ds.records[i].path.name) for i in test], "mos": [round(float(v), 4) for v in mos],
            "layouts": layouts, "train_s": round(train_s, 1), "train_wall_s": summary.get("wall_s"),
            "crops_per_s": summary.get("train_crops_per_s"), "amp": summary.get("amp")}


def summarise(runs: dict, layouts: list[str]) -> dict:
    """Per layout: median/mean/sd of SRCC and PLCC over the (seed, fold) runs, and each seed's pooled CV."""
    from lmliqa.metrics import iqa_metrics

    out = {}
    for name in layouts:
        done = {k: r for k, r in runs.items() if "layouts" in r and name in r["layouts"]}
        if not done:
            continue
        s = [r["layouts"][name]["srcc"] for r in done.values()]
        p = [r["layouts"][name]["plcc"] for r in done.values()]
        seeds: dict[str, list] = {}
        for key, r in done.items():
            seeds.setdefault(key.split("/")[0], []).append(r)
        pooled = {}
        for seed, rs in sorted(seeds.items()):
            pred = np.concatenate([r["layouts"][name]["pred"] for r in rs])
            mos = np.concatenate([r["mos"] for r in rs])
            m = iqa_metrics(pred, mos)
            pooled[seed] = {"folds": len(rs), "n": int(len(mos)), "srcc": m["srcc"], "plcc": m["plcc"]}
        out[name] = {"runs": len(done), "median_srcc": median(s), "median_plcc": median(p),
                     "mean_srcc": float(np.mean(s)), "mean_plcc": float(np.mean(p)),
                     "sd_srcc": float(np.std(s, ddof=1)) if len(s) > 1 else None,
                     "sd_plcc": float(np.std(p, ddof=1)) if len(p) > 1 else None,
                     "min_srcc": min(s), "max_srcc": max(s), "pooled_by_seed": pooled}
    return out


def report(path: str) -> str:
    """The README table of a sweep result: one line per row and layout."""
    res = json.loads(Path(path).read_text())
    lines = ["| row | layout | runs | median SRCC | median PLCC | mean SRCC (sd) | pooled SRCC by seed | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in res["rows"].items():
        walls = [r["train_wall_s"] for r in row["runs"].values() if r.get("train_wall_s")]
        wall = f"{median(walls):.0f}" if walls else "-"
        for layout, s in row["summary"].items():
            pooled = " / ".join(f"{v['srcc']:.3f}" + ("" if v["folds"] == res["folds"] else f" ({v['folds']}f)")
                                for v in s["pooled_by_seed"].values())
            sd = f" ({s['sd_srcc']:.3f})" if s["sd_srcc"] is not None else ""
            lines.append(f"| {name} | {layout} | {s['runs']} | {s['median_srcc']:.3f} | {s['median_plcc']:.3f} | "
                         f"{s['mean_srcc']:.3f}{sd} | {pooled} | {wall} |")
    return "\n".join(lines)


def paired(res: dict, base: str, other: str, layout: str = "accurate") -> dict | None:
    """OTHER minus BASE over the (seed, fold) runs both finished: the same held-out photos, so the fold-to-fold
    noise cancels; mean difference and how many runs OTHER won, per metric."""
    a, b = res["rows"][base]["runs"], res["rows"][other]["runs"]
    keys = sorted(k for k in set(a) & set(b) if layout in a[k].get("layouts", {}) and layout in b[k].get("layouts", {}))
    if not keys:
        return None
    out = {"runs": len(keys)}
    for m in ("srcc", "plcc"):
        d = np.array([b[k]["layouts"][layout][m] - a[k]["layouts"][layout][m] for k in keys])
        out[m] = {"mean_diff": float(d.mean()), "wins": int((d > 0).sum())}
    return out


def report_paired(path: str, base: str, layout: str = "accurate") -> str:
    res = json.loads(Path(path).read_text())
    lines = [f"| {layout}: row vs {base} | runs | mean dSRCC | wins | mean dPLCC | wins |", "|---|---|---|---|---|---|"]
    for name in res["rows"]:
        p = paired(res, base, name, layout) if name != base else None
        if p:
            lines.append(f"| {name} | {p['runs']} | {p['srcc']['mean_diff']:+.4f} | {p['srcc']['wins']}/{p['runs']} | "
                         f"{p['plcc']['mean_diff']:+.4f} | {p['plcc']['wins']}/{p['runs']} |")
    return "\n".join(lines)


def card_cv(path: str, row: str, layout: str, seed: int, out: str) -> dict:
    """One row's cross-validation in the format of benchmarks/cv_accuracy.py (what `lmliqa release --cv` puts in
    the model card): seed SEED's out-of-fold predictions pooled, with bootstrap intervals, its folds, and the
    median over every (seed, fold) run in the note."""
    from lmliqa.metrics import bootstrap_ci, iqa_metrics
    from lmliqa.provenance import provenance

    res = json.loads(Path(path).read_text())
    runs = res["rows"][row]["runs"]
    mine = sorted((k, r) for k, r in runs.items() if k.startswith(f"s{seed}/") and layout in r.get("layouts", {}))
    if len(mine) != res["folds"]:
        raise SystemExit(f"{path}: row {row!r} seed {seed} has {len(mine)} of {res['folds']} folds")
    pred = np.concatenate([r["layouts"][layout]["pred"] for _, r in mine])
    mos = np.concatenate([r["mos"] for _, r in mine])
    s = res["rows"][row]["summary"][layout]
    doc = {"provenance": provenance(), "file": out, "data": res["data"], "from": path,
           "protocol": f"{res['folds']}-fold CV, split seed {seed}, layout {layout} (row {row} of {Path(path).name})",
           "n": int(len(mos)), "pooled": bootstrap_ci(pred, mos), "pooled_metrics": iqa_metrics(pred, mos),
           "folds": [{"split": f"kfold:{res['folds']}:{k.split('/f')[1]}", "n": len(r["mos"]),
                      "srcc": r["layouts"][layout]["srcc"], "plcc": r["layouts"][layout]["plcc"]} for k, r in mine],
           "note": f"Trained on {res['device']} ({', '.join(res['provenance']['machine']['gpus']) or 'CPU'}). Over "
                   f"all {s['runs']} runs ({len(res['seeds'])} split seeds x {res['folds']} folds): median SRCC "
                   f"{s['median_srcc']:.3f}, median PLCC {s['median_plcc']:.3f} ({Path(path).name})."}
    Path(out).write_text(json.dumps(doc, indent=2))
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", help="the rows (YAML)")
    ap.add_argument("--rows", help="only these rows, comma-separated, in this order")
    ap.add_argument("--data", help="data spec of the photos")
    ap.add_argument("--seeds", default="0,1,2", help="split seeds (each also seeds the training)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--layouts", default="accurate,accurate_flip,dense", help="evaluation layouts scored per run")
    ap.add_argument("--parallel", type=int, default=1, help="runs at once")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budget-s", type=float, default=0, help="stop starting runs that would end after this (0: none)")
    ap.add_argument("--out", help="run folders go here")
    ap.add_argument("--json", help="the result file (rewritten after every run)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a training option for every row (after the row's own), e.g. max_steps=2 for a smoke test")
    ap.add_argument("--note", default="", help="a sentence the result file carries (e.g. how the data was copied)")
    ap.add_argument("--resume", action="store_true", help="keep runs already finished in --out")
    ap.add_argument("--report", metavar="RESULT", help="print the markdown table of a result file and exit")
    ap.add_argument("--paired", metavar="ROW", help="--report: also each row minus ROW, run by run (same photos)")
    ap.add_argument("--card", metavar="ROW", help="--report: write ROW's CV for the model card (cv_accuracy.py's "
                    "format; seed --card-seed, the first of --layouts) to --json")
    ap.add_argument("--card-seed", type=int, default=0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.report and args.card:
        if not args.json:
            ap.error("--card needs --json")
        doc = card_cv(args.report, args.card, args.layouts.split(",")[0], args.card_seed, args.json)
        print(f"{args.json}: SRCC {doc['pooled']['srcc']['value']:.4f} [{doc['pooled']['srcc']['low']:.4f}, "
              f"{doc['pooled']['srcc']['high']:.4f}] over {doc['n']} photos", file=sys.stderr)
        return 0
    if args.report:
        print(report(args.report))
        if args.paired:
            for layout in args.layouts.split(","):
                print()
                print(report_paired(args.report, args.paired, layout))
        return 0
    if args.child:
        spec = json.loads(Path(args.child).read_text())
        result = run_one(spec)
        Path(spec["out"], "cv_run.json").write_text(json.dumps(result))
        return 0
    for need in ("sweep", "data", "out", "json"):
        if not getattr(args, need):
            ap.error(f"--{need} is required")

    from lmliqa.provenance import provenance

    provenance()                      # fixes the commit this sweep starts from
    rows = load_rows(args.sweep, args.rows.split(",") if args.rows else None)
    seeds = [int(s) for s in args.seeds.split(",")]
    layouts = args.layouts.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # fold by fold, every row on a fold before the next fold: a sweep cut short still pairs its rows run by run
    queue = [(name, seed, fold) for seed in seeds for fold in range(args.folds) for name in rows]
    results: dict[str, dict[str, dict]] = {name: {} for name in rows}
    if args.resume:
        for name, seed, fold in queue:
            f = out / name / f"s{seed}_f{fold}" / "cv_run.json"
            if f.is_file():
                results[name][f"s{seed}/f{fold}"] = json.loads(f.read_text())
    todo = [q for q in queue if f"s{q[1]}/f{q[2]}" not in results[q[0]]]
    t_start = time.monotonic()
    running: dict[tuple, tuple[subprocess.Popen, float, object]] = {}
    durations: list[float] = []
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(args.threads))

    def write() -> None:
        doc = {"provenance": provenance(), "file": args.json, "sweep": args.sweep, "data": args.data,
               "protocol": f"{args.folds}-fold CV (kfold:{args.folds}:J) x split seeds {seeds}; each run also "
                           "seeded by its split seed; every fold's model scores only the photos it held out",
               "folds": args.folds, "seeds": seeds, "layouts": layouts, "device": args.device,
               "parallel": args.parallel, "threads_per_run": args.threads, "set": args.set, "note": args.note,
               "elapsed_s": round(time.monotonic() - t_start, 1), "not_run": [], "rows": {}}
        for name, row in rows.items():
            runs = results[name]
            pattern = train_args(row, args.data, args.folds, "J", "S", f"{args.out}/{name}/sS_fJ", args.device,
                                 args.threads, args.set)
            doc["rows"][name] = {"spec": row, "command": "lmliqa " + " ".join(pattern), "runs": runs,
                                 "summary": summarise(runs, layouts)}
        doc["not_run"] = [f"{n}/s{s}/f{f}" for n, s, f in queue if f"s{s}/f{f}" not in results[n]]
        tmp = Path(args.json + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, args.json)

    def launch(name: str, seed: int, fold: int) -> None:
        run_dir = out / name / f"s{seed}_f{fold}"
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = {"out": str(run_dir), "device": args.device, "layouts": layouts,
                "train_args": train_args(rows[name], args.data, args.folds, fold, seed, run_dir, args.device,
                                         args.threads, args.set)}
        (run_dir / "cv_spec.json").write_text(json.dumps(spec))
        log = open(run_dir / "cv.log", "w")
        proc = subprocess.Popen([sys.executable, __file__, "--child", str(run_dir / "cv_spec.json")],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        running[(name, seed, fold)] = (proc, time.monotonic(), log)

    def finish(key: tuple, status: str) -> None:
        proc, t0, log = running.pop(key)
        log.close()
        name, seed, fold = key
        run_dir = out / name / f"s{seed}_f{fold}"
        if status == "ok" and proc.returncode == 0 and (run_dir / "cv_run.json").is_file():
            results[name][f"s{seed}/f{fold}"] = json.loads((run_dir / "cv_run.json").read_text())
            durations.append(time.monotonic() - t0)
        else:
            tail = (run_dir / "cv.log").read_text(errors="replace").splitlines()[-3:]
            results[name][f"s{seed}/f{fold}/failed"] = {"status": status, "rc": proc.returncode, "log_tail": tail}
        print(f"[{time.monotonic() - t_start:6.0f}s] {name} s{seed} f{fold}: {status} rc={proc.returncode}",
              file=sys.stderr, flush=True)
        write()

    try:
        while todo or running:
            now = time.monotonic() - t_start
            room = args.budget_s - now if args.budget_s else float("inf")
            expect = max(durations) if durations else 0.0
            while todo and len(running) < args.parallel and room > expect:
                launch(*todo.pop(0))
            if not running:
                break                              # nothing fits in what is left of the budget
            for key in list(running):
                proc, t0, _ = running[key]
                if proc.poll() is not None:
                    finish(key, "ok" if proc.returncode == 0 else "failed")
                elif args.budget_s and time.monotonic() - t_start > args.budget_s:
                    proc.kill()
                    proc.wait()
                    finish(key, "cut at the budget")
            time.sleep(0.5)
    except KeyboardInterrupt:
        for key, (proc, _, _) in list(running.items()):
            proc.kill()
            proc.wait()
            finish(key, "interrupted")
        raise
    finally:
        write()
    print(report(args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
