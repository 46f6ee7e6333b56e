"""`lmliqa release`: one checkpoint -> a release folder that can be checked byte for byte and score for score.

    lmliqa release --checkpoint CKPT --calib SPEC --eval SPEC --out DIR [--targets ...] [--keep onnx:int8,...]

A release is a list of stages run in order (``STAGES``), each printed as it runs: data (the evaluation photos
against the calibration photos and the checkpoint's training photos, by content hash), export, quantize (calibrated
on --calib, validated on --eval), parity (every artifact x precision against torch on the evaluation photos),
bench, golden probes, and the documents. Each stage reads what the earlier ones left in the :class:`Release` it is
given and adds its own; the checks report :class:`lmliqa.stages.StageResult` objects, and a release stops on any
that failed. DIR then holds the artifacts, ``manifest.json`` (lmliqa.manifest), ``golden/`` (lmliqa.golden),
``MODEL_CARD.md``, ``report.md`` with its plots and ``evidence/`` (the parity, quantization and bench reports).

A gate that fails stops the release before its documents: no manifest is written, ``evidence/release_failed.json``
names the gates and keeps the numbers, and the command exits 1. `lmliqa verify DIR` re-checks a release anywhere.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import targets as registry
from .errors import BackendUnavailable, DatasetError, ReleaseError, ReleaseFailed
from .fidelity import Gate
from .manifest import sha256_file
from .stages import Outcome, StageResult, Step, failures
from .targets import Artifact, Precision, Target

if TYPE_CHECKING:
    from .data import PhotoSet

EVIDENCE = "evidence"


@dataclass(frozen=True)
class Keep:
    """Which artifacts a release ships: (target, precision or None for all of its precisions) pairs; empty = all."""

    pairs: tuple[tuple[str, Precision | None], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Keep:
        """'onnx:int8,litert' -> Keep; an unknown target or precision fails before any work."""
        pairs = []
        for k in (k.strip() for k in (text or "").split(",")):
            if k:
                t, _, p = k.partition(":")
                pairs.append((registry.get(t).name, Precision(p) if p else None))
        return cls(tuple(pairs))

    def __contains__(self, art: Artifact) -> bool:
        return not self.pairs or any(t == art.target.name and p in (None, art.precision) for t, p in self.pairs)

    def wants(self, target: Target, quantized: bool = False) -> bool:
        """Whether the release ships an artifact of TARGET, with QUANTIZED a quantized one (and so builds it)."""
        return not self.pairs or any(t == target.name and (not quantized or p is None or p.quantized)
                                     for t, p in self.pairs)


@dataclass
class ReleaseConfig:
    checkpoint: Path
    calib: str                       # data spec of the calibration photos (training photos are fine)
    eval: str                        # data spec of the evaluation photos (never trained or calibrated on)
    out: Path
    targets: list[Target] = field(default_factory=lambda: registry.targets(registry.Stage.EXPORT))
    name: str | None = None
    keep: Keep = field(default_factory=Keep)     # the artifacts the release ships (all when empty)
    include_checkpoint: bool = False  # ship the checkpoint too (the torch reference)
    allow_overlap: bool = False      # evaluate on training photos anyway (stated in bold in the card and report)
    cv: Path | None = None           # a cross-validation result (benchmarks/cv_accuracy.py) for the card
    cross: tuple[Path, ...] = ()     # cross-dataset tables (lmliqa eval --cross --out) for the card, merged
    n_calib: int = 32
    scope: str | None = None         # --float-scope for every quantizer (None: each target's own ladder)
    n_val: int = 96                  # quantize's validation images (the float-scope ladder's gate)
    # where they come from: None, other photos of --calib (as `lmliqa quantize`), so that no evaluation photo steers
    # the quantizers; evaluation photos they saw are left out of evaluation (same spec) or refused (check_data).
    # Photos the checkpoint never trained on are the better choice (the manifest counts training photos among them)
    val: str | None = None
    eval_limit: int | None = None
    bench_batches: tuple[int, ...] = (1, 8)   # () leaves the speed out (the card says it was not timed)
    bench_iters: int = 3
    bench_min_time: float = 1.0
    threads: int | None = None
    # where parity and the golden probes run each artifact (lmliqa.platforms); an emulated platform scores the first
    # EMULATED_LIMIT evaluation photos (emulation is ~50-100x slower) and every probe
    platforms: tuple[str, ...] = ("native",)
    emulated_limit: int | None = 12
    # target options (lmliqa.targets.Option names -> values; None: the target's default), e.g. socs="SM8750"
    export_options: dict[str, Any] = field(default_factory=dict)
    quantize_options: dict[str, Any] = field(default_factory=dict)

    def built_targets(self) -> list[Target]:
        """The targets the release exports, quantizes and checks: those it ships an artifact of."""
        return [t for t in self.targets if self.keep.wants(t)]


@dataclass
class Release:
    """What the stages share: the config, the folders, and what each stage found (filled in as they run)."""

    cfg: ReleaseConfig
    ckpt_meta: dict[str, Any]
    out: Path
    evidence: Path
    data: dict[str, Any] = field(default_factory=dict)        # the data check's record (the manifest's "data")
    skip: list[str] = field(default_factory=list)             # evaluation paths left out (calibration photos)
    exported: list[StageResult] = field(default_factory=list)
    quant: Any = None                                          # lmliqa.quantize.QuantizeReport
    parity: Any = None                                         # lmliqa.parity.ParityReport
    bench: dict[str, Any] = field(default_factory=dict)
    golden: dict[str, Any] = field(default_factory=dict)       # golden.json
    probe_checks: list[StageResult] = field(default_factory=list)
    withdrawn: dict[tuple[str, str], str] = field(default_factory=dict)   # (artifact, precision) -> why
    shipped: list[Artifact] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)         # the manifest's release-wide records

    @property
    def ckpt_name(self) -> str | None:
        """The checkpoint's file name in the release, when it ships."""
        if not self.cfg.include_checkpoint:
            return None
        return f"{self.cfg.name or self.ckpt_meta['config']['name']}.safetensors"


