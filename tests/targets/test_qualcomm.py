"""The Snapdragon NPU target: LiteRT's ahead-of-time compilation for an SoC's HTP, run on the QNN HTP simulator.

The CI model's LiteRT parents (from the suite's release) are compiled for SM8750 (one SoC: the simulator runs ~8 s per
photo here); the checks run on the first 4 gate photos. The fold-ReLU test is the reason this target exists: LiteRT's
default compilation of the INT8 model is wrong, and parity must say so."""

from pathlib import Path

import numpy as np
import pytest
from conftest import needs

from lmliqa.fidelity import QUANTIZED, REDUCED, compare

pytest.importorskip("onnxruntime_qnn", reason="the QNN HTP simulator needs onnxruntime-qnn (pip install 'lmliqa[qnn]')")
N = 4
SOC = "SM8750"


@pytest.fixture(scope="module")
def compiled(released, tmp_path_factory):
    """{name: folder}: FP32 and INT8 compiled for SM8750 (fold-ReLU off, lmliqa's default) and INT8 compiled with
    LiteRT's default fold-ReLU, from the suite release's LiteRT files."""
    from lmliqa.export.qualcomm import compile_for
    from lmliqa.runtimes.litert import read_metadata

    needs("qualcomm", "int8")
    out = tmp_path_factory.mktemp("qnn")
    fp32, int8 = released.out / "mobile.tflite", released.out / "mobile_int8.tflite"
    meta32 = {**read_metadata(fp32), "precision": "fp16", "weights": "fp32"}
    return {"fp16": compile_for(fp32, out / "mobile_qnn_sm8750", SOC, meta32),
            "int8": compile_for(int8, out / "mobile_int8_qnn_sm8750", SOC, read_metadata(int8)),
            "int8_fold_relu": compile_for(int8, out / "mobile_int8_foldrelu_qnn_sm8750", SOC, read_metadata(int8),
                                          fold_relu=True)}


def _scores(folder: Path, photos):
    from lmliqa.runtimes import load

    with load(folder) as scorer:
        assert scorer.backend == "qnn-htp-simulator" and "not verified" in scorer.detail
        return np.array([r.score for r in scorer.score_many(photos[:N], batch_size=1)])


def test_every_op_runs_on_the_npu_in_one_partition(compiled):
    from lmliqa.runtimes.qualcomm import read_metadata

    for folder in compiled.values():
        q = read_metadata(folder)["qnn"]
        assert q["soc"] == SOC and q["partitions"] == 1 and q["ops_on_npu"] == q["ops_total"] > 150, q


def test_fp16_and_int8_hold_their_gates_against_torch(compiled, photos, torch_scores):
    """The float graph (fp16 on the HTP) within 0.5 of torch; INT8 within the INT8 gate (on 4 photos: mean |d| and
    the flips of pairs more than 1 point apart; SRCC needs 20 photos, lmliqa.fidelity.MIN_SRCC_PHOTOS)."""
    ref = torch_scores[:N]
    fp16 = compare(ref, _scores(compiled["fp16"], photos))
    assert REDUCED.check(fp16) and fp16.max_abs > 1e-4, fp16
    int8 = compare(ref, _scores(compiled["int8"], photos))
    assert QUANTIZED.check(int8) and int8.max_abs > 1e-3, int8


def test_lite_rts_default_fold_relu_is_caught_by_the_gate(compiled, photos, torch_scores):
    """LiteRT's default compile drops the ReLU6 fused into quantized convs: scores move by many points and the INT8
    gate fails, while the same INT8 file compiled with fold-ReLU off holds it (measured: up to 17 points on this
    model, 34.8 on the 2026-11 default model)."""
    ref = torch_scores[:N]
    wrong = compare(ref, _scores(compiled["int8_fold_relu"], photos))
    right = compare(ref, _scores(compiled["int8"], photos))
    assert not QUANTIZED.check(wrong) and wrong.max_abs > 5 * max(right.max_abs, 1.0), (wrong, right)
    assert QUANTIZED.check(right)


def test_an_op_off_the_npu_fails_the_export(released, tmp_path, monkeypatch):
    """The compiler's partition report decides: a graph that leaves ops on the CPU is not an NPU artifact."""
    import lmliqa.export.qualcomm as q
    from lmliqa.errors import ExportError
    from lmliqa.runtimes.litert import read_metadata

    def partial(src, dst, soc, flags):
        dst.write_bytes(b"")
        return [(0, 200, 211, 2)], "Partitioned subgraph<0>, selected 200 ops, from a total of 211 ops."

    monkeypatch.setattr(q, "apply_plugin", partial)
    src = released.out / "mobile.tflite"
    with pytest.raises(ExportError, match="11 of 211 ops fell off the NPU"):
        q.compile_for(src, tmp_path / "m_qnn", SOC, read_metadata(src))
    assert not (tmp_path / "m_qnn").exists()


def test_a_plain_tflite_is_not_a_compiled_artifact(released, tmp_path):
    import shutil

    from lmliqa.errors import ArtifactError
    from lmliqa.runtimes import load
    from lmliqa.runtimes.qualcomm import MARKER, MODEL

    folder = tmp_path / "fake_qnn"
    folder.mkdir()
    shutil.copyfile(released.out / "mobile.tflite", folder / MODEL)
    with pytest.raises(ArtifactError, match=f"no {MARKER}"):
        load(folder, target="qualcomm")
    (folder / MARKER).write_text("{}")
    with pytest.raises(ArtifactError, match="one NPU dispatch op"):     # a .tflite that was never compiled
        load(folder, target="qualcomm")


def test_unknown_socs_are_refused():
    from lmliqa.errors import ExportError
    from lmliqa.export.qualcomm import parse_socs

    assert parse_socs("sm8650, SM8750") == ["SM8650", "SM8750"]
    with pytest.raises(ExportError, match="choose from"):
        parse_socs("SM9999")
