"""`lmliqa bench --camera` and `--folder` on the model that ships in the package (no timing asserted: speed
belongs in benchmarks/results; these check the measurements are of the right thing)."""

import io

import pytest
from PIL import Image

from lmliqa.default_model import RELEASE, default_artifact

PHOTO = RELEASE / "golden" / "chelsea.jpg"


def test_camera_rows_time_the_same_score_the_scorer_gives(tmp_path):
    from lmliqa.bench import run_camera
    from lmliqa.runtimes import load

    peak = tmp_path / "peak.json"
    peak.write_text('{"peak_gmacs_per_s": {"fp32": 100.0, "bf16": 300.0, "int8": 600.0, "int8_onnxruntime": 700.0}}')
    rep = run_camera(RELEASE, default_artifact("torch"), image=str(PHOTO), warmup=1, runs=5, baselines=False,
                     peak=peak, progress=None)
    assert [(r["backend"], r["precision"]) for r in rep["rows"]] == [("torch eager fp32", "fp32"),
                                                                      ("onnxruntime", "int8"), ("litert", "int8")]
    buf = io.BytesIO()
    Image.open(PHOTO).convert("RGB").save(buf, "JPEG", quality=90)
    for row, backend in zip(rep["rows"], ("torch", "onnx", "litert")):
        assert row["runs"] == 5 and set(row["stages_p50_ms"]) == {"decode", "crops", "network", "aggregate"}
        assert min(row["stages_p50_ms"].values()) > 0 and row["p95_ms"] >= row["p50_ms"]
        assert row["score"] == pytest.approx(load(default_artifact(backend)).score(buf.getvalue()).score, abs=1e-4)
    assert rep["rows"][0]["speedup_vs_torch_eager"] == 1.0 and rep["frame"]["width"] == 451
    torch_row, onnx_row, litert_row = rep["rows"]
    assert 0.1 < rep["gmacs_per_image"] < 10                        # MobileNetV2-class network, 9 crops
    assert torch_row["utilisation"] == pytest.approx(torch_row["network_gmacs_per_s"] / 100.0)
    assert litert_row["utilisation"] == pytest.approx(litert_row["network_gmacs_per_s"] / 700.0)   # the best int8
    assert onnx_row["utilisation"] == pytest.approx(onnx_row["network_gmacs_per_s"] / 700.0)

def test_folder_rows_score_every_photo_next_to_the_ceiling():
    from lmliqa.bench import run_folder

    rep = run_folder(RELEASE, default_artifact("torch"), RELEASE / "golden", n_images=8, batch=4, min_time=0.1,
                     progress=None)
    assert rep["n_images"] == 8 and len(rep["rows"]) == 3          # the checkpoint, INT8 ONNX and INT8 LiteRT
    for row in rep["rows"]:
        assert row["scored"] == 8 and 0 < row["fraction_of_ceiling"] < 2


def test_a_bench_row_reports_its_own_peak_memory_not_its_parents():
    """Each bench row runs in a fresh process; its peak RSS must not include the (here 400 MiB) parent's."""
    import subprocess
    import sys

    ballast = bytearray(400 * 2**20)
    ballast[::4096] = b"\1" * len(ballast[::4096])            # touch every page: resident in this process
    code = "from lmliqa.bench.measure import peak_rss_mib; print(peak_rss_mib())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 5 < child < 300, child                             # imports numpy and lmliqa: tens of MiB, not 400+
    assert len(ballast) == 400 * 2**20
