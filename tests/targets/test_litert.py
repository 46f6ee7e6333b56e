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



def test_pt2e_leaves_the_input_and_output_ops_float_with_an_empty_scope(program):
    """quantize/_pt2e.py keep_float: with no float scope, PT2E (LiteRT's quantizer, as ExecuTorch's) leaves exactly
    the network's input / output ops unannotated (export._graph io_node): the stem convolution quantizes the
    normalized pixels itself, and the score head's Linear, whose output a PT2E quantizer would otherwise observe on
    a calibrated range, has no observer on its input, weight or output."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from lmliqa.export._graph import io_ops, module_path, static_program
    from lmliqa.quantize._pt2e import keep_float, litert_quantizer
    from lmliqa.scope import FloatScope

    prog, meta = program
    keep = keep_float(FloatScope(()), meta, prog)
    assert {n.name for n in prog.graph.nodes if keep(n)} == io_ops(prog)
    config, quantizer = litert_quantizer(keep)
    ep, _ = static_program(prog, 2)
    prepared = prepare_pt2e(ep.module(), quantizer(config))

    def observed(node):
        return node.op == "call_module" and "activation_post_process" in str(node.target)

    nodes = [n for n in prepared.graph.nodes if n.op == "call_function"]
    head = [n for n in nodes if module_path(n) == "head"]
    assert len(head) == 1 and not any(observed(a) for a in head[0].all_input_nodes)
    assert not any(observed(u) for u in head[0].users)
    first_conv = next(n for n in nodes if "conv" in str(n.target))
    assert observed(first_conv.args[0]) and observed(first_conv.args[1])      # pixels and weight
    assert sum(observed(n) for n in prepared.graph.nodes) > 20
