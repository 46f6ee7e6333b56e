"""lmliqa.quantize: post-training quantization for each deployment target, from the exported FP32 parents, under
one float scope and one calibration set, validated through lmliqa.runtimes with IQA metrics.

    lmliqa quantize --out DIR [--checkpoint CKPT] --targets openvino,onnx,coreml,tensorrt,litert,executorch

DIR is an `lmliqa export` folder: the program (``M.pt2``) and each target's FP32 parent are read from it (never
re-exported, never overwritten). A parent that is missing is exported first, from the saved program, with the
default options; without a program, ``--checkpoint`` exports it. Each target's own recipe lives in
``quantize/<target>.py`` (``quantize(ctx, **options) -> QuantOutput``, ``PARENT``: the target whose FP32
artifact it starts from). Every artifact carries the usual lmliqa metadata plus its precision and a
``quantization`` record (tool, float scope, calibration images by content hash), and is then scored on the
validation images by the runtime users run, against the torch program, with `lmliqa.fidelity.compare`: one
:class:`lmliqa.stages.StageResult` per artifact.
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

from lmliqa import presets
from lmliqa import targets as registry
from lmliqa.errors import BackendUnavailable, ConfigError, ExportError, first_line
from lmliqa.fidelity import Fidelity, compare, gate_confidence
from lmliqa.scope import FloatScope
from lmliqa.stages import Outcome, StageResult, Step
from lmliqa.targets import Artifact, Precision, Stage, Target

from .calib import DEFAULT_CALIB_IMAGES, DEFAULT_VAL_IMAGES, ImageSet, build_sets, image_scores, training_photos


@dataclass
class QuantOutput:
    """What a target's quantizer returns: the artifacts it wrote and its record of how."""

    paths: list[Path]
    info: dict[str, Any]
    partial: str = ""             # why some of the target's files could not be made here


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
    def train_photos(self) -> list[Path]:
        """What quantization-aware training fine-tunes on: the calibration spec's photos that are not validation
        photos (read when asked: only QAT needs them)."""
        return training_photos(self.calib_record["spec"], self.val)

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

    def validate(self, path: Path, threads: int | None = None,
                 limit: int | None = None) -> tuple[Any, Fidelity, np.ndarray]:
        """(scorer, fidelity, scores): the artifact loaded through lmliqa.runtimes, and its per-image scores on the
        validation images (the first LIMIT of them) against the program's."""
        from lmliqa.runtimes import load

        val, ref = (self.val.head(limit), self.reference[:limit]) if limit else (self.val, self.reference)
        with load(path, threads=threads) as scorer:
            got = image_scores(scorer.infer, val, self.contract)
        return scorer, compare(ref, got, val.mos, names=val.file_names), got


