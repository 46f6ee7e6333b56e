"""Export and scoring across the targets: every backend gets the same input tensor, bad inputs are reported and the
rest scored, `lmliqa score` writes one row per input, and `lmliqa parity` reports every artifact x precision with a
typed outcome. Each target's own checks are in tests/targets/."""

import json
import re
import sys

import numpy as np
from conftest import capability

from lmliqa import targets
from lmliqa.runtimes import load
from lmliqa.targets import Support


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
    assert main(["score", "--model", str(out / "mobile_openvino"), "--target", "openvino", photos[0], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"]["backend"] == "openvino" and report["model"]["precision"] == "fp32"
    (first,) = report["results"]
    assert abs(first["score"] - torch_scores[0]) <= 0.01 and len(first["crop_scores"]) == 9
    assert main(["score", "--model", str(out / "mobile.onnx"), "--backend", "onnxruntime", photos[0], "--json"]) == 0
    captured = capsys.readouterr()                                  # the old flag, and the runtime's name, still work
    assert "--backend is deprecated; use --target" in captured.err
    assert json.loads(captured.out)["model"]["backend"] == "onnxruntime"
    assert main(["score", "--model", str(out / "mobile.onnx"), str(tmp_path / "nothing*.jpg")]) == 2


def status_of(report, artifact: str, precision: str) -> str:
    return next(r.status for r in report.results if r.artifact == artifact and r.precision.value == precision)


def test_parity_report_and_capability_matrix(exported, livec_dev, photos, tmp_path, capsys):
    """Every artifact x precision its target declares gets one typed result: measured where it runs here, else the
    reason the capability matrix gives. (The gates on the 24 gate photos are test_every_target.py's; this report
    runs on 6 of them.)"""
    from lmliqa.cli import main
    from lmliqa.parity import ParityReport
    from lmliqa.stages import FROM_SUPPORT, Outcome

    ckpt, out, _ = exported
    rc = main(["parity", "--checkpoint", str(ckpt), "--models", str(out), "--data", f"folder:{livec_dev}",
               "--limit", "6", "--out", str(tmp_path), "--json"])
    printed = json.loads(capsys.readouterr().out)
    report = ParityReport.from_dict(json.loads((tmp_path / "parity.json").read_text()))
    assert [r["artifact"] for r in printed["results"]] == [r.artifact for r in report.results]
    assert report.n_images == 6 and all(r.gate is not None for r in report.rows)
    assert rc == (1 if any(r.failed for r in report.results) else 0)
    for r in report.results:                      # the outcome is what this machine's capability predicts
        cap = capability(r.target, r.precision.value)
        if r.outcome is not Outcome.VERIFIED:
            assert r.outcome in (FROM_SUPPORT[cap.support], Outcome.UNSUPPORTED), (r.artifact, r.status, str(cap))
        else:
            assert cap.support is Support.RUNS, (r.artifact, str(cap))
    onnx = report.row("mobile.onnx", "fp32")
    assert onnx.fidelity.max_abs <= 0.01 and onnx.fidelity.rank_flip_rate == 0.0
    assert abs(onnx.fidelity.srcc_vs_mos - report.torch_vs_mos["srcc"]) < 1e-3
    assert {(r.artifact, r.precision.value) for r in report.rows} >= {
        ("mobile.onnx", "fp32"), ("mobile_openvino", "fp32"), ("mobile.tflite", "fp32"), ("mobile.pte", "fp32"),
        ("mobile_fp16.onnx", "fp16"), ("mobile_fp16.tflite", "fp16"), ("mobile_int8.onnx", "int8"),
        ("mobile_int8_openvino", "int8"), ("mobile_int8.tflite", "int8"), ("mobile_int8.pte", "int8")}
    if capability("openvino", "bf16").support is Support.RUNS:
        bf16 = report.row("mobile_openvino", "bf16")
        if bf16 is None:            # the release withdrew bf16 (it missed its gate): parity says so
            assert re.match(r"unsupported: .*its release does not offer bf16: bf16 execution misses its gate",
                            status_of(report, "mobile_openvino", "bf16")), status_of(report, "mobile_openvino", "bf16")
        else:
            assert 0.01 < bf16.fidelity.max_abs <= 0.5 and bf16.status == \
                "verified (8 layers kept f32 (stem,first_stage,second_stage))"
    status = {(r.artifact, r.precision.value): r.status for r in report.results}
    fp16 = status[("mobile_openvino", "fp16")]          # fp16 execution: CPUs with AVX512-FP16 / AMX-FP16 only
    if capability("openvino", "fp16").support is Support.RUNS:
        assert fp16.startswith("verified") or "its release does not offer fp16" in fp16, fp16
    else:
        assert fp16.startswith("unsupported:"), fp16
    if sys.platform != "darwin":
        assert status[("mobile_fp32.mlpackage", "fp32")].startswith("simulated:")
    assert "| mobile_int8.onnx | onnx | onnxruntime | native | int8 |" in (tmp_path / "parity.md").read_text()
    assert {p.name for p in tmp_path.iterdir()} >= {"parity.json", "parity.md", "parity_mobile_onnx_fp32.png"}
    prov = report.provenance
    assert prov["versions"]["onnxruntime"] and prov["machine"]["cpus"] >= 1 and "commit" in prov
    for r in report.rows:                 # a quantized network is at most half its FP32 parent's size
        if r.precision is targets.Precision.INT8:
            child, parent = out / r.artifact, out / r.artifact.replace("_int8", "")
            if not parent.exists():
                continue
            if r.target == "web":             # a web folder also carries the same ONNX Runtime Web files
                child, parent = child / "model.onnx", parent / "model.onnx"
            size = lambda p: targets.target_for(p).size_mb(p)  # noqa: E731
            assert size(child) < 0.5 * size(parent), r.artifact
