"""This CPU's measured matrix-multiply peak in fp32, bf16 and int8, the yardstick of the utilisation that
`lmliqa bench` rows reach (achieved GMAC/s over the peak of the precision they run).

Each precision multiplies square matrices of several sizes with the library a backend would use (torch/oneDNN
for fp32 and bf16, torch._int_mm for int8 with int32 accumulation, ONNX Runtime's MatMul and MatMulInteger as
second fp32 and int8 paths) and keeps the best GMAC/s (one multiply-accumulate = 2 FLOPs). The instruction sets
the CPU reports are recorded next to it (AMX, AVX-512 BF16/VNNI), since they decide what the peaks can be.

    python benchmarks/cpu_peak.py --threads 2 --json benchmarks/results/DATE-cpu-peak.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np


def _best_gmacs(fn, n: int, min_time: float) -> float:
    fn()
    fn()
    best = 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        best = max(best, n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def torch_peaks(sizes: list[int], min_time: float) -> dict[str, dict[str, float]]:
    import torch

    out: dict[str, dict[str, float]] = {"fp32": {}, "bf16": {}, "int8": {}}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out["fp32"][str(n)] = _best_gmacs(partial(torch.mm, a, b), n, min_time)
        ab, bb = a.bfloat16(), b.bfloat16()
        out["bf16"][str(n)] = _best_gmacs(partial(torch.mm, ab, bb), n, min_time)
        ai = torch.randint(-128, 127, (n, n), dtype=torch.int8)
        bi = torch.randint(-128, 127, (n, n), dtype=torch.int8)
        try:
            out["int8"][str(n)] = _best_gmacs(partial(torch._int_mm, ai, bi), n, min_time)
        except RuntimeError as exc:          # not every build has a CPU int8 GEMM
            out["int8"][str(n)] = float("nan")
            out.setdefault("notes", {})["int8"] = str(exc).splitlines()[0]
    return out


def ort_peaks(sizes: list[int], threads: int, min_time: float) -> dict[str, dict[str, float]]:
    """ONNX Runtime's own GEMMs (MLAS): fp32 MatMul and int8 MatMulInteger; on some CPUs (AMD with MKL) the
    fp32 peak torch reaches is below what ONNX Runtime's kernels reach."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def session(op: str, a_type: int, b_type: int, y_type: int, n: int):
        graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], "mm",
                                  [helper.make_tensor_value_info("a", a_type, [n, n]),
                                   helper.make_tensor_value_info("b", b_type, [n, n])],
                                  [helper.make_tensor_value_info("y", y_type, [n, n])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    out: dict[str, dict[str, float]] = {"fp32_onnxruntime": {}, "int8_onnxruntime": {}}
    for n in sizes:
        sess = session("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT, n)
        a, b = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
        out["fp32_onnxruntime"][str(n)] = _best_gmacs(partial(sess.run, None, {"a": a, "b": b}), n, min_time)
        sess = session("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, n)
        a = np.random.randint(0, 255, (n, n), dtype=np.uint8)
        b = np.random.randint(-128, 127, (n, n), dtype=np.int8)
        out["int8_onnxruntime"][str(n)] = _best_gmacs(partial(sess.run, None, {"a": a, "b": b}), n, min_time)
    return out


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f")))


def main(argv: list[str] | None = None) -> int:
    import torch

    from lmliqa.provenance import provenance

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--sizes", default="512,1024,2048")
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    provenance()                     # fixes the commit this run starts from
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    sizes = [int(s) for s in args.sizes.split(",")]
    peaks = torch_peaks(sizes, args.min_time)
    peaks.update(ort_peaks(sizes, threads, args.min_time))
    best = {k: max((v for v in d.values() if v == v), default=float("nan"))
            for k, d in peaks.items() if k != "notes"}
    result = {"provenance": provenance(), "file": args.json, "threads": threads, "cpu_flags": cpu_flags(),
              "gmacs_per_s_by_size": peaks, "peak_gmacs_per_s": best,
              "note": "one MAC = 2 FLOPs; the best over the sizes; int8 accumulates in int32"}
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps({"threads": threads, "cpu_flags": result["cpu_flags"], "peak_gmacs_per_s": best}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
