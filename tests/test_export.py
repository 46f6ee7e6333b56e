"""Export to every format and score with every runnable backend: parity against torch on real photos."""

import importlib.util
import json
import sys

import numpy as np
import pytest
from lmliqa.runtimes import BackendUnavailable, DeviceUnavailable, PrecisionUnsupported, load


def test_export_statuses(exported):
    from lmliqa.export import Status

    _, out, results = exported
    assert results["onnx"].ok and results["openvino"].ok and results["coreml"].ok
    assert (out / "mobile.pt2").is_file()                    # the program quantization starts from
    trt = results["tensorrt"]
    try:
        import tensorrt  # noqa: F401
        assert trt.ok
    except ImportError:
        assert trt.status is Status.PARTIAL and trt.reason.startswith("wrote mobile_fp16.onnx; engine not built: "
                                                                      "tensorrt is not importable")
        assert trt.paths == [str(out / "mobile_fp16.onnx")]   # the engine's input is still written and reported


def test_onnx_artifact_is_checked_dynamic_and_carries_metadata(exported):
    import onnx
    from lmliqa.export.onnx import check_onnx

    ckpt, out, _ = exported
    proto = onnx.load(str(out / "mobile.onnx"))
    check_onnx(proto)
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["lmliqa"])
    from lmliqa.manifest import sha256_file

    assert meta["source_checkpoint_sha256"] == sha256_file(ckpt)
    assert meta["contract"]["crop_size"] == 224 and meta["score"]["higher_is_better"] is True
    assert {"torch", "onnx", "onnxruntime"} <= set(meta["tools"])
    assert meta["encoder_kind"] == "cnn" and meta["regions"]["stem"] == ["encoder.cnn.conv_stem", "encoder.cnn.bn1"]
    scorer = load(out / "mobile.onnx")
    for b in (1, 13):  # any batch
        assert scorer.infer(np.full((b, 3, 224, 224), 128, np.float32)).shape == (b,)


def test_fp32_backends_match_torch_within_0_01(exported, photos, torch_scores):
    _, out, _ = exported
    for path, precision in ((out / "mobile.onnx", None), (out / "mobile_openvino", "fp32"),
                            (out / "mobile.tflite", None), (out / "mobile.pte", None)):
        scorer = load(path, precision=precision)
        assert scorer.precision == "fp32"
        scores = np.array([r.score for r in scorer.score_many(photos, batch_size=4)])
        assert np.abs(scores - torch_scores).max() <= 0.01, (scorer.backend, np.abs(scores - torch_scores).max())


def test_openvino_precision_is_pinned(exported, photos, torch_scores):
    _, out, _ = exported
    assert load(out / "mobile_openvino").precision == "fp32"   # the default is fp32, never the CPU's bf16
    scorer = load(out / "mobile_openvino", precision="bf16")
    assert scorer.precision == "bf16"
    scores = np.array([r.score for r in scorer.score_many(photos, batch_size=4)])
    err = np.abs(scores - torch_scores)
    assert err.max() > 1e-3                                     # really bf16: not the fp32 result
    assert np.corrcoef(scores, torch_scores)[0, 1] > 0.99
    with pytest.raises(PrecisionUnsupported, match="runs bf16, not the requested fp16"):
        load(out / "mobile_openvino", precision="fp16")        # this CPU has no fp16 path: refused, not faked
    with pytest.raises(DeviceUnavailable, match="not present"):
        load(out / "mobile_openvino", device="NPU")             # an absent device is an error, not a fallback
    with pytest.raises(DeviceUnavailable, match="lacks"):
        load(out / "mobile.onnx", device="cuda:0")


def test_openvino_bf16_within_0_5(exported, photos, torch_scores):
    _, out, _ = exported
    scorer = load(out / "mobile_openvino", precision="bf16")
    assert scorer.precision == "bf16" and len(scorer.kept_f32) == 8   # stem, blocks.0 (2), blocks.1 (6 - 1)
    assert scorer.detail == "8 layers kept f32 (stem,first_stage,second_stage)"
    scores = np.array([r.score for r in scorer.score_many(photos)])
    assert np.abs(scores - torch_scores).max() <= 0.5


