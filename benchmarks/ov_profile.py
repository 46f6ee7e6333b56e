"""Where an OpenVINO artifact spends its time: OpenVINO's per-layer performance counters (PERF_COUNT) over the
camera check's network call (one photo's crops), summed by kind of layer and by the precision the kernel ran in.
This is what a missed speed goal is explained with (README "Speed where users feel it"), not a guess.

    python benchmarks/ov_profile.py --models dist/mobile_int8_openvino dist/paper_int8_openvino --threads 2 \\
        --json benchmarks/results/DATE-openvino-profile.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def kind_of(node_type: str, exec_type: str) -> str:
    """A layer's kind for the summary: what limits a CNN (depthwise vs dense convolutions) and a ViT (matmuls,
    softmax/norms), and the conversions around them (reorders between memory layouts and precisions)."""
    e = exec_type.lower()
    if node_type == "GroupConvolution" or "_dw" in e:
        return "depthwise conv"
    if node_type == "Convolution":
        return "1x1 conv" if "1x1" in e else "conv (kxk)"
    if node_type in ("FullyConnected", "FullyConnectedQuantizedLegacy", "FullyConnectedQuantized", "MatMul"):
        return "matmul / linear"
    if node_type in ("Reorder", "Convert"):
        return "reorder / convert"
    if node_type == "Transpose":
        return "transpose"
    if node_type in ("Softmax", "MVN", "NormalizeL2", "ScaledDotProductAttention"):
        return "softmax / norm / attention"
    if node_type in ("Eltwise", "Subtract", "Multiply", "Add", "FakeQuantize", "Math", "Gelu", "Power"):
        return "elementwise / quantize"
    return "other (" + node_type + ")"


def precision_of(exec_type: str) -> str:
    e = exec_type.lower()
    for tag, name in (("_i8", "int8"), ("_u8", "int8"), ("bf16", "bf16"), ("f16", "fp16"), ("f32", "fp32")):
        if e.endswith(tag) or tag + "_" in e:
            return name
    return "other"


def profile(path: str, threads: int | None, iters: int, image: str | None) -> dict:
    import openvino as ov

    from lmliqa.runtimes import load
    from lmliqa.runtimes.openvino import HINTS
    from lmliqa.targets import Precision

    scorer = load(path, target="openvino", threads=threads)
    crops = scorer.contract.eval_crops(image) if image else \
        np.random.default_rng(0).uniform(0, 255, (scorer.contract.n_eval_crops, 3, scorer.contract.crop_size,
                                                   scorer.contract.crop_size)).astype(np.float32)
    core = ov.Core()
    # the runtime's own settings (runtimes/openvino.py): an INT8 model's float remainder runs f32 (int8) or bf16
    compute = {Precision.INT8: Precision.FP32, Precision.INT8_BF16: Precision.BF16}.get(scorer.precision,
                                                                                      scorer.precision)
    config = {"INFERENCE_PRECISION_HINT": HINTS[compute], "PERFORMANCE_HINT": "LATENCY",
              "PERF_COUNT": "YES"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(str(scorer.path)), "CPU", config)
    request = compiled.create_infer_request()
    for _ in range(5):
        request.infer({0: crops})
    by_kind: dict[str, dict] = defaultdict(lambda: {"ms": 0.0, "layers": 0, "by_precision": defaultdict(float)})
    total = 0.0
    for _ in range(iters):
        request.infer({0: crops})
        for p in request.profiling_info:
            ms = p.real_time.total_seconds() * 1e3
            if ms <= 0:
                continue
            k = by_kind[kind_of(p.node_type, p.exec_type)]
            k["ms"] += ms / iters
            k["by_precision"][precision_of(p.exec_type)] += ms / iters
            total += ms / iters
    for p in request.profiling_info:
        if p.real_time.total_seconds() > 0:
            by_kind[kind_of(p.node_type, p.exec_type)]["layers"] += 1
    rows = sorted(({"kind": k, "ms": round(v["ms"], 3), "share": round(v["ms"] / total, 4), "layers": v["layers"],
                    "ms_by_precision": {q: round(t, 3) for q, t in sorted(v["by_precision"].items())}}
                   for k, v in by_kind.items()), key=lambda r: -r["ms"])
    return {"artifact": str(path), "precision": str(scorer.precision), "crops": int(len(crops)),
            "layer_ms_total": round(total, 3), "kinds": rows}


def main(argv: list[str] | None = None) -> int:
    from lmliqa.provenance import provenance

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", required=True, help="OpenVINO artifacts (folders or .xml)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--image", help="the photo whose crops are fed (default: uniform noise of the same shape)")
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    provenance()
    results = [profile(m, args.threads, args.iters, args.image) for m in args.models]
    Path(args.json).write_text(json.dumps({"provenance": provenance(), "threads": args.threads,
                                           "iters": args.iters, "profiles": results}, indent=2))
    for r in results:
        print(f"{r['artifact']} ({r['precision']}, {r['crops']} crops): {r['layer_ms_total']:.1f} ms in layers",
              file=sys.stderr)
        for k in r["kinds"]:
            print(f"  {k['kind']:<28} {k['ms']:7.2f} ms {100 * k['share']:5.1f} %  {k['layers']:3d} layers  "
                  f"{k['ms_by_precision']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
