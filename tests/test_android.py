"""The Android targets (LiteRT and ExecuTorch): the runtime is torch-free for LiteRT, the metadata travels in the
files, the fixed batch takes any number of crops, XNNPACK runs every convolution and matmul, and `lmliqa bench`
times both next to torch. Their parity gates are in test_export.py (FP32, FP16) and test_quantize.py (INT8)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from lmliqa.runtimes import load


def test_litert_scores_without_torch(exported, photos):
    _, out, _ = exported
    code = ("import sys, json; from lmliqa.runtimes import load; s = load(sys.argv[1]); r = s.score(sys.argv[2]); "
            "print(json.dumps({'score': r.score, 'torch': 'torch' in sys.modules, 'backend': s.backend}))")
    res = subprocess.run([sys.executable, "-c", code, str(out / "mobile.tflite"), photos[0]], capture_output=True,
                         text=True, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["torch"] is False and got["backend"] == "litert"
    assert got["score"] == pytest.approx(load(out / "mobile.tflite").score(photos[0]).score, abs=1e-9)


def test_metadata_travels_inside_the_files(exported):
    """LiteRT: the flatbuffer's own metadata table (read here with the bare schema, as an app would);
    ExecuTorch: a constant method of the program."""
    from ai_edge_litert import schema_py_generated as schema

    ckpt, out, _ = exported
    buf = (out / "mobile.tflite").read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    meta = json.loads(model.Buffers(entries["lmliqa"]).DataAsNumpy().tobytes())
    torch_meta = load(ckpt).metadata
    assert meta["contract"] == torch_meta["contract"] and meta["score"] == torch_meta["score"]
    assert meta["batch"] == 9 and meta["precision"] == "fp32" and meta["export_check"]["max_abs_vs_program"] < 1e-3
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(out / "mobile.pte")
    assert {"forward", "lmliqa_metadata"} <= set(program.method_names)
    assert load(out / "mobile.pte").metadata["contract"] == torch_meta["contract"]


def test_executorch_delegates_every_convolution_and_matmul(exported, quantized):
    _, out, _ = exported
    _, qout, _ = quantized
    for path in (out / "mobile.pte", qout / "mobile_int8.pte"):
        rep = load(path).metadata["xnnpack"]
        heavy = [op for op in rep["outside"] if any(k in op for k in ("conv", "linear", "mm", "matmul"))]
        assert heavy == [], (path.name, heavy)
        assert rep["delegated_ops"] > 250 and rep["partitions"] <= 20, rep
        assert "native_layer_norm" in " ".join(rep["outside"])        # LayerNorm has no XNNPACK config (yet)


@pytest.mark.parametrize("artifact", ["mobile.tflite", "mobile.pte"])
def test_fixed_batch_takes_any_number_of_crops(exported, artifact):
    _, out, _ = exported
    scorer, ref = load(out / artifact), load(out / "mobile.onnx")
    assert scorer.fixed_batch == 9
    x = np.random.default_rng(1).uniform(0, 255, (13, 3, 224, 224)).astype(np.float32)
    for n in (1, 9, 13):
        assert np.abs(scorer.infer(x[:n]) - ref.infer(x[:n])).max() < 1e-3, n


def test_bench_rows_for_android_targets(quantized, tmp_path):
    from lmliqa.benchmarks.bench import run_bench

    ckpt, out, _ = quantized
    for name in ("mobile.tflite", "mobile_int8.tflite", "mobile.pte", "mobile_int8.pte"):
        shutil.copy(out / name, tmp_path / name)
    rep = run_bench(tmp_path, ckpt, [1, 8], iters=1, min_time=0.0, warmup=0, progress=None)
    rows = {(r["artifact"], r["batch"]): r for r in rep["rows"]}
    assert not rep["skipped"], rep["skipped"]
    for name in ("mobile.tflite", "mobile_int8.tflite", "mobile.pte", "mobile_int8.pte"):
        for batch in (1, 8):
            r = rows[(name, batch)]
            assert r["crops_per_call"] == 9 * batch and r["speedup_vs_torch_fp32"] > 0
            assert r["precision"] == ("int8" if "int8" in name else "fp32")