def test_keep_f32_marks_are_what_makes_bf16_accurate(exported, photos, torch_scores, tmp_path):
    """The same model exported without the keep-f32 scope: no marks, and bf16 is measurably worse
    (MobileNetV2's first depthwise conv in bf16 alone costs ~2.5x the error)."""
    from lmliqa.export import export_checkpoint

    ckpt, out, _ = exported
    (res,) = export_checkpoint(ckpt, ["openvino"], tmp_path, keep_f32="none")
    assert res.ok, res.status
    bare = load(tmp_path / "mobile_openvino", precision="bf16")
    assert bare.kept_f32 == [] and bare.detail == ""
    assert load(tmp_path / "mobile_openvino").kept_f32 == []                # fp32 never reports marks
    err_bare = np.abs(np.array([r.score for r in bare.score_many(photos)]) - torch_scores)
    err_kept = np.abs(np.array([r.score for r in load(out / "mobile_openvino", precision="bf16")
                                .score_many(photos)]) - torch_scores)
    assert err_kept.mean() < 0.6 * err_bare.mean(), (err_kept.mean(), err_bare.mean())


def test_keep_f32_leaves_out_convs_fused_with_a_residual_add(exported):
    """blocks.1 of MobileNetV2 has a residual block whose projection conv the CPU plugin fuses with the Add;
    kept f32 under bf16 that conv breaks OpenVINO, so the default scope leaves it out and records it."""
    import openvino as ov

    _, out, _ = exported
    model = ov.Core().read_model(str(out / "mobile_openvino" / "mobile.xml"))
    rp = json.loads(model.get_rt_info(["lmliqa", "metadata"]).astype(str))["reduced_precision"]
    assert rp["keep_f32_scope"] == "stem,first_stage,second_stage" and len(rp["keep_f32_skipped"]) == 1
    kept = load(out / "mobile_openvino", precision="bf16").kept_f32
    assert len(kept) == rp["keep_f32_ops"] == 8 and rp["keep_f32_skipped"][0] not in kept


def test_openvino_fp16_weights_on_request(exported, photos, torch_scores, tmp_path):
    from lmliqa.export import export_checkpoint

    from lmliqa import targets
    from lmliqa.fidelity import compare

    ckpt, out, _ = exported
    (res,) = export_checkpoint(ckpt, ["openvino"], tmp_path, openvino_fp16_weights=True)
    assert res.ok, res.status
    half, full = (p / "mobile_openvino" / "mobile.bin" for p in (tmp_path, out))
    assert 0.45 < half.stat().st_size / full.stat().st_size < 0.55
    f32 = load(tmp_path / "mobile_openvino", precision="fp32")
    assert f32.precision == "fp32" and f32.detail == "fp16 weights"
    # OpenVINO's own decompression marks are not counted as kept layers
    assert load(tmp_path / "mobile_openvino", precision="bf16").detail == \
        "fp16 weights, 8 layers kept f32 (stem,first_stage,second_stage)"
    err = np.abs(np.array([r.score for r in f32.score_many(photos)]) - torch_scores)
    assert 1e-4 < err.max() <= 0.5                                 # really fp16 weights, within the fp16 gate
    ov, fp32, fp16 = targets.get("openvino"), targets.Precision.FP32, targets.Precision.FP16
    assert str(ov.gate(fp32, weights=fp16)) == "max <= 0.5" and str(ov.gate(fp32)) == "max <= 0.01"
    off_by = compare(np.array([1.0, 2.0, 3.0]), np.array([1.3, 2.0, 3.0]))
    assert ov.gate(fp32, weights=fp16).check(off_by) and not ov.gate(fp32).check(off_by)


@pytest.mark.parametrize("artifact", ["mobile_fp16.onnx", "mobile_fp16.tflite"])
def test_fp16_artifacts_are_within_0_5(exported, photos, torch_scores, artifact):
    """The FP16 ONNX TensorRT builds from (run by ONNX Runtime) and LiteRT's fp16-weight model."""
    _, out, _ = exported
    scorer = load(out / artifact)
    assert scorer.precision == "fp16"
    scores = np.array([r.score for r in scorer.score_many(photos, batch_size=4)])
    err = np.abs(scores - torch_scores)
    assert 1e-4 < err.max() <= 0.5, err.max()             # really reduced precision, within the gate


