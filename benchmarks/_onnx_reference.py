"""What the ONNX INT8 benchmarks (onnx_int8.py, tensorrt_qdq.py, pt2e_onnx.py) start from: a checkpoint exported to
FP32 ONNX and its torch.export program, the calibration and validation photos decoded with its contract, and the
program's scores of the validation photos (the reference every variant is compared with); and what they measure
with: the node types ONNX Runtime builds, the round-robin timing."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class OnnxReference:
    fp32: Path                      # the exported FP32 ONNX
    meta: dict[str, Any]            # its lmliqa metadata (contract, float_scopes, ...)
    program: Any                    # the torch.export program it came from
    contract: Any                   # lmliqa.contract.PreprocessContract
    calib: Any                      # lmliqa.quantize.calib.ImageSet
    val: Any
    reference: np.ndarray           # the program's score of each validation photo

    def compare(self, run, images=None, reference=None):
        """Fidelity of RUN (crops -> scores) to the program on IMAGES (default: the validation photos)."""
        from lmliqa.fidelity import compare
        from lmliqa.quantize.calib import image_scores

        images = self.val if images is None else images
        reference = self.reference if reference is None else reference
        return compare(reference, image_scores(run, images, self.contract), images.mos, images.file_names)


def export_reference(checkpoint: str, tmp: Path, calib: str, n_calib: int, n_val: int,
                     val: str | None = None) -> OnnxReference:
    """CHECKPOINT ("default": the shipped model's) exported to ONNX in TMP, with the sets of
    lmliqa.quantize.calib.build_sets(CALIB, N_CALIB, N_VAL, VAL) and the program's validation scores."""
    from lmliqa.contract import PreprocessContract
    from lmliqa.default_model import default_artifact
    from lmliqa.export import export_checkpoint
    from lmliqa.export._graph import load_program, program_runner
    from lmliqa.quantize.calib import build_sets, image_scores
    from lmliqa.runtimes.onnxruntime import read_metadata

    export_checkpoint(default_artifact("torch") if checkpoint == "default" else Path(checkpoint), ["onnx"], tmp)
    pt2 = next(tmp.glob("*.pt2"))
    fp32 = tmp / f"{pt2.stem}.onnx"                # the FP32 file (beside it: the reduced precisions)
    meta = read_metadata(fp32)
    program, _ = load_program(pt2)
    contract = PreprocessContract.from_dict(meta["contract"])
    calib_set, val_set = build_sets(calib, contract, n_calib, n_val, val)
    return OnnxReference(fp32, meta, program, contract, calib_set, val_set,
                         image_scores(program_runner(program), val_set, contract))


def ort_runner(model, threads: int | None = None):
    """crops -> scores with ONNX Runtime's CPU provider on MODEL (a path or a ModelProto)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model) if isinstance(model, Path) else model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda crops: sess.run(None, {name: crops})[0]


def graph_ops(path: Path, tmp: Path) -> dict[str, int]:
    """Node-type counts of the graph ONNX Runtime builds from PATH at its hardware-independent level."""
    import collections

    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp / f"{path.stem}.optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    counts = collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    keep = ("QLinearConv", "Conv", "FusedConv", "QuantizeLinear", "DequantizeLinear", "QLinearMatMul",
            "MatMulIntegerToFloat", "QLinearAdd", "Transpose")
    return {k: counts.get(k, 0) for k in keep}


def time_round_robin(paths: dict[str, Path], crops: np.ndarray, threads: int, reps: int) -> dict[str, dict]:
    import onnxruntime as ort

    sessions = {}
    for name, p in paths.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sessions[name] = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    feed = {name: {s.get_inputs()[0].name: crops} for name, s in sessions.items()}
    for name, s in sessions.items():
        for _ in range(3):
            s.run(None, feed[name])
    ts: dict[str, list[float]] = {n: [] for n in sessions}
    for _ in range(reps):
        for name, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feed[name])
            ts[name].append((time.perf_counter() - t0) * 1000)
    return {n: {"p50_ms": round(float(np.median(v)), 2), "p95_ms": round(float(np.percentile(v, 95)), 2)}
            for n, v in ts.items()}


def write_timed(record: dict, rows: dict[str, dict], paths: dict[str, Path], crops: np.ndarray, threads: int,
                reps: int, out: Path) -> None:
    """Time every file of PATHS round-robin on CROPS (one photo), add each one's p50/p95 and its ratio to "FP32" to
    ROWS, and write RECORD with the rows and the timing's wall time to OUT."""
    crops = crops.astype(np.float32)
    t0 = time.perf_counter()
    timing = time_round_robin(paths, crops, threads, reps)
    record["timing_s"] = round(time.perf_counter() - t0, 1)
    for name, row in rows.items():
        row.update(timing[name], vs_fp32=round(timing[name]["p50_ms"] / timing["FP32"]["p50_ms"], 3))
        print(f"{row['p50_ms']:7.1f} ms  {row['vs_fp32']:.2f}x FP32  {name}")
    record.update(photo_crops=int(len(crops)), rows=rows)
    out.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {out}")
