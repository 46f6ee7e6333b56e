"""Post-training INT8 for every backend: the float scope, calibration by content hash, accuracy gates on real
photos (OpenVINO and ONNX Runtime INT8 vs the FP32 parent), Core ML weight round trips, the TensorRT Q/DQ
form, and `lmliqa bench`."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
from lmliqa.runtimes import load
from scipy import stats

HAS_COREML = importlib.util.find_spec("coremltools") is not None


@pytest.fixture(scope="session")
def quantized(livec_run, livec_train_dir, tmp_path_factory):
    """A model trained on 160 real dev photos, quantized for every format and calibrated on its own training
    photos (the default); the gates run on 24 other photos."""
    from lmliqa.quantize import quantize_checkpoint

    out_dir, _ = livec_run
    ckpt = out_dir / "final.safetensors"
    out = tmp_path_factory.mktemp("quantized")
    report = quantize_checkpoint(ckpt, None, ["openvino", "onnx", "coreml", "tensorrt"], out, n_calib=16, n_val=48)
    return ckpt, out, report


@pytest.fixture(scope="session")
def fp32_scores(quantized, photos):
    ckpt, _, _ = quantized
    return np.array([r.score for r in load(ckpt).score_many(photos)])


def _scores(path, photos, **kw):
    scorer = load(path, **kw)
    return scorer, np.array([r.score for r in scorer.score_many(photos)])


def test_quantize_statuses(quantized):
    _, out, report = quantized
    res = {r["format"]: r for r in report["results"]}
    assert res["openvino"]["status"] == "ok" and res["onnx"]["status"] == "ok"
    assert (out / "mobile_int8_openvino" / "mobile_int8.xml").is_file() and (out / "mobile_int8.onnx").is_file()
    if importlib.util.find_spec("tensorrt") is None:
        assert res["tensorrt"]["status"].startswith("partial: wrote mobile_int8_qdq.onnx; engine not built")
    if HAS_COREML:
        assert res["coreml"]["status"] == "ok"
    saved = json.loads((out / "quantization.json").read_text())
    assert saved["scope"] == ["layernorm", "softmax", "gelu", "residual_add", "head", "stem"]
    assert saved["calibration"]["n_crops"] == 16 * 9


@pytest.mark.parametrize("artifact", ["mobile_int8_openvino", "mobile_int8.onnx"])
def test_int8_gates_on_real_photos(quantized, photos, fp32_scores, artifact):
    _, out, _ = quantized
    scorer, got = _scores(out / artifact, photos)
    assert scorer.precision == "int8"
    err = np.abs(got - fp32_scores)
    assert stats.spearmanr(got, fp32_scores)[0] >= 0.99
    assert err.mean() <= 1.0
    assert err.max() > 1e-4      # it really ran quantized arithmetic


def test_int8_artifacts_record_scope_and_calibration_hash(quantized, livec_train_dir):
    from lmliqa.export._graph import load_for_export
    from lmliqa.quantize.calib import build_sets

    ckpt, out, report = quantized
    model, _ = load_for_export(ckpt)
    calib, val = build_sets(f"folder:{livec_train_dir}", model.config.contract, 16, 48)
    assert report["calibration"]["spec"] == f"folder:{livec_train_dir}"      # default: the training data
    assert not set(calib.names) & set(val.names)
    for artifact in ("mobile_int8_openvino", "mobile_int8.onnx", "mobile_int8_qdq.onnx"):
        meta = load(out / artifact).metadata
        assert meta["precision"] == "int8"
        assert meta["quantization"]["calibration"]["sha256"] == calib.sha256() == report["calibration"]["sha256"]
        assert "head" in meta["quantization"]["scope"]


def test_onnx_int8_quantizes_only_linear_ops_and_keeps_the_scope_float(quantized):
    import onnx

    _, out, _ = quantized
    g = onnx.load(str(out / "mobile_int8.onnx")).graph
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in g.node for o in n.output}
    dq_feeds = [c.op_type for n in g.node if n.op_type == "DequantizeLinear" for c in consumers.get(n.output[0], [])]
    # quantized tensors reach linear ops (possibly through a layout op) and pooling, never the float scope's
    # numerics (LayerNorm, softmax, GELU's Erf/Div, residual adds, the score affine)
    assert dq_feeds and set(dq_feeds) <= {"Conv", "MatMul", "Gemm", "Transpose", "Reshape", "ReduceMean"}
    assert not {"LayerNormalization", "Softmax", "Erf", "Div", "Add", "Mul"} & set(dq_feeds)
    assert {"Conv", "MatMul"} <= set(dq_feeds)
    assert {"LayerNormalization", "Softmax"} <= {n.op_type for n in g.node}       # still float ops
    head = [n for n in g.node if n.name == "node_linear_9"]
    assert head and not any(i in producer and producer[i].op_type == "DequantizeLinear" for i in head[0].input)
    stem = [n for n in g.node if n.op_type == "Conv"][0]                              # the pixel-facing conv
    assert not any(i in producer and producer[i].op_type == "DequantizeLinear" for i in stem.input)
    n_q = sum(n.op_type == "QuantizeLinear" for n in g.node)
    assert n_q > 20


def test_tensorrt_qdq_is_symmetric_int8(quantized, photos, fp32_scores):
    import onnx
    from onnx import numpy_helper

    _, out, _ = quantized
    m = onnx.load(str(out / "mobile_int8_qdq.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    zps = [inits[n.input[2]] for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    _, got = _scores(out / "mobile_int8_qdq.onnx", photos)     # executed by ONNX Runtime here
    assert stats.spearmanr(got, fp32_scores)[0] >= 0.98


@pytest.mark.skipif(not HAS_COREML, reason="coremltools not installed")
def test_coreml_weight_compression_round_trip(quantized):
    from lmliqa.runtimes.coreml import read_metadata

    _, out, report = quantized
    details = next(r for r in report["results"] if r["format"] == "coreml")["details"]
    floor = {"w8": 30.0, "pal6": 20.0, "pal4": 10.0}
    for mode, d in details.items():
        rt = d["weights_roundtrip"]
        assert rt["n_weights_compared"] >= 50 and rt["min_sqnr_db"] >= floor[mode], (mode, rt)
        assert "p_head_weight" in d["weights_kept_float"]
        meta = read_metadata(out / f"mobile_{mode}.mlpackage")
        assert meta["precision"] == "int8" and meta["weights_roundtrip"] == rt
    size = {m: sum(f.stat().st_size for f in (out / f"mobile_{m}.mlpackage").rglob("*") if f.is_file())
            for m in ("fp32", "w8", "pal6", "pal4")}
    assert size["w8"] < 0.35 * size["fp32"] and size["pal4"] < size["pal6"] < size["w8"]


def test_parity_report_has_int8_rows(quantized, livec_dev, photos, tmp_path, capsys):
    from lmliqa.cli import main

    ckpt, out, _ = quantized
    main(["parity", "--checkpoint", str(ckpt), "--models", str(out), "--data", f"folder:{livec_dev}",
          "--limit", str(len(photos)), "--out", str(tmp_path), "--json"])
    report = json.loads(capsys.readouterr().out)
    rows = {(r["artifact"], r["precision"]): r for r in report["rows"]}
    for key in (("mobile_int8.onnx", "int8"), ("mobile_int8_openvino", "int8")):
        r = rows[key]
        assert r["gate_pass"] and r["gate"].startswith("SRCC >= 0.99")
        assert r["size_mb"] < 0.5 * rows[("mobile.onnx", "fp32")]["size_mb"]
    assert rows[("mobile_int8_openvino", "int8+bf16")]["srcc_vs_torch"] > 0.95
    # the FP32 parent's keep-f32 marks and their record carry over to the INT8 IR
    assert rows[("mobile_int8_openvino", "int8+bf16")]["detail"] == "8 layers kept f32 (stem,first_stage,second_stage)"
    if HAS_COREML:
        status = {(c["artifact"], c["precision"]): c["status"] for c in report["capability"]}
        assert "weights round trip: min SQNR" in status[("mobile_w8.mlpackage", "stored")]
    assert "| mobile_int8.onnx | onnxruntime | int8 |" in (tmp_path / "parity.md").read_text()


def test_bench_rows_and_ratios(quantized, tmp_path):
    from lmliqa.benchmarks.bench import run_bench

    ckpt, out, _ = quantized
    shutil.copy(out / "mobile_int8.onnx", tmp_path / "mobile_int8.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    rep = run_bench(tmp_path, ckpt, [1, 2], iters=2, min_time=0.0, warmup=1, progress=None)
    rows = {(r["backend"], r["batch"]): r for r in rep["rows"]}
    assert set(rows) == {("torch", 1), ("torch", 2), ("onnxruntime", 1), ("onnxruntime", 2)}
    for (_, batch), r in rows.items():
        ref = rows[("torch", batch)]
        assert r["crops_per_call"] == 9 * batch and r["images_per_s"] > 0
        assert r["speedup_vs_torch_fp32"] == pytest.approx(r["images_per_s"] / ref["images_per_s"])
        assert r["p95_ms"] >= r["median_ms"] > 0 and r["peak_rss_mib"] > 0
    assert rows[("onnxruntime", 1)]["precision"] == "int8" and rows[("torch", 1)]["precision"] == "fp32"
    assert [s["artifact"] for s in rep["skipped"]] == ["broken.onnx"]


def test_float_scope_translations(quantized):
    import onnx
    from lmliqa.export._graph import export_program, load_for_export
    from lmliqa.quantize.scope import FloatScope

    ckpt, out, _ = quantized
    assert FloatScope.parse("default,decoder").categories[-1] == "decoder"
    assert str(FloatScope.parse("none")) == "none"
    with pytest.raises(ValueError, match="unknown float-scope"):
        FloatScope.parse("layernorm,attention")
    model = onnx.load(str(out / "mobile.onnx"))
    nodes = set(FloatScope().onnx_nodes(model))
    by_type = {n.name: n.op_type for n in model.graph.node}
    assert {by_type[n] for n in nodes} >= {"LayerNormalization", "Softmax", "Erf", "Add", "MatMul"}
    assert sum(by_type[n] == "Conv" for n in nodes) == 1                    # the stem only
    decoder, head = (set(FloatScope.parse(c).onnx_nodes(model)) for c in ("decoder", "head"))
    assert len(decoder) > len(head)
    import openvino as ov

    m, _ = load_for_export(ckpt)
    ov_model = ov.Core().read_model(str(out / "mobile_openvino" / "mobile.xml"))
    ignored = FloatScope().nncf_openvino(ov_model, export_program(m))
    assert any(n.startswith("linear_9/") for n in ignored.names) and "MVN" in ignored.types
    types = {op.get_friendly_name(): op.get_type_name() for op in ov_model.get_ops()}
    # the stem conv is matched although OpenVINO renamed it when it folded the BatchNorm
    assert [types[n] for n in ignored.names if types[n].endswith("Convolution")] == ["Convolution"]


def test_calibration_reports_a_bad_image_and_uses_the_rest(livec_dev, tmp_path):
    from lmliqa.quantize.calib import build_sets

    from lmliqa.contract import PreprocessContract

    (tmp_path / "images").mkdir()
    names = sorted(p.name for p in (livec_dev / "images").iterdir())[:6]
    for n in names:
        shutil.copy(livec_dev / "images" / n, tmp_path / "images" / n)
    (tmp_path / "images" / names[2]).write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "scores.csv").write_text("image,mos\n" + "".join(f"{n},{50 + i}\n" for i, n in enumerate(names)))
    calib, val = build_sets(f"folder:{tmp_path}", PreprocessContract(), n_calib=3, n_val=3)
    failed = calib.failed + val.failed
    assert len(failed) == 1 and names[2] in failed[0][0]
    assert len(calib.names) + len(val.names) == 5 and calib.n_crops == 9 * len(calib.names)


def test_accuracy_control_holds_srcc_vs_mos(livec_run, tmp_path):
    """--max-drop 0 with nothing kept float: NNCF's quantize_with_accuracy_control, with SRCC vs MOS on the
    validation photos as its metric, must hand back a model that is not below FP32 on that metric (it reverts
    quantized ops, ranked by their effect, until it is)."""
    from lmliqa.quantize import quantize_checkpoint

    out_dir, _ = livec_run
    report = quantize_checkpoint(out_dir / "final.safetensors", None, ["openvino"], tmp_path, scope="none",
                                 n_calib=8, n_val=32, max_drop=0.0)
    (res,) = report["results"]
    assert res["status"] == "ok", res["status"]
    d = res["details"]
    assert d["accuracy_control"] == {"metric": "SRCC vs MOS", "max_drop": 0.0}
    assert d["n_fake_quantize"] > 0                                  # still an INT8 model
    v = d["validation"]
    assert v["srcc_vs_mos"] >= v["srcc_vs_mos_fp32"] - 1e-6, v
    assert v["srcc_vs_fp32"] > 0.95
