"""lmliqa.quantize: post-training INT8 quantization for every backend, under one float scope and one
calibration set, with IQA-metric accuracy control.

    lmliqa quantize --checkpoint CKPT --calib SPEC --formats openvino,onnx,coreml,tensorrt --out DIR

One declarative table (QFORMATS) lists what each format writes and with which tool. Every artifact is
written next to its FP32 parent (so `lmliqa parity` and `lmliqa bench` see both), carries the usual lmliqa
metadata plus ``precision: int8`` and a ``quantization`` record (tool, float scope, calibration images by
content hash, accuracy control), and is scored on the validation images against its parent.
"""

from __future__ import annotations

import importlib.util
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .calib import DEFAULT_CALIB_IMAGES, DEFAULT_VAL_IMAGES, ImageSet, build_sets, image_scores
from .scope import DEFAULT_SCOPE, FloatScope


@dataclass(frozen=True)
class QFormat:
    name: str
    artifacts: tuple[str, ...]
    requires: tuple[str, ...]
    tool: str
    description: str


QFORMATS: dict[str, QFormat] = {f.name: f for f in (
    QFormat("openvino", ("{m}_int8_openvino/{m}_int8.xml",), ("openvino", "nncf"), "NNCF",
            "OpenVINO IR, INT8 FakeQuantize on Conv/MatMul (ModelType.TRANSFORMER + SmoothQuant for ViTs)"),
    QFormat("onnx", ("{m}_int8.onnx",), ("onnx", "onnxruntime", "nncf"), "NNCF (default) or ONNX Runtime",
            "ONNX Q/DQ for ONNX Runtime: per-channel int8 weights, int8/uint8 activations, Conv/MatMul/Gemm only"),
    QFormat("coreml", ("{m}_w8.mlpackage", "{m}_pal6.mlpackage", "{m}_pal4.mlpackage"), ("coremltools",),
            "coremltools.optimize", "Core ML weight compression: int8 linear, 6- and 4-bit palettes"),
    QFormat("tensorrt", ("{m}_int8_qdq.onnx", "{m}_int8.plan"), ("onnx", "onnxruntime", "nncf"), "explicit Q/DQ",
            "symmetric Q/DQ ONNX for a strongly typed TensorRT INT8 engine (+ the engine where TensorRT exists)"),
)}


