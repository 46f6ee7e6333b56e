"""The single export source: a torch.export program of the inference network, the metadata every artifact
carries, and what both export and quantize need to read in that program (module paths of its nodes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lmliqa import __version__
from lmliqa.errors import ExportError, ScopeError
from lmliqa.manifest import sha256_file
from lmliqa.models.checkpoint import load_checkpoint
from lmliqa.models.network import QualityNet
from lmliqa.scope import FloatScope, under
from lmliqa.targets import tool_versions

INPUT_NAME = "pixels"
OUTPUT_NAME = "score"
MAX_BATCH = 256
EXAMPLE_BATCH = 2  # >= 2: with 1, torch.export specialises the batch dimension to 1
PROGRAM_SUFFIX = ".pt2"
# lmliqa.scope's op categories in the program's own vocabulary: the aten op a node was exported from (which also
# catches a decomposed op's pieces, e.g. GELU's Div/Erf/Add/Mul in ONNX); read by the PT2E quantizers and the ONNX
# node filter
ATEN_OPS: dict[str, tuple[str, ...]] = {
    "layernorm": ("layer_norm",), "softmax": ("softmax",), "gelu": ("gelu",), "residual_add": ("add",),
    "attention_matmul": ("scaled_dot_product_attention",),
}


def load_for_export(checkpoint: str | Path) -> tuple[QualityNet, dict[str, Any]]:
    model, meta = load_checkpoint(checkpoint)
    model.eval().requires_grad_(False)
    metadata = artifact_metadata(model, meta, Path(checkpoint))
    return model, metadata


def artifact_metadata(model: QualityNet, ckpt_meta: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    cfg = model.config
    return {
        "lmliqa_version": __version__,
        "model": cfg.name,
        "backbone": cfg.backbone,
        "encoder_kind": model.encoder.kind,
        "regions": {k: list(v) for k, v in model.regions.items()},
        "float_scopes": model.backbone_entry.scopes(),
        "contract": cfg.contract.to_dict(),
        "score": cfg.score.to_dict(),
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, cfg.contract.crop_size, cfg.contract.crop_size],
                  "dtype": "float32", "range": [0, 255], "layout": "NCHW", "channels": "RGB"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch"], "meaning": "quality score per crop on the label scale"},
        "source_checkpoint": checkpoint.name,
        "source_checkpoint_sha256": sha256_file(checkpoint),
        "trained_on": ckpt_meta.get("extra", {}).get("dataset"),
        "tools": tool_versions(),
    }


def example_input(crop_size: int, batch: int = EXAMPLE_BATCH) -> torch.Tensor:
    return torch.rand(batch, 3, crop_size, crop_size, generator=torch.Generator().manual_seed(0)) * 255


def export_program(model: QualityNet) -> torch.export.ExportedProgram:
    """torch.export of pixels (batch, 3, s, s) -> scores (batch,), batch dynamic in [1, MAX_BATCH]."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        return torch.export.export(model, (example_input(model.config.contract.crop_size),),
                                   dynamic_shapes=({0: batch},), strict=False)
    except Exception as exc:
        raise ExportError(f"torch.export failed for {model.config.name}: {exc}") from exc


def static_program(program: torch.export.ExportedProgram, batch: int
                   ) -> tuple[torch.export.ExportedProgram, torch.Tensor]:
    """The program re-exported for a fixed batch (for the converters that cannot take a dynamic batch), with an
    example input of that batch. Same graph, same weights."""
    x = example_input(_crop_size(program), batch)
    return torch.export.export(program.module(), (x,), strict=False), x


def _crop_size(program: torch.export.ExportedProgram) -> int:
    user_inputs = [n for n in program.graph.nodes if n.op == "placeholder"
                   and n.name in program.graph_signature.user_inputs]
    return int(user_inputs[0].meta["val"].shape[-1])


def program_runner(program: torch.export.ExportedProgram):
    """crops (n, 3, s, s) float32 pixels -> scores (n,) with the program itself (the reference every artifact is
    compared with)."""
    return module_runner(program.module())


def module_runner(module: torch.nn.Module):
    """crops (n, 3, s, s) float32 pixels -> scores (n,) with MODULE (a program's module or a network in eval mode)."""
    import numpy as np

    def run(crops: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32))).numpy()

    return run


