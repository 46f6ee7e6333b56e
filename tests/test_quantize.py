"""Post-training quantization across the targets: one typed result per artifact, the float scope and the
calibration recorded by content hash, a bad calibration image reported and the rest used, and the wider-scope
retry of an artifact that fails its gate. The INT8 gates per target are in tests/targets/test_every_target.py,
each target's own checks in tests/targets/test_<target>.py."""

import json
import shutil

import numpy as np
import pytest

from lmliqa.fidelity import compare
from lmliqa.runtimes import load
from lmliqa.stages import Outcome, Step


def test_quantize_outcomes_and_records(quantized):
    _, out, report = quantized
    by_artifact = {r.artifact: r for r in report.results if r.artifact}
    for name in ("mobile_int8_openvino", "mobile_int8.onnx", "mobile_int8_qdq.onnx", "mobile_int8.tflite",
                 "mobile_int8.pte"):
        r = by_artifact[name]
        assert r.step is Step.QUANTIZE and r.outcome is Outcome.VERIFIED, r.status
        # every validation number comes from the runtime users run, against the torch program, with its gate
        assert r.gate_pass and r.fidelity.srcc_vs_ref >= 0.99 and r.fidelity.n == 40, (name, r.fidelity)
        assert (out / name).exists()
    saved = json.loads((out / "evidence" / "quantization.json").read_text())
    assert saved["scope"] == ["layernorm", "softmax", "gelu", "residual_add", "head", "stem", "first_stage"]
    assert saved["calibration"]["n_crops"] == 32 * 9 and saved["validation"]["n_images"] == 40
    from lmliqa import presets, targets
    from lmliqa.quantize import MIN_GATE_CONFIDENCE, narrow_first, scope_ladder
    from lmliqa.targets import Stage

    scopes = presets.get("mobile").backbone.scopes()
    for r in report.results:   # a target whose artifact failed (or held only at the edge) went one rung up its ladder
        tried = r.details.get("scope_widened", [])
        if not tried:
            continue
        stage = targets.get(r.target).stage(Stage.QUANTIZE)
        ladder = [list(s.categories) for s in scope_ladder(scopes, narrow_first(stage, {}))]
        assert [t["scope"] for t in tried] + [r.details["scope"]] == ladder[:len(tried) + 1], (r.artifact, tried)
        for t in tried:
            assert t["gate_pass"] is False or t["gate_confidence"] < MIN_GATE_CONFIDENCE, (r.artifact, t)


def test_the_ladder_starts_narrow_for_onnx_always_and_for_litert_with_qat():
    """ONNX (NNCF bias correction) and LiteRT with --qat-steps try the narrow scope (op categories, no regions) first;
    LiteRT's post-training quantization starts at the default scope (stem and first stage float)."""
    from lmliqa import presets, targets
    from lmliqa.quantize import narrow_first, scope_ladder
    from lmliqa.targets import Stage

    scopes = presets.get("mobile").backbone.scopes()
    narrow, default = list(presets.NARROW_SCOPE), list(presets.CNN_FLOAT_SCOPE)

    def first(target: str, **options) -> list[str]:
        stage = targets.get(target).stage(Stage.QUANTIZE)
        return list(scope_ladder(scopes, narrow_first(stage, options))[0].categories)

    assert first("onnx") == narrow and first("onnx", qat_steps=0) == narrow
    assert first("litert") == default and first("litert", qat_steps=0) == default
    assert first("litert", qat_steps=400) == narrow
    assert first("executorch") == default
    assert not {"stem", "first_stage", "second_stage"} & set(narrow) and {"stem", "first_stage"} <= set(default)