# ----------------------------------------------------------------------------------------------------- data checks
def _hashes(paths: list[Path]) -> dict[str, str]:
    return {str(p): sha256_file(p) for p in paths}


def _set_hash(hashes) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def training_hashes(ckpt_meta: dict[str, Any]) -> tuple[str, PhotoSet]:
    """(data spec, every photo the checkpoint was trained on, by content hash) (lmliqa.data.training_photos), as a
    ReleaseError when that cannot be done here."""
    from .data import training_photos

    try:
        return training_photos(ckpt_meta)
    except DatasetError as exc:
        raise ReleaseError(f"{exc} (or pass --allow-overlap)") from None


def training_names(extra: dict[str, Any], photos: PhotoSet) -> dict[str, Any]:
    """The manifest's training record of a checkpoint (metadata EXTRA) trained on PHOTOS (training_hashes; empty when
    not checked): its data spec and split, the whole lineage's ("A, then B") for a fine-tuned checkpoint, and how many
    photos."""
    from .data import training_spec

    return {"spec": training_spec(extra), "split": training_spec(extra, "split"), "n_images": len(photos) or None}


def check_data(cfg: ReleaseConfig, ckpt_meta: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The evaluation photos: disjoint from the photos the quantizers saw (calibration and validation photos, and with
    --qat-steps every --calib photo: always) and from the training photos (unless --allow-overlap), by content hash.
    Returns the manifest's data record and the evaluation paths left out: the quantizers' photos (when --eval names
    the same set as --calib or --val) and those outside the data set's published test split."""
    from lmliqa.quantize.calib import chosen_indices

    from .data import PhotoSet, evaluation_indices, open_dataset

    calib_ds, calib_idx, val_ds, val_idx = chosen_indices(cfg.calib, cfg.n_calib, cfg.n_val, cfg.val)
    calib_h = _hashes([calib_ds.records[i].path for i in calib_idx])
    val_h = _hashes([val_ds.records[i].path for i in val_idx])
    eval_ds = open_dataset(cfg.eval)
    held, which = evaluation_indices(eval_ds)          # a published test split, when the data set has one
    outside = sorted(set(range(len(eval_ds))) - set(held))
    eval_h = _hashes([eval_ds.records[i].path for i in held])
    seen = set(calib_h.values()) | set(val_h.values())
    skip = [p for p, h in eval_h.items() if h in seen]
    if skip and cfg.eval not in (cfg.calib, cfg.val):
        raise ReleaseError(f"{len(skip)} evaluation photos of {cfg.eval} are calibration or validation photos of the "
                           f"quantizers ({cfg.calib}, {cfg.val or 'other photos of it'}; same content), e.g. "
                           f"{skip[0]}: evaluate on photos the quantizers never saw")
    evaluated = {p: h for p, h in eval_h.items() if h not in seen}
    if cfg.quantize_options.get("qat_steps"):          # QAT fine-tunes on every --calib photo that is not validation
        tuned = set(_hashes([r.path for r in calib_ds.records]).values()) - set(val_h.values())
        if tuned & set(evaluated.values()):
            raise ReleaseError(f"--qat-steps fine-tunes on the photos of {cfg.calib}, and {cfg.eval} holds some of "
                               "them: evaluate on photos the quantizers never saw")
    if cfg.eval_limit:
        evaluated = dict(list(evaluated.items())[:cfg.eval_limit])
    if len(evaluated) < 10:
        raise ReleaseError(f"{cfg.eval}: {len(evaluated)} evaluation photos left after the quantizers' calibration "
                           "and validation photos; need at least 10")
    train_spec, train_set = training_hashes(ckpt_meta) if not cfg.allow_overlap else (None, PhotoSet())
    overlap = sorted(p for p, h in evaluated.items() if h in train_set)
    extra = ckpt_meta.get("extra", {})
    if overlap and not cfg.allow_overlap:
        raise ReleaseError(f"{len(overlap)} of the {len(evaluated)} evaluation photos were training photos of the "
                           f"checkpoint ({train_spec}, split {extra.get('split')}), e.g. {overlap[0]}: accuracy on "
                           "them would be flattering. Evaluate on other photos, or pass --allow-overlap (the card and "
                           "the report then say so in bold)")
    return {
        "calibration": {"spec": cfg.calib, "n_images": len(calib_h), "sha256": _set_hash(calib_h.values())},
        "validation": {"spec": cfg.val or cfg.calib, "n_images": len(val_h), "sha256": _set_hash(val_h.values()),
                       # training photos are optimistic validation photos (README "Releases")
                       "training_photos": None if cfg.allow_overlap else sum(h in train_set for h in val_h.values())},
        "evaluation": {"spec": cfg.eval, "photos": which, "n_images": len(evaluated),
                       "sha256": _set_hash(evaluated.values()), "left_out_as_quantizer_photos": len(skip)},
        "training": {**training_names(extra, train_set), "checked": not cfg.allow_overlap,
                     "overlap_with_evaluation": None if cfg.allow_overlap else len(overlap)},
        "allow_overlap": cfg.allow_overlap,
    }, skip + [str(eval_ds.records[i].path) for i in outside]


# ------------------------------------------------------------------------------------------------------ the stages
class CheckData:
    name = "data"

    def describe(self, r: Release) -> str:
        return f"evaluation {r.cfg.eval} vs calibration {r.cfg.calib} and the training photos"

    def run(self, r: Release) -> str:
        r.data, r.skip = check_data(r.cfg, r.ckpt_meta)
        r.evidence.mkdir(parents=True)
        return "overlap allowed" if r.cfg.allow_overlap else \
            f"{r.data['evaluation']['n_images']} evaluation photos, none seen in training"


class Export:
    name = "export"

    def describe(self, r: Release) -> str:
        return ", ".join(t.name for t in r.cfg.built_targets())

    def run(self, r: Release) -> str:
        from lmliqa.export import export_checkpoint

        r.exported = export_checkpoint(r.cfg.checkpoint, r.cfg.built_targets(), r.out, **_given(r.cfg.export_options))
        (r.evidence / "export.json").write_text(json.dumps([x.to_dict() for x in r.exported], indent=2))
        r.failures += failures(r.exported)
        return "; ".join(f"{x.target} {x.outcome}" for x in r.exported)


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The options given (a flag not given is None or False)."""
    return {k: v for k, v in options.items() if v not in (None, False)}


class Quantize:
    name = "quantize"

    def quantizable(self, r: Release) -> list[Target]:
        return [t for t in r.cfg.built_targets()
                if t.quantize_module is not None and r.cfg.keep.wants(t, quantized=True)]

    def describe(self, r: Release) -> str:
        return (f"{', '.join(t.name for t in self.quantizable(r))}, calibrated on {r.cfg.calib}, validated on "
                f"{r.cfg.val or 'other photos of it'}")

    def run(self, r: Release) -> str:
        from lmliqa.quantize import quantize_models

        r.quant = quantize_models(r.out, self.quantizable(r), calib=r.cfg.calib, val=r.cfg.val, scope=r.cfg.scope,
                                  n_calib=r.cfg.n_calib, n_val=r.cfg.n_val, **_given(r.cfg.quantize_options))
        shutil.move(str(r.out / "quantization.json"), r.evidence / "quantization.json")
        r.failures += failures(r.quant.results)
        return "; ".join(f"{x.artifact or x.target} {x.outcome}" for x in r.quant.results)


class Parity:
    name = "parity"

    def describe(self, r: Release) -> str:
        return f"every artifact x precision against torch on {r.data['evaluation']['n_images']} evaluation photos"

    def run(self, r: Release) -> str:
        from .parity import run_parity

        r.parity = run_parity(r.cfg.checkpoint, r.out, r.cfg.eval, limit=r.cfg.eval_limit, threads=r.cfg.threads,
                              out=r.evidence / "parity", skip=r.skip, platforms=r.cfg.platforms,
                              emulated_limit=r.cfg.emulated_limit, off_native=r.cfg.keep)
        r.withdrawn = withdrawn_precisions(r.parity, registry.discover(r.out))
        gating = [x for x in r.parity.results if (x.artifact, str(x.precision)) not in r.withdrawn]
        r.failures += failures(gating)
        return (f"{len(r.parity.rows)} rows measured, {sum(x.failed for x in gating)} failing"
                + (f"; withdrawn: {', '.join(f'{a} {p}' for a, p in r.withdrawn)}" if r.withdrawn else ""))


def withdrawn_precisions(parity, artifacts: list[Artifact]) -> dict[tuple[str, str], str]:
    """{(artifact, precision): why}: the precisions an artifact can be executed in besides the one it stores
    (OpenVINO runs an FP32 IR in bf16 or fp16, an INT8 IR with bf16 float parts) that miss their gate on the
    evaluation photos here. A release does not offer them: the manifest says why, and loading the released artifact
    in that precision is refused. The precision an artifact stores always gates the release.

    (Measured: the CI model's OpenVINO bf16 at max |d| 0.598 > 0.5 on 40 photos with the default keep-f32 scope, and
    0.52-0.59 with every wider scope short of f32: benchmarks/bf16_scope.py.)"""
    stored = {a.name: a.precision for a in artifacts}
    out = {}
    for x in parity.rows:
        if x.gate_pass is False and x.platform == "native" and x.precision is not stored.get(x.artifact):
            f = x.fidelity
            worst = Path(f.worst[0]["image"]).name if f.worst else "-"
            out[(x.artifact, str(x.precision))] = (
                f"{x.precision} execution misses its gate {x.gate} on {f.n} evaluation photos (max |d| "
                f"{f.max_abs:.3g}, p99 {f.p99_abs:.3g}, mean {f.mean_abs:.3g}; worst {worst}): run it as stored "
                f"({stored[x.artifact]})")
    return out


class Bench:
    name = "bench"

    def describe(self, r: Release) -> str:
        return f"batch {','.join(map(str, r.cfg.bench_batches))}" if r.cfg.bench_batches else "not timed (no batch)"

    def run(self, r: Release) -> str:
        from .bench import run_bench
        from .provenance import cpu_name

        if not r.cfg.bench_batches:
            r.bench = {"rows": [], "skipped": [], "cpu": cpu_name(), "threads": r.cfg.threads or os.cpu_count(),
                       "batches": [], "note": "not timed: the release was made with no bench batch"}
            return "skipped"
        r.bench = run_bench(r.out, r.cfg.checkpoint, list(r.cfg.bench_batches), threads=r.cfg.threads,
                            iters=r.cfg.bench_iters, min_time=r.cfg.bench_min_time, progress=None)
        (r.evidence / "bench.json").write_text(json.dumps(r.bench, indent=2))
        return f"{len(r.bench['rows'])} rows"


class Golden:
    name = "golden"

    def describe(self, r: Release) -> str:
        from . import golden

        return f"{len(golden.PROBES)} probe images, the reference and every artifact here"

    def run(self, r: Release) -> str:
        r.shipped = [a for a in registry.discover(r.out) if a in r.cfg.keep]
        r.golden, r.probe_checks = write_golden(r.out / "golden", r.cfg.checkpoint, r.shipped, r.parity, r.ckpt_name,
                                                r.cfg.platforms)
        r.failures += failures(r.probe_checks)
        return f"{len(r.probe_checks)} artifacts checked"


class Documents:
    name = "documents"

    def describe(self, r: Release) -> str:
        return "MODEL_CARD.md, report.md with plots, manifest.json"

    def run(self, r: Release) -> str:
        from . import card
        from .manifest import write_manifest

        _keep_only_shipped(r)
        body = manifest_body(r)
        card.write_report(r.out, body, r.parity, r.bench, r.quant)
        (r.out / "MODEL_CARD.md").write_text(card.model_card(body, r.parity, r.bench))
        write_manifest(r.out, body)
        r.body = body
        return f"{r.out}/manifest.json"


STAGES = (CheckData(), Export(), Quantize(), Parity(), Bench(), Golden(), Documents())


def build_release(cfg: ReleaseConfig) -> dict[str, Any]:
    """Run every stage; returns the manifest. Raises ReleaseFailed (evidence kept, no manifest) when a gate fails,
    ReleaseError when the inputs cannot make an honest release."""
    from .models.checkpoint import read_metadata
    from .provenance import provenance

    provenance()            # fixes the commit the release is built from now, not when its last stage writes
    out = Path(cfg.out)
    if missing := sorted({t for t, _ in cfg.keep.pairs} - {t.name for t in cfg.targets}):
        raise ReleaseError(f"--keep names {', '.join(missing)}, which the release does not build (targets: "
                           f"{', '.join(t.name for t in cfg.targets)})")
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out} is not empty: a release is written into a new folder")
    r = Release(cfg, read_metadata(cfg.checkpoint), out, out / EVIDENCE)
    for i, stage in enumerate(STAGES, 1):
        if isinstance(stage, Documents) and r.failures:
            _fail(r)
        t0 = time.perf_counter()
        print(f"[{i}/{len(STAGES)}] {stage.name}: {stage.describe(r)}", file=sys.stderr, flush=True)
        note = stage.run(r)
        print(f"      done in {time.perf_counter() - t0:.0f} s" + (f": {note}" if note else ""), file=sys.stderr,
              flush=True)
    return r.body


def _fail(r: Release) -> None:
    from .provenance import provenance

    (r.evidence / "release_failed.json").write_text(json.dumps({"failures": r.failures, "data": r.data,
                                                                "provenance": provenance()}, indent=2))
    raise ReleaseFailed(r.failures, r.evidence)


def _keep_only_shipped(r: Release) -> None:
    """What the release does not ship (and the program) goes; the checkpoint comes in when it ships."""
    for a in registry.discover(r.out):
        if a not in r.shipped:
            shutil.rmtree(a.path) if a.path.is_dir() else a.path.unlink()
    for p in r.out.glob("*.pt2"):
        p.unlink()
    if r.ckpt_name:
        shutil.copyfile(r.cfg.checkpoint, r.out / r.ckpt_name)


def manifest_body(r: Release) -> dict[str, Any]:
    """The release-wide records of the manifest (lmliqa.manifest adds every file's hash)."""
    from datetime import datetime, timezone

    from . import card
    from .metrics import bootstrap_ci, iqa_metrics
    from .provenance import provenance

    cfg, meta = r.cfg, r.ckpt_meta
    kept = registry.discover(r.out)
    art_meta = kept[0].metadata if kept else {}
    ref, mos = r.parity.torch_scores, r.parity.mos
    cv = json.loads(Path(cfg.cv).read_text()) if cfg.cv else None
    not_run = [x for x in r.parity.results if x.outcome is not Outcome.VERIFIED]
    return {
        "name": cfg.name or f"{meta['config']['name']}-{sha256_file(cfg.checkpoint)[:8]}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance(),
        "model": meta["config"]["name"], "backbone": meta["config"]["backbone"],
        "checkpoint": {"file": r.ckpt_name, "sha256": sha256_file(cfg.checkpoint), "source": Path(cfg.checkpoint).name,
                       "trained_on": r.data["training"]},
        "contract": art_meta.get("contract") or meta["config"]["contract"],
        "score": art_meta.get("score") or meta["config"].get("score"),
        "data": r.data,
        "accuracy": {"data": cfg.eval, "n": len(ref), "metrics": iqa_metrics(ref, mos), "ci95": bootstrap_ci(ref, mos)},
        "cross_validation": cv and card.cv_headline(cv), "weaknesses": card.weaknesses(r.parity, cfg.eval),
        "cross_dataset": card.cross_dataset([json.loads(Path(p).read_text()) for p in cfg.cross]) if cfg.cross
        else None,
        "artifacts": artifact_records(r),
        "platforms": {"checked": list(cfg.platforms), "emulated_limit": cfg.emulated_limit},
        "not_verified_here": [{"artifact": x.artifact, "precision": str(x.precision), "platform": x.platform,
                               "status": x.status} for x in not_run]
        + [{"artifact": f"{x.target} (export)", "precision": "-", "status": x.status}
           for x in r.exported if x.outcome in (Outcome.PARTIAL, Outcome.UNAVAILABLE)],
        "bench": {"cpu": r.bench["cpu"], "threads": r.bench["threads"], "batches": r.bench["batches"]},
    }


def amend_training(folder: str | Path) -> dict[str, Any] | None:
    """Write a built release's training-data record again from its shipped checkpoint with this version's rules
    (``training_names``): the manifest's ``data.training`` and ``checkpoint.trained_on`` and the card's "Training
    data" section, for a release whose documents named a fine-tuned model's data wrongly (before they named the
    whole lineage). Every artifact and measurement stays as built, the folder must still match its manifest, and the
    manifest keeps what it said before and when it was amended (``amended``). None when there is nothing to amend."""
    from . import card
    from .manifest import MANIFEST, check_files, read_manifest, write_manifest
    from .models.checkpoint import read_metadata
    from .provenance import provenance

    folder = Path(folder)
    manifest = read_manifest(folder)
    if not (check := check_files(folder, manifest)).ok:
        raise ReleaseError(f"{folder} does not match its {MANIFEST}, so it is not amended: " + "; ".join(check.lines()))
    if not manifest["checkpoint"].get("file"):
        raise ReleaseError(f"{folder} ships no checkpoint: its training record cannot be derived again")
    meta = read_metadata(folder / manifest["checkpoint"]["file"])
    was = manifest["data"]["training"]
    now = {**was, **training_names(meta.get("extra", {}), training_hashes(meta)[1])}
    if now == was:
        return None
    body = {k: v for k, v in manifest.items() if k not in ("format", "files")}
    body["data"]["training"] = body["checkpoint"]["trained_on"] = now
    body["amended"] = body.get("amended", []) + [{
        "what": "data.training, checkpoint.trained_on, MODEL_CARD.md 'Training data' (release.amend_training)",
        "was": {k: was[k] for k in now if was[k] != now[k]}, "provenance": provenance()}]
    path = folder / "MODEL_CARD.md"
    path.write_text(card.with_training(path.read_text(), body))
    write_manifest(folder, body)
    return body


# ------------------------------------------------------------------------------------------------------- golden
def probe_tolerance(gate: Gate, observed: list[float]) -> tuple[float | None, str]:
    """The per-probe |score - reference| a port may show: the gate's max |d| when it has one; else (quantized
    artifacts, gated on ranking) 1.5 x the largest |d| measured here, rounded up to 0.05."""
    if gate.max_abs is not None:
        return float(gate.max_abs), f"gate ({gate})"
    if not observed:
        return None, "not measured here"
    return max(0.05, math.ceil(1.5 * max(observed) * 20) / 20), \
        "1.5 x the largest |d| measured here on the evaluation photos and the probes, rounded up to 0.05"


def write_golden(folder: Path, checkpoint: Path, shipped: list[Artifact], parity, ckpt_name: str | None,
                 platforms: tuple[str, ...] = ("native",)) -> tuple[dict[str, Any], list[StageResult]]:
    """Write the probes and golden.json: the torch reference's image and crop scores, each shipped artifact's
    scores (as stored), on every platform of PLATFORMS that runs it, and its tolerance, which holds on all of them
    (the shipped checkpoint, CKPT_NAME, must reproduce the reference); returns golden.json and each artifact x
    platform's check against its tolerance."""
    from . import golden

    golden.write_probes(folder)
    reference_target = registry.reference()
    ref = golden.score_probes(reference_target.load(checkpoint), folder)
    record: dict[str, Any] = {"probes": [{**p, "sha256": sha256_file(folder / p["file"])}
                                         for p in golden.probe_records()],
                              "reference": {"backend": reference_target.name, "precision": "fp32",
                                            "checkpoint_sha256": sha256_file(checkpoint), "scores": ref},
                              "artifacts": {}}
    checks = []
    for art in shipped:
        entry, got = _golden_entry(art, ref, folder, parity, platforms)
        record["artifacts"][art.name] = entry
        for where, scores in got.items():
            checks.append(golden.check_probes(record, art.name, scores, target=art.target.name, step=Step.GOLDEN,
                                              platform=where))
    if ckpt_name:
        record["artifacts"][ckpt_name] = {"target": reference_target.name, "precision": "fp32",
                                          "tolerance": reference_target.gate(Precision.FP32).max_abs,
                                          "tolerance_basis": "the reference itself, on another torch build or CPU",
                                          "scores": {k: v["score"] for k, v in ref.items()}}
    (folder / golden.GOLDEN).write_text(json.dumps(record, indent=2))
    return record, checks


def _golden_entry(art: Artifact, ref: dict[str, Any], folder: Path, parity,
                  platforms: tuple[str, ...] = ("native",)) -> tuple[dict[str, Any], dict[str, dict]]:
    """ART's golden.json entry (its tolerance, and its probe scores on each platform that runs it here) and those
    scores by platform. The tolerance holds on every platform measured: a quantized artifact's is 1.5 x the largest
    |d| seen on any of them."""
    from . import golden
    from . import platforms as platform_registry
    from .runtimes import load

    entry: dict[str, Any] = {"target": art.target.name, "precision": art.precision.value}
    got: dict[str, dict] = {}
    gate = None
    for where in platforms:
        if not platform_registry.get(where).covers(art.target.name):
            continue
        try:
            with load(art.path, target=art.target.name, platform=where) as scorer:
                got[where] = golden.score_probes(scorer, folder)
                gate = art.target.gate(scorer.precision, scorer.weights)
        except BackendUnavailable as exc:
            entry.setdefault("not_checked_here", {})[where] = str(exc)
    if not got:
        gate = art.target.gate(art.precision, Precision(art.metadata.get("weights") or "fp32"))
        entry["tolerance"], entry["tolerance_basis"] = probe_tolerance(gate, [])
        return entry, got
    probe_d = {w: [abs(g[k]["score"] - ref[k]["score"]) for k in ref] for w, g in got.items()}
    rows = [x for w in got if (x := parity.row(art.name, art.precision, w)) is not None]
    observed = [d for ds in probe_d.values() for d in ds] + [x.fidelity.max_abs for x in rows]
    entry["tolerance"], entry["tolerance_basis"] = probe_tolerance(gate, observed)
    native = got.get("native") or next(iter(got.values()))
    entry["scores"] = {k: v["score"] for k, v in native.items()}
    entry["check"] = {"max_abs": max(probe_d.get("native") or next(iter(probe_d.values()))),
                      "ok": entry["tolerance"] is not None and max(observed) <= entry["tolerance"]}
    others = {w: g for w, g in got.items() if w != "native"}
    if others:
        entry["platforms"] = {w: {"scores": {k: v["score"] for k, v in g.items()}, "max_abs": max(probe_d[w])}
                              for w, g in others.items()}
    return entry, got


def artifact_records(r: Release) -> dict[str, Any]:
    """Per shipped artifact: target, precision, the gates it passed with the measured numbers, its tools."""
    records: dict[str, Any] = {}
    for art in r.shipped:
        gates = [_gate_record("parity", x) for x in r.parity.rows if x.artifact == art.name]
        q = r.quant.result(art.name)
        if q is not None and q.gate is not None:
            gates.append(_gate_record("quantize validation", q))
        gates += [_gate_record("golden probes", c) for c in r.probe_checks if c.artifact == art.name]
        status = next((x.status for x in r.parity.results if x.artifact == art.name), "")
        records[art.name] = {"target": art.target.name, "precision": art.precision.value,
                             "weights": art.metadata.get("weights") or "fp32", "status_here": status,
                             "gates": gates, "tools": art.metadata.get("tools", {}),
                             "quantization": art.metadata.get("quantization"),
                             **({"withdrawn": w} if (w := {p: why for (a, p), why in r.withdrawn.items()
                                                        if a == art.name}) else {})}
    if r.ckpt_name:
        records[r.ckpt_name] = {"target": "torch", "precision": "fp32", "weights": "fp32",
                                "status_here": "the reference", "gates": [], "tools": {}}
    return records


_MEASURED = ("max_abs", "mean_abs", "p95_abs", "srcc_vs_ref", "rank_flip_rate", "material_flip_rate", "srcc_vs_mos",
             "plcc_vs_mos", "srcc_vs_mos_ref")


def _gate_record(check: str, x: StageResult) -> dict[str, Any]:
    f = x.fidelity.to_dict()
    out = {"check": check, "platform": x.platform, "gate": str(x.gate), "pass": x.gate_pass, "n": x.fidelity.n,
           "measured": {k: f[k] for k in _MEASURED if f.get(k) is not None}}
    if check == "parity":
        out["executed_as"] = x.precision.value
    return out


def format_failure(exc: ReleaseFailed) -> str:
    return "lmliqa release: FAILED\n" + "\n".join(f"  gate: {f}" for f in exc.failures)
