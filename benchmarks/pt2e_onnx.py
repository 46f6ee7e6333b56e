"""Could the ONNX INT8 file come from the PT2E graph that LiteRT's quantization-aware training fine-tunes (issue 25:
every shipped INT8 artifact with an empty float scope, while ONNX's own quantizer, NNCF, has no QAT path here)?

    python benchmarks/pt2e_onnx.py --checkpoint default --calib folder:../shared/data/livec-dev \
        --out benchmarks/results/DATE-pt2e-onnx.json

Exports CHECKPOINT's FP32 ONNX and torch.export program, then makes three INT8 ONNX files of it: the ONNX target's
NNCF recipe (per-tensor uint8 activations, its narrow float scope), and the program quantized post-training by
LiteRT's PT2E quantizer (int8 per-tensor activations, per-channel weights, empty float scope; the graph QAT would
train) and exported with torch.onnx (dynamo), as exported (int8 activations) and with its activations moved to uint8
(quantize/onnx.py unsigned_activations: the same values, ONNX Runtime's x86 u8s8 kernels). For each: the node types
ONNX Runtime builds, the time per photo (all files and the FP32 model round-robin in one loop) and the fidelity to the
torch program on validation photos with the INT8 gate. Post-training only: QAT changes the weights, not the graph, so
the timing holds for a QAT graph; its fidelity is what the QAT result files measure on LiteRT.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from lmliqa.provenance import provenance


def pt2e_onnx(program, batch: int, calib, dst: Path) -> dict:
    """PROGRAM quantized post-training by LiteRT's PT2E quantizer (empty float scope) at BATCH, calibrated on CALIB,
    exported to DST with torch.onnx (dynamo)."""
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    from lmliqa.quantize._pt2e import quantize_program

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    module, example = quantize_program(program, batch, quantizer, calib, fold_quantize=True)
    torch.onnx.export(torch.export.export(module, (example,)), (example,), dynamo=True, optimize=True).save(str(dst))
    return {"tool": "litert-torch PT2EQuantizer -> torch.onnx.export(dynamo=True)", "scope": []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--calib", default="folder:../shared/data/livec-dev")
    ap.add_argument("--val", default=None, help="validation photos (default: CALIB's photos not calibrated on)")
    ap.add_argument("--n-calib", type=int, default=32)
    ap.add_argument("--n-val", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    record = {"provenance": provenance(), **{k: v for k, v in vars(args).items() if k != "out"}}

    import onnx
    from _onnx_reference import export_reference, graph_ops, ort_runner, write_timed

    from lmliqa.fidelity import QUANTIZED
    from lmliqa.quantize.onnx import quantize_nncf_onnx, unsigned_activations
    from lmliqa.scope import FloatScope

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        ref = export_reference(args.checkpoint, tmp, args.calib, args.n_calib, args.n_val, args.val)
        batch = int(len(ref.val.crops[0]))
        paths = {"FP32": ref.fp32, "NNCF recipe (uint8, narrow scope; shipped form)": tmp / "nncf.onnx",
                 "PT2E -> ONNX, int8 activations, empty scope": tmp / "pt2e.onnx",
                 "PT2E -> ONNX, uint8 activations, empty scope": tmp / "pt2e_u8.onnx"}
        names = list(paths)
        info = {"FP32": {}, names[1]: quantize_nncf_onnx(ref.fp32, paths[names[1]], ref.calib,
                                                           FloatScope(tuple(ref.meta["float_scopes"]["narrow"])),
                                                           ref.meta, None, per_tensor_activations=True, unsigned=True),
                names[2]: pt2e_onnx(ref.program, batch, ref.calib, paths[names[2]])}
        model = onnx.load(str(paths[names[2]]))
        info[names[3]] = {**info[names[2]], "moved_to_uint8": unsigned_activations(model)}
        onnx.save(model, str(paths[names[3]]))
        rows = {}
        for name, path in paths.items():
            fid = ref.compare(ort_runner(path, args.threads))
            rows[name] = {"quantization": info[name], "ops": graph_ops(path, tmp),
                          "fidelity": {"mean_abs": fid.mean_abs, "max_abs": fid.max_abs, "srcc_vs_ref": fid.srcc_vs_ref,
                                       "srcc_vs_mos": fid.srcc_vs_mos, "srcc_vs_mos_ref": fid.srcc_vs_mos_ref},
                          "gate": str(QUANTIZED), "gate_pass": QUANTIZED.check(fid)}
            print(f"{name}: {rows[name]['ops']}, mean |d| {fid.mean_abs:.3f}", flush=True)
        write_timed(record, rows, paths, ref.val.crops[0], args.threads, args.reps, Path(args.out))


if __name__ == "__main__":
    main()
