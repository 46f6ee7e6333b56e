"""Evaluation layouts (lmliqa.contract.LAYOUTS): chosen at export time, recorded in the artifact, honoured by
every runtime through the one contract."""

import numpy as np
import pytest

from lmliqa.contract import LAYOUTS, ContractError, PreprocessContract
from lmliqa.default_model import RELEASE, default_artifact

PHOTO = RELEASE / "golden" / "chelsea.jpg"


def test_layouts_set_the_grid_and_resize():
    c = PreprocessContract()
    want = {"accurate": (9, "none"), "fast": (4, "none"), "centre": (1, "none"), "whole": (1, "fixed"),
            "whole_aspect": (1, "shorter_side"), "accurate_flip": (18, "none"), "dense": (16, "none")}
    assert set(want) == set(LAYOUTS)
    for name, (n, resize) in want.items():
        lc = c.with_layout(name)
        assert (lc.n_eval_crops, lc.resize, lc.layout) == (n, resize, name)
        assert PreprocessContract.from_dict(lc.to_dict()).layout == name          # survives the metadata
        assert lc.eval_crops(str(PHOTO)).shape == (n, 3, 224, 224)
    whole = c.with_layout("whole").load(str(PHOTO))
    assert whole.size == (224, 224)
    with pytest.raises(ContractError, match="unknown layout 'quick'"):
        c.with_layout("quick")


def test_an_exported_layout_is_what_the_runtime_runs(tmp_path):
    from lmliqa.export import export_checkpoint
    from lmliqa.runtimes import load
    from lmliqa.stages import Outcome

    ckpt = default_artifact("torch")
    (res,) = export_checkpoint(ckpt, ["onnx"], tmp_path, layout="fast")
    assert res.outcome is Outcome.OK
    onnx = load(tmp_path / "mobile.onnx")
    assert onnx.describe()["layout"] == "fast" and onnx.describe()["eval_crops"] == 4
    got = onnx.score(str(PHOTO))
    torch_ref = load(ckpt)
    torch_ref.contract = torch_ref.contract.with_layout("fast")
    ref = torch_ref.score(str(PHOTO))
    assert len(got.crop_scores) == 4
    assert np.allclose(got.crop_scores, ref.crop_scores, atol=0.01)
    assert got.score == pytest.approx(ref.score, abs=0.01)


def test_flip_layout_scores_each_grid_crop_and_its_mirror_image():
    c = PreprocessContract().with_layout("accurate_flip")
    crops = c.eval_crops(str(PHOTO))
    grid = PreprocessContract().with_layout("accurate").eval_crops(str(PHOTO))
    assert np.array_equal(crops[:9], grid) and np.array_equal(crops[9:], grid[:, :, :, ::-1])
    assert not c.with_layout("fast").eval_hflip                 # choosing another layout drops the flip


def test_flip_layout_exported_runs_every_crop_through_the_runtime(tmp_path):
    """The flip is the contract's, so an artifact exported with it feeds 18 crops and averages them, as torch."""
    from lmliqa.export import export_checkpoint
    from lmliqa.runtimes import load
    from lmliqa.stages import Outcome

    ckpt = default_artifact("torch")
    (res,) = export_checkpoint(ckpt, ["onnx"], tmp_path, layout="accurate_flip")
    assert res.outcome is Outcome.OK
    onnx = load(tmp_path / "mobile.onnx")
    assert onnx.describe()["eval_crops"] == 18
    got = onnx.score(str(PHOTO))
    ref = load(ckpt)
    ref.contract = ref.contract.with_layout("accurate_flip")
    want = ref.score(str(PHOTO))
    assert np.allclose(got.crop_scores, want.crop_scores, atol=0.01)
    assert got.score == pytest.approx(np.mean(want.crop_scores), abs=0.01)
