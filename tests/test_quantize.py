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


def _scores(path, photos, **kw):
    scorer = load(path, **kw)
    return scorer, np.array([r.score for r in scorer.score_many(photos)])


def test_quantize_statuses(quantized):
    _, out, report = quantized
    res = {r["target"]: r for r in report["results"]}
    for t in ("openvino", "onnx", "litert", "executorch"):
        assert res[t]["status"] == "ok", (t, res[t]["reason"])
    assert (out / "mobile_int8_openvino" / "mobile_int8.xml").is_file() and (out / "mobile_int8.onnx").is_file()
    assert (out / "mobile_int8.tflite").is_file() and (out / "mobile_int8.pte").is_file()
    if importlib.util.find_spec("tensorrt") is None:
        assert res["tensorrt"]["status"] == "partial"
        assert res["tensorrt"]["reason"].startswith("wrote mobile_int8_qdq.onnx; engine not built")
    if HAS_COREML:
        assert res["coreml"]["status"] == "ok"
    saved = json.loads((out / "quantization.json").read_text())
    assert saved["scope"] == ["layernorm", "softmax", "gelu", "residual_add", "head", "stem", "first_stage"]
    assert saved["calibration"]["n_crops"] == 16 * 9
    # every validation number comes from the runtime users run, against the torch program, with its gate
    for t in ("openvino", "onnx", "litert", "executorch"):
        (v,) = res[t]["details"]["validation"].values()
        assert v["gate_pass"] and v["srcc_vs_ref"] >= 0.99 and v["n"] == 48, (t, v)
        # a target that failed with the default scope was made again with the second stage float, and says so
        for tried in res[t]["details"].get("scope_widened", ()):
            assert tried["scope"] == saved["scope"] and res[t]["details"]["scope"] == [*saved["scope"], "second_stage"]
            assert not any(x["gate_pass"] for x in tried["validation"].values()), (t, tried)


@pytest.mark.parametrize("artifact", ["mobile_int8_openvino", "mobile_int8.onnx", "mobile_int8.tflite",
                                      "mobile_int8.pte"])
def test_int8_gates_on_real_photos(quantized, photos, fp32_scores, artifact):
    """SRCC(int8, torch) >= 0.99, mean |d| <= 1.0, rank flips <= 2 % on the 24 gate photos (never calibrated on)."""
    from lmliqa.fidelity import rank_flip_rate

    _, out, _ = quantized
    scorer, got = _scores(out / artifact, photos)
    assert scorer.precision == "int8"
    err = np.abs(got - fp32_scores)
    assert stats.spearmanr(got, fp32_scores)[0] >= 0.99, artifact
    assert err.mean() <= 1.0
    assert rank_flip_rate(fp32_scores, got) <= 0.02
    assert err.max() > 1e-4      # it really ran quantized arithmetic


