"""The LiteRT target: scoring a .tflite is torch-free, the metadata travels inside the flatbuffer (readable with the
bare schema, as an app would read it), and the fixed batch takes any number of crops."""

import json
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


def test_metadata_travels_inside_the_flatbuffer(exported):
    from ai_edge_litert import schema_py_generated as schema

    ckpt, out, _ = exported
    buf = (out / "mobile.tflite").read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    meta = json.loads(model.Buffers(entries["lmliqa"]).DataAsNumpy().tobytes())
    torch_meta = load(ckpt).metadata
    assert meta["contract"] == torch_meta["contract"] and meta["score"] == torch_meta["score"]
    assert meta["batch"] == 9 and meta["precision"] == "fp32" and meta["export_check"]["max_abs_vs_program"] < 1e-3


def test_fixed_batch_takes_any_number_of_crops(exported):
    _, out, _ = exported
    scorer, ref = load(out / "mobile.tflite"), load(out / "mobile.onnx")
    assert scorer.fixed_batch == 9
    x = np.random.default_rng(1).uniform(0, 255, (13, 3, 224, 224)).astype(np.float32)
    for n in (1, 9, 13):
        assert np.abs(scorer.infer(x[:n]) - ref.infer(x[:n])).max() < 1e-3, n