def check_against_program(program: torch.export.ExportedProgram, scorer) -> float:
    """A cheap check right after writing an artifact: SCORER (the runtime users run) and PROGRAM on one fixed
    random batch must agree within the max |d| of the artifact's gate (its target's, as parity applies it: 0.01
    score units for FP32, 0.5 for reduced precision, fp16 weights included), or the export fails with the number.
    Returns max |d|."""
    import numpy as np

    from lmliqa import targets

    x = example_input(scorer.contract.crop_size, scorer.fixed_batch or EXAMPLE_BATCH).numpy()
    err = float(np.abs(scorer.infer(x) - program_runner(program)(x)).max())
    tol = targets.get(scorer.backend).gate(scorer.precision, scorer.weights).max_abs
    if tol is not None and not err <= tol:
        raise ExportError(f"{scorer.path.name}: {scorer.backend} disagrees with the program by {err:.4g} (> {tol}) "
                          "on a random batch")
    return err


def save_program(program: torch.export.ExportedProgram, path: Path, metadata: dict[str, Any]) -> Path:
    """The program every artifact is converted from, with the lmliqa metadata: quantization starts here and from
    the FP32 parents, never from a second checkpoint load or torch.export."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path), extra_files={"lmliqa.json": metadata_json(metadata, format="program",
                                                                                     precision="fp32")})
    return path


def load_program(path: Path) -> tuple[torch.export.ExportedProgram, dict[str, Any]]:
    extra = {"lmliqa.json": ""}
    program = torch.export.load(str(path), extra_files=extra)
    if not extra["lmliqa.json"]:
        raise ExportError(f"{path}: a torch.export program without lmliqa metadata")
    return program, json.loads(extra["lmliqa.json"])


def metadata_json(metadata: dict[str, Any], **extra: Any) -> str:
    return json.dumps({**metadata, **extra}, sort_keys=True)


# ------------------------------------------------------------------ module paths in the program
def module_path(node: torch.fx.Node) -> str | None:
    """The module path of the module that called NODE's op ('' = the root module), None without that record."""
    stack = node.meta.get("nn_module_stack")
    if stack is None:
        return None
    paths = [v[0] for v in stack.values()]
    return _clean(paths[-1]) if paths else ""


def _clean(path: str) -> str:
    # torch.export module paths look like "L__self___head" or "head" depending on the version
    return path.replace("L__self___", "").replace("L['self'].", "")


def nodes_under(program: torch.export.ExportedProgram | torch.fx.GraphModule, prefixes: tuple[str, ...]) -> set[str]:
    """Names of the program's op nodes whose module path is under PREFIXES."""
    graph = program.graph
    return {n.name for n in graph.nodes if n.op == "call_function" and (p := module_path(n)) is not None
            and under(p, prefixes)}


# The network's input and output ops are never quantized, whatever the float scope: the root module's own ops (the
# contract's input normalization, the panel queries, the score tail: mean over panels, label scale and shift) and
# the ops whose every consumer is one of them (the score head's Linear, the class token's select). No INT8 op
# follows them that a quantizer could feed, and a quantizer on the raw panel scores, on a range calibrated on 32
# photos, clipped other photos' scores: on the default model, ONNX INT8 with no float scope went from mean / max
# |d| 2.46 / 19.6 to 0.99 / 8.2 with the root ops float (README "Quantization"). Each tool's graph applies the same
# rule: `io_node` here (PT2E), export/openvino.py `openvino_io_ops`, quantize/onnx.py `io_nodes` (ONNX).
def io_node(node: torch.fx.Node) -> bool:
    """Is NODE one of the network's input / output ops (above)?"""
    if node.op != "call_function":
        return False
    if module_path(node) == "":
        return True
    users = list(node.users)
    return bool(users) and all(u.op == "call_function" and module_path(u) == "" for u in users)


def io_ops(program: torch.export.ExportedProgram | torch.fx.GraphModule) -> set[str]:
    """Names of PROGRAM's input / output op nodes (`io_node`)."""
    return {n.name for n in program.graph.nodes if io_node(n)}


def scope_prefixes(scope: FloatScope, metadata: dict[str, Any], program=None) -> tuple[str, ...]:
    """The module prefixes of SCOPE's regions in the network the metadata describes; with PROGRAM, a region that
    matches no node of it is an error too (not a silent no-op)."""
    regions = {k: tuple(v) for k, v in metadata["regions"].items()}
    prefixes = scope.module_prefixes(regions)
    if program is not None:
        for cat, pre in scope.regions_of(regions).items():
            if not nodes_under(program, pre):
                raise ScopeError(f"float-scope region {cat!r} ({', '.join(p or '<root>' for p in pre)}) matches no "
                                 f"op of the {metadata['model']} program")
    return prefixes