def test_int8_artifacts_record_scope_and_calibration_hash(quantized, livec_train_dir):
    from lmliqa.quantize.calib import build_sets

    from lmliqa.contract import PreprocessContract

    ckpt, out, report = quantized
    contract = PreprocessContract.from_dict(load(ckpt).metadata["contract"])
    calib, val = build_sets(f"folder:{livec_train_dir}", contract, 16, 48)
    assert report["calibration"]["spec"] == f"folder:{livec_train_dir}"      # default: the training data
    assert not set(calib.names) & set(val.names)
    for artifact in ("mobile_int8_openvino", "mobile_int8.onnx", "mobile_int8_qdq.onnx", "mobile_int8.tflite",
                     "mobile_int8.pte"):
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
    # (Slice: the tokens' LayerNorm output is quantized for the cross-attention's K/V projection, then sliced)
    assert dq_feeds and set(dq_feeds) <= {"Conv", "MatMul", "Gemm", "Transpose", "Reshape", "Slice", "ReduceMean"}
    assert not {"LayerNormalization", "Softmax", "Erf", "Div", "Add", "Mul"} & set(dq_feeds)
    assert {"Conv", "MatMul"} <= set(dq_feeds)
    assert {"LayerNormalization", "Softmax"} <= {n.op_type for n in g.node}       # still float ops
    from lmliqa.quantize.onnx import _onnx_scope

    head = [n for n in g.node if n.op_type in ("MatMul", "Gemm") and _onnx_scope(n)[0] == "head"]
    assert len(head) == 1 and not any(i in producer and producer[i].op_type == "DequantizeLinear"
                                      for i in head[0].input)
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
    details = next(r for r in report["results"] if r["target"] == "coreml")["details"]
    floor = {"w8": 30.0, "pal6": 20.0, "pal4": 10.0}
    for mode, d in details["modes"].items():
        rt = d["weights_roundtrip"]
        assert rt["n_weights_compared"] >= 50 and rt["min_sqnr_db"] >= floor[mode], (mode, rt)
        assert "p_head_weight" in d["weights_kept_float"]
        meta = read_metadata(out / f"mobile_{mode}.mlpackage")
        assert meta["precision"] == mode and meta["weights_roundtrip"] == rt
        assert details["validation"][f"mobile_{mode}.mlpackage"]["status"].startswith("simulated: package")
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
    for key, parent in ((("mobile_int8.onnx", "int8"), "mobile.onnx"),
                        (("mobile_int8_openvino", "int8"), "mobile.onnx"),
                        (("mobile_int8.tflite", "int8"), "mobile.tflite"), (("mobile_int8.pte", "int8"), "mobile.pte")):
        r = rows[key]
        assert r["gate_pass"] and r["gate"] == "SRCC >= 0.99, mean <= 1.0, flips of pairs > 1 apart <= 2%", key
        assert r["size_mb"] < 0.5 * rows[(parent, "fp32")]["size_mb"]
    assert rows[("mobile_int8_openvino", "int8+bf16")]["srcc_vs_ref"] > 0.95
    # the FP32 parent's keep-f32 marks and their record carry over to the INT8 IR
    assert rows[("mobile_int8_openvino", "int8+bf16")]["detail"] == "8 layers kept f32 (stem,first_stage,second_stage)"
    if HAS_COREML:
        status = {(c["artifact"], c["precision"]): c["status"] for c in report["capability"]}
        assert "weights round trip: min SQNR" in status[("mobile_w8.mlpackage", "w8")]
    assert "| mobile_int8.onnx | onnx | onnxruntime | int8 |" in (tmp_path / "parity.md").read_text()


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
    assert rep["provenance"]["versions"]["torch"] and rep["provenance"]["machine"]["cpu"]


def test_float_scope_translations(quantized):
    import onnx
    import openvino as ov
    from lmliqa.export._graph import load_program
    from lmliqa.export.openvino import openvino_ops
    from lmliqa.quantize.onnx import onnx_nodes

    from lmliqa.scope import FloatScope, ScopeError, network_regions

    ckpt, out, _ = quantized
    assert FloatScope.parse("default,decoder").categories[-1] == "decoder"
    assert str(FloatScope.parse("none")) == "none"
    with pytest.raises(ValueError, match="unknown float-scope"):
        FloatScope.parse("layernorm,attention")
    with pytest.raises(ScopeError, match="match nothing in this network"):     # a ViT has no CNN stages
        FloatScope.parse("stem,first_stage").module_prefixes(network_regions("vit"))
    program, meta = load_program(out / "mobile.pt2")
    model = onnx.load(str(out / "mobile.onnx"))
    default = FloatScope.default("cnn")
    nodes = set(onnx_nodes(default, model, meta))
    by_type = {n.name: n.op_type for n in model.graph.node}
    assert {by_type[n] for n in nodes} >= {"LayerNormalization", "Softmax", "Erf", "Add", "MatMul"}
    assert sum(by_type[n] == "Conv" for n in nodes) == 3        # the stem, block 0's depthwise and pointwise convs
    decoder, head = (set(onnx_nodes(FloatScope.parse(c), model, meta)) for c in ("decoder", "head"))
    assert len(decoder) > len(head)
    ov_model = ov.Core().read_model(str(out / "mobile_openvino" / "mobile.xml"))
    ignored = openvino_ops(default, ov_model, program, meta)
    types = {op.get_friendly_name(): op.get_type_name() for op in ov_model.get_ops()}
    assert any(n.startswith("linear_") for n in ignored) and {types[n] for n in ignored} >= {"MVN", "Add"}
    # the convs are matched although OpenVINO renamed them when it folded their BatchNorm
    assert [types[n] for n in ignored if types[n].endswith("Convolution")] == ["Convolution", "GroupConvolution",
                                                                               "Convolution"]


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
    from lmliqa.quantize import quantize_models

    out_dir, _ = livec_run
    report = quantize_models(tmp_path, ["openvino"], checkpoint=out_dir / "final.safetensors", scope="none",
                             n_calib=8, n_val=32, max_drop=0.0)
    (res,) = report["results"]
    assert res["status"] == "ok", res["reason"]
    d = res["details"]
    assert d["accuracy_control"] == {"metric": "SRCC vs MOS", "max_drop": 0.0}
    assert d["n_fake_quantize"] > 0                                  # still an INT8 model
    (v,) = d["validation"].values()
    assert v["srcc_vs_mos"] >= v["srcc_vs_mos_ref"] - 1e-6, v
    assert v["srcc_vs_ref"] > 0.95