def spy(infer, backend, seen):
    def recording(x):
        seen[backend] = x.copy()
        return infer(x)
    return recording


def test_every_backend_receives_the_same_input_tensor(exported, photos, monkeypatch):
    from lmliqa.contract import PreprocessContract

    ckpt, out, _ = exported
    seen = {}
    for path in (ckpt, out / "mobile.onnx", out / "mobile_openvino", out / "mobile.tflite", out / "mobile.pte"):
        scorer = load(path)
        monkeypatch.setattr(scorer, "_infer", spy(scorer._infer, scorer.backend, seen))
        scorer.score(photos[0])
    expected = PreprocessContract.from_dict(load(out / "mobile.onnx").metadata["contract"]).eval_crops(photos[0])
    assert set(seen) == {"torch", "onnxruntime", "openvino", "litert", "executorch"}
    for backend, x in seen.items():
        assert np.array_equal(x, expected), backend


def test_bad_inputs_are_reported_and_the_rest_scored(exported, photos, tmp_path):
    _, out, _ = exported
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    results = list(load(out / "mobile.onnx").score_many([photos[0], str(bad), str(tmp_path / "gone.png"),
                                                         photos[1]], batch_size=3))
    assert [r.ok for r in results] == [True, False, False, True]
    assert (results[1].error_kind, results[1].error) == ("not_an_image", "not an image: a text file")
    assert (results[2].error_kind, results[2].error) == ("missing", "no such file")
    assert len(results[0].crop_scores) == 9


