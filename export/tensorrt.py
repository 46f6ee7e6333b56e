"""TensorRT: an FP16 ONNX (LayerNorm, softmax and reductions kept FP32) built into a strongly typed engine.

TensorRT 10.12+ and 11 build strongly typed networks whose precision comes from the ONNX itself
(TensorRT 11 removed BuilderFlag.FP16/INT8 and the INT8 calibrators). One optimization profile covers
the dynamic batch. Metadata goes to a sidecar JSON beside the plan, never inside it (a prefixed plan
breaks trtexec and Triton). The engine is tied to the GPU architecture and TensorRT version it was built
with; both are recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._graph import INPUT_NAME, MAX_BATCH, ExportError, metadata_json

# Ops that overflow or lose accuracy in FP16 inside ViTs (deployment.md §2): kept FP32.
FP32_OPS = ["LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Erf"]


def export(ctx) -> list[Path]:
    """The lmliqa.targets stage: M_fp16.onnx, then M_fp16.plan (+ .plan.json) where TensorRT is importable; without
    TensorRT the FP16 ONNX is kept and the export is partial (build the engine on the target GPU)."""
    from . import PartialExport
    from .onnx import torch2onnx

    onnx_path = next((p for p in ctx.produced.get("onnx", []) if p.suffix == ".onnx"), None)
    if onnx_path is None:
        onnx_path = torch2onnx(ctx.program, ctx.path("{m}.onnx"), ctx.metadata)
    fp16 = onnx_to_fp16(onnx_path, ctx.path("{m}_fp16.onnx"), ctx.metadata)
    try:
        plan = onnx2engine(fp16, ctx.path("{m}_fp16.plan"), ctx.metadata, precision="fp16")
    except ImportError as exc:
        raise PartialExport(f"wrote {fp16.name}; engine not built: {exc}; build it on the target GPU with "
                            "`lmliqa export --formats tensorrt` there", [fp16]) from exc
    return [fp16, plan]


def onnx_to_fp16(src: Path, dst: Path, metadata: dict[str, Any]) -> Path:
    """FP16 weights and activations, FP32 input/output and FP32 islands for FP32_OPS."""
    import warnings

    import onnx
    from onnxconverter_common import float16

    with warnings.catch_warnings():  # it warns for every weight below fp16's smallest normal
        warnings.simplefilter("ignore", UserWarning)
        model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, op_block_list=FP32_OPS)
    for entry in model.metadata_props:
        if entry.key == "lmliqa":
            entry.value = metadata_json(metadata, format="onnx", precision="fp16", fp32_ops=FP32_OPS)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(dst))
    return dst


def onnx2engine(onnx_path: Path, plan: Path, metadata: dict[str, Any], precision: str, opt_batch: int = 8,
                workspace_gib: float = 4.0) -> Path:
    """A strongly typed engine from ONNX_PATH, whose own casts (FP16) or Q/DQ (INT8) set PRECISION."""
    try:
        import tensorrt as trt
    except Exception as exc:  # the PyPI stub raises at import when its libraries cannot be fetched
        raise ImportError(f"tensorrt is not importable here ({type(exc).__name__}: {exc})") from exc
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    s = metadata["contract"]["crop_size"]
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, 3, s, s), (opt_batch, 3, s, s), (MAX_BATCH, 3, s, s))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT build_serialized_network returned None (see the TensorRT log above)")
    plan.write_bytes(bytes(serialized))
    sidecar = json.loads(metadata_json(metadata, format="tensorrt", precision=precision))
    sidecar["tensorrt"] = {"version": trt.__version__, "gpu": _gpu_name(), "compute_capability": _gpu_arch(),
                           "profile": {"min": 1, "opt": opt_batch, "max": MAX_BATCH}, "strongly_typed": True}
    plan.with_suffix(plan.suffix + ".json").write_text(json.dumps(sidecar, indent=2))
    return plan


def _gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def _gpu_arch() -> str | None:
    try:
        import torch

        return ".".join(map(str, torch.cuda.get_device_capability(0))) if torch.cuda.is_available() else None
    except Exception:
        return None
