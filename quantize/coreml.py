"""Core ML weight compression: int8 linear (per-channel symmetric) and palettized (k-means LUT, 4 or 6 bits)
weights, from the FP32 mlprogram package. Ops under the float scope's modules keep float weights.

Compute stays float (weights are decompressed on device), so on Linux -- where MLModel.predict does not
exist -- the check is a weights round trip: every compressed weight is decompressed with coremltools and
compared with the FP32 package's (SQNR in dB, max relative error); the result is stored in the package's
metadata and shown as ``simulated`` in the parity report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.targets import Precision

PARENT = "coreml"
MODES = {Precision.W8: ("linear", 8), Precision.PAL6: ("palettize", 6), Precision.PAL4: ("palettize", 4)}


def quantize(ctx):
    """The lmliqa.targets stage: M_w8, M_pal6 and M_pal4 .mlpackage from the FP32 package. Ops under the float
    scope's regions keep float weights (their MIL op names are the torch.export node names)."""
    from lmliqa.export._graph import nodes_under, scope_prefixes

    from . import QuantOutput

    skip = nodes_under(ctx.program, scope_prefixes(ctx.scope, ctx.metadata, ctx.program))
    paths, details = [], {}
    for mode in MODES:
        dst = ctx.path(f"{{m}}_{mode.value}.mlpackage")
        details[mode.value] = compress_coreml(ctx.parent.path, dst, mode, skip,
                                              lambda info, m=mode: ctx.artifact_metadata(info, precision=m))
        paths.append(dst)
    return QuantOutput(paths, {"modes": details})


def compress_coreml(fp32_package: Path, dst: Path, mode: Precision, skip: set[str], metadata_for) -> dict[str, Any]:
    from lmliqa._quiet import quiet_imports

    with quiet_imports():
        import coremltools as ct
        import coremltools.optimize.coreml as cto

    kind, bits = MODES[mode]

    with quiet_imports():
        fp32 = ct.models.MLModel(str(fp32_package), skip_model_load=True)
        weights = cto.get_weights_metadata(fp32, weight_threshold=0)
        keep = {name: None for name, w in weights.items()   # None: leave this weight in float
                if any(_aten_name(c.name) in skip for c in w.child_ops)}
        if kind == "linear":
            op_cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                                 weight_threshold=2048)
            out = cto.linear_quantize_weights(fp32, config=cto.OptimizationConfig(global_config=op_cfg,
                                                                                  op_name_configs=keep))
        else:
            op_cfg = cto.OpPalettizerConfig(mode="kmeans", nbits=bits, granularity="per_tensor", weight_threshold=2048)
            out = cto.palettize_weights(fp32, config=cto.OptimizationConfig(global_config=op_cfg,
                                                                            op_name_configs=keep))
        roundtrip = weights_roundtrip(fp32, out)
    import json

    info = {"tool": f"coremltools {ct.__version__}", "mode": mode.value, "bits": bits, "kind": kind,
            "weights_kept_float": sorted(keep)}
    meta = {**metadata_for(info), "weights_roundtrip": roundtrip}
    out.user_defined_metadata["lmliqa"] = json.dumps(meta, sort_keys=True)
    if "lmliqa.model" in fp32.user_defined_metadata:
        out.user_defined_metadata["lmliqa.model"] = fp32.user_defined_metadata["lmliqa.model"]
    out.author, out.license, out.version = fp32.author, fp32.license, fp32.version
    out.short_description = fp32.short_description + f" Weights: {mode} ({kind}, {bits}-bit)."
    out.save(str(dst))
    return {**info, "weights_roundtrip": roundtrip}


def _aten_name(mil_name: str) -> str:
    # MIL op names keep the torch.export node name, sometimes with a suffix after conversion passes
    for suffix in ("_cast_fp16", "_cast_fp32", "_cast"):
        if mil_name.endswith(suffix):
            return mil_name[: -len(suffix)]
    return mil_name


def weights_roundtrip(fp32, compressed) -> dict[str, Any]:
    """Decompress every weight of COMPRESSED and compare it with FP32's weight of the same name."""
    import coremltools.optimize.coreml as cto

    ref = {k: np.asarray(v.val, dtype=np.float64) for k, v in cto.get_weights_metadata(fp32, 0).items()}
    dec = cto.decompress_weights(compressed)
    got = {}
    for k, v in cto.get_weights_metadata(dec, 0).items():  # compression renames a weight NAME_quantized / _palettized
        for suffix in ("_quantized", "_palettized"):
            k = k[: -len(suffix)] if k.endswith(suffix) else k
        got[k] = np.asarray(v.val, dtype=np.float64)
    sqnr, relmax, n = [], [], 0
    for name, w in ref.items():
        g = got.get(name)
        if g is None or g.shape != w.shape or w.size < 2048:
            continue
        n += 1
        noise = float(np.sum((g - w) ** 2))
        sqnr.append(10 * np.log10(float(np.sum(w ** 2)) / noise) if noise > 0 else float("inf"))
        relmax.append(float(np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-12)))
    finite = [s for s in sqnr if np.isfinite(s)]
    return {"n_weights_compared": n, "n_unchanged": len(sqnr) - len(finite),
            "min_sqnr_db": float(min(finite)) if finite else None,
            "median_sqnr_db": float(np.median(finite)) if finite else None,
            "max_rel_error": float(max(relmax)) if relmax else None}
