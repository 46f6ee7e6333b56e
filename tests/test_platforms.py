"""Platforms: the same artifact on the code path a phone runs. arm64 runs the aarch64 builds of LiteRT and ONNX
Runtime under QEMU (Cortex-A76) in a sysroot built by `lmliqa platform setup arm64` (make install does it); the
emulation runs ~50-100x slower than this CPU, so the checks here score 2 photos per artifact (the 100-photo comparison
is benchmarks/platform_parity.py)."""

import json
import shutil

import numpy as np
import pytest

from lmliqa import platforms
from lmliqa.cli import main
from lmliqa.fidelity import EXACT, QUANTIZED

N = 2


@pytest.fixture(scope="module")
def arm64():
    p = platforms.get("arm64")
    if why := p.unavailable():
        pytest.skip(f"arm64 platform not available here: {why}")
    return p


@pytest.fixture(scope="module")
def arm64_parity(arm64, released, livec_dev, tmp_path_factory):
    """Parity of the CI model's LiteRT FP32/INT8, ONNX INT8 and ExecuTorch files, native and on arm64, on the first
    N LIVE-C dev photos."""
    from lmliqa.parity import run_parity

    folder = tmp_path_factory.mktemp("arm64_models")
    for name in ("mobile.tflite", "mobile_int8.tflite", "mobile_int8.onnx", "mobile.pte"):
        shutil.copyfile(released.out / name, folder / name)
    return run_parity(released.checkpoint, folder, f"folder:{livec_dev}", limit=N, platforms=("native", "arm64"),
                      emulated_limit=N, out=folder / "parity")


