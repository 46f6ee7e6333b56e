"""lmliqa.export: one checkpoint -> an artifact for each chosen deployment target (lmliqa.targets).

Every target starts from the same torch.export program of the inference network (pixels in, one score per
crop out, dynamic batch), saved beside the artifacts as ``M.pt2`` (quantization starts from it and from the
FP32 parents), and every artifact carries the same metadata: the preprocessing contract, model and backbone,
the network's float-scope regions and scopes, label scale and direction, lmliqa version, the source checkpoint's
sha256 and the tools' versions. A target's own code lives in ``export/<target>.py`` (``export(ctx, **options)``);
each target's outcome is a :class:`lmliqa.stages.StageResult`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmliqa import targets as registry
from lmliqa.errors import ExportError, TargetError, first_line
from lmliqa.stages import Outcome, StageResult, Step
from lmliqa.targets import Precision, Stage, Target

from ._graph import PROGRAM_SUFFIX


class PartialExport(Exception):
    """Raised by a target that wrote some of its files but cannot finish here (e.g. no TensorRT to build the
    engine): the written files are kept and reported."""

    def __init__(self, reason: str, paths: list[Path]) -> None:
        super().__init__(reason)
        self.paths = paths


@dataclass
class ExportContext:
    """What a target's exporter gets: the program, the metadata, the output folder, and what earlier targets of
    this run produced (the TensorRT target reuses the ONNX file)."""

    program: Any                       # torch.export.ExportedProgram
    metadata: dict[str, Any]
    out: Path
    produced: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return self.metadata["model"]

    @property
    def n_crops(self) -> int:
        from lmliqa.contract import PreprocessContract

        return PreprocessContract.from_dict(self.metadata["contract"]).n_eval_crops

    def path(self, name: str) -> Path:
        """OUT / NAME with {m} = the model's preset name."""
        return self.out / name.format(m=self.model_name)


def export_checkpoint(checkpoint: str | Path, targets: list[str] | list[Target], out: str | Path,
                      verbose: bool = False, layout: str | None = None, **options: Any) -> list[StageResult]:
    """Export one checkpoint for each target under OUT; one target failing never stops the others. LAYOUT: an
    evaluation layout (lmliqa.contract.LAYOUTS) the artifacts' contract records instead of the checkpoint's.
    OPTIONS: target-specific export options (lmliqa.targets.Option names, e.g. keep_f32='none'); an option that
    belongs to none of the chosen targets is an error."""
    from ._graph import export_program, load_for_export, save_program

    chosen = [t if isinstance(t, Target) else registry.get(t) for t in targets]
    bad = [t.name for t in chosen if t.export_module is None]
    if bad:
        raise TargetError(f"{bad} cannot be exported; choose from {registry.names(Stage.EXPORT)}")
    per_target = registry.check_options(chosen, Stage.EXPORT, options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, metadata = load_for_export(checkpoint)
    if layout:
        from lmliqa.contract import PreprocessContract

        metadata["contract"] = PreprocessContract.from_dict(metadata["contract"]).with_layout(layout).to_dict()
    program = export_program(model)
    save_program(program, out / f"{metadata['model']}{PROGRAM_SUFFIX}", metadata)
    ctx = ExportContext(program, metadata, out)
    return [export_target(t, ctx, per_target[t.name], verbose) for t in chosen]


def export_target(target: Target, ctx: ExportContext, options: dict[str, Any], verbose: bool = False) -> StageResult:
    """One target's artifacts from the program: OK, PARTIAL (some files; the rest needs what is missing here),
    UNAVAILABLE (its tools are not installed) or FAILED, with the reason and the paths written."""
    def result(outcome: Outcome, reason: str = "", paths=()) -> StageResult:
        return StageResult(Step.EXPORT, target.name, outcome, reason, precision=Precision.FP32,
                           paths=[str(p) for p in paths])

    if why := target.unavailable(Stage.EXPORT):
        return result(Outcome.UNAVAILABLE, why)
    try:
        paths = target.stage(Stage.EXPORT).export(ctx, **options)
    except PartialExport as exc:
        ctx.produced[target.name] = list(exc.paths)
        return result(Outcome.PARTIAL, str(exc), exc.paths)
    except ImportError as exc:
        return result(Outcome.UNAVAILABLE, str(exc))
    except Exception as exc:  # one target failing must not stop the others
        if verbose:
            traceback.print_exc()
        return result(Outcome.FAILED, f"{type(exc).__name__}: {first_line(exc)}"[:400])
    ctx.produced[target.name] = list(paths)
    return result(Outcome.OK, "", paths)


__all__ = ["ExportContext", "ExportError", "PartialExport", "export_checkpoint", "export_target"]
