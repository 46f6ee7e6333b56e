"""TensorRT's Q/DQ ONNX takes signed int8 activations only: what making NNCF's uint8 ReLU6 outputs signed costs, in
each form quantize/tensorrt.py knows (issue 25's suite failure on the TensorRT Q/DQ file).

    python benchmarks/tensorrt_qdq.py --checkpoint default --calib folder:../shared/data/livec-dev \
        --out benchmarks/results/DATE-tensorrt-qdq.json

Exports CHECKPOINT's FP32 ONNX, quantizes it once with NNCF for TensorRT (symmetric, per-tensor activations, the
float scope SCOPE), and scores the validation photos (and, with --photos, a second photo set: the suite's gate
photos) with ONNX Runtime in three forms of the same quantizers: uint8 as NNCF made them (what TensorRT cannot
take), every uint8 tensor at 255/127 x its scale (the lossy form), and the shipped rewrite (the exact shift where it
folds, the lossy form elsewhere). Fidelity is to the torch program, with the INT8 gate.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

from lmliqa.provenance import provenance

FORMS = {"uint8 (NNCF's own; not TensorRT-compatible)": None, "int8 at 255/127 x scale (lossy)": False,
         "int8, exact shift where it folds (shipped)": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--calib", default="folder:../shared/data/livec-dev")
    ap.add_argument("--val", default=None, help="validation photos (default: CALIB's photos not calibrated on)")
    ap.add_argument("--photos", default=None, help="a second photo set scored the same way (e.g. the suite's)")
    ap.add_argument("--photos-limit", type=int, default=None, help="only the first N of --photos (its order)")
    ap.add_argument("--scope", default="default", help="float scope key of the export's float_scopes, or none")
    ap.add_argument("--n-calib", type=int, default=32)
    ap.add_argument("--n-val", type=int, default=96)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    record = {"provenance": provenance(), **{k: v for k, v in vars(args).items() if k != "out"}}

    from _onnx_reference import export_reference, ort_runner

    from lmliqa.export._graph import program_runner
    from lmliqa.fidelity import QUANTIZED
    from lmliqa.quantize.calib import image_scores, load_images
    from lmliqa.quantize.tensorrt import nncf_symmetric_qdq, to_signed_int8
    from lmliqa.scope import FloatScope

    with tempfile.TemporaryDirectory() as tmp_dir:
        ref = export_reference(args.checkpoint, Path(tmp_dir), args.calib, args.n_calib, args.n_val, args.val)
        sets = {"validation": (ref.val, ref.reference)}
        if args.photos:
            photos = load_images(args.photos, ref.contract, first=args.photos_limit)
            sets["photos"] = (photos, image_scores(program_runner(ref.program), photos, ref.contract))
        scope = FloatScope(tuple(ref.meta["float_scopes"][args.scope]) if args.scope != "none" else ())
        nncf_model = nncf_symmetric_qdq(ref.fp32, ref.calib, scope, ref.meta)
        rows = {}
        for name, exact in FORMS.items():
            model = copy.deepcopy(nncf_model)
            counts = None if exact is None else to_signed_int8(model, exact=exact)
            run = ort_runner(model)
            rows[name] = {"unsigned_quantizers_made_signed": counts}
            for k, (images, reference) in sets.items():
                fid = ref.compare(run, images, reference)
                rows[name][k] = {"n": fid.n, "mean_abs": fid.mean_abs, "max_abs": fid.max_abs,
                                 "srcc_vs_ref": fid.srcc_vs_ref, "gate_pass": QUANTIZED.check(fid)}
            print(name, counts, {k: round(v["mean_abs"], 3) for k, v in rows[name].items() if k in sets}, flush=True)
    onnx_ops = sorted({n.op_type for n in nncf_model.graph.node})
    record.update(scope=list(scope.categories), gate=str(QUANTIZED), calibration=ref.calib.record(args.calib),
                  nncf_ops=onnx_ops, rows=rows)
    Path(args.out).write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
