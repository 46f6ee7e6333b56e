"""ExecuTorch (.pte), lowered to the XNNPACK delegate from the same torch.export program as every other target.

- The program is re-exported for a fixed batch of one image's crops (``contract.n_eval_crops``, recorded as
  ``batch``): ExecuTorch plans its memory for the largest shape, and a phone scores one photo per call.
- ``to_edge_transform_and_lower`` with the whole-graph ``XnnpackPartitioner``. What runs outside the delegate is
  counted and recorded (``xnnpack`` in the metadata); a convolution or matmul left to the portable kernels fails
  the export (it would be an order of magnitude slower on a phone). What does stay outside in ET 1.5.1: LayerNorm
  (no XNNPACK config) and the small reshapes and masks of nn.MultiheadAttention around it; in the INT8 program
  also the dequantization of the cross-attention's packed in-projection weight before it is split (so a device
  build links ExecuTorch's quantized kernels, ``quantized_ops_lib``, beside XNNPACK).
- The lmliqa metadata is a constant method of the program, ``lmliqa_metadata`` (JSON as a uint8 tensor).
- A check right after writing: the .pte runs under ``executorch.runtime`` and agrees with the program on a random
  batch (FP32 to 0.01 score units).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch

from ._graph import ExportError, check_against_program, metadata_json, static_program

METADATA_METHOD = "lmliqa_metadata"
# ops that must run inside XNNPACK: everything heavy in the network
MUST_DELEGATE = ("convolution", "linear", "addmm", "_mm_", "bmm", "matmul")


def export(ctx) -> list[Path]:
    """The lmliqa.targets stage: M.pte (FP32, XNNPACK)."""
    ep, _ = static_program(ctx.program, ctx.n_crops)
    path = lower(ep, ctx.path("{m}.pte"), {**ctx.metadata, "precision": "fp32"}, ctx.n_crops)
    check(ctx.program, path)
    return [path]


def lower(ep: torch.export.ExportedProgram, path: Path, metadata: dict[str, Any], batch: int) -> Path:
    """Lower EP (a fixed-batch program, possibly PT2E-quantized) to XNNPACK and write PATH with METADATA (plus the
    batch and the delegation report); returns PATH."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
    except Exception as exc:
        raise ExportError(f"ExecuTorch lowering failed: {type(exc).__name__}: {exc}".splitlines()[0][:400]) from exc
    report = delegation_report(edge.exported_program().graph_module)
    portable = [op for op in report["outside"] if any(k in op for k in MUST_DELEGATE)]
    if portable:
        raise ExportError(f"XNNPACK did not take {portable}: they would run on ExecuTorch's portable kernels")
    text = metadata_json(metadata, format="executorch", batch=batch, xnnpack=report)
    # the metadata method is attached after lowering, once the delegation report exists (constant methods are
    # values the program manager carries to to_executorch(); nothing is lowered for them)
    edge._config_methods = {METADATA_METHOD: torch.tensor(list(text.encode()), dtype=torch.uint8)}
    if any(op.startswith("quantized_decomposed") for op in report["outside"]):
        import executorch.kernels.quantized  # noqa: F401  (registers the out variants of the Q/DQ ops left outside)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(edge.to_executorch().buffer)
    return path


def delegation_report(gm: torch.fx.GraphModule) -> dict[str, Any]:
    """How much of the lowered graph XNNPACK runs: partitions, op nodes inside, and op counts left outside."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(gm)
    outside = Counter({op: b.non_delegated for op, b in info.delegation_by_operator.items()
                       if b.non_delegated and op not in ("getitem", "sym_size")})
    return {"partitions": info.num_delegated_subgraphs, "delegated_ops": info.num_delegated_nodes,
            "outside_ops": int(sum(outside.values())), "outside": dict(sorted(outside.items()))}


def check(program, path: Path) -> float:
    """Run PATH under ExecuTorch against the program (export/_graph.py: check_against_program)."""
    from lmliqa.runtimes.executorch import ExecuTorchScorer

    return check_against_program(program, ExecuTorchScorer(path))
