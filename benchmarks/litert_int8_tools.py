"""Choose LiteRT's INT8 tool by measurement: litert-torch's PT2E quantizer on the torch program (what `lmliqa
quantize --targets litert` ships; with the default float scope, without its first stage, and with none) against
ai-edge-quantizer's static int8 on the FP32 .tflite (Conv, depthwise Conv and FC only: it selects ops by TFLite
tensor-name regexes, so the module-path float scope cannot be expressed). Each is scored on validation photos
against the torch program (SRCC, mean / max |d|, rank flips, SRCC vs MOS) and timed at one image's crops per call,
interleaved in one run.

    python benchmarks/litert_int8_tools.py --models EXPORT_DIR --calib TRAIN_SPEC --val TEST_SPEC [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from lmliqa.contract import PreprocessContract
from lmliqa.export._graph import load_program, program_runner
from lmliqa.export.litert import torch2litert, write_metadata
from lmliqa.fidelity import compare
from lmliqa.provenance import provenance
from lmliqa.quantize._pt2e import keep_float, quantize_program, strip_annotations
from lmliqa.quantize.calib import image_scores, load_images
from lmliqa.runtimes import load
from lmliqa.scope import FloatScope


def pt2e(program, meta, calib, scope: FloatScope, path: Path) -> Path:
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    quantizer = strip_annotations(PT2EQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)), keep_float(scope, meta, program))
    module, example = quantize_program(program, meta["batch"], quantizer, calib, fold_quantize=False)
    return torch2litert(module, example, path, {**meta, "precision": "int8"}, QuantConfig(pt2e_quantizer=quantizer))


def aeq(fp32: Path, meta, calib, path: Path) -> Path:
    from ai_edge_quantizer import qtyping, quantizer

    q = quantizer.Quantizer(str(fp32))
    for op in (qtyping.TFLOperationName.CONV_2D, qtyping.TFLOperationName.DEPTHWISE_CONV_2D,
               qtyping.TFLOperationName.FULLY_CONNECTED):
        q.add_static_config(regex=".*", operation_name=op, activation_num_bits=8, weight_num_bits=8)
    from ai_edge_litert.interpreter import Interpreter

    input_name = Interpreter(model_path=str(fp32)).get_signature_list()["serving_default"]["inputs"][0]
    result = q.quantize(q.calibrate({"serving_default": [{input_name: c} for c in calib.crops]}),
                        enable_progress_report=False)
    result.export_model(str(path), overwrite=True)
    write_metadata(path, json.dumps({**meta, "precision": "int8"}))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="an `lmliqa export` folder with M.pt2 and M.tflite")
    ap.add_argument("--calib", required=True)
    ap.add_argument("--val", required=True, help="photos never calibrated or trained on")
    ap.add_argument("--n-calib", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    models = Path(args.models)
    (prog_path,) = models.glob("*.pt2")
    program, _ = load_program(prog_path)
    fp32 = next(p for p in models.glob("*.tflite") if load(p).precision.value == "fp32" and "_" not in p.stem)
    meta = load(fp32).metadata
    contract = PreprocessContract.from_dict(meta["contract"])
    calib, val = load_images(args.calib, contract, args.n_calib), load_images(args.val, contract)
    ref = image_scores(program_runner(program), val, contract)
    rows, scorers = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        default = FloatScope.default(meta["encoder_kind"])
        without = FloatScope(tuple(c for c in default.categories if c != "first_stage"))
        variants = {f"pt2e, default float scope ({default})": lambda p: pt2e(program, meta, calib, default, p),
                    f"pt2e, {without}": lambda p: pt2e(program, meta, calib, without, p),
                    "pt2e, no float scope": lambda p: pt2e(program, meta, calib, FloatScope(()), p),
                    "ai-edge-quantizer static, linear ops": lambda p: aeq(fp32, meta, calib, p)}
        for i, (name, make) in enumerate(variants.items()):
            t0 = time.perf_counter()
            path = make(tmp / f"v{i}.tflite")
            scorer = load(path, threads=2)
            fid = compare(ref, image_scores(scorer.infer, val, contract), val.mos)
            rows.append({"variant": name, "quantize_s": round(time.perf_counter() - t0, 1),
                         "size_mb": path.stat().st_size / 1e6, **{k: v for k, v in fid.to_dict().items()
                                                                 if k != "worst"}})
            scorers[name] = scorer
            print(f"{name:<40} SRCC {fid.srcc_vs_ref:.5f}  mean|d| {fid.mean_abs:.3f}  max|d| {fid.max_abs:.3f}  "
                  f"flips {fid.rank_flip_rate:.4f}  SRCC vs MOS {fid.srcc_vs_mos:.4f} (fp32 {fid.srcc_vs_mos_ref:.4f})",
                  flush=True)
        scorers["fp32"] = load(fp32, threads=2)
        x = val.crops[0]
        times: dict[str, list[float]] = {k: [] for k in scorers}
        for _ in range(args.rounds):              # interleaved: a shared machine's drift hits all alike
            for k, s in scorers.items():
                s.infer(x)
                t0 = time.perf_counter()
                for _ in range(5):
                    s.infer(x)
                times[k].append((time.perf_counter() - t0) / 5 * 1e3)
    fp32_ms = float(np.median(times["fp32"]))
    for row in rows:
        row["ms_per_image"] = float(np.median(times[row["variant"]]))
        print(f"{row['variant']:<40} {row['ms_per_image']:.1f} ms per image (9 crops); FP32 {fp32_ms:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({"provenance": provenance(), "models": str(models), "calib": args.calib,
                                               "val": args.val, "n_val": len(val.names), "fp32_ms_per_image": fp32_ms,
                                               "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
