"""lmliqa.quantize: post-training quantization for each deployment target, from the exported FP32 parents, under
one float scope and one calibration set, validated through lmliqa.runtimes with IQA metrics.

    lmliqa quantize --out DIR [--checkpoint CKPT] --formats openvino,onnx,coreml,tensorrt,litert,executorch

DIR is an `lmliqa export` folder: the program (``M.pt2``) and each target's FP32 parent are read from it (never
re-exported, never overwritten). A parent that is missing is exported first, from the saved program, with the
default options; without a program, ``--checkpoint`` exports it. Each target's own recipe lives in
``quantize/<target>.py`` (``quantize(ctx, **options) -> QuantOutput``, ``PARENT``: the target whose FP32
artifact it starts from). Every artifact carries the usual lmliqa metadata plus its precision and a
``quantization`` record (tool, float scope, calibration images by content hash), and is then scored on the
validation images by the runtime users run, against the torch program, with `lmliqa.fidelity.compare`.
"""

from __future__ import annotations

import importlib.util
import json
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from lmliqa.export import Status

from lmliqa import targets as registry
from lmliqa.fidelity import Fidelity, compare
from lmliqa.scope import DEFAULT_SCOPE, WIDER_SCOPE, FloatScope
from lmliqa.targets import Artifact, Precision, Stage, Target

from .calib import DEFAULT_CALIB_IMAGES, DEFAULT_VAL_IMAGES, ImageSet, build_sets, image_scores


@dataclass
class QuantOutput:
    paths: list[Path]
    info: dict[str, Any]
    partial: str = ""             # why some of the target's files could not be made here


@dataclass
class QuantResult:
    target: str
    status: Status
    reason: str = ""
    paths: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "status": self.status.value, "reason": self.reason, "paths": self.paths,
                "details": self.details}

    def line(self) -> str:
        head = f"{self.target:<10} {self.status}" + (f": {self.reason}" if self.reason else "")
        parts = []
        for name, v in self.details.get("validation", {}).items():
            if "srcc_vs_ref" in v:
                parts.append(f"{name}: SRCC(q,fp32) {v['srcc_vs_ref']:.4f}, mean |d| {v['mean_abs']:.3f}, "
                             f"max |d| {v['max_abs']:.3f}" + (f", SRCC vs MOS {v['srcc_vs_mos']:.4f} (fp32 "
                                                              f"{v['srcc_vs_mos_ref']:.4f})" if v.get("srcc_vs_mos")
                                                              is not None else "")
                             + ("" if v.get("gate_pass", True) else " FAILS its gate"))
            else:
                parts.append(f"{name}: {v.get('status', '')}")
        for t in self.details.get("scope_widened", ()):
            why = ", ".join(f"{n}: mean |d| {v['mean_abs']:.3f}, SRCC(q,fp32) {v['srcc_vs_ref']:.4f}"
                            for n, v in t["validation"].items() if v.get("mean_abs") is not None)
            parts.append(f"float scope {','.join(t['scope'])} failed the gate ({why}); kept in float now: "
                         f"{','.join(self.details['scope'])}")
        return head + "".join(f"\n    {p}" for p in parts)


@dataclass
class QuantizeContext:
    """What a target's quantizer gets."""

    parent: Artifact                 # the FP32 artifact it starts from
    program: Any                     # the torch.export program every artifact came from
    metadata: dict[str, Any]         # the program's lmliqa metadata
    calib: ImageSet
    val: ImageSet
    scope: FloatScope
    out: Path
    calib_record: dict[str, Any]
    reference: np.ndarray            # the program's per-image scores on the validation images

    @property
    def model_name(self) -> str:
        return self.metadata["model"]

    @property
    def contract(self):
        from lmliqa.contract import PreprocessContract

        return PreprocessContract.from_dict(self.metadata["contract"])

    @property
    def model_type(self) -> str | None:
        return "transformer" if self.metadata.get("encoder_kind") == "vit" else None

    def path(self, name: str) -> Path:
        return self.out / name.format(m=self.model_name)

    def artifact_metadata(self, info: dict[str, Any], precision: Precision | str = Precision.INT8,
                          **extra: Any) -> dict[str, Any]:
        """The parent's metadata with this artifact's precision and its quantization record."""
        q = {"scope": list(self.scope.categories), "calibration": self.calib_record, **info}
        p = Precision(precision).value
        return {**self.parent.metadata, "weights": p, **extra, "precision": p, "quantization": q}

    def metadata_json(self, info: dict[str, Any], precision: Precision | str = Precision.INT8, **extra: Any) -> str:
        return json.dumps(self.artifact_metadata(info, precision, **extra), sort_keys=True)

    def validate(self, path: Path, threads: int | None = None) -> tuple[Any, Fidelity]:
        """(scorer, fidelity): the artifact loaded through lmliqa.runtimes, and its per-image scores on the
        validation images against the program's."""
        from lmliqa.runtimes import load

        scorer = load(path, threads=threads)
        got = image_scores(scorer.infer, self.val, self.contract)
        return scorer, compare(self.reference, got, self.val.mos, names=self.val.file_names)