def test_score_cli_rows_for_dirs_globs_and_bad_files(exported, photos, torch_scores, tmp_path, capsys):
    """`lmliqa score`: a directory, a glob and a missing file -> one row per input, CSV and JSON, the same scores
    as the API; the JSON names the precision that ran and what the backend did to it."""
    import csv
    import os

    from lmliqa.cli import main

    _, out, _ = exported
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    for i, p in enumerate(photos[:3]):
        os.symlink(p, d / ("sub" if i == 2 else ".") / f"p{i}.jpg")
    (d / "notes.txt").write_text("not an image")                  # skipped: not an image suffix
    (d / "broken.png").write_bytes(b"\x89PNG broken")
    rc = main(["score", "--model", str(out / "mobile.onnx"), str(d), str(tmp_path / "photos" / "p*.jpg"),
               str(tmp_path / "gone.jpg"), "--csv", str(tmp_path / "s.csv")])
    assert rc == 1                                                  # some inputs failed
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    names = [os.path.basename(r["image"]) for r in rows]
    assert names == ["broken.png", "p0.jpg", "p1.jpg", "p2.jpg", "p0.jpg", "p1.jpg", "gone.jpg"]
    errors = {n: r["error"] for n, r in zip(names, rows)}
    assert errors["broken.png"].startswith("truncated PNG") and errors["gone.jpg"] == "no such file"
    got = {n: float(r["score"]) for n, r in zip(names, rows) if not r["error"]}
    assert np.allclose([got["p0.jpg"], got["p1.jpg"], got["p2.jpg"]], torch_scores[:3], atol=0.01)
    capsys.readouterr()
    assert main(["score", "--model", str(out / "mobile_openvino"), "--precision", "bf16", photos[0], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"]["precision"] == "bf16"
    assert report["model"]["precision_detail"] == "8 layers kept f32 (stem,first_stage,second_stage)"
    assert abs(report["results"][0]["score"] - torch_scores[0]) <= 0.5 and len(report["results"][0]["crop_scores"]) == 9
    assert main(["score", "--model", str(out / "mobile.onnx"), str(tmp_path / "nothing*.jpg")]) == 2


def test_coreml_packages_inspected(exported):
    """Core ML runs only on macOS: here the packages are checked by inspection (labelled simulated)."""
    from lmliqa.runtimes.coreml import read_metadata

    _, out, _ = exported
    import coremltools as ct

    for precision in ("fp32", "fp16"):
        path = out / f"mobile_{precision}.mlpackage"
        meta = read_metadata(path)
        assert meta["precision"] == precision and meta["contract"]["crop_size"] == 224
        spec = ct.utils.load_spec(str(path))
        assert spec.WhichOneof("Type") == "mlProgram"
        assert [i.name for i in spec.description.input] == ["pixels"]
        assert [o.name for o in spec.description.output] == ["score"]
        batch = spec.description.input[0].type.multiArrayType.shapeRange.sizeRanges[0]
        assert (batch.lowerBound, batch.upperBound) == (1, 256)
        assert spec.description.metadata.author == "lmliqa"
    if sys.platform != "darwin":
        with pytest.raises(BackendUnavailable, match="needs macOS"):
            load(out / "mobile_fp32.mlpackage")


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML prediction needs macOS")
def test_coreml_predict_parity_on_macos(exported, photos, torch_scores):
    _, out, _ = exported
    for precision, tol in (("fp32", 0.01), ("fp16", 0.5)):
        scores = np.array([r.score for r in load(out / f"mobile_{precision}.mlpackage").score_many(photos)])
        assert np.abs(scores - torch_scores).max() <= tol


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML prediction needs macOS")
def test_coreml_predict_parity_on_macos_wheel_photos(exported):
    """The macOS CI job has no shared LIVE-C photos: the same gates on the photos shipped in wheels."""
    from lmliqa.data.synthetic import _wheel_photos

    ckpt, out, _ = exported
    photos = [str(p) for p in sorted(_wheel_photos().values())]
    ref = np.array([r.score for r in load(ckpt).score_many(photos)])
    for precision, tol in (("fp32", 0.01), ("fp16", 0.5)):
        scores = np.array([r.score for r in load(out / f"mobile_{precision}.mlpackage").score_many(photos)])
        assert np.abs(scores - ref).max() <= tol


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                    reason="tensorrt is not installed (it needs an NVIDIA GPU machine)")
def test_tensorrt_engine_parity(exported, photos, torch_scores):
    _, out, _ = exported
    scores = np.array([r.score for r in load(out / "mobile_fp16.plan").score_many(photos)])
    assert np.abs(scores - torch_scores).max() <= 0.5


def test_parity_report_and_capability_matrix(exported, livec_dev, photos, tmp_path, capsys):
    from lmliqa.cli import main

    ckpt, out, _ = exported
    rc = main(["parity", "--checkpoint", str(ckpt), "--models", str(out), "--data", f"folder:{livec_dev}",
               "--limit", str(len(photos)), "--out", str(tmp_path), "--json"])
    report = json.loads(capsys.readouterr().out)
    rows = {(r["artifact"], r["precision"]): r for r in report["rows"]}
    for key in (("mobile.onnx", "fp32"), ("mobile_openvino", "fp32")):
        r = rows[key]
        assert r["gate_pass"] and r["max_abs"] <= 0.01 and r["rank_flip_rate"] == 0.0
        assert r["srcc_vs_ref"] > 0.9999 and abs(r["srcc_vs_mos"] - report["torch_vs_mos"]["srcc"]) < 1e-3
    assert rows[("mobile_fp16.onnx", "fp16")]["gate_pass"]
    for key in (("mobile.tflite", "fp32"), ("mobile.pte", "fp32")):             # the Android targets, FP32
        assert rows[key]["gate_pass"] and rows[key]["max_abs"] <= 0.01, key
    assert rows[("mobile_fp16.tflite", "fp16")]["gate_pass"]
    bf16 = rows[("mobile_openvino", "bf16")]
    assert 0.01 < bf16["max_abs"] <= 0.5 and bf16["gate_pass"]           # bf16 really ran, and within the gate
    assert rc == 0 and all(r["gate_pass"] for r in report["rows"])
    status = {(c["artifact"], c["precision"]): c["status"] for c in report["capability"]}
    assert status[("mobile_openvino", "bf16")] == "verified (8 layers kept f32 (stem,first_stage,second_stage))"
    assert status[("mobile_openvino", "fp16")].startswith("unsupported:")
    if sys.platform != "darwin":
        assert status[("mobile_fp32.mlpackage", "fp32")].startswith("simulated:")
    assert {p.name for p in tmp_path.iterdir()} >= {"parity.json", "parity.md", "parity_mobile_onnx_fp32.png"}
    prov = json.loads((tmp_path / "parity.json").read_text())["provenance"]
    assert prov["versions"]["onnxruntime"] and prov["machine"]["cpus"] >= 1 and "commit" in prov
