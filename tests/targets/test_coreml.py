"""The Core ML target: mlprogram packages with a dynamic batch and the lmliqa metadata; off macOS they are checked by
inspection (labelled simulated, never verified), compressed weights by a round trip; on macOS `predict` parity."""

import importlib.util
import sys

import numpy as np
import pytest

from lmliqa.runtimes import BackendUnavailable, load
from lmliqa.stages import Outcome

HAS_COREML = importlib.util.find_spec("coremltools") is not None
pytestmark = pytest.mark.skipif(not HAS_COREML, reason="coremltools not installed")


def test_coreml_packages_inspected(exported):
    import coremltools as ct

    from lmliqa.runtimes.coreml import read_metadata

    _, out, _ = exported
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


def test_coreml_weight_compression_round_trip(quantized):
    from lmliqa.runtimes.coreml import read_metadata

    _, out, report = quantized
    results = {r.artifact: r for r in report.for_target("coreml")}
    floor = {"w8": 30.0, "pal6": 20.0, "pal4": 10.0}
    modes = next(iter(results.values())).details["quantization"]["modes"]
    for mode, d in modes.items():
        rt = d["weights_roundtrip"]
        assert rt["n_weights_compared"] >= 50 and rt["min_sqnr_db"] >= floor[mode], (mode, rt)
        assert "p_head_weight" in d["weights_kept_float"]
        meta = read_metadata(out / f"mobile_{mode}.mlpackage")
        assert meta["precision"] == mode and meta["weights_roundtrip"] == rt
        r = results[f"mobile_{mode}.mlpackage"]
        if sys.platform != "darwin":
            assert r.outcome is Outcome.SIMULATED and r.reason.startswith("package"), r.status
    size = {m: sum(f.stat().st_size for f in (out / f"mobile_{m}.mlpackage").rglob("*") if f.is_file())
            for m in ("fp32", "w8", "pal6", "pal4")}
    assert size["w8"] < 0.35 * size["fp32"] and size["pal4"] < size["pal6"] < size["w8"]


@pytest.fixture(scope="module")
def synthetic_export(synthetic_dir, tmp_path_factory):
    """The macOS job has no shared LIVE-C photos: a mobile model trained on the embedded synthetic set (2 epochs),
    exported for Core ML only."""
    from lmliqa.export import export_checkpoint
    from lmliqa.train.config import resolve_config
    from lmliqa.train.engine import train

    run = tmp_path_factory.mktemp("synthetic_run")
    train(resolve_config("mobile", data=f"synthetic:{synthetic_dir}", out=str(run), split="random:0", epochs=2,
                         deploy="student", threads=2, eval_every=0))
    out = tmp_path_factory.mktemp("coreml_export")
    export_checkpoint(run / "final.safetensors", ["coreml"], out)
    return run / "final.safetensors", out


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML prediction needs macOS")
def test_coreml_predict_parity_on_macos_wheel_photos(synthetic_export):
    """The FP32 and FP16 packages' predictions against torch, on the photos shipped in wheels."""
    from lmliqa.data.synthetic import wheel_photos

    ckpt, out = synthetic_export
    photos = [str(p) for p in sorted(wheel_photos().values())]
    ref = np.array([r.score for r in load(ckpt).score_many(photos)])
    for precision, tol in (("fp32", 0.01), ("fp16", 0.5)):
        scores = np.array([r.score for r in load(out / f"mobile_{precision}.mlpackage").score_many(photos)])
        assert np.abs(scores - ref).max() <= tol
