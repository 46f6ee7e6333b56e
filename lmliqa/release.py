"""`lmliqa release`: one checkpoint -> a release folder that can be checked byte for byte and score for score.

    lmliqa release --checkpoint CKPT --calib SPEC --eval SPEC --out DIR [--targets ...] [--keep onnx:int8,...]

Stages, in order (each printed as it runs): data (the evaluation photos against the calibration photos and the
checkpoint's training photos, by content hash), export, quantize (calibrated on --calib, validated on --eval),
parity (every artifact x precision against torch on the evaluation photos), bench, golden probes, and the
documents. DIR then holds the artifacts, ``manifest.json`` (lmliqa.manifest), ``golden/`` (lmliqa.golden),
``MODEL_CARD.md``, ``report.md`` with its plots and ``evidence/`` (the parity, quantization and bench reports).

A gate that fails stops the release: no manifest is written, ``evidence/release_failed.json`` names the gates and
keeps the numbers, and the command exits 1. `lmliqa verify DIR` re-checks a release anywhere.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import targets as registry
from .manifest import ReleaseError, sha256_file
from .targets import Precision, Target

EVIDENCE = "evidence"


class ReleaseFailed(RuntimeError):
    """A gate failed: the release was not written (the evidence was)."""

    def __init__(self, failures: list[str], evidence: Path) -> None:
        super().__init__(f"release not written: {len(failures)} gate(s) failed: " + "; ".join(failures)
                         + f" (evidence kept in {evidence})")
        self.failures = failures


@dataclass
class ReleaseConfig:
    checkpoint: Path
    calib: str                       # data spec of the calibration photos (training photos are fine)
    eval: str                        # data spec of the evaluation photos (never trained or calibrated on)
    out: Path
    targets: list[Target] = field(default_factory=lambda: registry.targets(registry.Stage.EXPORT))
    name: str | None = None
    keep: tuple[str, ...] = ()       # "target" or "target:precision": the artifacts the release ships (all when empty)
    include_checkpoint: bool = False  # ship the checkpoint too (the torch reference)
    allow_overlap: bool = False      # evaluate on training photos anyway (stated in bold in the card and report)
    cv: Path | None = None           # a cross-validation result (benchmarks/cv_accuracy.py) for the card
    n_calib: int = 32
    n_val: int = 96                  # quantize's validation images (from --eval)
    eval_limit: int | None = None
    bench_batches: tuple[int, ...] = (1, 8)
    bench_iters: int = 3
    bench_min_time: float = 1.0
    threads: int | None = None


# ----------------------------------------------------------------------------------------------------- data checks
def _hashes(paths: list[Path]) -> dict[str, str]:
    return {str(p): sha256_file(p) for p in paths}


def _set_hash(hashes) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def training_hashes(ckpt_meta: dict[str, Any]) -> tuple[str, set[str]]:
    """(data spec, sha256 of every photo the checkpoint was trained on): the hashes the checkpoint records, else
    rebuilt from the data spec and split it records. Raises ReleaseError when that cannot be done here."""
    from types import SimpleNamespace

    from .data import open_dataset
    from .train.engine import resolve_split

    extra = ckpt_meta.get("extra", {})
    spec = extra.get("dataset")
    if extra.get("train_images_sha256"):
        return spec, set(extra["train_images_sha256"])
    if not spec:
        raise ReleaseError("the checkpoint records no training data spec, so the evaluation photos cannot be checked "
                           "against its training photos; pass --allow-overlap to release anyway")
    tries = [spec]
    if ":" in spec and extra.get("dataset_root"):
        tries.append(f"{spec.split(':', 1)[0]}:{extra['dataset_root']}")    # relative spec, recorded root
    last = None
    for s in tries:
        try:
            ds = open_dataset(s)
            break
        except Exception as exc:     # noqa: BLE001 - reported below with every spec tried
            last = exc
    else:
        raise ReleaseError(f"the checkpoint's training data {spec!r} cannot be opened here ({last}); it is needed to "
                           "check the evaluation photos against the training photos (or pass --allow-overlap)")
    split = SimpleNamespace(split=extra.get("split", "all"), split_seed=extra.get("split_seed", 0))
    train_idx, _ = resolve_split(split, ds)
    return spec, set(_hashes([ds.records[i].path for i in train_idx]).values())


def check_data(cfg: ReleaseConfig, ckpt_meta: dict[str, Any]) -> dict[str, Any]:
    """The evaluation photos: disjoint from the calibration photos (always) and from the training photos (unless
    --allow-overlap), by content hash. Returns the manifest's data record; ``skip`` lists the evaluation paths left
    out because they are calibration photos (when --calib and --eval name the same set)."""
    from lmliqa.quantize.calib import evenly

    from .data import open_dataset

    calib_ds, eval_ds = open_dataset(cfg.calib), open_dataset(cfg.eval)
    calib_paths = [calib_ds.records[i].path for i in evenly(len(calib_ds.records), cfg.n_calib)]
    calib_h = _hashes(calib_paths)
    eval_h = _hashes([r.path for r in eval_ds.records])
    calib_set = set(calib_h.values())
    skip = [p for p, h in eval_h.items() if h in calib_set]
    if skip and cfg.calib != cfg.eval:
        raise ReleaseError(f"{len(skip)} evaluation photos of {cfg.eval} are calibration photos of {cfg.calib} (same "
                           f"content), e.g. {skip[0]}: evaluate on photos the quantizers never saw")
    evaluated = {p: h for p, h in eval_h.items() if h not in calib_set}
    if cfg.eval_limit:
        evaluated = dict(list(evaluated.items())[:cfg.eval_limit])
    if len(evaluated) < 10:
        raise ReleaseError(f"{cfg.eval}: {len(evaluated)} evaluation photos left after the calibration photos; "
                           "need at least 10")
    train_spec, train_set = training_hashes(ckpt_meta) if not cfg.allow_overlap else (None, set())
    overlap = sorted(p for p, h in evaluated.items() if h in train_set)
    if overlap and not cfg.allow_overlap:
        raise ReleaseError(f"{len(overlap)} of the {len(evaluated)} evaluation photos were training photos of the "
                           f"checkpoint ({train_spec}, split {ckpt_meta['extra'].get('split')}), e.g. {overlap[0]}: "
                           "accuracy on them would be flattering. Evaluate on other photos, or pass --allow-overlap "
                           "(the card and the report then say so in bold)")
    return {
        "calibration": {"spec": cfg.calib, "n_images": len(calib_h), "sha256": _set_hash(calib_h.values())},
        "evaluation": {"spec": cfg.eval, "n_images": len(evaluated), "sha256": _set_hash(evaluated.values()),
                       "left_out_as_calibration": len(skip)},
        "training": {"spec": ckpt_meta.get("extra", {}).get("dataset"),
                     "split": ckpt_meta.get("extra", {}).get("split"), "n_images": len(train_set) or None,
                     "checked": not cfg.allow_overlap,
                     "overlap_with_evaluation": None if cfg.allow_overlap else len(overlap)},
        "allow_overlap": cfg.allow_overlap,
        "skip": skip,
    }


# -------------------------------------------------------------------------------------------------------- helpers
def _stage(i: int, n: int, name: str, what: str):
    print(f"[{i}/{n}] {name}: {what}", file=sys.stderr, flush=True)
    return time.perf_counter()


def _done(t0: float, note: str = "") -> None:
    print(f"      done in {time.perf_counter() - t0:.0f} s" + (f": {note}" if note else ""), file=sys.stderr,
          flush=True)


def _keeps(keep: tuple[str, ...], target: str, precision: Precision) -> bool:
    if not keep:
        return True
    for k in keep:
        t, _, p = k.partition(":")
        if registry.get(t).name == target and (not p or Precision(p) is precision):
            return True
    return False


def _tolerance(gate, observed: list[float]) -> tuple[float | None, str]:
    """The per-probe |score - reference| a port may show: the gate's max |d| when it has one; else (quantized
    artifacts, gated on ranking) 1.5 x the largest |d| measured here, rounded up to 0.05."""
    if gate.max_abs is not None:
        return float(gate.max_abs), f"gate ({gate})"
    if not observed:
        return None, "not measured here"
    return max(0.05, math.ceil(1.5 * max(observed) * 20) / 20), \
        "1.5 x the largest |d| measured here on the evaluation photos and the probes, rounded up to 0.05"


# --------------------------------------------------------------------------------------------------------- release
def build_release(cfg: ReleaseConfig) -> dict[str, Any]:
    """Run every stage; returns the manifest. Raises ReleaseFailed (evidence kept, no manifest) when a gate fails,
    ReleaseError when the inputs cannot make an honest release."""
    from lmliqa.benchmarks.bench import run_bench
    from lmliqa.export import Status, export_checkpoint
    from lmliqa.quantize import quantize_models

    from . import card, golden
    from .manifest import write_manifest
    from .metrics import bootstrap_ci, iqa_metrics
    from .models.checkpoint import read_metadata
    from .parity import run_parity
    from .provenance import provenance

    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out} is not empty: a release is written into a new folder")
    ckpt_meta = read_metadata(cfg.checkpoint)
    n = 7
    t0 = _stage(1, n, "data", f"evaluation {cfg.eval} vs calibration {cfg.calib} and the training photos")
    data = check_data(cfg, ckpt_meta)
    skip = data.pop("skip")
    _done(t0, f"{data['evaluation']['n_images']} evaluation photos, none seen in training"
          if not cfg.allow_overlap else "overlap allowed")
    evidence = out / EVIDENCE
    evidence.mkdir(parents=True)
    failures: list[str] = []

    t0 = _stage(2, n, "export", ", ".join(t.name for t in cfg.targets))
    exported = export_checkpoint(cfg.checkpoint, cfg.targets, out)
    (evidence / "export.json").write_text(json.dumps([r.to_dict() for r in exported], indent=2))
    failures += [f"export {r.target}: {r.reason}" for r in exported if r.status is Status.FAILED]
    _done(t0, "; ".join(f"{r.target} {r.status}" for r in exported))

    quantizable = [t for t in cfg.targets if t.quantize_module is not None]
    t0 = _stage(3, n, "quantize", f"{', '.join(t.name for t in quantizable)}, calibrated on {cfg.calib}, "
                                  f"validated on {cfg.eval}")
    quant = quantize_models(out, quantizable, calib=cfg.calib, val=cfg.eval, n_calib=cfg.n_calib, n_val=cfg.n_val)
    shutil.move(str(out / "quantization.json"), evidence / "quantization.json")
    for r in quant["results"]:
        if r["status"] == Status.FAILED.value:
            failures.append(f"quantize {r['target']}: {r['reason']}")
        for name, v in r["details"].get("validation", {}).items():
            if v.get("gate_pass") is False:
                failures.append(f"quantize validation {name}: {v['gate']} (SRCC {v['srcc_vs_ref']:.4f}, mean |d| "
                                f"{v['mean_abs']:.3f}, flips {v['rank_flip_rate']:.2%} / "
                                f"{v['material_flip_rate']:.2%} of pairs > 1 apart)")
    _done(t0, "; ".join(f"{r['target']} {r['status']}" for r in quant["results"]))

    t0 = _stage(4, n, "parity", f"every artifact x precision against torch on {data['evaluation']['n_images']} "
                                "evaluation photos")
    parity = run_parity(cfg.checkpoint, out, cfg.eval, limit=cfg.eval_limit, threads=cfg.threads,
                        out=evidence / "parity", skip=skip)
    for r in parity["rows"]:
        if not r["gate_pass"]:
            failures.append(f"parity {r['artifact']} {r['precision']}: {r['gate']} (max |d| {r['max_abs']:.4g}, "
                            f"mean |d| {r['mean_abs']:.4g}, SRCC {r['srcc_vs_ref']:.5f})")
    failures += [f"parity {c['artifact']} {c['precision']}: {c['status']}" for c in parity["capability"]
                 if c["outcome"] == "failed"]
    _done(t0, f"{len(parity['rows'])} rows measured, {sum(not r['gate_pass'] for r in parity['rows'])} failing")

    t0 = _stage(5, n, "bench", f"batch {','.join(map(str, cfg.bench_batches))}")
    bench = run_bench(out, cfg.checkpoint, list(cfg.bench_batches), threads=cfg.threads, iters=cfg.bench_iters,
                      min_time=cfg.bench_min_time, progress=None)
    (evidence / "bench.json").write_text(json.dumps(bench, indent=2))
    _done(t0, f"{len(bench['rows'])} rows")

    t0 = _stage(6, n, "golden", f"{len(golden.PROBES)} probe images, the reference and every artifact here")
    shipped = [a for a in registry.discover(out) if _keeps(cfg.keep, a.target.name, a.precision)]
    ckpt_name = f"{cfg.name or ckpt_meta['config']['name']}.safetensors" if cfg.include_checkpoint else None
    gold = _golden(out / "golden", cfg.checkpoint, shipped, parity, ckpt_name)
    for name, g in gold["artifacts"].items():
        if g.get("check") and not g["check"]["ok"]:
            failures.append(f"golden probes {name}: max |d| {g['check']['max_abs']:.4g} > {g['tolerance']}")
    _done(t0)

    ref, mos = np.asarray(parity["torch_scores"]), np.asarray(parity["mos"])
    accuracy = {"data": cfg.eval, "n": len(ref), "metrics": iqa_metrics(ref, mos), "ci95": bootstrap_ci(ref, mos)}
    if failures:
        (evidence / "release_failed.json").write_text(json.dumps({"failures": failures, "data": data,
                                                                  "provenance": provenance()}, indent=2))
        raise ReleaseFailed(failures, evidence)

    t0 = _stage(7, n, "documents", "MODEL_CARD.md, report.md with plots, manifest.json")
    for a in registry.discover(out):          # what the release does not ship (and the program) goes
        if a not in shipped:
            shutil.rmtree(a.path) if a.path.is_dir() else a.path.unlink()
    for p in out.glob("*.pt2"):
        p.unlink()
    if ckpt_name:
        shutil.copyfile(cfg.checkpoint, out / ckpt_name)
    kept = registry.discover(out)
    meta = kept[0].metadata if kept else {}
    cv = json.loads(Path(cfg.cv).read_text()) if cfg.cv else None
    weak = card.weaknesses(parity, cfg.eval)
    body = {
        "name": cfg.name or f"{ckpt_meta['config']['name']}-{sha256_file(cfg.checkpoint)[:8]}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance(),
        "model": ckpt_meta["config"]["name"], "backbone": ckpt_meta["config"]["backbone"],
        "checkpoint": {"file": ckpt_name, "sha256": sha256_file(cfg.checkpoint), "source": Path(cfg.checkpoint).name,
                       "trained_on": data["training"]},
        "contract": meta.get("contract") or ckpt_meta["config"]["contract"],
        "score": meta.get("score") or ckpt_meta["config"].get("score"),
        "data": data, "accuracy": accuracy, "cross_validation": cv and card.cv_headline(cv), "weaknesses": weak,
        "artifacts": _artifact_records(out, shipped, parity, quant, exported, gold, ckpt_name),
        "not_verified_here": [c for c in parity["capability"] if c["outcome"] not in ("verified",)]
        + [{"artifact": f"{r.target} (export)", "precision": "-", "status": f"{r.status}: {r.reason}"}
           for r in exported if r.status in (Status.PARTIAL, Status.UNAVAILABLE)],
        "bench": {"cpu": bench["cpu"], "threads": bench["threads"], "batches": bench["batches"]},
    }
    card.write_report(out, body, parity, bench, quant)
    (out / "MODEL_CARD.md").write_text(card.model_card(body, parity, bench))
    write_manifest(out, body)
    _done(t0, f"{out}/manifest.json")
    return body


def _golden(folder: Path, checkpoint: Path, shipped, parity: dict[str, Any], ckpt_name: str | None) -> dict[str, Any]:
    """Write the probes and golden.json: the torch reference's image and crop scores, each shipped artifact's
    scores (as stored) and its tolerance (the shipped checkpoint, CKPT_NAME, must reproduce the reference)."""
    from . import golden
    from .runtimes import load
    from .runtimes.base import BackendUnavailable

    golden.write_probes(folder)
    ref = golden.score_probes(load(checkpoint, backend="torch"), folder)
    record: dict[str, Any] = {"probes": [{**p, "sha256": sha256_file(folder / p["file"])}
                                         for p in golden.probe_records()],
                              "reference": {"backend": "torch", "precision": "fp32",
                                            "checkpoint_sha256": sha256_file(checkpoint), "scores": ref},
                              "artifacts": {}}
    for art in shipped:
        row = next((r for r in parity["rows"] if r["artifact"] == art.name
                    and r["precision"] == art.precision.value), None)
        entry: dict[str, Any] = {"target": art.target.name, "precision": art.precision.value}
        try:
            scorer = load(art.path, backend=art.target.name)
        except BackendUnavailable as exc:
            gate = art.target.gate(art.precision, Precision(art.metadata.get("weights") or "fp32"))
            entry["tolerance"], entry["tolerance_basis"] = _tolerance(gate, [])
            entry["not_checked_here"] = str(exc)
            record["artifacts"][art.name] = entry
            continue
        got = golden.score_probes(scorer, folder)
        probe_d = [abs(got[k]["score"] - ref[k]["score"]) for k in ref]
        gate = art.target.gate(scorer.precision, scorer.weights)
        entry["tolerance"], entry["tolerance_basis"] = _tolerance(gate, probe_d + ([row["max_abs"]] if row else []))
        entry["scores"] = {k: v["score"] for k, v in got.items()}
        record["artifacts"][art.name] = entry
        entry["check"] = {"max_abs": max(probe_d), "ok": entry["tolerance"] is not None
                          and max(probe_d) <= entry["tolerance"]}
    if ckpt_name:
        record["artifacts"][ckpt_name] = {"target": "torch", "precision": "fp32", "tolerance": 0.01,
                                          "tolerance_basis": "the reference itself, on another torch build or CPU",
                                          "scores": {k: v["score"] for k, v in ref.items()}}
    (folder / golden.GOLDEN).write_text(json.dumps(record, indent=2))
    return record


def _artifact_records(out: Path, shipped, parity, quant, exported, gold, ckpt_name) -> dict[str, Any]:
    """Per shipped artifact: target, precision, the gates it passed with the measured numbers, its tools."""
    records: dict[str, Any] = {}
    validation = {name: v for r in quant["results"] for name, v in r["details"].get("validation", {}).items()}
    for art in shipped:
        gates = []
        for r in parity["rows"]:
            if r["artifact"] == art.name:
                gates.append({"check": "parity", "executed_as": r["precision"], "gate": r["gate"],
                              "pass": r["gate_pass"], "n": r["n"],
                              "measured": {k: r[k] for k in ("max_abs", "mean_abs", "p95_abs", "srcc_vs_ref",
                                                            "rank_flip_rate", "material_flip_rate", "srcc_vs_mos",
                                                            "plcc_vs_mos")}})
        v = validation.get(art.name)
        if v and "gate" in v:
            gates.append({"check": "quantize validation", "gate": v["gate"], "pass": v["gate_pass"], "n": v["n"],
                          "measured": {k: v.get(k) for k in ("max_abs", "mean_abs", "srcc_vs_ref", "material_flip_rate",
                                                             "srcc_vs_mos", "srcc_vs_mos_ref")}})
        g = gold["artifacts"].get(art.name, {})
        if "check" in g:
            gates.append({"check": "golden probes", "gate": f"max <= {g['tolerance']}", "pass": g["check"]["ok"],
                          "measured": {"max_abs": g["check"]["max_abs"]}})
        status = next((c["status"] for c in parity["capability"] if c["artifact"] == art.name), "")
        records[art.name] = {"target": art.target.name, "precision": art.precision.value,
                             "weights": art.metadata.get("weights") or "fp32", "status_here": status,
                             "gates": gates, "tools": art.metadata.get("tools", {}),
                             "quantization": art.metadata.get("quantization")}
    if ckpt_name:
        records[ckpt_name] = {"target": "torch", "precision": "fp32", "weights": "fp32",
                              "status_here": "the reference", "gates": [], "tools": {}}
    return records


def format_failure(exc: ReleaseFailed) -> str:
    return "lmliqa release: FAILED\n" + "\n".join(f"  gate: {f}" for f in exc.failures)