def test_quantize_never_overwrites_a_parent_exported_with_other_options(livec_run, tmp_path):
    """A parent exported with non-default options is quantized as it is (its keep-f32 record carries over), and
    quantize re-exports nothing that exists."""
    from lmliqa.export import export_checkpoint
    from lmliqa.quantize import quantize_models

    out_dir, _ = livec_run
    ckpt = out_dir / "final.safetensors"
    export_checkpoint(ckpt, ["openvino"], tmp_path, keep_f32="stem")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    report = quantize_models(tmp_path, ["openvino"], checkpoint=ckpt, n_calib=4, n_val=8)
    assert report["results"][0]["status"] == "ok"
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())     # nothing rewritten
    int8 = load(tmp_path / "mobile_int8_openvino", precision="int8+bf16")
    assert int8.metadata["reduced_precision"]["keep_f32_scope"] == "stem" and int8.detail.endswith("(stem)")


def _fake_target(tmp_path, tries):
    """A quantizable target whose artifact records the float scope it was made with (no runtime: _validate is
    replaced by the caller)."""
    from types import SimpleNamespace

    from lmliqa.quantize import QuantOutput

    from lmliqa.targets import Precision, Target

    def quantize(ctx):
        tries.append(ctx.scope)
        path = tmp_path / "m_int8.fake"
        path.write_text(str(ctx.scope))
        return QuantOutput([path], {"tool": "fake"})

    return Target("fake", "Fake", "fake", "CPU", (".fake",), (Precision.FP32, Precision.INT8), "x",
                  quantize_module=SimpleNamespace(quantize=quantize))


def _gate_needs(category):
    """A _validate stand-in: the artifact passes its gate only when its scope keeps CATEGORY in float."""
    def validate(ctx, path):
        ok = category in ctx.scope.categories
        assert path.read_text() == str(ctx.scope)          # it validates the artifact of this try
        return {"mean_abs": 0.4 if ok else 1.05, "max_abs": 2.7 if ok else 7.5, "srcc_vs_ref": 0.999 if ok else 0.995,
                "material_flip_rate": 0.001, "gate": "SRCC >= 0.99, mean <= 1.0", "gate_pass": ok}
    return validate


def test_an_int8_artifact_failing_its_gate_is_made_again_with_the_wider_scope(tmp_path, monkeypatch):
    """No scope chosen: a target whose INT8 artifact fails its gate is quantized again with WIDER_SCOPE's next
    category kept float; the failed try is recorded with its numbers, and the artifact left is the passing one."""
    import lmliqa.quantize as q

    from lmliqa.scope import DEFAULT_SCOPE, WIDER_SCOPE, FloatScope

    tries = []
    target = _fake_target(tmp_path, tries)
    ctx = q.QuantizeContext(None, None, {}, None, None, FloatScope(DEFAULT_SCOPE["cnn"]), tmp_path, {}, np.zeros(2))

    monkeypatch.setattr(q, "_validate", _gate_needs("second_stage"))
    res = q.quantize_target(target, ctx, {}, wider=WIDER_SCOPE["cnn"])
    assert [s.categories for s in tries] == [DEFAULT_SCOPE["cnn"], DEFAULT_SCOPE["cnn"] + ("second_stage",)]
    assert res.details["scope"] == [*DEFAULT_SCOPE["cnn"], "second_stage"]
    assert res.details["validation"]["m_int8.fake"]["gate_pass"]
    (failed,) = res.details["scope_widened"]
    assert failed["scope"] == list(DEFAULT_SCOPE["cnn"]) and failed["validation"]["m_int8.fake"]["mean_abs"] == 1.05
    assert (tmp_path / "m_int8.fake").read_text().endswith("second_stage")
    assert "failed the gate (m_int8.fake: mean |d| 1.050" in res.line()

    # passing at once: one try, nothing recorded; a chosen scope (no WIDER) that fails: one try, left failing
    tries.clear()
    monkeypatch.setattr(q, "_validate", _gate_needs("first_stage"))
    res = q.quantize_target(target, ctx, {}, wider=WIDER_SCOPE["cnn"])
    assert len(tries) == 1 and "scope_widened" not in res.details
    tries.clear()
    monkeypatch.setattr(q, "_validate", _gate_needs("second_stage"))
    res = q.quantize_target(target, ctx, {})
    assert len(tries) == 1 and not res.details["validation"]["m_int8.fake"]["gate_pass"]
    assert "FAILS its gate" in res.line() and "scope_widened" not in res.details