@dataclass
class QuantResult:
    format: str
    status: str                          # ok | failed: reason | unavailable here: reason | partial: reason
    paths: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def quantize_checkpoint(checkpoint: str | Path, calib: str | None, formats: list[str], out: str | Path,
                        scope: FloatScope | str | None = None, n_calib: int = DEFAULT_CALIB_IMAGES,
                        n_val: int = DEFAULT_VAL_IMAGES, max_drop: float | None = None, onnx_tool: str = "nncf",
                        smooth_quant_alpha: float = 0.95, fast_bias_correction: bool = False,
                        verbose: bool = False) -> dict[str, Any]:
    """Quantize CHECKPOINT for each format into OUT; returns (and writes OUT/quantization.json) a report with
    one result per format. One format failing never stops the others."""
    from lmliqa.export import FORMATS as EXPORT_FORMATS
    from lmliqa.export import _missing, export_checkpoint
    from lmliqa.export._graph import export_program, load_for_export, metadata_json

    unknown = [f for f in formats if f not in QFORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; choose from {sorted(QFORMATS)}")
    scope = scope if isinstance(scope, FloatScope) else FloatScope.parse(scope)
    if not verbose and importlib.util.find_spec("nncf"):  # NNCF logs every op it leaves unquantized at INFO
        import logging

        import nncf

        nncf.set_log_level(logging.WARNING)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, metadata = load_for_export(checkpoint)
    calib = calib or metadata.get("trained_on")
    if not calib:
        raise ValueError("no calibration data: pass --calib SPEC (the checkpoint records no training data)")
    m = metadata["model"]
    model_type = "transformer" if model.config.backbone.startswith(("deit", "vit")) else None
    t0 = time.perf_counter()
    calib_set, val_set = build_sets(calib, model.config.contract, n_calib, n_val)
    calib_record = calib_set.record(calib)
    program = export_program(model)

    # FP32 parents: the quantizers start from them and parity/bench compare against them
    parents = {"onnx"} | ({"openvino", "coreml"} & set(formats))
    parent_res = {r.format: r for r in export_checkpoint(checkpoint, sorted(parents & set(EXPORT_FORMATS)), out)}
    fp32_onnx = out / f"{m}.onnx"
    if not parent_res["onnx"].ok:
        raise RuntimeError(f"the FP32 ONNX parent could not be exported: {parent_res['onnx'].status}")
    from .onnx import ort_run

    contract = model.config.contract
    ref_val = image_scores(ort_run(fp32_onnx), val_set, contract)

    def meta_for(fmt: str, info: dict[str, Any], **extra: Any) -> str:
        q = {"scope": list(scope.categories), "calibration": calib_record, **info}
        return metadata_json(metadata, format=fmt, precision="int8", quantization=q, **extra)

    results: list[QuantResult] = []
    for name in formats:
        fmt = QFORMATS[name]
        paths = [out / a.format(m=m) for a in fmt.artifacts]
        missing = _missing(fmt.requires)
        if missing:
            results.append(QuantResult(name, f"unavailable here: {', '.join(missing)} not installed"))
            continue
        try:
            results.append(_quantize_one(name, paths, out, m, program, calib_set, val_set, ref_val, scope,
                                         model_type, max_drop, onnx_tool, smooth_quant_alpha, contract,
                                         meta_for, fp32_onnx, parent_res, metadata, fast_bias_correction))
        except Exception as exc:
            if verbose:
                traceback.print_exc()
            results.append(QuantResult(name, f"failed: {type(exc).__name__}: {exc}".splitlines()[0][:400]))
    report = {"checkpoint": str(checkpoint), "checkpoint_sha256": metadata["source_checkpoint_sha256"],
              "model": m, "scope": list(scope.categories), "calibration": calib_record,
              "validation": {"spec": calib, "n_images": len(val_set.names),
                             "images": [n.rsplit("/", 1)[-1] for n in val_set.names]},
              "max_drop": max_drop, "wall_s": round(time.perf_counter() - t0, 1),
              "results": [r.__dict__ for r in results]}
    (out / "quantization.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def _quantize_one(name, paths, out, m, program, calib_set: ImageSet, val_set: ImageSet, ref_val, scope,
                  model_type, max_drop, onnx_tool, sq_alpha, contract, meta_for, fp32_onnx, parent_res,
                  metadata, fbc: bool = False) -> QuantResult:
    from .accuracy import agreement
    from .onnx import ort_run, set_onnx_metadata

    def judge(run) -> dict[str, Any]:
        return agreement(ref_val, image_scores(run, val_set, contract), val_set.mos)

    if name == "onnx":
        from .onnx import quantize_nncf_onnx, quantize_ort

        candidates = [scope] if max_drop is None or onnx_tool == "nncf" else [scope, scope.plus("decoder")]
        for sc in candidates:  # ONNX Runtime has no accuracy control of its own: widen the float scope
            if onnx_tool == "nncf":
                info = quantize_nncf_onnx(fp32_onnx, paths[0], calib_set, sc, model_type, val_set, max_drop,
                                          contract, sq_alpha, fbc)
            else:
                info = quantize_ort(fp32_onnx, paths[0], calib_set, sc)
            acc = judge(ort_run(paths[0]))
            if max_drop is None or "srcc_vs_mos" not in acc or acc["srcc_vs_mos_fp32"] - acc["srcc_vs_mos"] <= max_drop:
                break
        info["scope"] = list(sc.categories)
        set_onnx_metadata(paths[0], meta_for("onnx", info))
        return QuantResult(name, "ok", [str(paths[0])], {**info, "validation": acc})
    if name == "openvino":
        from .openvino import quantize_openvino

        parent = parent_res.get("openvino")
        if parent is None or not parent.ok:
            raise RuntimeError(f"FP32 OpenVINO parent missing: {parent.status if parent else 'not exported'}")
        info = quantize_openvino(Path(parent.paths[0]), paths[0], program, calib_set, scope, model_type,
                                 lambda i, **kw: meta_for("openvino", i, **kw), val_set, max_drop, contract,
                                 sq_alpha, fbc)
        import openvino as ov

        compiled = ov.Core().compile_model(str(paths[0]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        acc = judge(lambda c: compiled(c)[0])
        return QuantResult(name, "ok", [str(paths[0])], {**info, "validation": acc})
    if name == "coreml":
        from .coreml import compress_coreml

        parent = parent_res.get("coreml")
        if parent is None or not parent.ok:
            raise RuntimeError(f"FP32 Core ML parent missing: {parent.status if parent else 'not exported'}")
        fp32_pkg = Path(parent.paths[0])
        details = {}
        for path in paths:
            mode = path.stem.rsplit("_", 1)[-1]
            details[mode] = compress_coreml(fp32_pkg, path, mode, scope, program, meta_for("coreml", {"mode": mode}))
        return QuantResult(name, "ok", [str(p) for p in paths], details)
    if name == "tensorrt":
        from .tensorrt import build_engine, qdq_for_tensorrt

        info = qdq_for_tensorrt(fp32_onnx, paths[0], calib_set, scope, model_type, fbc)
        set_onnx_metadata(paths[0], meta_for("tensorrt-qdq-onnx", info))
        acc = judge(ort_run(paths[0]))
        details = {**info, "validation (Q/DQ ONNX executed by ONNX Runtime)": acc}
        try:
            build_engine(paths[0], paths[1], json.loads(meta_for("tensorrt", info)))
        except ImportError as exc:
            return QuantResult(name, f"partial: wrote {paths[0].name}; engine not built: {exc}", [str(paths[0])],
                               details)
        return QuantResult(name, "ok", [str(p) for p in paths], details)
    raise ValueError(name)


def status_line(r: QuantResult) -> str:
    v = r.details.get("validation") or r.details.get("validation (Q/DQ ONNX executed by ONNX Runtime)")
    extra = ""
    if v:
        extra = (f"  [val: SRCC(int8,fp32) {v['srcc_vs_fp32']:.4f}, mean |d| {v['mean_abs']:.3f}, "
                 f"max |d| {v['max_abs']:.3f}" + (f", SRCC vs MOS {v['srcc_vs_mos']:.4f} (fp32 "
                                                  f"{v['srcc_vs_mos_fp32']:.4f})" if "srcc_vs_mos" in v else "") + "]")
    if r.format == "coreml" and r.status == "ok":
        extra = "  [weights round trip, min SQNR dB: " + ", ".join(
            f"{k} {d['weights_roundtrip']['min_sqnr_db']:.1f}" for k, d in r.details.items()) + "]"
    return f"{r.format:<9} {r.status}" + (f"  -> {', '.join(r.paths)}" if r.paths and r.status == 'ok' else "") + extra


__all__ = ["QFORMATS", "QFormat", "QuantResult", "FloatScope", "DEFAULT_SCOPE", "quantize_checkpoint",
           "status_line", "ImageSet", "build_sets"]
