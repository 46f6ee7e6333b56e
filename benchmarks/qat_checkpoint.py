"""One quantization-aware checkpoint for every target? (issue 25) `quantize/_qat.py fine_tune_checkpoint`: PT2E QAT of
the whole network through LiteRT's quantizer with no float scope (the recipe `lmliqa quantize --qat-steps` runs on
LiteRT's own graph), distilling the checkpoint's crop scores with and without fake quantization, its trained weights
written back into an ordinary checkpoint (folded BatchNorms become identities). Each target then quantizes that
checkpoint after training with its own tool and **no float scope**; this script records how close each INT8 artifact
comes to its own float model (the INT8 gate) on validation photos neither step trained on.

    python benchmarks/qat_checkpoint.py --checkpoint default --targets onnx,litert \
        --photos folder:../shared/data/livec-dev,folder:BIQ_EVERY_10TH --val folder:BIQ_OTHER_96 --steps 1500 \
        --work runs/qat_checkpoint --out benchmarks/results/DATE-qat-checkpoint-default-model.json

`--qat-checkpoint FILE` skips the fine-tuning and quantizes a checkpoint this script (or `lmliqa train --qat-from`)
wrote before; its QAT record is read from the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from lmliqa.provenance import provenance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--photos", required=True, help="data spec: QAT calibrates on 32 of them and trains on the rest")
    ap.add_argument("--val", required=True, help="data spec of validation photos neither step trains on")
    ap.add_argument("--val-images", type=int, default=96)
    ap.add_argument("--targets", default="onnx,litert")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--float-weight", type=float, default=1.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--qat-checkpoint", help="a QAT checkpoint written before (skip the fine-tuning)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    record = {"provenance": provenance(), "args": vars(args)}

    from lmliqa.cli._common import checkpoint_path
    from lmliqa.export import export_checkpoint
    from lmliqa.models.checkpoint import read_metadata
    from lmliqa.quantize import quantize_models
    from lmliqa.quantize._qat import QATOptions, fine_tune_checkpoint

    work = Path(args.work)
    qat_ckpt = Path(args.qat_checkpoint) if args.qat_checkpoint else work / "qat.safetensors"
    if not args.qat_checkpoint:
        fine_tune_checkpoint(checkpoint_path(args.checkpoint), args.photos, qat_ckpt,
                             QATOptions(args.steps, args.lr, device=args.device, float_weight=args.float_weight),
                             n_val=args.val_images, val_spec=args.val)
    qat = read_metadata(qat_ckpt)["extra"]["qat"]
    record["qat"] = {k: v for k, v in qat.items() if k not in ("calibration", "validation")}
    record["qat"]["float_before_vs_after"] = qat["validation"]["float_before_vs_after"]
    targets = args.targets.split(",")
    folder = work / "artifacts"
    shutil.rmtree(folder, ignore_errors=True)
    export_checkpoint(qat_ckpt, targets, folder)
    report = quantize_models(folder, targets, calib=args.photos, val=args.val, scope="none",
                             n_val=args.val_images)
    record["artifacts"] = {r.artifact: {"target": r.target, "scope": r.details.get("scope"), "gate_pass": r.gate_pass,
                                        "gate_confidence": r.details.get("gate_confidence"),
                                        "fidelity": r.fidelity.to_dict()}
                           for r in report.results if r.artifact and r.fidelity is not None}
    Path(args.out).write_text(json.dumps(record, indent=2, default=str))
    for name, a in record["artifacts"].items():
        f = a["fidelity"]
        print(f"{name}: scope {a['scope']} mean / max |d| {f['mean_abs']:.2f} / {f['max_abs']:.1f}, gate "
              f"{'pass' if a['gate_pass'] else 'fail'}; SRCC vs MOS {f['srcc_vs_mos']:.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
