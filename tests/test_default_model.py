"""The model that ships in the package: it loads with no path, verifies, scores its probes within tolerance, fits
the wheel budget, and scores a folder from a fresh torch-free venv."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lmliqa import golden
from lmliqa.default_model import RELEASE, manifest

REPO = Path(__file__).resolve().parents[1]


def test_default_loads_without_a_path_and_scores_its_probes():
    from lmliqa.runtimes import load

    scorer = load()
    from lmliqa.default_model import measured_ms, ranked

    # the fastest shipped artifact as the release timed it (LiteRT INT8), both runtimes being installed here
    assert scorer.path.name == ranked(manifest()["artifacts"], measured_ms())[0] == "mobile_int8.tflite"
    assert scorer.backend == "litert" and scorer.precision.value == "int8"
    assert load("default", target="onnx").precision.value == "int8"
    assert load("default").path == scorer.path
    gold = golden.read_golden(RELEASE / "golden")
    check = golden.check_probes(gold, scorer.path.name, golden.score_probes(scorer, RELEASE / "golden"))
    assert check.gate_pass and not check.failed, golden.probe_line(check)
    ref = load("default", target="torch")          # the shipped fp16-stored checkpoint, the torch reference
    got = golden.score_probes(ref, RELEASE / "golden")
    for name, r in gold["reference"]["scores"].items():
        assert abs(got[name]["score"] - r["score"]) <= 1e-3


def test_default_verifies_and_info_shows_it():
    from lmliqa.cli import main
    from lmliqa.info import format_info, gather

    assert main(["verify", "default"]) == 0
    m = manifest()
    assert m["checkpoint"]["trained_on"]["n_images"] == 609 + 10000          # LIVE-C dev + BIQ2021's training split
    text = format_info(gather())
    assert m["name"] in text and "SRCC" in text and m["provenance"]["commit"][:12] in text


@pytest.mark.slow
def test_torch_free_venv_scores_a_folder_with_the_default(tmp_path):
    """pip install 'lmliqa[onnx]' (from a wheel of this tree) in a fresh venv, then `lmliqa score DIR --csv`."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                   check=True)
    wheel = next(wheels.glob("lmliqa-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        shipped = sum(i.compress_size for i in z.infolist() if "default_model/release/" in i.filename)
        assert not [n for n in z.namelist() if n.endswith(".safetensors")], "the torch checkpoint went into the wheel"
    assert shipped <= 15e6, f"the default model adds {shipped / 1e6:.1f} MB to the wheel (budget 15 MB)"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"{wheel}[onnx]"], check=True)
    probe = subprocess.run([str(py), "-c", "import importlib.util; print(importlib.util.find_spec('torch'))"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "None", "the torch-free install pulled torch in"
    out = tmp_path / "scores.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    res = subprocess.run([str(venv / "bin" / "lmliqa"), "score", str(RELEASE / "golden"), "--csv", str(out)],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = {Path(r["image"]).name: r for r in csv.DictReader(open(out))}
    gold = golden.read_golden(RELEASE / "golden")
    artifact = next(n for n, a in manifest()["artifacts"].items() if a["target"] == "onnx")
    tol = gold["artifacts"][artifact]["tolerance"]
    assert set(rows) == set(gold["reference"]["scores"])
    for name, ref in gold["reference"]["scores"].items():
        assert abs(float(rows[name]["score"]) - ref["score"]) <= tol, (name, rows[name], ref["score"])
    assert json.loads((RELEASE / "manifest.json").read_text())["name"] in subprocess.run(
        [str(venv / "bin" / "lmliqa"), "info"], capture_output=True, text=True, env=env).stdout
    check = subprocess.run([str(venv / "bin" / "lmliqa"), "verify", "default"], capture_output=True, text=True,
                           env=env)
    assert check.returncode == 0 and "fetch-checkpoint" in check.stdout, check.stdout + check.stderr


def test_the_default_scorer_is_the_fastest_gated_artifact_the_release_timed():
    """The order a default scorer tries the shipped artifacts in: gated ones only, by the release's measured batch-1
    time; the untimed after the timed; the torch reference last whatever its time."""
    from lmliqa.default_model import measured_ms, ranked

    arts = {"m_int8.onnx": {"target": "onnx", "gates": [{"pass": True}]},
            "m_int8.tflite": {"target": "litert", "gates": [{"pass": True}]},
            "m_int8_openvino": {"target": "openvino", "gates": [{"pass": True}, {"pass": False}]},
            "m.pte": {"target": "executorch", "gates": []},
            "m.safetensors": {"target": "torch", "gates": []}}
    ms = {"m_int8.onnx": 40.0, "m_int8.tflite": 11.0, "m_int8_openvino": 5.0, "m.safetensors": 1.0}
    assert ranked(arts, ms) == ["m_int8.tflite", "m_int8.onnx", "m.pte", "m.safetensors"]
    assert ranked(arts, {}) == ["m_int8.tflite", "m_int8.onnx", "m.pte", "m.safetensors"]   # PREFERENCE order
    # the shipped release: its INT8 ONNX was timed and is chosen before the checkpoint
    shipped = measured_ms()
    order = ranked(manifest()["artifacts"], shipped)
    assert order[-1].endswith(".safetensors") and order[0] in shipped
    assert [manifest()["artifacts"][n]["target"] for n in order] == ["litert", "onnx", "torch"]


def test_an_install_without_the_checkpoint_scores_verifies_and_fetches_it(tmp_path, monkeypatch):
    """A wheel install has no torch checkpoint (WHEEL_EXCLUDES): the INT8 artifacts still score and verify, the torch
    reference says how to add it, and `info --fetch-checkpoint` adds only the manifest's file."""
    import lmliqa.default_model as dm
    from lmliqa.cli import main
    from lmliqa.errors import BackendUnavailable, ReleaseError
    from lmliqa.runtimes import load

    wheel = tmp_path / "release"
    shutil.copytree(RELEASE, wheel, ignore=shutil.ignore_patterns("*.safetensors"))
    monkeypatch.setattr(dm, "RELEASE", wheel)
    monkeypatch.setenv("LMLIQA_CACHE", str(tmp_path / "cache"))
    ckpt = manifest()["checkpoint"]["file"]
    assert dm.unbundled() == [ckpt] and dm.locate(ckpt) is None
    assert dm.default_artifact().parent == wheel and dm.default_artifact().suffix != ".safetensors"
    with pytest.raises(BackendUnavailable, match="fetch-checkpoint"):
        dm.default_artifact("torch")
    assert main(["verify", "default"]) == 0                 # the checkpoint is listed as not checked, not failed
    bad = tmp_path / "other.safetensors"
    bad.write_bytes(b"not the checkpoint")
    with pytest.raises(ReleaseError, match="sha256"):
        dm.fetch_checkpoint(str(bad))
    assert not list((tmp_path / "cache").rglob("*.safetensors"))          # nothing kept
    assert main(["info", "--fetch-checkpoint", (RELEASE / ckpt).as_uri()]) == 0
    got = dm.default_artifact("torch")
    assert got == dm.checkpoint_cache() / ckpt and got.read_bytes() == (RELEASE / ckpt).read_bytes()
    gold = golden.read_golden(wheel / "golden")
    name, ref = next(iter(gold["reference"]["scores"].items()))
    assert abs(load("default", target="torch").score(wheel / "golden" / name).score - ref["score"]) <= 1e-3


def test_the_wheel_excludes_what_the_default_model_says_it_leaves_out():
    import tomllib

    from lmliqa.default_model import WHEEL_EXCLUDES

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tuple(cfg["exclude-package-data"]["lmliqa.default_model"]) == WHEEL_EXCLUDES