def quantize_models(models: str | Path, formats: list[str] | list[Target], calib: str | None = None,
                    val: str | None = None, checkpoint: str | Path | None = None,
                    scope: FloatScope | str | None = None,
                    n_calib: int = DEFAULT_CALIB_IMAGES, n_val: int = DEFAULT_VAL_IMAGES, verbose: bool = False,
                    **options: Any) -> dict[str, Any]:
    """Quantize the FP32 parents in MODELS for each target, calibrated on CALIB and validated on VAL (default: other
    images of CALIB; use photos the model was not trained on for an honest SRCC vs MOS); returns (and writes
    MODELS/quantization.json) a report with one result per target. One target failing never stops the others."""
    chosen = [t if isinstance(t, Target) else registry.get(t) for t in formats]
    bad = [t.name for t in chosen if t.quantize_module is None]
    if bad:
        raise ValueError(f"{bad} cannot be quantized; choose from {registry.names(Stage.QUANTIZE)}")
    per_target = registry.check_options(chosen, Stage.QUANTIZE, options)
    if not isinstance(scope, FloatScope | None):
        FloatScope.parse(scope)       # an unknown category fails before anything is loaded
    _quiet_nncf(verbose)
    out = Path(models)
    t0 = time.perf_counter()
    from lmliqa.export._graph import program_runner

    program, metadata = _program(out, checkpoint)
    # no scope chosen: the default, widened step by step for a target whose artifact fails its gate
    wider = WIDER_SCOPE[metadata["encoder_kind"]] if scope is None else ()
    if not isinstance(scope, FloatScope):
        scope = FloatScope.parse(scope, default=DEFAULT_SCOPE[metadata["encoder_kind"]])
    parents = _parents(out, chosen, program, metadata, verbose)
    calib = calib or metadata.get("trained_on")
    if not calib:
        raise ValueError("no calibration data: pass --calib SPEC (the checkpoint records no training data)")
    from lmliqa.contract import PreprocessContract

    contract = PreprocessContract.from_dict(metadata["contract"])
    calib_set, val_set = build_sets(calib, contract, n_calib, n_val, val_spec=val)
    reference = image_scores(program_runner(program), val_set, contract)
    results = []
    for target in chosen:
        parent = parents.get(target.name)
        if isinstance(parent, QuantResult):
            results.append(parent)
            continue
        ctx = QuantizeContext(parent, program, metadata, calib_set, val_set, scope, out,
                              calib_set.record(calib), reference)
        results.append(quantize_target(target, ctx, per_target[target.name], verbose, wider))
    from lmliqa.provenance import provenance

    report = {"provenance": provenance(), "models": str(out),
              "checkpoint_sha256": metadata["source_checkpoint_sha256"],
              "model": metadata["model"], "scope": list(scope.categories), "calibration": calib_set.record(calib),
              "validation": {"spec": val or calib, "n_images": len(val_set.names),
                             "reference": "the torch.export program",
                             "images": val_set.file_names},
              "options": {k: v for k, v in options.items() if v not in (None, False)},
              "wall_s": round(time.perf_counter() - t0, 1), "results": [r.to_dict() for r in results]}
    (out / "quantization.json").write_text(json.dumps(report, indent=2, default=str))
    return report


_TRY_KEYS = ("mean_abs", "max_abs", "srcc_vs_ref", "material_flip_rate", "gate", "gate_pass")


def quantize_target(target: Target, ctx: QuantizeContext, options: dict[str, Any], verbose: bool = False,
                    wider: tuple[str, ...] = ()) -> QuantResult:
    """One target's INT8 artifacts, validated. WIDER: float-scope categories added one at a time while an artifact
    fails its gate (each try overwrites the last; the failed tries are recorded under ``scope_widened``)."""
    if why := target.unavailable(Stage.QUANTIZE):
        return QuantResult(target.name, Status.UNAVAILABLE, why)
    tries: list[tuple[FloatScope, dict[str, Any]]] = []
    for extra in (None, *wider):
        if extra is not None:
            ctx = replace(ctx, scope=ctx.scope.plus(extra))
        try:
            res = target.stage(Stage.QUANTIZE).quantize(ctx, **options)
            validation = {p.name: _validate(ctx, p) for p in res.paths}
        except Exception as exc:
            if verbose:
                traceback.print_exc()
            return QuantResult(target.name, Status.FAILED, f"{type(exc).__name__}: {exc}".splitlines()[0][:400])
        tries.append((ctx.scope, validation))
        if all(v.get("gate_pass", True) for v in validation.values()):    # an unverified artifact cannot fail
            break
    details = {**res.info, "scope": list(ctx.scope.categories), "validation": validation}
    if len(tries) > 1:
        details["scope_widened"] = [
            {"scope": list(scope.categories), "validation": {name: {k: v.get(k) for k in _TRY_KEYS}
                                                            for name, v in val.items()}}
            for scope, val in tries[:-1]]
    status = Status.PARTIAL if res.partial else Status.OK
    return QuantResult(target.name, status, res.partial, [str(p) for p in res.paths], details)