def test_info_and_platform_list_say_what_runs_where(capsys):
    assert main(["platform", "list", "--json"]) == 0
    rows = {r["platform"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["native"]["available"] and rows["arm64"]["emulated"]
    assert rows["arm64"]["targets"] == ["onnx", "litert"]
    assert "torch" in rows["arm64"]["not_covered"]["executorch"]            # ExecuTorch says why not
    assert rows["arm64"]["available"] or "sysroot" in rows["arm64"]["why_not"] or "qemu" in rows["arm64"]["why_not"]


def test_arm64_rows_hold_their_gates_and_say_how_far_arm_kernels_move_scores(arm64_parity):
    """FP32 on arm64 within 0.01 of torch; INT8 within the INT8 gate; each arm64 row also measured against the same
    file on x86 (vs_native); ExecuTorch on arm64 reported unsupported with the reason."""
    rows = {(r.artifact, r.platform): r for r in arm64_parity.results}
    for art in ("mobile.tflite", "mobile_int8.tflite", "mobile_int8.onnx"):
        r = rows[(art, "arm64")]
        assert r.gate_pass and r.fidelity.n == N, (art, r.status, r.fidelity)
        assert r.details["platform_runtime"]["machine"] == "aarch64"
        assert r.details["vs_native"]["n"] == N
    assert EXACT.check(rows[("mobile.tflite", "arm64")].fidelity)
    assert rows[("mobile.tflite", "arm64")].details["vs_native"]["max_abs"] < 1e-3
    assert QUANTIZED.check(rows[("mobile_int8.onnx", "arm64")].fidelity)
    pte = rows[("mobile.pte", "arm64")]
    assert pte.outcome.value == "unsupported" and "ExecuTorch" in pte.reason
    d = arm64_parity.to_dict(scores=False)
    assert any(r["platform"] == "arm64" for r in d["results"]) and d["n_images"] == N


def test_arm64_decodes_and_crops_like_this_machine(arm64, released):
    """The contract's decode and crop code run on arm64 (Pillow and numpy built for it) give the same pixels as
    here on the golden probes: JPEG, EXIF rotation, alpha, grey, upscaling."""
    from lmliqa.runtimes import load

    probes = ["rocket_exif6.jpg", "chelsea_alpha.png", "camera_grey.png", "astronaut_small.png"]
    with load(released.out / "mobile_int8.onnx", platform="arm64") as scorer:
        for name in probes:
            path = released.out / "golden" / name
            assert np.array_equal(scorer.crops(path), scorer.contract.eval_crops(path)), name


def test_score_on_arm64_writes_one_row_per_input(arm64, released, photos, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    out = tmp_path / "scores.csv"
    rc = main(["score", "--model", str(released.out / "mobile_int8.onnx"), "--platform", "arm64", photos[0],
               str(bad), "--csv", str(out), "--quiet"])
    rows = out.read_text().splitlines()
    assert rc == 1 and len([r for r in rows if not r.startswith("#")]) == 3         # header + 2 rows
    native = main(["score", "--model", str(released.out / "mobile_int8.onnx"), photos[0], "--csv",
                   str(tmp_path / "native.csv"), "--quiet"])
    assert native == 0
    a = float(next(r for r in rows if r.startswith(photos[0])).split(",")[1])
    b = float(next(r for r in (tmp_path / "native.csv").read_text().splitlines() if r.startswith(photos[0]))
              .split(",")[1])
    assert abs(a - b) < QUANTIZED.mean_abs


def test_platform_errors_are_specific(arm64, released):
    from lmliqa.errors import PlatformError
    from lmliqa.runtimes import load

    with pytest.raises(PlatformError, match="executorch artifacts do not run on arm64"):
        load(released.out / "mobile.pte", platform="arm64")
    with pytest.raises(PlatformError, match="unknown platform 'riscv'"):
        load(released.out / "mobile.tflite", platform="riscv")
    scorer = load(released.out / "mobile.tflite", platform="arm64")
    scorer.worker.proc.kill()
    scorer.worker.proc.wait()
    with pytest.raises(PlatformError, match="worker has exited"):
        scorer.infer(np.zeros((9, 3, 224, 224), np.float32))
    scorer.close()


def test_a_sysroot_is_keyed_by_the_versions_it_holds(monkeypatch, tmp_path):
    """Another runtime version is another sysroot: never reuse one built for other wheels; until it is built the
    platform says how to build it."""
    from lmliqa import sysroot

    monkeypatch.setenv("LMLIQA_CACHE", str(tmp_path))
    p = platforms.get("arm64")
    before = sysroot.location(p)
    monkeypatch.setattr(sysroot, "wheel_pins", lambda spec: {**spec.wheels, "onnxruntime": "9.9.9"})
    assert sysroot.location(p) != before and sysroot.location(p).parent == tmp_path / "platforms"
    assert "lmliqa platform setup arm64" in sysroot.missing(p)
    if shutil.which("qemu-aarch64"):
        assert "lmliqa platform setup arm64" in p.unavailable()


def test_a_release_checked_on_arm64_records_it_and_verify_repeats_it(arm64, livec_run, livec_train_dir,
                                                                   livec_eval_dir, tmp_path):
    """A release with --platforms native,arm64: parity rows and golden probe checks for both platforms in the
    manifest, a probe tolerance that holds on both, and `lmliqa verify --platforms native,arm64` repeating them."""
    from lmliqa import targets
    from lmliqa.manifest import read_manifest
    from lmliqa.release import Keep, ReleaseConfig, build_release
    from lmliqa.verify import verify_release

    out = tmp_path / "rel"
    cfg = ReleaseConfig(livec_run[0] / "final.safetensors", f"folder:{livec_train_dir}", f"folder:{livec_eval_dir}",
                        out, [targets.get("onnx")], keep=Keep.parse("onnx:int8"), n_calib=16, n_val=24,
                        eval_limit=12, bench_batches=(), platforms=("native", "arm64"), emulated_limit=N)
    build_release(cfg)
    m = read_manifest(out)
    assert m["platforms"] == {"checked": ["native", "arm64"], "emulated_limit": N}
    gates = m["artifacts"]["mobile_int8.onnx"]["gates"]
    assert {(g["check"], g["platform"]) for g in gates} >= {("parity", "native"), ("parity", "arm64"),
                                                           ("golden probes", "native"), ("golden probes", "arm64")}
    assert all(g["pass"] for g in gates) and next(g for g in gates if g["platform"] == "arm64")["n"] == N
    measured = {(r["artifact"], r["platform"]) for r in
                json.loads((out / "evidence" / "parity" / "parity.json").read_text())["results"]}
    assert {("mobile.onnx", "native"), ("mobile_int8.onnx", "arm64")} <= measured    # every artifact here,
    assert ("mobile.onnx", "arm64") not in measured                                  # the shipped ones on arm64
    gold = json.loads((out / "golden" / "golden.json").read_text())["artifacts"]["mobile_int8.onnx"]
    assert gold["platforms"]["arm64"]["max_abs"] <= gold["tolerance"]
    report = verify_release(out, platforms=("native", "arm64"))
    assert report.ok and {r.platform for r in report.probes} == {"native", "arm64"}, report.text()


def test_platform_parity_refuses_a_work_folder_of_another_checkpoint(released, tmp_path, monkeypatch):
    """benchmarks/platform_parity.py --work reuses a folder's export only when it came from the checkpoint asked."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from platform_parity import _same_checkpoint

    _same_checkpoint(released.out / "mobile.tflite", released.checkpoint)
    other = tmp_path / "other.safetensors"
    other.write_bytes(released.checkpoint.read_bytes() + b" ")
    with pytest.raises(SystemExit, match="exported from another checkpoint"):
        _same_checkpoint(released.out / "mobile.tflite", other)
