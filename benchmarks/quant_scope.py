"""Choose the float scope by measurement: quantize one export folder with each candidate scope and each tool, and
read each result's validation against the torch program (SRCC(int8, fp32), mean / max |d|, SRCC vs MOS) from
`lmliqa quantize`'s own report (the numbers users get).

    python benchmarks/quant_scope.py --models EXPORT_DIR --calib SPEC
        [--tools ort,nncf-onnx,nncf-openvino,litert,executorch]
        [--scopes "none;layernorm,softmax,gelu,residual_add;default;default,decoder"] [--json OUT]
        [--bench CHECKPOINT [--threads N]]

--bench also times every artifact made (batch 1, in one `lmliqa bench` run at the end, next to torch eager FP32
of CHECKPOINT), so each scope's fidelity sits next to its latency; each try's artifacts are kept in
MODELS/scope_tries/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lmliqa.provenance import provenance
from lmliqa.quantize import quantize_models

DEFAULT_SCOPES = "none;layernorm,softmax,gelu,residual_add;default;default,tokens;default,decoder"
# tool -> (target, target options)
TOOLS = {"ort": ("onnx", {"onnx_tool": "ort"}), "nncf-onnx": ("onnx", {"onnx_tool": "nncf"}),
         "nncf-openvino": ("openvino", {}), "litert": ("litert", {}), "executorch": ("executorch", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="an `lmliqa export` folder (its FP32 parents are only read)")
    ap.add_argument("--calib", required=True)
    ap.add_argument("--tools", default="ort,nncf-onnx,nncf-openvino")
    ap.add_argument("--scopes", default=DEFAULT_SCOPES, help="';'-separated scopes, each a ','-list of categories")
    ap.add_argument("--n-calib", type=int, default=32)
    ap.add_argument("--n-val", type=int, default=96)
    ap.add_argument("--json", default=None)
    ap.add_argument("--bench", metavar="CHECKPOINT", help="time each artifact (batch 1) next to this checkpoint")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    kept = Path(args.models) / "scope_tries" if args.bench else None   # artifacts of every try, renamed per try
    rows = []
    for text in args.scopes.split(";"):
        for tool in args.tools.split(","):
            target, options = TOOLS[tool]
            t0 = time.perf_counter()
            report = quantize_models(args.models, [target], calib=args.calib, scope=text, n_calib=args.n_calib,
                                     n_val=args.n_val, **options)
            scope = str(report.scope)      # "default" resolved for this network
            for res in report.results:
                if not res.artifact:        # the target made no artifact (or not all of them): why
                    rows.append({"scope": scope, "tool": tool, "status": res.status, "reason": res.reason})
                    print(f"{scope:<55} {tool:<14} {res.status}", flush=True)
                    continue
                v = res.fidelity.to_dict() if res.fidelity else {}
                row = {"scope": scope, "tool": tool, "artifact": res.artifact, "status": res.status, **v,
                       "gate": str(res.gate), "gate_pass": res.gate_pass,
                       "quantize_s": round(time.perf_counter() - t0, 1)}
                if kept is not None:
                    row["timed_as"] = _keep(Path(args.models) / res.artifact, kept, len(rows))
                rows.append(row)
                nan = float("nan")
                print(f"{row['scope']:<55} {tool:<14} SRCC(int8,fp32) {v.get('srcc_vs_ref', nan):.4f}  mean|d| "
                      f"{v.get('mean_abs', nan):.3f}  max|d| {v.get('max_abs', nan):.3f}  SRCC vs MOS "
                      f"{v.get('srcc_vs_mos') or nan:.4f} (fp32 {v.get('srcc_vs_mos_ref') or nan:.4f})", flush=True)
    bench = None
    if kept is not None:
        from lmliqa.bench import format_table, run_bench

        bench = run_bench(kept, args.bench, [1], threads=args.threads)
        print(format_table(bench))
        for row in rows:
            timed = next((b for b in bench["rows"] if b["artifact"] == row.get("timed_as")), None)
            if timed:
                row.update(median_ms=timed["median_ms"], p95_ms=timed["p95_ms"],
                           speedup_vs_torch_fp32=timed["speedup_vs_torch_fp32"])
    if args.json:
        Path(args.json).write_text(json.dumps({"provenance": provenance(), "models": args.models,
                                               "calib": args.calib, "n_val": args.n_val, "rows": rows,
                                               "bench": bench}, indent=2, default=str))


def _keep(artifact: Path, folder: Path, i: int) -> str:
    """A copy of ARTIFACT (a file, or OpenVINO's IR folder) in FOLDER named for try I; returns the name."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    stem, _, suffix = artifact.name.partition(".")
    dst = folder / (f"try{i}_{stem}" + (f".{suffix}" if suffix else ""))
    if artifact.is_dir():
        shutil.copytree(artifact, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(artifact, dst)
    return dst.name


if __name__ == "__main__":
    main()
