"""The OpenVINO target: the executed precision is pinned and read back, reduced precision keeps the export's keep-f32
layers in f32 (and says so), fp16 weights on request, the float scope in OpenVINO op names, NNCF's accuracy
control, and a parent exported with other options is quantized as it is."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import needs

from lmliqa.runtimes import DeviceUnavailable, PrecisionUnsupported, load
from lmliqa.stages import Outcome


def test_openvino_precision_is_pinned(exported):
    from conftest import capability

    from lmliqa.targets import Support

    _, out, _ = exported
    assert load(out / "mobile_openvino").precision == "fp32"   # the default is fp32, never the CPU's bf16
    if capability("openvino", "fp16").support is Support.RUNS:   # a CPU with fp16 arithmetic (AVX512-FP16)
        assert load(out / "mobile_openvino", precision="fp16").precision == "fp16"
    else:
        with pytest.raises(PrecisionUnsupported):
            load(out / "mobile_openvino", precision="fp16")    # no fp16 path on this CPU: refused, not faked
    with pytest.raises(DeviceUnavailable, match="not present"):
        load(out / "mobile_openvino", device="NPU")             # an absent device is an error, not a fallback


def _outside_release(out, tmp_path):
    """A copy of the release's FP32 IR outside the release folder (a release may withdraw its bf16 execution)."""
    import shutil

    return Path(shutil.copytree(out / "mobile_openvino", tmp_path / "ir" / "mobile_openvino"))


def test_bf16_runs_bf16_with_the_keep_f32_layers_and_the_release_holds_or_withdraws_it(exported, released, photos,
                                                                                       torch_scores, tmp_path):
    """bf16 really runs bf16 with the keep-f32 layers; the release either measured it inside its gate (max |d|
    <= 0.5) on the evaluation photos or withdrew it, with the numbers (the CI model on an AMX CPU: 0.598)."""
    needs("openvino", "bf16")
    _, out, _ = exported
    scorer = load(_outside_release(out, tmp_path), precision="bf16")
    assert scorer.precision == "bf16" and len(scorer.kept_f32) == 8   # stem, blocks.0 (2), blocks.1 (6 - 1)
    assert scorer.detail == "8 layers kept f32 (stem,first_stage,second_stage)"
    err = np.abs(np.array([r.score for r in scorer.score_many(photos)]) - torch_scores)
    assert 1e-3 < err.max() and err.mean() < 0.25, (err.max(), err.mean())   # really bf16, and close
    row = next(r for r in released.evidence("parity/parity.json")["results"]
               if r["artifact"] == "mobile_openvino" and r["precision"] == "bf16" and r["platform"] == "native")
    if row["gate_pass"]:
        assert load(out / "mobile_openvino", precision="bf16").precision == "bf16"
    else:
        with pytest.raises(PrecisionUnsupported, match=r"does not offer bf16: .*[(]max [|]d[|] [0-9.]+, p99 "):
            load(out / "mobile_openvino", precision="bf16")


def test_bf16_without_a_bf16_cpu_is_refused_not_faked(exported):
    from conftest import capability

    from lmliqa.targets import Support

    if capability("openvino", "bf16").support is Support.RUNS:
        pytest.skip("this CPU computes bf16")
    _, out, _ = exported
    with pytest.raises(PrecisionUnsupported):
        load(out / "mobile_openvino", precision="bf16")


def test_keep_f32_marks_are_what_makes_bf16_accurate(exported, photos, torch_scores, tmp_path):
    """The same model exported without the keep-f32 scope: no marks, and bf16 is measurably worse
    (MobileNetV2's first depthwise conv in bf16 alone costs ~2.5x the error)."""
    from lmliqa.export import export_checkpoint

    ckpt, out, _ = exported
    (res,) = export_checkpoint(ckpt, ["openvino"], tmp_path, keep_f32="none")
    assert res.outcome is Outcome.OK, res.status
    assert load(tmp_path / "mobile_openvino").kept_f32 == []                # fp32 never reports marks
    needs("openvino", "bf16")
    bare = load(tmp_path / "mobile_openvino", precision="bf16")
    assert bare.kept_f32 == [] and bare.detail == ""
    err_bare = np.abs(np.array([r.score for r in bare.score_many(photos)]) - torch_scores)
    err_kept = np.abs(np.array([r.score for r in load(_outside_release(out, tmp_path), precision="bf16")
                                .score_many(photos)]) - torch_scores)
    assert err_kept.mean() < 0.6 * err_bare.mean(), (err_kept.mean(), err_bare.mean())


def test_keep_f32_leaves_out_convs_fused_with_a_residual_add(exported):
    """blocks.1 of MobileNetV2 has a residual block whose projection conv the CPU plugin fuses with the Add;
    kept f32 under bf16 that conv breaks OpenVINO, so the default scope leaves it out and records it."""
    import openvino as ov

    from lmliqa.runtimes.openvino import _kept_f32

    _, out, _ = exported
    model = ov.Core().read_model(str(out / "mobile_openvino" / "mobile.xml"))
    rp = json.loads(model.get_rt_info(["lmliqa", "metadata"]).astype(str))["reduced_precision"]
    assert rp["keep_f32_scope"] == "stem,first_stage,second_stage" and len(rp["keep_f32_skipped"]) == 1
    kept = _kept_f32(model)                                # the marks in the IR, whatever this CPU runs
    assert len(kept) == rp["keep_f32_ops"] == 8 and rp["keep_f32_skipped"][0] not in kept


