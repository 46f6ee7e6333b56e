"""Why ONNX Runtime's INT8 was slower than its FP32 on this CPU, and what the recipe does about it (issue 25).

    python benchmarks/onnx_int8.py --checkpoint default --calib folder:../shared/data/livec-dev \
        --out benchmarks/results/DATE-onnx-int8.json

Exports CHECKPOINT's FP32 ONNX, quantizes it with NNCF in each recipe variant below, and for each one records
(1) how ONNX Runtime runs it: the node types of the graph it builds (ORT_ENABLE_EXTENDED, hardware independent):
how many convs became QLinearConv and how many stayed float between Q/DQ pairs; (2) its time per photo (one photo =
the contract's crops in one batch; every variant and the FP32 model timed round-robin in the same loop, so the
ratios hold on a noisy machine); (3) its fidelity to the torch program on validation photos with the INT8 gate.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lmliqa.provenance import provenance

# name -> (float scope key in the export's float_scopes, or "none"; per-tensor activations; all-uint8 activations)
VARIANTS = {
    "NNCF default form, default scope (the shipped 2026-11-27 recipe)": ("default", False, False),
    "per-tensor activations, default scope": ("default", True, False),
    "per-tensor uint8 activations, default scope": ("default", True, True),
    "per-tensor uint8 activations, narrow scope (the recipe)": ("narrow", True, True),
    "per-tensor uint8 activations, no float scope (what QAT would need to reach)": ("none", True, True),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--calib", default="folder:../shared/data/livec-dev")
    ap.add_argument("--n-calib", type=int, default=32)
    ap.add_argument("--n-val", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    record = {"provenance": provenance(), "checkpoint": args.checkpoint, "calib": args.calib,
              "n_calib": args.n_calib, "n_val": args.n_val, "threads": args.threads, "reps": args.reps}

    from _onnx_reference import export_reference, graph_ops, ort_runner, write_timed

    from lmliqa.fidelity import QUANTIZED
    from lmliqa.quantize.onnx import quantize_nncf_onnx
    from lmliqa.scope import FloatScope

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        ref = export_reference(args.checkpoint, tmp, args.calib, args.n_calib, args.n_val)
        paths, rows = {"FP32": ref.fp32}, {"FP32": {"scope": None, "ops": graph_ops(ref.fp32, tmp)}}
        for i, (name, (scope_key, per_tensor, unsigned)) in enumerate(VARIANTS.items()):
            scope = FloatScope(tuple(ref.meta["float_scopes"][scope_key]) if scope_key != "none" else ())
            dst = tmp / f"variant{i}.onnx"
            t0 = time.perf_counter()
            info = quantize_nncf_onnx(ref.fp32, dst, ref.calib, scope, ref.meta, None,
                                      per_tensor_activations=per_tensor, unsigned=unsigned)
            fid = ref.compare(ort_runner(dst, args.threads))
            rows[name] = {"scope": list(scope.categories), "quantize_s": round(time.perf_counter() - t0, 1),
                          "quantization": info, "ops": graph_ops(dst, tmp),
                          "fidelity": {"mean_abs": fid.mean_abs, "max_abs": fid.max_abs, "srcc_vs_ref": fid.srcc_vs_ref,
                                       "material_flip_rate": fid.material_flip_rate},
                          "gate": str(QUANTIZED), "gate_pass": QUANTIZED.check(fid)}
            paths[name] = dst
            print(f"{name}: {rows[name]['ops']['QLinearConv']} QLinearConv, mean |d| {fid.mean_abs:.3f}", flush=True)
        write_timed(record, rows, paths, ref.val.crops[0], args.threads, args.reps, Path(args.out))


if __name__ == "__main__":
    main()