def _validate(ctx: QuantizeContext, path: Path) -> dict[str, Any]:
    """Fidelity of one artifact on the validation images (with its gate, as parity applies it), or what could be
    checked instead."""
    from lmliqa.runtimes.base import BackendUnavailable

    target = registry.target_for(path)
    try:
        scorer, fid = ctx.validate(path)
    except BackendUnavailable as exc:
        note = target.inspect(path)
        return {"status": f"simulated: {note}" if note else f"exported, not verified: {exc}"}
    gate = target.gate(scorer.precision, scorer.weights)
    return {**fid.to_dict(), "gate": str(gate), "gate_pass": gate.check(fid), "runtime": target.runtime}


def _program(out: Path, checkpoint: str | Path | None):
    from lmliqa.export import export_checkpoint
    from lmliqa.export._graph import PROGRAM_SUFFIX, load_program

    from lmliqa.manifest import sha256_file

    found = sorted(out.glob(f"*{PROGRAM_SUFFIX}")) if out.is_dir() else []
    if len(found) > 1:
        raise ValueError(f"{out} holds several programs {[p.name for p in found]}: one export folder per model")
    if not found:
        if checkpoint is None:
            raise ValueError(f"{out} holds no exported program (M{PROGRAM_SUFFIX}); run `lmliqa export` into it first "
                             "or pass --checkpoint")
        export_checkpoint(checkpoint, [], out)            # writes the program only
        found = sorted(out.glob(f"*{PROGRAM_SUFFIX}"))
    program, metadata = load_program(found[0])
    if checkpoint is not None and sha256_file(checkpoint) != metadata["source_checkpoint_sha256"]:
        raise ValueError(f"{out} holds artifacts of another checkpoint than {checkpoint} (sha256 "
                         f"{metadata['source_checkpoint_sha256'][:12]}...): use another --out")
    return program, metadata


def _parents(out: Path, chosen: list[Target], program, metadata: dict[str, Any],
             verbose: bool) -> dict[str, Artifact | QuantResult]:
    """Each chosen target's FP32 parent, found in OUT or exported there (from the program, default options)."""
    from lmliqa.export import ExportContext, export_target

    found: dict[str, Artifact | QuantResult] = {}
    ctx = ExportContext(program, metadata, out)
    present = registry.discover(out)            # read once; again only after a parent was exported
    for target in chosen:
        parent_target = registry.get(target.stage(Stage.QUANTIZE).PARENT)
        artifact = _find_parent(present, parent_target, metadata)
        if artifact is None:
            defaults = {o.name: o.default for o in parent_target.options_for(Stage.EXPORT)}
            res = export_target(parent_target, ctx, defaults, verbose)
            if res.status not in (Status.OK, Status.PARTIAL):
                found[target.name] = QuantResult(target.name, res.status, f"FP32 parent ({parent_target.name}) "
                                                                          f"not exported: {res.reason}")
                continue
            present = registry.discover(out)
            artifact = _find_parent(present, parent_target, metadata)
        if artifact is None:
            found[target.name] = QuantResult(target.name, Status.FAILED, f"no FP32 {parent_target.name} parent")
        else:
            found[target.name] = artifact
    return found


def _find_parent(present: list[Artifact], target: Target, metadata: dict[str, Any]) -> Artifact | None:
    for a in present:
        if a.target is target and a.precision is Precision.FP32 and "quantization" not in a.metadata:
            src = a.metadata.get("source_checkpoint_sha256")
            if src != metadata["source_checkpoint_sha256"]:
                raise ValueError(f"{a.path}: exported from another checkpoint (sha256 {str(src)[:12]}...) than the "
                                 "saved program")
            return a
    return None


def _quiet_nncf(verbose: bool) -> None:
    if not verbose and importlib.util.find_spec("nncf"):  # NNCF logs every op it leaves unquantized at INFO
        import logging

        import nncf

        nncf.set_log_level(logging.WARNING)


__all__ = ["QuantOutput", "QuantResult", "QuantizeContext", "FloatScope", "DEFAULT_SCOPE", "quantize_models",
           "quantize_target", "ImageSet", "build_sets"]