@dataclass
class QuantizeReport:
    """quantization.json: the scope, calibration and validation sets, and one result per artifact (or per target
    that made none)."""

    models: str
    checkpoint_sha256: str
    model: str
    scope: FloatScope
    calibration: dict[str, Any]
    validation: dict[str, Any]
    options: dict[str, Any]
    wall_s: float
    results: list[StageResult] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Did a target fail outright (an artifact that misses its gate is reported, not a failure here)?"""
        return any(r.outcome is Outcome.FAILED for r in self.results)

    def for_target(self, name: str) -> list[StageResult]:
        return [r for r in self.results if r.target == name]

    def result(self, artifact: str) -> StageResult | None:
        return next((r for r in self.results if r.artifact == artifact), None)

    def to_dict(self) -> dict[str, Any]:
        return {"provenance": self.provenance, "models": self.models, "checkpoint_sha256": self.checkpoint_sha256,
                "model": self.model, "scope": list(self.scope.categories), "calibration": self.calibration,
                "validation": self.validation, "options": self.options, "wall_s": self.wall_s,
                "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantizeReport:
        return cls(d["models"], d["checkpoint_sha256"], d["model"], FloatScope(tuple(d["scope"])), d["calibration"],
                   d["validation"], d["options"], d["wall_s"], [StageResult.from_dict(r) for r in d["results"]],
                   d.get("provenance", {}))

    def text(self) -> str:
        cal = self.calibration
        lines = [f"calibration: {cal['n_images']} images / {cal['n_crops']} crops of {cal['spec']} (sha256 "
                 f"{cal['sha256'][:12]}...), float scope: {self.scope}; validation: {self.validation['n_images']} "
                 "other images against the torch program"]
        for r in self.results:
            lines.append(r.line())
            for t in r.details.get("scope_widened", ()):
                verdict = "failed the gate" if t["gate_pass"] is False else (
                    f"held the gate in only {t['gate_confidence']:.0%} of resamples")
                lines.append(f"    float scope {','.join(t['scope'])} {verdict} (mean |d| {t['mean_abs']:.3f}, "
                             f"SRCC {t['srcc_vs_ref']:.4f}); kept in float now: {','.join(r.details['scope'])}")
        return "\n".join(lines)


def quantize_models(models: str | Path, targets: list[str] | list[Target], calib: str | None = None,
                    val: str | None = None, checkpoint: str | Path | None = None,
                    scope: FloatScope | str | None = None,
                    n_calib: int = DEFAULT_CALIB_IMAGES, n_val: int = DEFAULT_VAL_IMAGES, verbose: bool = False,
                    **options: Any) -> QuantizeReport:
    """Quantize the FP32 parents in MODELS for each target, calibrated on CALIB and validated on VAL (default: other
    images of CALIB; use photos the model was not trained on for an honest SRCC vs MOS); returns (and writes
    MODELS/quantization.json) the report. One target failing never stops the others."""
    chosen = [t if isinstance(t, Target) else registry.get(t) for t in targets]
    bad = [t.name for t in chosen if t.quantize_module is None]
    if bad:
        raise registry.TargetError(f"{bad} cannot be quantized; choose from {registry.names(Stage.QUANTIZE)}")
    per_target = registry.check_options(chosen, Stage.QUANTIZE, options)
    if not isinstance(scope, FloatScope | None):
        FloatScope.parse(scope)       # an unknown category fails before anything is loaded
    _quiet_nncf(verbose)
    out = Path(models)
    t0 = time.perf_counter()
    from lmliqa.export._graph import program_runner

    program, metadata = _program(out, checkpoint)
    scopes = float_scopes(metadata)
    chosen_scope = scope is not None
    if not isinstance(scope, FloatScope):
        scope = FloatScope.parse(scope, default=tuple(scopes["default"]))
    parents = _parents(out, chosen, program, metadata, verbose)
    calib = calib or metadata.get("trained_on")
    if not calib:
        raise ConfigError("no calibration data: pass --calib SPEC (the checkpoint records no training data)")
    from lmliqa.contract import PreprocessContract

    contract = PreprocessContract.from_dict(metadata["contract"])
    calib_set, val_set = build_sets(calib, contract, n_calib, n_val, val_spec=val)
    reference = image_scores(program_runner(program), val_set, contract)
    results: list[StageResult] = []
    for target in chosen:
        parent = parents[target.name]
        if isinstance(parent, StageResult):
            results.append(parent)
            continue
        stage = target.stage(Stage.QUANTIZE)
        own_ladder = getattr(stage, "LADDER", True)      # False: the artifact takes its parent's scope
        ladder = [scope] if chosen_scope or not own_ladder else scope_ladder(
            scopes, narrow_first(stage, per_target[target.name]))
        ctx = QuantizeContext(parent, program, metadata, calib_set, val_set, ladder[0], out,
                              calib_set.record(calib), reference)
        results += quantize_target(target, ctx, per_target[target.name], verbose, ladder[1:])
    from lmliqa.provenance import provenance

    report = QuantizeReport(str(out), metadata["source_checkpoint_sha256"], metadata["model"], scope,
                            calib_set.record(calib),
                            {"spec": val or calib, "n_images": len(val_set.names),
                             "reference": "the torch.export program", "images": val_set.file_names},
                            {k: v for k, v in options.items() if v not in (None, False)},
                            round(time.perf_counter() - t0, 1), results, provenance())
    (out / "quantization.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return report


def float_scopes(metadata: dict[str, Any]) -> dict[str, list[str]]:
    """The default / wider / reduced-precision scopes the program records (older exports: its backbone's entry)."""
    if "float_scopes" in metadata:
        return metadata["float_scopes"]
    return presets.get_backbone(metadata["backbone"]).scopes()


def narrow_first(stage, options: dict[str, Any]) -> bool:
    """Does the target's ladder start at the narrow scope (op categories only, no regions)? Its quantize stage says
    so with NARROW_FIRST (always) or NARROW_FIRST_WITH (the options that make it so, e.g. LiteRT's qat_steps)."""
    return getattr(stage, "NARROW_FIRST", False) or any(options.get(o) for o in getattr(stage, "NARROW_FIRST_WITH", ()))


def scope_ladder(scopes: dict[str, list[str]], narrow_first: bool = False) -> list[FloatScope]:
    """The float scopes tried in order when none was chosen: the narrow one first for a NARROW_FIRST quantizer,
    then the default, then the default widened by one category of the wider scope at a time."""
    ladder = [FloatScope(tuple(scopes["narrow"]))] if narrow_first and scopes.get("narrow") else []
    ladder.append(FloatScope(tuple(scopes["default"])))
    for extra in scopes.get("wider", []):
        ladder.append(ladder[-1].plus(extra))
    return ladder


def quantize_target(target: Target, ctx: QuantizeContext, options: dict[str, Any], verbose: bool = False,
                    wider: list[FloatScope] | tuple[FloatScope, ...] = ()) -> list[StageResult]:
    """One target's quantized artifacts, each validated, with CTX's scope and then each scope of WIDER in turn while
    an artifact fails its gate (each try overwrites the last; the failed tries are recorded under
    ``scope_widened``)."""
    if why := target.unavailable(Stage.QUANTIZE):
        return [StageResult(Step.QUANTIZE, target.name, Outcome.UNAVAILABLE, why)]
    tries: list[tuple[FloatScope, list[StageResult]]] = []
    for next_scope in (None, *wider):
        if next_scope is not None:
            ctx = replace(ctx, scope=next_scope)
        try:
            res = target.stage(Stage.QUANTIZE).quantize(ctx, **options)
            checked = [validate(ctx, target, p) for p in res.paths]
        except Exception as exc:     # one target failing must not stop the others
            if verbose:
                traceback.print_exc()
            return [StageResult(Step.QUANTIZE, target.name, Outcome.FAILED, f"{type(exc).__name__}: {first_line(exc)}"
                                [:400])]
        tries.append((ctx.scope, checked))
        if not any(_needs_wider(r) for r in checked):      # an unverified artifact cannot fail
            break
    for r in checked:
        # the scope the artifact was made with: this try's, unless the quantizer took an artifact made with another
        # (the Qualcomm target compiles the LiteRT target's INT8 file, with the scope LiteRT's ladder chose)
        r.details.update(quantization=res.info, scope=list(res.info.get("scope", ctx.scope.categories)))
        widened = [{"scope": list(scope.categories), **_try_record(rs, r.artifact)} for scope, rs in tries[:-1]]
        if widened:
            r.details["scope_widened"] = widened
    if res.partial:
        checked.append(StageResult(Step.QUANTIZE, target.name, Outcome.PARTIAL, res.partial))
    return checked


# A scope is kept when its artifacts hold their gate on the validation images with this confidence (the fraction of
# bootstrap resamples of those images on which the gate holds: lmliqa.fidelity.gate_confidence); one that passes
# only at the gate's edge is widened like one that fails. The widest scope is kept when it passes at all.
# 0.95 (one-sided 95 %): at 0.9 the test suite's model, trained on an AVX-512 VNNI EPYC, kept ONNX INT8's narrow scope
# on confidence 0.9175 over 40 validation photos (mean |d| 0.72) and missed the gate on the 24 gate photos (mean |d|
# 1.09; the default scope there: 0.50).
MIN_GATE_CONFIDENCE = 0.95


def _needs_wider(r: StageResult) -> bool:
    return r.gate_pass is False or r.details.get("gate_confidence", 1.0) < MIN_GATE_CONFIDENCE


def _try_record(results: list[StageResult], artifact: str) -> dict[str, Any]:
    """What a failed try measured for ARTIFACT (kept in the final artifact's record)."""
    r = next((r for r in results if r.artifact == artifact), None)
    if r is None or r.fidelity is None:
        return {}
    f = r.fidelity
    return {"mean_abs": f.mean_abs, "max_abs": f.max_abs, "srcc_vs_ref": f.srcc_vs_ref,
            "material_flip_rate": f.material_flip_rate, "gate": str(r.gate), "gate_pass": r.gate_pass,
            "gate_confidence": r.details.get("gate_confidence")}


def validate(ctx: QuantizeContext, target: Target, path: Path) -> StageResult:
    """One artifact on the validation images, against the program, with its gate as parity applies it (or what
    could be checked instead where it cannot run)."""
    runs = registry.target_for(path)       # e.g. TensorRT's Q/DQ ONNX runs under ONNX Runtime
    result = StageResult(Step.QUANTIZE, target.name, Outcome.VERIFIED, artifact=path.name, paths=[str(path)],
                         details={"runtime": runs.runtime})
    try:
        scorer, fid, got = ctx.validate(path, limit=runs.check_photos)
    except BackendUnavailable as exc:
        note = runs.inspect(path)
        result.outcome, result.reason = (Outcome.SIMULATED, note) if note else (Outcome.NOT_VERIFIED, str(exc))
        result.precision = Precision(runs.read_metadata(path).get("precision", "int8")) if note else None
        return result
    result.precision, result.weights = scorer.precision, scorer.weights
    result.fidelity, result.gate = fid, runs.gate(scorer.precision, scorer.weights)
    if runs.check_photos is None:      # a handful of photos (a simulator's) cannot tell; such a target follows its
        result.details["gate_confidence"] = gate_confidence(result.gate, ctx.reference, got)     # parent's scope
    return result


def _program(out: Path, checkpoint: str | Path | None):
    from lmliqa.export import export_checkpoint
    from lmliqa.export._graph import PROGRAM_SUFFIX, load_program
    from lmliqa.manifest import sha256_file

    found = sorted(out.glob(f"*{PROGRAM_SUFFIX}")) if out.is_dir() else []
    if len(found) > 1:
        raise ConfigError(f"{out} holds several programs {[p.name for p in found]}: one export folder per model")
    if not found:
        if checkpoint is None:
            raise ConfigError(f"{out} holds no exported program (M{PROGRAM_SUFFIX}); run `lmliqa export` into it "
                              "first or pass --checkpoint")
        export_checkpoint(checkpoint, [], out)            # writes the program only
        found = sorted(out.glob(f"*{PROGRAM_SUFFIX}"))
    program, metadata = load_program(found[0])
    if checkpoint is not None and sha256_file(checkpoint) != metadata["source_checkpoint_sha256"]:
        raise ConfigError(f"{out} holds artifacts of another checkpoint than {checkpoint} (sha256 "
                          f"{metadata['source_checkpoint_sha256'][:12]}...): use another --out")
    return program, metadata


def _parents(out: Path, chosen: list[Target], program, metadata: dict[str, Any],
             verbose: bool) -> dict[str, Artifact | StageResult]:
    """Each chosen target's FP32 parent, found in OUT or exported there (from the program, default options); a
    result saying why when there is none."""
    from lmliqa.export import ExportContext, export_target

    found: dict[str, Artifact | StageResult] = {}
    ctx = ExportContext(program, metadata, out)
    present = registry.discover(out)            # read once; again only after a parent was exported
    for target in chosen:
        parent_target = registry.get(target.stage(Stage.QUANTIZE).PARENT)
        artifact = _find_parent(present, parent_target, metadata)
        if artifact is None:
            defaults = {o.name: o.default for o in parent_target.options_for(Stage.EXPORT)}
            res = export_target(parent_target, ctx, defaults, verbose)
            if not res.outcome.wrote:
                found[target.name] = StageResult(Step.QUANTIZE, target.name, res.outcome,
                                                 f"FP32 parent ({parent_target.name}) not exported: {res.reason}")
                continue
            present = registry.discover(out)
            artifact = _find_parent(present, parent_target, metadata)
        found[target.name] = artifact or StageResult(Step.QUANTIZE, target.name, Outcome.FAILED,
                                                     f"no FP32 {parent_target.name} parent")
    return found


def _find_parent(present: list[Artifact], target: Target, metadata: dict[str, Any]) -> Artifact | None:
    for a in present:
        if a.target is target and a.precision is Precision.FP32 and "quantization" not in a.metadata:
            src = a.metadata.get("source_checkpoint_sha256")
            if src != metadata["source_checkpoint_sha256"]:
                raise ExportError(f"{a.path}: exported from another checkpoint (sha256 {str(src)[:12]}...) than the "
                                  "saved program")
            return a
    return None


def _quiet_nncf(verbose: bool) -> None:
    if not verbose and importlib.util.find_spec("nncf"):  # NNCF logs every op it leaves unquantized at INFO
        import logging

        import nncf

        nncf.set_log_level(logging.WARNING)


__all__ = ["QuantOutput", "QuantizeContext", "QuantizeReport", "FloatScope", "quantize_models", "quantize_target",
           "ImageSet", "build_sets", "validate", "float_scopes"]
