"""INT8 for the browser: the ONNX target's Q/DQ model (NNCF, the same float scope and calibration) in a web folder of
its own, M_int8_web/. When `lmliqa quantize` made M_int8.onnx in this run (same calibration, same scope), that file
is what the page gets; otherwise it is quantized here from the FP32 ONNX parent with the ONNX target's recipe."""

from __future__ import annotations

from pathlib import Path

PARENT = "onnx"
NARROW_FIRST = True     # the ONNX target's scope ladder, so that its M_int8.onnx is reused (quantize/onnx.py)


def quantize(ctx):
    """The lmliqa.targets stage: M_int8_web/ (the INT8 ONNX, the page, contract.json, the pinned ORT Web files)."""
    import tempfile

    from lmliqa.export.web import write_folder

    from . import QuantOutput
    from .onnx import quantize_nncf_onnx

    with tempfile.TemporaryDirectory() as tmp:
        model, info = _made_by_onnx(ctx)
        if model is None:
            model = Path(tmp) / "model_int8.onnx"
            info = quantize_nncf_onnx(ctx.parent.path, model, ctx.calib, ctx.scope, ctx.metadata, ctx.model_type)
        folder = write_folder(ctx.path("{m}_int8_web"), model, ctx.artifact_metadata(info))
    return QuantOutput([folder], info)


def _made_by_onnx(ctx):
    """(M_int8.onnx, its quantization record) when the ONNX target made it from this calibration and scope."""
    from lmliqa.runtimes.onnxruntime import read_metadata

    path = ctx.path("{m}_int8.onnx")
    if not path.is_file():
        return None, None
    q = read_metadata(path).get("quantization", {})
    same = q.get("calibration", {}).get("sha256") == ctx.calib_record["sha256"] and q.get("scope") == list(
        ctx.scope.categories)
    if not same:
        return None, None
    return path, {k: v for k, v in q.items() if k not in ("scope", "calibration")}
