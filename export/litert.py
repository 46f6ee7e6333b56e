"""LiteRT (.tflite), converted by litert-torch from the same torch.export program as every other target.

- FP32: ``litert_torch.convert`` of the program's module. litert-torch cannot convert this network with a
  dynamic batch (its layout pass asserts on the symbolic dimension), so the model takes a fixed batch of one
  image's crops (``contract.n_eval_crops``), recorded in the metadata as ``batch``; the runtime feeds chunks.
- FP16: the FP32 model with its weights stored in fp16 (ai-edge-quantizer's float casting of the Conv/FC/depthwise
  weights); XNNPACK decompresses them at load on CPUs without fp16 arithmetic.
- The lmliqa metadata goes into the flatbuffer's own ``metadata`` table (name ``lmliqa``, a JSON buffer).
- A cheap check right after writing: the file runs under the LiteRT interpreter and agrees with the program on a
  fixed random batch (FP32 to 0.01, FP16 to 0.5 score units), or the export fails with the numbers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ._graph import ExportError, check_against_program, static_program

METADATA_NAME = "lmliqa"


def export(ctx) -> list[Path]:
    """The lmliqa.targets stage: M.tflite (FP32) and M_fp16.tflite (fp16 weights), one image's crops per call."""
    ep, example = static_program(ctx.program, ctx.n_crops)
    meta = {**ctx.metadata, "format": "litert", "batch": ctx.n_crops, "precision": "fp32"}
    fp32 = torch2litert(ep.module(), example, ctx.path("{m}.tflite"), meta)
    fp16 = fp16_weights(fp32, ctx.path("{m}_fp16.tflite"), meta)
    for path in (fp32, fp16):
        check(ctx.program, path)
    return [fp32, fp16]


def torch2litert(module, example, path: Path, metadata: dict[str, Any], quant_config=None) -> Path:
    """Convert MODULE (the fixed-batch program's module, possibly PT2E-quantized) to PATH with METADATA."""
    import litert_torch

    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)   # litert warns "converted in training mode": an exported graph has no mode
    try:
        edge = litert_torch.convert(module, (example,), quant_config=quant_config)
        edge.export(str(path))
    except Exception as exc:
        raise ExportError(f"litert_torch.convert failed: {type(exc).__name__}: {exc}".splitlines()[0][:400]) from exc
    finally:
        root.setLevel(level)
    write_metadata(path, json.dumps(metadata, sort_keys=True))
    return path


def fp16_weights(src: Path, dst: Path, metadata: dict[str, Any]) -> Path:
    """SRC with the Conv, depthwise Conv and FC weights stored in fp16 (ai-edge-quantizer's float casting)."""
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer

    q = quantizer.Quantizer(str(src))
    for op in (qtyping.TFLOperationName.CONV_2D, qtyping.TFLOperationName.DEPTHWISE_CONV_2D,
               qtyping.TFLOperationName.FULLY_CONNECTED):
        q.add_weight_only_config(regex=".*", operation_name=op, num_bits=16,
                                 algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    result = q.quantize(enable_progress_report=False)
    result.export_model(str(dst), overwrite=True)
    write_metadata(dst, json.dumps({**metadata, "precision": "fp16", "weights": "fp16",
                                    "weight_tool": "ai-edge-quantizer float casting (Conv, depthwise Conv, FC)"},
                                   sort_keys=True))
    return dst


def write_metadata(path: Path, text: str) -> None:
    """Put TEXT into the .tflite's metadata table as METADATA_NAME (replacing an earlier entry)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    model.metadata = [m for m in (model.metadata or []) if _name(m) != METADATA_NAME]
    model.buffers.append(schema.BufferT(data=np.frombuffer(text.encode(), dtype=np.uint8)))
    model.metadata.append(schema.MetadataT(name=METADATA_NAME, buffer=len(model.buffers) - 1))
    flatbuffer_utils.write_model(model, str(path))


def _name(entry) -> str:
    n = entry.name
    return n.decode() if isinstance(n, bytes) else str(n)


def check(program, path: Path) -> float:
    """Run PATH under LiteRT against the program (export/_graph.py: check_against_program) and record max |d| in
    the file's metadata."""
    from lmliqa.runtimes.litert import LiteRTScorer

    scorer = LiteRTScorer(path)
    err = check_against_program(program, scorer)
    meta = {**scorer.metadata, "export_check": {"max_abs_vs_program": err, "batch": scorer.fixed_batch}}
    write_metadata(path, json.dumps(meta, sort_keys=True))
    return err
