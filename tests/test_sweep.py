"""benchmarks/cv_sweep.py: repeated k-fold CV of sweep rows, run as the accuracy sweep runs (one process per run),
on the tiny preset and the synthetic set; the statistics are recomputed here from the runs' own predictions."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmliqa.metrics import iqa_metrics

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cv_sweep.py"


def sweep(tmp_path, data, *extra):
    cmd = [sys.executable, str(SCRIPT), "--sweep", str(tmp_path / "rows.yaml"), "--data", data, "--folds", "2",
           "--layouts", "accurate,accurate_flip", "--parallel", "2", "--threads", "1", "--out", str(tmp_path / "runs"),
           "--json", str(tmp_path / "sweep.json"), "--set", "max_steps=1", "--set", "images_per_step=2",
           "--set", "crops_per_image=3", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((tmp_path / "sweep.json").read_text()), proc


def test_sweep_runs_every_seed_and_fold_and_summarises_what_they_predicted(tmp_path, synthetic_dir):
    rows = "rows:\n  tiny:\n    preset: tiny\n    set: {lml_weight: 0.0, plcc_weight: 1.0}\n"
    (tmp_path / "rows.yaml").write_text(rows)
    data = f"synthetic:{synthetic_dir}"
    res, proc = sweep(tmp_path, data, "--seeds", "0")
    row = res["rows"]["tiny"]
    assert sorted(row["runs"]) == ["s0/f0", "s0/f1"] and res["not_run"] == []
    assert "--set plcc_weight=1.0" in row["command"] and "kfold:2:J" in row["command"]
    # the two folds hold out disjoint photos that together are the whole set
    names = [n for r in row["runs"].values() for n in r["images"]]
    assert len(names) == len(set(names)) == 300
    for layout in ("accurate", "accurate_flip"):
        s = row["summary"][layout]
        per_run = [r["layouts"][layout]["srcc"] for r in row["runs"].values()]
        assert s["runs"] == 2 and s["median_srcc"] == pytest.approx(np.median(per_run))
        pred = np.concatenate([row["runs"][k]["layouts"][layout]["pred"] for k in ("s0/f0", "s0/f1")])
        mos = np.concatenate([row["runs"][k]["mos"] for k in ("s0/f0", "s0/f1")])
        assert s["pooled_by_seed"]["s0"]["srcc"] == pytest.approx(iqa_metrics(pred, mos)["srcc"], abs=1e-9)
    # flip averaging changes the prediction (a mirrored crop is another input)
    a = row["runs"]["s0/f0"]["layouts"]
    assert not np.allclose(a["accurate"]["pred"], a["accurate_flip"]["pred"])
    table = subprocess.run([sys.executable, str(SCRIPT), "--report", str(tmp_path / "sweep.json")],
                           capture_output=True, text=True, check=True).stdout
    assert table.count("| tiny |") == 2

    # resumed with a second seed under a budget too short for any run: seed 0 is kept, seed 1 is cut and listed
    res2, _ = sweep(tmp_path, data, "--seeds", "0,1", "--resume", "--budget-s", "0.5")
    row2 = res2["rows"]["tiny"]
    assert row2["runs"]["s0/f0"] == row["runs"]["s0/f0"]
    assert sorted(res2["not_run"]) == ["tiny/s1/f0", "tiny/s1/f1"]
    assert {r["status"] for k, r in row2["runs"].items() if k.startswith("s1/")} == {"cut at the budget"}


def test_packed_photos_keep_pixels_order_and_fit_the_parts(tmp_path):
    """benchmarks/sweeps/pack_photos.py: what travels to the GPU machine is the same data set."""
    from PIL import Image

    sys.path.insert(0, str(SCRIPT.parent / "sweeps"))
    from pack_photos import main as pack

    src = tmp_path / "set"
    (src / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["b.png", "a.JPG", "c.png"]
    for n in names:
        arr = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
        Image.fromarray(arr).save(src / "images" / n, "PNG" if n.endswith("png") else "JPEG")
    (src / "scores.csv").write_text("image,mos\n" + "".join(f"{n},{i * 10}\n" for i, n in enumerate(names)))
    assert pack([str(src), str(tmp_path / "out"), "--part-mb", "0.02"]) == 0
    parts = sorted((tmp_path / "out").iterdir())
    assert len(parts) >= 2
    for p in parts:                                          # no part over 20 kB unless one photo alone is
        sizes = [f.stat().st_size for f in p.iterdir() if f.name != "scores.csv"]
        assert sum(sizes) <= 20_000 or len(sizes) == 1
    rows = (parts[0] / "scores.csv").read_text().splitlines()
    assert rows == ["image,mos", "b.webp,0", "a.JPG,10", "c.webp,20"]
    for n in names:
        new = n.replace(".png", ".webp")
        (got,) = [p / new for p in parts if (p / new).exists()]
        want = np.asarray(Image.open(src / "images" / n).convert("RGB"))
        if n.endswith("png"):
            assert np.array_equal(np.asarray(Image.open(got).convert("RGB")), want)
        else:
            assert got.read_bytes() == (src / "images" / n).read_bytes()
