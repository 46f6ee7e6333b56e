"""Snapdragon NPU INT8: the LiteRT target's INT8 .tflite (PT2E, the same calibration), compiled for each SoC's HTP
with fold-ReLU off (export/qualcomm.py says why). When `lmliqa quantize` made M_int8.tflite in this run from the same
calibration photos, that file is compiled, with its float scope (the LiteRT target's ladder chose it); otherwise it is
quantized here, with this run's scope, into a temporary folder."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from lmliqa.export.qualcomm import DEFAULT_SOCS, compile_for, parse_socs

PARENT = "litert"
LADDER = False        # its scope is the LiteRT INT8 file's (the LiteRT target's ladder chose it)


def quantize(ctx, socs: str = DEFAULT_SOCS, qualcomm_fold_relu: bool = False):
    """The lmliqa.targets stage: M_int8_qnn_SOC/ for each SoC."""
    from lmliqa.runtimes.litert import read_metadata

    from . import QuantOutput

    with tempfile.TemporaryDirectory() as tmp:
        int8 = _made_by_litert(ctx)
        if int8 is None:
            from .litert import quantize as litert_quantize

            int8 = litert_quantize(replace(ctx, out=Path(tmp))).paths[0]
        meta = read_metadata(int8)
        q = dict(meta["quantization"])
        folders = [compile_for(int8, ctx.path("{m}_int8_qnn_" + soc.lower()), soc, meta, qualcomm_fold_relu)
                   for soc in parse_socs(socs)]
    info = {**{k: v for k, v in q.items() if k != "calibration"}, "compiled_for": parse_socs(socs),
            "qualcomm_use_fold_relu": qualcomm_fold_relu, "int8_from": int8.name}
    return QuantOutput(folders, info)


def _made_by_litert(ctx) -> Path | None:
    """M_int8.tflite when the LiteRT target made it in this run from the same calibration photos."""
    from lmliqa.runtimes.litert import read_metadata

    path = ctx.path("{m}_int8.tflite")
    if not path.is_file():
        return None
    calibration = read_metadata(path).get("quantization", {}).get("calibration", {})
    return path if calibration.get("sha256") == ctx.calib_record["sha256"] else None
