"""The ExecuTorch target: XNNPACK runs every convolution and matmul (FP32 and INT8), the metadata is a constant
method of the program, and the fixed batch takes any number of crops."""

import numpy as np

from lmliqa.runtimes import load


def test_executorch_delegates_every_convolution_and_matmul(exported, quantized):
    _, out, _ = exported
    _, qout, _ = quantized
    for path in (out / "mobile.pte", qout / "mobile_int8.pte"):
        rep = load(path).metadata["xnnpack"]
        heavy = [op for op in rep["outside"] if any(k in op for k in ("conv", "linear", "mm", "matmul"))]
        assert heavy == [], (path.name, heavy)
        assert rep["delegated_ops"] > 250 and rep["partitions"] <= 20, rep
        assert "native_layer_norm" in " ".join(rep["outside"])        # LayerNorm has no XNNPACK config (yet)


def test_metadata_is_a_constant_method_of_the_program(exported):
    from executorch.runtime import Runtime

    ckpt, out, _ = exported
    program = Runtime.get().load_program(out / "mobile.pte")
    assert {"forward", "lmliqa_metadata"} <= set(program.method_names)
    assert load(out / "mobile.pte").metadata["contract"] == load(ckpt).metadata["contract"]


def test_fixed_batch_takes_any_number_of_crops(exported):
    _, out, _ = exported
    scorer, ref = load(out / "mobile.pte"), load(out / "mobile.onnx")
    assert scorer.fixed_batch == 9
    x = np.random.default_rng(1).uniform(0, 255, (13, 3, 224, 224)).astype(np.float32)
    for n in (1, 9, 13):
        assert np.abs(scorer.infer(x[:n]) - ref.infer(x[:n])).max() < 1e-3, n