def test_int8_artifacts_record_scope_and_calibration_hash(quantized, livec_train_dir):
    from lmliqa.contract import PreprocessContract
    from lmliqa.quantize.calib import build_sets

    ckpt, out, report = quantized
    contract = PreprocessContract.from_dict(load(ckpt).metadata["contract"])
    calib, _ = build_sets(f"folder:{livec_train_dir}", contract, 32, 1)
    assert report.calibration["spec"] == f"folder:{livec_train_dir}"
    for artifact in ("mobile_int8_openvino", "mobile_int8.onnx", "mobile_int8_qdq.onnx", "mobile_int8.tflite",
                     "mobile_int8.pte"):
        meta = load(out / artifact).metadata
        assert meta["precision"] == "int8"
        assert meta["quantization"]["calibration"]["sha256"] == calib.sha256() == report.calibration["sha256"]
        assert "head" in meta["quantization"]["scope"]


def test_calibration_reports_a_bad_image_and_uses_the_rest(livec_dev, tmp_path):
    from lmliqa.contract import PreprocessContract
    from lmliqa.quantize.calib import build_sets

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


def test_float_scope_words_are_checked_against_the_network():
    from lmliqa import presets
    from lmliqa.errors import ScopeError
    from lmliqa.scope import FloatScope

    assert FloatScope.parse("default,decoder", default=("head",)).categories == ("head", "decoder")
    assert str(FloatScope.parse("none")) == "none"
    with pytest.raises(ScopeError, match="unknown float-scope"):
        FloatScope.parse("layernorm,attention")
    vit = presets.get_backbone("deit3_small_patch16_224").network_regions
    with pytest.raises(ScopeError, match="match nothing in this network"):     # a ViT has no CNN stages
        FloatScope.parse("stem,first_stage").module_prefixes(vit)
    cnn = presets.get("mobile").backbone
    assert cnn.wider_scope == ("second_stage",) and "first_stage" in cnn.float_scope


def _fake_target(tmp_path, tries):
    """A quantizable target whose artifact records the float scope it was made with."""
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


def test_gate_confidence_tells_a_verdict_at_the_edge_from_a_safe_one():
    """The bootstrap confidence of a gate's verdict: an artifact whose mean |d| sits at 0.98 of a 1.0 gate on 40
    images holds it in about half the resamples; one at 0.5 in all of them; one that fails does not hold it."""
    from lmliqa.fidelity import QUANTIZED, gate_confidence

    rng = np.random.default_rng(1)
    ref = np.linspace(10, 90, 40)
    sign = np.where(np.arange(40) % 2, 1.0, -1.0)
    err = rng.exponential(1.0, 40)
    def at(mean):
        return ref + sign * err * (mean / err.mean())
    assert QUANTIZED.check(compare(ref, at(0.98))) and not QUANTIZED.check(compare(ref, at(1.05)))
    assert gate_confidence(QUANTIZED, ref, at(0.5)) >= 0.99
    assert 0.2 <= gate_confidence(QUANTIZED, ref, at(0.98)) <= 0.8
    assert gate_confidence(QUANTIZED, ref, at(1.3)) <= 0.2 and gate_confidence(QUANTIZED, ref, at(1.8)) <= 0.02
    assert gate_confidence(QUANTIZED, ref, at(0.98)) == gate_confidence(QUANTIZED, ref, at(0.98))   # seeded


