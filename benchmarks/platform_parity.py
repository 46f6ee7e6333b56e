"""Parity on the code paths phones run (issue 23): the same artifacts on x86, on arm64 kernels under QEMU, and on
the Snapdragon HTP simulator, against the torch reference on real photos.

    python benchmarks/platform_parity.py --checkpoint default --data folder:../shared/data/livec-dev --n 100 \
        --out benchmarks/results/DATE-platform-parity.json

Exports CHECKPOINT for ONNX, LiteRT and the Qualcomm target (SM8650, SM8750), quantizes them (calibrated on the
first 32 photos of DATA), then runs `lmliqa parity` with platforms native and arm64 on the next N photos (the
calibration photos left out): the --slow artifacts (LiteRT FP32/INT8 and ONNX INT8 on arm64, the SM8750 HTP FP16/INT8)
on all N photos on every platform, the others on all N natively and the first REST_N (24) emulated or simulated
(emulation and the simulator run ~50-100x slower than this CPU). It also compiles the INT8 LiteRT model for SM8750
with LiteRT's default fold-ReLU and measures it on the first --fold-n photos: the bug the target's default avoids.
Every row: N, max / p99 / mean |d| against torch and the photo that sets the max, SRCC, the flip rate of pairs more
than 1 point apart, the gate, and for arm64 rows the difference to the same file on x86.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from lmliqa.provenance import provenance

REST_N = 24    # photos for the artifacts outside --slow on the emulated platform and the simulator


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--socs", default="SM8650,SM8750")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", help="keep the artifacts here (default: a temporary folder); a folder that already "
                                   "holds this checkpoint's export and quantization.json is reused")
    ap.add_argument("--slow", default="mobile.tflite,mobile_int8.tflite,mobile_int8.onnx,mobile_qnn_sm8750,"
                                      "mobile_int8_qnn_sm8750",
                    help="the artifacts measured emulated or simulated on all N photos (the others: natively on all N, "
                         f"emulated or simulated on the first {REST_N}); 'all' for every one")
    ap.add_argument("--fold-n", type=int, default=24,
                    help="photos for the default-fold-ReLU compile (the bug shows on every photo; default 24)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    prov = provenance()
    from lmliqa import sysroot
    from lmliqa.cli._common import checkpoint_path
    from lmliqa.data import open_dataset
    from lmliqa.export import export_checkpoint
    from lmliqa.export.qualcomm import compile_for
    from lmliqa.parity import run_parity
    from lmliqa.platforms import get
    from lmliqa.quantize import quantize_models
    from lmliqa.runtimes.litert import read_metadata

    ckpt = Path(checkpoint_path(args.checkpoint))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="platform-parity-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if (work / "quantization.json").is_file():
        from lmliqa.quantize import QuantizeReport

        exported = []
        quant = QuantizeReport.from_dict(json.loads((work / "quantization.json").read_text()))
        _same_checkpoint(work / f"{quant.model}.tflite", ckpt)
    else:
        exported = export_checkpoint(ckpt, ["onnx", "litert", "qualcomm"], work, socs=args.socs)
        quant = quantize_models(work, ["onnx", "litert", "qualcomm"], calib=args.data, n_calib=32, n_val=64,
                                socs=args.socs)
    calib = set(quant.calibration["images"])
    ds = open_dataset(args.data)
    skip = [str(r.path) for r in ds.records if r.path.name in calib]
    fold = work / "fold_relu"
    fold.mkdir(exist_ok=True)
    int8 = work / f"{quant.model}_int8.tflite"
    folded_art = fold / f"{quant.model}_int8_foldrelu_qnn_sm8750"
    if not folded_art.is_dir():
        compile_for(int8, folded_art, "SM8750", read_metadata(int8), fold_relu=True)
    slow, rest = _split(work, args.slow)
    report = run_parity(ckpt, slow, args.data, limit=args.n, threads=args.threads, skip=skip,
                        platforms=("native", "arm64"), emulated_limit=args.n, simulated_limit=args.n,
                        out=work / "parity")
    others = run_parity(ckpt, rest, args.data, limit=args.n, threads=args.threads, skip=skip,
                        platforms=("native", "arm64"), emulated_limit=REST_N, simulated_limit=REST_N)
    folded = run_parity(ckpt, fold, args.data, limit=args.n, threads=args.threads, skip=skip,
                        simulated_limit=args.fold_n)
    result = {
        "provenance": prov, "checkpoint": str(ckpt), "data": args.data, "n": args.n, "wall_s": round(time.time() - t0),
        "calibration": quant.calibration, "export": [r.to_dict() for r in exported],
        "quantization": [r.to_dict() for r in quant.results],
        "arm64_sysroot": sysroot.record(get("arm64")) if not get("arm64").unavailable() else None,
        "rows": [_row(r) for r in report.results + others.results],
        "fold_relu_default": [_row(r) for r in folded.results],
        "torch_vs_mos": report.torch_vs_mos, "n_images": report.n_images,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(_table(result))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _same_checkpoint(artifact: Path, ckpt: Path) -> None:
    """Refuse to reuse a --work folder whose artifacts were exported from another checkpoint."""
    from lmliqa.manifest import sha256_file
    from lmliqa.parity import other_checkpoint
    from lmliqa.runtimes.litert import read_metadata

    other = other_checkpoint(read_metadata(artifact), sha256_file(ckpt))
    if other:
        raise SystemExit(f"--work {artifact.parent}: its artifacts were {other} of {ckpt}; use a new --work folder")


def _split(work: Path, slow: str) -> tuple[Path, Path]:
    """Two folders of copies of WORK's artifacts: those measured on all photos on every platform (SLOW), and the
    others."""
    from lmliqa.targets import discover

    names = {a.name for a in discover(work)}
    chosen = names if slow == "all" else {n.strip() for n in slow.split(",")} & names
    out = []
    for sub, keep in (("slow", chosen), ("rest", names - chosen)):
        folder = work / "measured" / sub
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for n in keep:
            src = work / n
            (shutil.copytree if src.is_dir() else shutil.copyfile)(src, folder / n)
        out.append(folder)
    return out[0], out[1]


def _row(r) -> dict:
    d = {"artifact": r.artifact, "target": r.target, "platform": r.platform, "precision": str(r.precision),
         "outcome": r.outcome.value, "status": r.status}
    if r.fidelity is not None:
        f = r.fidelity
        d.update(n=f.n, max_abs=f.max_abs, p99_abs=f.p99_abs, mean_abs=f.mean_abs, srcc_vs_ref=f.srcc_vs_ref,
                 material_flip_rate=f.material_flip_rate, worst=f.worst[:1], gate=str(r.gate), gate_pass=r.gate_pass,
                 srcc_vs_mos=f.srcc_vs_mos, vs_native=r.details.get("vs_native"),
                 runtime=r.details.get("platform_runtime"))
    return d


def _table(result: dict) -> str:
    lines = ["| artifact | platform | precision | n | max abs | p99 abs | mean abs | SRCC vs torch | flips > 1 | "
             "vs x86 max | gate |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"] + result["fold_relu_default"]:
        if "n" not in r:
            continue
        vs = r["vs_native"]["max_abs"] if r.get("vs_native") else None
        lines.append(f"| {r['artifact']} | {r['platform']} | {r['precision']} | {r['n']} | {r['max_abs']:.4g} | "
                     f"{r['p99_abs']:.4g} | {r['mean_abs']:.4g} | {r['srcc_vs_ref']:.4f} | "
                     f"{r['material_flip_rate']:.3f} | {'' if vs is None else f'{vs:.3g}'} | "
                     f"{'pass' if r['gate_pass'] else 'FAIL'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