def test_fp16_weights_on_request(exported, photos, torch_scores, tmp_path):
    from lmliqa import targets
    from lmliqa.export import export_checkpoint
    from lmliqa.fidelity import compare

    ckpt, out, _ = exported
    (res,) = export_checkpoint(ckpt, ["openvino"], tmp_path, openvino_fp16_weights=True)
    assert res.outcome is Outcome.OK, res.status
    half, full = (p / "mobile_openvino" / "mobile.bin" for p in (tmp_path, out))
    assert 0.45 < half.stat().st_size / full.stat().st_size < 0.55
    f32 = load(tmp_path / "mobile_openvino", precision="fp32")
    assert f32.precision == "fp32" and f32.detail == "fp16 weights"
    err = np.abs(np.array([r.score for r in f32.score_many(photos)]) - torch_scores)
    assert 1e-4 < err.max() <= 0.5                                 # really fp16 weights, within the fp16 gate
    ov, fp32, fp16 = targets.get("openvino"), targets.Precision.FP32, targets.Precision.FP16
    assert str(ov.gate(fp32, weights=fp16)) == "max <= 0.5" and str(ov.gate(fp32)) == "max <= 0.01"
    off_by = compare(np.array([1.0, 2.0, 3.0]), np.array([1.3, 2.0, 3.0]))
    assert ov.gate(fp32, weights=fp16).check(off_by) and not ov.gate(fp32).check(off_by)
    needs("openvino", "bf16")
    # OpenVINO's own decompression marks are not counted as kept layers
    assert load(tmp_path / "mobile_openvino", precision="bf16").detail == \
        "fp16 weights, 8 layers kept f32 (stem,first_stage,second_stage)"


def test_the_float_scope_in_openvino_op_names(exported, program):
    import openvino as ov

    from lmliqa.export.openvino import openvino_ops
    from lmliqa.scope import FloatScope

    _, out, _ = exported
    prog, meta = program
    ov_model = ov.Core().read_model(str(out / "mobile_openvino" / "mobile.xml"))
    ignored = openvino_ops(FloatScope(tuple(meta["float_scopes"]["default"])), ov_model, prog, meta)
    types = {op.get_friendly_name(): op.get_type_name() for op in ov_model.get_ops()}
    assert any(n.startswith("linear_") for n in ignored) and {types[n] for n in ignored} >= {"MVN", "Add"}
    # the convs are matched although OpenVINO renamed them when it folded their BatchNorm
    assert [types[n] for n in ignored if types[n].endswith("Convolution")] == ["Convolution", "GroupConvolution",
                                                                               "Convolution"]


def test_the_input_and_output_ops_in_openvino_op_names(exported, program):
    """export/openvino.py openvino_io_ops: the same nine input / output ops as the ONNX graph's (test_onnx.py), found
    although the conversion renumbers the score tail's Multiply and Add."""
    import openvino as ov

    from lmliqa.export._graph import io_ops
    from lmliqa.export.openvino import openvino_io_ops

    _, out, _ = exported
    prog, _ = program
    ov_model = ov.Core().read_model(str(out / "mobile_openvino" / "mobile.xml"))
    types = {op.get_friendly_name(): op.get_type_name() for op in ov_model.get_ops()}
    names = openvino_io_ops(ov_model, prog)
    # (OpenVINO turns the normalization's subtraction of a constant into an Add)
    assert sorted(types[n] for n in names) == ["Add", "Add", "Add", "Divide", "Gather", "MatMul", "Multiply",
                                               "ReduceMean", "Unsqueeze"]
    assert {"sub", "div", "select", "unsqueeze"} <= io_ops(prog) & {n.split("/", 1)[0] for n in names}


def test_int8_ir_runs_its_float_parts_in_bf16_with_the_parents_marks(quantized, photos, fp32_scores):
    needs("openvino", "int8+bf16")
    _, out, _ = quantized
    scorer = load(out / "mobile_int8_openvino", precision="int8+bf16")
    # the FP32 parent's keep-f32 marks and their record carry over to the INT8 IR
    assert scorer.detail == "8 layers kept f32 (stem,first_stage,second_stage)"
    got = np.array([r.score for r in scorer.score_many(photos)])
    assert np.corrcoef(got, fp32_scores)[0, 1] > 0.95


@pytest.mark.slow
def test_accuracy_control_holds_srcc_vs_mos(livec_run, tmp_path):
    """--max-drop 0 with nothing kept float: NNCF's quantize_with_accuracy_control, with SRCC vs MOS on the
    validation photos as its metric, must hand back a model that is not below FP32 on that metric (it reverts
    quantized ops, ranked by their effect, until it is)."""
    from lmliqa.quantize import quantize_models

    out_dir, _ = livec_run
    report = quantize_models(tmp_path, ["openvino"], checkpoint=out_dir / "final.safetensors", scope="none",
                             n_calib=8, n_val=10, max_drop=0.0)
    (res,) = report.results
    assert res.outcome is Outcome.VERIFIED, res.status
    d = res.details["quantization"]
    assert d["accuracy_control"] == {"metric": "SRCC vs MOS", "max_drop": 0.0}
    assert d["n_fake_quantize"] > 0                                  # still an INT8 model
    assert res.fidelity.srcc_vs_mos >= res.fidelity.srcc_vs_mos_ref - 1e-6, res.fidelity
    assert res.fidelity.srcc_vs_ref > 0.95


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
    assert report.results[0].outcome is Outcome.VERIFIED, report.results[0].status
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())     # nothing rewritten
    int8 = load(tmp_path / "mobile_int8_openvino")
    assert int8.metadata["reduced_precision"]["keep_f32_scope"] == "stem"