def test_an_artifact_holding_its_gate_only_at_the_edge_is_made_again_with_the_wider_scope(tmp_path, monkeypatch):
    """A try that passes with low confidence is widened like a failed one; the record says why."""
    import lmliqa.quantize as q
    from lmliqa import presets
    from lmliqa.fidelity import QUANTIZED
    from lmliqa.scope import FloatScope
    from lmliqa.stages import StageResult

    mobile = presets.get("mobile").backbone
    tries = []
    target = _fake_target(tmp_path, tries)
    ctx = q.QuantizeContext(None, None, {}, None, None, FloatScope(mobile.float_scope), tmp_path, {}, np.zeros(2))

    def validate(ctx, target, path):
        sure = "second_stage" in ctx.scope.categories
        ref = np.linspace(0, 100, 50)
        got = ref + np.where(np.arange(50) % 2, 0.9, -0.9)
        return StageResult(Step.QUANTIZE, target.name, Outcome.VERIFIED, artifact=path.name,
                           fidelity=compare(ref, got), gate=QUANTIZED,
                           details={"gate_confidence": 1.0 if sure else 0.6})

    monkeypatch.setattr(q, "validate", validate)
    (res,) = q.quantize_target(target, ctx, {}, wider=q.scope_ladder(mobile.scopes())[1:])
    assert [s.categories for s in tries] == [mobile.float_scope, mobile.float_scope + ("second_stage",)]
    (edge,) = res.details["scope_widened"]
    assert edge["gate_pass"] is True and edge["gate_confidence"] == 0.6
    report = q.QuantizeReport("m", "0" * 64, "m", FloatScope(mobile.float_scope),
                              {"n_images": 1, "n_crops": 9, "spec": "s", "sha256": "0" * 64}, {"n_images": 50}, {},
                              0.0, [res])
    assert "held the gate in only 60% of resamples" in report.text()


def _gate_needs(category):
    """A validate stand-in: the artifact passes its gate only when its scope keeps CATEGORY in float."""
    from lmliqa.fidelity import QUANTIZED, compare
    from lmliqa.stages import StageResult

    def validate(ctx, target, path):
        ok = category in ctx.scope.categories
        assert path.read_text() == str(ctx.scope)          # it validates the artifact of this try
        ref = np.linspace(0, 100, 50)
        got = ref + (np.where(np.arange(50) % 2, 0.4, -0.4) if ok else np.where(np.arange(50) % 2, 1.05, -1.05))
        return StageResult(Step.QUANTIZE, target.name, Outcome.VERIFIED, artifact=path.name,
                           fidelity=compare(ref, got), gate=QUANTIZED)
    return validate


def test_an_int8_artifact_failing_its_gate_is_made_again_with_the_wider_scope(tmp_path, monkeypatch):
    """No scope chosen: a target whose INT8 artifact fails its gate is quantized again with the backbone's wider
    scope's next category kept float; the failed try is recorded with its numbers, and the artifact left is the
    passing one."""
    import lmliqa.quantize as q
    from lmliqa import presets
    from lmliqa.scope import FloatScope

    mobile = presets.get("mobile").backbone
    tries = []
    target = _fake_target(tmp_path, tries)
    ctx = q.QuantizeContext(None, None, {}, None, None, FloatScope(mobile.float_scope), tmp_path, {}, np.zeros(2))

    monkeypatch.setattr(q, "validate", _gate_needs("second_stage"))
    wider = q.scope_ladder(mobile.scopes())[1:]
    (res,) = q.quantize_target(target, ctx, {}, wider=wider)
    assert [s.categories for s in tries] == [mobile.float_scope, mobile.float_scope + ("second_stage",)]
    assert res.details["scope"] == [*mobile.float_scope, "second_stage"] and res.gate_pass
    (failed,) = res.details["scope_widened"]
    assert failed["scope"] == list(mobile.float_scope) and failed["mean_abs"] == pytest.approx(1.05)
    assert (tmp_path / "m_int8.fake").read_text().endswith("second_stage")

    # passing at once: one try, nothing recorded; a chosen scope (no WIDER) that fails: one try, left failing
    tries.clear()
    monkeypatch.setattr(q, "validate", _gate_needs("first_stage"))
    (res,) = q.quantize_target(target, ctx, {}, wider=wider)
    assert len(tries) == 1 and "scope_widened" not in res.details
    tries.clear()
    monkeypatch.setattr(q, "validate", _gate_needs("second_stage"))
    (res,) = q.quantize_target(target, ctx, {})
    assert len(tries) == 1 and res.gate_pass is False and res.failed and "scope_widened" not in res.details
    assert "gate SRCC >= 0.99, mean <= 1.0" in res.line() and res.line().endswith("FAIL")
