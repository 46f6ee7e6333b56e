"""Choose the float scope by measurement: quantize one checkpoint with each candidate scope and each tool,
and score every result on validation images against its FP32 parent (SRCC(int8, fp32), mean / max |d|,
SRCC vs MOS).

    python benchmarks/quant_scope.py --checkpoint CKPT --calib SPEC [--tools ort,nncf-onnx,nncf-openvino]
        [--scopes "none;layernorm,softmax,gelu,residual_add;default;default,decoder"] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from lmliqa.export import export_checkpoint
from lmliqa.export._graph import export_program, load_for_export, metadata_json
from lmliqa.quantize.accuracy import agreement
from lmliqa.quantize.calib import build_sets, image_scores
from lmliqa.quantize.onnx import ort_run, quantize_nncf_onnx, quantize_ort
from lmliqa.quantize.openvino import quantize_openvino
from lmliqa.quantize.scope import FloatScope

DEFAULT_SCOPES = "none;layernorm,softmax,gelu,residual_add;default;default,tokens;default,decoder"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--tools", default="ort,nncf-onnx,nncf-openvino")
    ap.add_argument("--scopes", default=DEFAULT_SCOPES, help="';'-separated scopes, each a ','-list of categories")
    ap.add_argument("--n-calib", type=int, default=32)
    ap.add_argument("--n-val", type=int, default=96)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    model, metadata = load_for_export(args.checkpoint)
    model_type = "transformer" if model.config.backbone.startswith(("deit", "vit")) else None
    contract = model.config.contract
    calib, val = build_sets(args.calib, contract, args.n_calib, args.n_val)
    program = export_program(model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_checkpoint(args.checkpoint, ["onnx", "openvino"], tmp)
        m = metadata["model"]
        ref = image_scores(ort_run(tmp / f"{m}.onnx"), val, contract)
        for si, text in enumerate(args.scopes.split(";")):
            scope = FloatScope.parse(text)
            for tool in args.tools.split(","):
                t0 = time.perf_counter()
                if tool.startswith("ort"):  # ort | ort-percentile | ort-entropy
                    dst = tmp / f"s{si}_{tool}.onnx"
                    quantize_ort(tmp / f"{m}.onnx", dst, calib, scope, method=(tool.split("-") + ["minmax"])[1])
                    run = ort_run(dst)
                elif tool == "nncf-onnx":
                    dst = tmp / f"s{si}_nncf.onnx"
                    quantize_nncf_onnx(tmp / f"{m}.onnx", dst, calib, scope, model_type)
                    run = ort_run(dst)
                else:
                    import openvino as ov

                    dst = tmp / f"s{si}_ov" / "m.xml"
                    quantize_openvino(tmp / f"{m}_openvino" / f"{m}.xml", dst, program, calib, scope, model_type,
                                      lambda i, **kw: metadata_json(metadata, precision="int8", **kw))
                    compiled = ov.Core().compile_model(str(dst), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                    run = lambda c, compiled=compiled: compiled(c)[0]  # noqa: E731
                acc = agreement(ref, image_scores(run, val, contract), val.mos)
                row = {"scope": str(scope), "tool": tool, **acc, "quantize_s": round(time.perf_counter() - t0, 1)}
                rows.append(row)
                nan = float("nan")
                print(f"{row['scope']:<55} {tool:<14} SRCC(int8,fp32) {acc['srcc_vs_fp32']:.4f}  mean|d| "
                      f"{acc['mean_abs']:.3f}  max|d| {acc['max_abs']:.3f}  SRCC vs MOS "
                      f"{acc.get('srcc_vs_mos', nan):.4f} (fp32 {acc.get('srcc_vs_mos_fp32', nan):.4f})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": args.checkpoint, "calib": calib.record(args.calib),
                                               "n_val": len(val.names), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
