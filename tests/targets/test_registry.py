"""The target registry: every command covers every registered target, a new target is one registry entry plus its
own stage files, and options, statuses and precisions are typed values."""

import json
import os
import textwrap

import pytest

from lmliqa import targets
from lmliqa.targets import Precision, Stage, Support, Target, TargetError


def test_every_command_covers_every_target(exported, quantized, livec_dev, photos, tmp_path):
    from conftest import SUITE_TARGETS

    from lmliqa.bench import candidates
    from lmliqa.cli import build_parser
    from lmliqa.info import gather
    from lmliqa.parity import run_parity

    names = targets.names()
    assert names == ["onnx", "openvino", "coreml", "tensorrt", "litert", "executorch", "web", "qualcomm"]
    info = gather()
    assert [t["target"] for t in info["targets"]] == ["torch"] + names
    caps = {(c["target"], c["precision"]) for c in info["capabilities"]}
    for t in targets.targets(reference=True):
        assert {(t.name, p.value) for p in t.precisions} <= caps, t.name

    parser = build_parser()
    export_args = parser.parse_args(["export", "--checkpoint", "c", "--out", "o"])
    assert export_args.targets.split(",") == targets.names(Stage.EXPORT) == names
    quantize_args = parser.parse_args(["quantize", "--out", "o"])
    assert quantize_args.targets.split(",") == targets.names(Stage.QUANTIZE) == names
    score_choices = next(a for a in parser._subparsers._group_actions[0].choices["score"]._actions
                         if a.dest == "target").choices
    assert {t.name for t in targets.targets(reference=True)} == set(score_choices)

    ckpt, out, results = exported               # the suite's release: every target but the simulated ones
    made = [t.name for t in SUITE_TARGETS]
    assert set(results) == set(made) and all(r.outcome.wrote for r in results.values())
    _, qout, report = quantized
    assert list(dict.fromkeys(r.target for r in report.results)) == made
    found = {a.target.name for a in targets.discover(out)}
    assert found >= set(made) - {"tensorrt"}       # TensorRT's engines need TensorRT; its ONNX forms run as onnx

    parity = run_parity(ckpt, out, f"folder:{livec_dev}", limit=4)
    assert {r.target for r in parity.results} == found
    bench_targets = {t.name for _, t, _, _ in candidates(qout, ckpt)}
    assert bench_targets >= {"torch", "onnx", "openvino", "coreml", "litert", "executorch", "web"}


DUMMY = '''
"""A target defined by a test: the network as ONNX under another suffix, run by ONNX Runtime."""
import shutil
import tempfile
from pathlib import Path

from lmliqa.runtimes.onnxruntime import OnnxRuntimeScorer, read_metadata
from lmliqa.targets import Capability, Precision, Support


def export(ctx):
    from lmliqa.export.onnx import torch2onnx

    with tempfile.TemporaryDirectory() as tmp:
        onnx = torch2onnx(ctx.program, Path(tmp) / "m.onnx", {**ctx.metadata, "format": "dummy"})
        return [Path(shutil.move(onnx, ctx.path("{m}.dummy")))]


class DummyScorer(OnnxRuntimeScorer):
    backend = "dummy"


SCORER = DummyScorer


def probe():
    return [Capability("dummy", Precision.FP32, Support.RUNS, "ONNX Runtime under another name")]
'''


@pytest.fixture
def dummy_target(tmp_path, monkeypatch):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "dummy_target.py").write_text(textwrap.dedent(DUMMY))
    monkeypatch.syspath_prepend(str(plugin))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")]))
    target = targets.register(Target("dummy", "Dummy runtime", "dummy", "CPU", (".dummy",), (Precision.FP32,),
                                      "dummy_target", export_module="dummy_target",
                                      requires={Stage.RUNTIME: ("onnxruntime",)}))
    yield target
    targets.unregister("dummy")


def test_a_new_target_is_one_registry_entry(dummy_target, livec_run, livec_dev, tmp_path, capsys):
    """A target defined here, with no change anywhere else, appears in info, export, parity and bench."""
    from lmliqa.bench import run_bench
    from lmliqa.cli import main
    from lmliqa.parity import run_parity

    out_dir, _ = livec_run
    ckpt, out = out_dir / "final.safetensors", tmp_path / "out"
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"target": "dummy", "precision": "fp32", "support": "runs here",
            "note": "ONNX Runtime under another name", "status": "runs here: ONNX Runtime under another name"} \
        in info["capabilities"]
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--targets", "dummy", "--json"]) == 0
    (res,) = json.loads(capsys.readouterr().out)
    assert res["outcome"] == "ok" and res["paths"] == [str(out / "mobile.dummy")]
    report = run_parity(ckpt, out, f"folder:{livec_dev}", limit=4)
    (row,) = report.rows
    assert row.target == "dummy" and row.details["runtime"] == "dummy" and row.gate_pass
    assert row.fidelity.max_abs <= 0.01
    bench = run_bench(out, ckpt, [1], iters=1, min_time=0.0, warmup=0, progress=None)
    assert {(r["target"], r["batch"]) for r in bench["rows"]} == {("torch", 1), ("dummy", 1)}, bench["skipped"]


def test_an_option_for_a_target_not_chosen_is_an_error(livec_run, tmp_path, capsys):
    from lmliqa.cli import main
    from lmliqa.export import export_checkpoint

    out_dir, _ = livec_run
    ckpt = out_dir / "final.safetensors"
    with pytest.raises(TargetError, match="--keep-f32 applies to openvino, which is not among the chosen targets"):
        export_checkpoint(ckpt, ["onnx", "litert"], tmp_path, keep_f32="none")
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path), "--targets", "onnx",
                 "--openvino-fp16-weights"]) == 2
    assert "--openvino-fp16-weights applies to openvino" in capsys.readouterr().err
    assert main(["quantize", "--out", str(tmp_path), "--targets", "litert", "--onnx-tool", "ort"]) == 2
    assert "--onnx-tool applies to onnx" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path), "--targets", "onnx,tflite"]) == 2
    assert "unknown target 'tflite'" in capsys.readouterr().err
    # the old spelling still works for one release, and says so
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path), "--formats", "onnx,tflite"]) == 2
    err = capsys.readouterr().err
    assert "--formats is deprecated; use --targets" in err and "unknown target 'tflite'" in err
    assert not any(tmp_path.iterdir())                  # refused before anything was written


def test_typed_values():
    assert Precision("int8+bf16") is Precision.INT8_BF16 and Precision.INT8_BF16.quantized
    assert str(Precision.FP32.gate) == "max <= 0.01" and str(Precision.FP16.gate) == "max <= 0.5"
    assert str(Precision.INT8.gate) == "SRCC >= 0.99, mean <= 1.0, flips of pairs > 1 apart <= 2%"
    assert targets.get("onnxruntime") is targets.get("onnx")
    with pytest.raises(TargetError):
        targets.get("tflite")
    with pytest.raises(ValueError, match="already belong to"):
        targets.register(Target("other", "x", "x", "CPU", (".onnx",), (Precision.FP32,), "x"))
    ov = {c.precision: c for c in targets.get("openvino").probe()}
    assert all(isinstance(c.support, Support) for c in ov.values()) and ov[Precision.FP32].support is Support.RUNS
    assert targets.get("openvino").run_precisions(Precision.INT8) == (Precision.INT8, Precision.INT8_BF16)
    assert targets.get("litert").run_precisions(Precision.FP32) == (None,)
