"""`lmliqa bench --camera` and `--folder` on the model that ships in the package (no timing asserted: speed
belongs in benchmarks/results; these check the measurements are of the right thing)."""

import io

import pytest
from PIL import Image

from lmliqa.default_model import RELEASE, default_artifact

PHOTO = RELEASE / "golden" / "chelsea.jpg"


def test_camera_rows_time_the_same_score_the_scorer_gives(capsys):
    from lmliqa.benchmarks.bench import run_camera
    from lmliqa.runtimes import load

    rep = run_camera(RELEASE, default_artifact("torch"), image=str(PHOTO), warmup=1, runs=5, baselines=False,
                     progress=None)
    assert [(r["backend"], r["precision"]) for r in rep["rows"]] == [("torch eager fp32", "fp32"),
                                                                      ("onnxruntime", "int8")]
    buf = io.BytesIO()
    Image.open(PHOTO).convert("RGB").save(buf, "JPEG", quality=90)
    for row, backend in zip(rep["rows"], ("torch", "onnx")):
        assert row["runs"] == 5 and set(row["stages_p50_ms"]) == {"decode", "crops", "network", "aggregate"}
        assert min(row["stages_p50_ms"].values()) > 0 and row["p95_ms"] >= row["p50_ms"]
        assert row["score"] == pytest.approx(load(default_artifact(backend)).score(buf.getvalue()).score, abs=1e-4)
    assert rep["rows"][0]["speedup_vs_torch_eager"] == 1.0 and rep["frame"]["width"] == 451


def test_folder_rows_score_every_photo_next_to_the_ceiling():
    from lmliqa.benchmarks.bench import run_folder

    rep = run_folder(RELEASE, default_artifact("torch"), RELEASE / "golden", n_images=8, batch=4, min_time=0.1,
                     progress=None)
    assert rep["n_images"] == 8 and len(rep["rows"]) == 2
    for row in rep["rows"]:
        assert row["scored"] == 8 and 0 < row["fraction_of_ceiling"] < 2
