"""`lmliqa release` and `lmliqa verify`: the manifest, golden probes, tamper refusal, data overlap and gate failure,
on a model trained on real photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lmliqa import golden
from lmliqa.errors import ReleaseError
from lmliqa.manifest import MANIFEST, sha256_file

pytestmark = pytest.mark.slow


def test_manifest_lists_every_file_with_its_hash(release):
    out, body = release
    m = json.loads((out / MANIFEST).read_text())
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {MANIFEST}
    assert set(m["files"]) == files
    for rel, entry in m["files"].items():
        assert entry["sha256"] == sha256_file(out / rel) and entry["size"] == (out / rel).stat().st_size
    assert {"MODEL_CARD.md", "report.md", "golden/golden.json", "evidence/parity/parity.json"} <= files
    assert m["provenance"]["commit"] and m["provenance"]["versions"]["torch"]
    assert len(m["data"]["evaluation"]["sha256"]) == 64 and m["data"]["evaluation"]["n_images"] == 40
    assert m["data"]["training"]["overlap_with_evaluation"] == 0
    assert m["checkpoint"]["sha256"] == sha256_file(out / m["checkpoint"]["file"])
    targets_shipped = {a["target"] for a in m["artifacts"].values()}
    assert {"onnx", "openvino", "litert", "executorch", "coreml", "torch"} <= targets_shipped
    int8 = m["artifacts"]["mobile_int8.onnx"]
    assert int8["precision"] == "int8"
    checks = {g["check"]: g for g in int8["gates"]}
    assert checks["parity"]["pass"] and checks["parity"]["measured"]["srcc_vs_ref"] >= 0.99
    assert checks["quantize validation"]["pass"] and checks["golden probes"]["pass"]
    assert m["files"]["mobile_int8.onnx"]["target"] == "onnx"
    assert not list(out.glob("*.pt2")), "the program is an intermediate, not shipped"


def test_card_reports_bootstrap_intervals(release):
    out, body = release
    ci = body["accuracy"]["ci95"]["srcc"]
    assert ci["low"] < ci["value"] < ci["high"] and ci["high"] - ci["low"] > 0.01
    card = (out / "MODEL_CARD.md").read_text()
    assert f"{ci['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]" in card
    assert "## Intended use" in card and "## Known weaknesses" in card and "bibtex" in card
    for png in ("scatter.png", "abs_diff.png", "speed_vs_fidelity.png"):
        assert (out / "report" / png).stat().st_size > 5000
    assert "not verified" in card or "simulated" in card       # Core ML off macOS, TensorRT here
    # each artifact's own agreement with people stands in its row (the release's goals are stated for what ships)
    rows = json.loads((out / "evidence" / "parity" / "parity.json").read_text())["results"]
    for r in (r for r in rows if r.get("fidelity") and r["fidelity"].get("srcc_vs_mos") is not None):
        f = r["fidelity"]
        assert f"| {f['srcc_vs_mos']:.3f} / {f['plcc_vs_mos']:.3f} |" in card, r["artifact"]


def test_golden_probes_hold_on_every_runnable_target(release):
    from lmliqa.verify import verify_release

    out, _ = release
    gold = golden.read_golden(out / "golden")
    assert len(gold["probes"]) == len(golden.PROBES) and all("licence" in p for p in gold["probes"])
    for ref in gold["reference"]["scores"].values():
        assert len(ref["crops"]) >= 1 and np.isclose(ref["score"], np.mean(ref["crops"]), atol=1e-6)
    rep = verify_release(out)
    assert rep.ok, rep.text()
    checked = {p.artifact for p in rep.probes}
    assert {"mobile.onnx", "mobile_int8.onnx", "mobile_openvino", "mobile.tflite", "mobile_int8.tflite",
            "mobile.pte", "mobile_int8.pte"} <= checked
    for p in rep.probes:
        assert p.gate_pass and p.fidelity.max_abs <= p.gate.max_abs and p.fidelity.n == len(golden.PROBES)
        if gold["artifacts"][p.artifact]["precision"] == "fp32":
            assert p.gate.max_abs == 0.01
    assert any("mlpackage" in r.artifact for r in rep.not_checked)
    assert "verify: OK" in rep.text() and json.loads(json.dumps(rep.to_dict()))["ok"] is True


def test_one_flipped_byte_fails_verify_and_load(release, tmp_path, capsys):
    from lmliqa.cli import main
    from lmliqa.runtimes import load

    src, _ = release
    out = tmp_path / "rel"
    shutil.copytree(src, out)
    victim = out / "mobile_int8.onnx"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(data)
    with pytest.raises(ReleaseError, match="mobile_int8.onnx"):
        load(victim)
    load(out / "mobile.onnx")                      # the untouched artifacts still load
    (out / "stray.onnx").write_bytes(b"x")
    assert main(["verify", str(out), "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["files"]["changed"] == ["mobile_int8.onnx"] and rep["files"]["extra"] == ["stray.onnx"]
    assert not rep["ok"] and any(r["artifact"] == "mobile_int8.onnx" and r["outcome"] == "failed"
                                 for r in rep["results"])


def test_training_photos_are_refused_as_evaluation(livec_run, livec_train_dir, tmp_path):
    from lmliqa.models.checkpoint import read_metadata
    from lmliqa.release import ReleaseConfig, build_release, check_data

    ckpt = livec_run[0] / "final.safetensors"
    cfg = ReleaseConfig(ckpt, "synthetic", f"folder:{livec_train_dir}", tmp_path / "r", [], n_calib=4)
    with pytest.raises(ReleaseError, match="160 of the 160 evaluation photos were training photos"):
        build_release(cfg)
    assert not (tmp_path / "r" / MANIFEST).exists()
    cfg.allow_overlap = True
    rec, _ = check_data(cfg, read_metadata(ckpt))
    assert rec["allow_overlap"] and rec["training"]["checked"] is False


def test_keep_builds_only_the_targets_it_names_and_refuses_one_not_built(tmp_path):
    from lmliqa import targets
    from lmliqa.release import Keep, Quantize, Release, ReleaseConfig, build_release

    cfg = ReleaseConfig(tmp_path / "unused.safetensors", "synthetic", "synthetic", tmp_path / "r",
                        [targets.get("onnx"), targets.get("litert"), targets.get("openvino")],
                        keep=Keep.parse("litert:int8,onnx:fp32"))
    assert [t.name for t in cfg.built_targets()] == ["onnx", "litert"]
    assert [t.name for t in Quantize().quantizable(Release(cfg, {}, cfg.out, cfg.out))] == ["litert"]   # onnx:fp32
    assert [t.name for t in ReleaseConfig(tmp_path, "s", "s", tmp_path, cfg.targets).built_targets()] == \
        ["onnx", "litert", "openvino"]                                            # no --keep: everything ships
    cfg.keep = Keep.parse("executorch:int8,onnx:fp32")
    with pytest.raises(ReleaseError, match="--keep names executorch, which the release does not build"):
        build_release(cfg)
    assert not (tmp_path / "r").exists()


def test_quantizer_photos_are_left_out_of_evaluation(livec_run, livec_train_dir, livec_eval_dir):
    """The photos the quantizers saw (calibration, and validation: the float-scope ladder's gate; with QAT every
    --calib photo) are never evaluation photos: left out when --eval names the same set, refused with QAT."""
    from lmliqa.models.checkpoint import read_metadata
    from lmliqa.release import ReleaseConfig, check_data

    ckpt = livec_run[0] / "final.safetensors"
    meta = read_metadata(ckpt)
    spec, train = f"folder:{livec_eval_dir}", f"folder:{livec_train_dir}"
    rec, skip = check_data(ReleaseConfig(ckpt, spec, spec, Path("unused"), [], n_calib=8, n_val=8), meta)
    assert rec["evaluation"]["n_images"] == 24 and len(skip) == 16          # 40 - 8 calibration - 8 validation
    assert rec["validation"] == {"spec": spec, "n_images": 8, "sha256": rec["validation"]["sha256"],
                                 "training_photos": 0}
    rec, _ = check_data(ReleaseConfig(ckpt, train, spec, Path("unused"), [], n_calib=8, n_val=8), meta)
    assert rec["validation"]["training_photos"] == 8                      # other photos of --calib: trained on
    rec, skip = check_data(ReleaseConfig(ckpt, spec, spec, Path("unused"), [], n_calib=8, n_val=8, val=train), meta)
    assert rec["evaluation"]["n_images"] == 32 and len(skip) == 8           # validated on other photos
    rec, skip = check_data(ReleaseConfig(ckpt, train, spec, Path("unused"), [], n_calib=8, n_val=8, val=spec), meta)
    assert rec["evaluation"]["n_images"] == 32 and len(skip) == 8           # --val names the evaluation set
    with pytest.raises(ReleaseError, match="--qat-steps fine-tunes on the photos of"):
        check_data(ReleaseConfig(ckpt, spec, spec, Path("unused"), [], n_calib=8, n_val=8,
                                 quantize_options={"qat_steps": 10}), meta)
    rec, _ = check_data(ReleaseConfig(ckpt, train, spec, Path("unused"), [], n_calib=8, n_val=8,
                                      quantize_options={"qat_steps": 10}), meta)
    assert rec["evaluation"]["n_images"] == 40                              # QAT on other photos: all evaluated


def test_a_failing_gate_writes_no_release(livec_run, livec_train_dir, livec_eval_dir, tmp_path, monkeypatch):
    from lmliqa import targets
    from lmliqa.errors import LmliqaError, ReleaseFailed
    from lmliqa.fidelity import Gate
    from lmliqa.release import Keep, ReleaseConfig, build_release

    monkeypatch.setattr(targets.Target, "gate", lambda self, precision, weights=None: Gate(max_abs=0.0))
    out = tmp_path / "rel"
    cfg = ReleaseConfig(livec_run[0] / "final.safetensors", f"folder:{livec_train_dir}", f"folder:{livec_eval_dir}",
                        out, [targets.get("onnx")], keep=Keep.parse("onnx:fp32"), n_calib=4, n_val=12, eval_limit=12,
                        bench_batches=())                          # fp32 only: nothing to quantize
    with pytest.raises(ReleaseFailed, match=r"gate\(s\) failed") as info:
        build_release(cfg)
    assert not (out / MANIFEST).exists()
    failed = json.loads((out / "evidence" / "release_failed.json").read_text())
    assert failed["failures"] == info.value.failures and any("onnx" in f for f in failed["failures"])
    assert isinstance(info.value, LmliqaError)         # the CLI's usual handling (it exits 1 for this one)


def test_results_index_is_current_and_new_results_carry_provenance():
    """Every file under benchmarks/results is listed by benchmarks/results_index.py (INDEX.md up to date), and every
    one written from 2026-11-27 on records its command, commit, versions and machine."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, str(repo / "benchmarks" / "results_index.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
    sys.path.insert(0, str(repo / "benchmarks"))
    from results_index import RESULTS, record

    for p in sorted(RESULTS.iterdir()):
        if p.name != "INDEX.md" and p.name >= "2026-11-27":
            assert not record(p)["legacy"], f"{p.name} lacks a provenance record"


def test_flip_rate_margin_skips_pairs_the_reference_barely_separates():
    from lmliqa.fidelity import FLIP_MARGIN, QUANTIZED, compare, rank_flip_rate

    a, b = np.array([0.0, 0.5, 5.0, 10.0]), np.array([0.5, 0.0, 10.0, 5.0])
    assert rank_flip_rate(a, b) == pytest.approx(2 / 6)
    assert rank_flip_rate(a, b, margin=FLIP_MARGIN) == pytest.approx(1 / 5)
    f = compare(a, b)
    assert f.material_flip_rate == pytest.approx(0.2) and not QUANTIZED.check(f)


def test_a_tree_without_git_reports_the_commit_it_was_told(tmp_path, monkeypatch):
    """A copy of the tree without .git (the accelerator machine's) records LMLIQA_SOURCE_COMMIT, else nothing."""
    from lmliqa.provenance import git_commit

    monkeypatch.delenv("LMLIQA_SOURCE_COMMIT", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_commit(tmp_path) is None
    monkeypatch.setenv("LMLIQA_SOURCE_COMMIT", "9e9ad6f23c85f76d910e4410e0935545486f87d4")
    assert git_commit(tmp_path) == "9e9ad6f23c85f76d910e4410e0935545486f87d4"
    import subprocess

    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent).stdout.strip()
    assert git_commit().split("+")[0] == head                 # a real checkout reports its own commit


def test_an_execution_precision_missing_its_gate_is_withdrawn_not_shipped(release, tmp_path):
    """OpenVINO can run an FP32 IR in bf16; when that misses its gate on the evaluation photos (a CPU with bf16: the
    CI model's bf16 measured max |d| 0.598 > 0.5), the release withdraws bf16 for that artifact instead of failing:
    the manifest says why and loading it in bf16 is refused, while its stored precision still gates the release."""
    from types import SimpleNamespace

    from lmliqa.errors import PrecisionUnsupported
    from lmliqa.fidelity import REDUCED, compare
    from lmliqa.release import withdrawn_precisions
    from lmliqa.runtimes import load
    from lmliqa.stages import Outcome, StageResult, Step
    from lmliqa.targets import Artifact, Precision, get

    ref = np.linspace(20, 80, 40)

    def row(precision, err):
        return StageResult(Step.PARITY, "openvino", Outcome.VERIFIED, artifact="m_openvino", precision=precision,
                           fidelity=compare(ref, ref + err, names=[f"p{i}.jpg" for i in range(40)]), gate=REDUCED)

    art = Artifact(Path("m_openvino"), get("openvino"), Precision.FP32)
    bad = np.where(np.arange(40) == 7, 0.6, 0.1)
    parity = SimpleNamespace(rows=[row(Precision.FP32, np.full(40, 1e-4)), row(Precision.BF16, bad)])
    withdrawn = withdrawn_precisions(parity, [art])
    why = withdrawn[("m_openvino", "bf16")]
    assert list(withdrawn) == [("m_openvino", "bf16")] and "max |d| 0.6" in why
    assert "worst p7.jpg" in why and "run it as stored (fp32)" in why
    parity.rows[0] = row(Precision.FP32, bad)        # a failing stored precision fails the release: never withdrawn
    assert list(withdrawn_precisions(parity, [art])) == [("m_openvino", "bf16")]

    out, _ = release
    copy = tmp_path / "rel"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["artifacts"]["mobile_openvino"]["withdrawn"] = {"bf16": "bf16 execution misses its gate"}
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(PrecisionUnsupported, match="does not offer bf16: bf16 execution misses its gate"):
        load(copy / "mobile_openvino", precision="bf16")
    assert load(copy / "mobile_openvino").precision is Precision.FP32


def test_amending_the_training_record_names_a_fine_tuned_models_whole_lineage(release, tmp_path, capsys):
    """release.amend_training: a release whose documents name only a fine-tuned checkpoint's own data (as before
    they named its lineage) gets its training record and card section written again from the shipped checkpoint;
    the rest of the card, every artifact and the file check stay as they were, the manifest keeps what it said."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from lmliqa import card
    from lmliqa.cli import main
    from lmliqa.data import THEN
    from lmliqa.manifest import read_manifest, write_manifest
    from lmliqa.models.checkpoint import META_KEY
    from lmliqa.release import amend_training

    src, _ = release
    out = tmp_path / "rel"
    shutil.copytree(src, out)
    body = {k: v for k, v in read_manifest(out).items() if k not in ("format", "files")}
    ckpt = out / body["checkpoint"]["file"]
    with safe_open(str(ckpt), framework="pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
    own = dict(body["data"]["training"])
    assert own["spec"] == meta["extra"]["dataset"] and own["n_images"] > 0
    text = (out / "MODEL_CARD.md").read_text()
    assert card.with_training(text, body) == text                  # the section renders back as it was written
    # the shipped checkpoint as a fine-tuned one: started from a model trained on other data, its recorded photo
    # hashes covering both; the documents as the earlier rules wrote them (its own data only)
    meta["extra"].update(init_from={"dataset": "livec:FIRST", "split": "all"}, train_images_complete=True)
    save_file(load_file(str(ckpt)), str(ckpt), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    body["checkpoint"]["sha256"] = sha256_file(ckpt)
    text = card.with_training(text, body)
    (out / "MODEL_CARD.md").write_text(text)
    write_manifest(out, body)

    amended = amend_training(out)
    t = read_manifest(out)["data"]["training"]
    assert t == read_manifest(out)["checkpoint"]["trained_on"] == amended["data"]["training"]
    assert (t["spec"], t["split"]) == (f"livec:FIRST{THEN}{own['spec']}", f"all{THEN}{own['split']}")
    assert {k: t[k] for k in ("n_images", "checked", "overlap_with_evaluation")} == \
        {k: own[k] for k in ("n_images", "checked", "overlap_with_evaluation")}
    assert amended["amended"][-1]["was"] == {"spec": own["spec"], "split": own["split"]}
    new_text = (out / "MODEL_CARD.md").read_text()
    assert f"- {t['spec']} (split `{t['split']}`, {t['n_images']} photos)" in new_text
    section = slice(text.index("## Training data"), text.index("## Accuracy"))
    assert new_text.replace(new_text[new_text.index("## Training data"):new_text.index("## Accuracy")], "") == \
        text.replace(text[section], "")                           # nothing else in the card moved
    assert amend_training(out) is None                            # nothing left to amend
    assert main(["verify", str(out), "--json"]) == 0 and json.loads(capsys.readouterr().out)["ok"]

    victim = out / "mobile_int8.onnx"                             # a folder that no longer matches is not amended
    victim.write_bytes(victim.read_bytes()[:-1])
    before = (out / MANIFEST).read_text()
    with pytest.raises(ReleaseError, match="mobile_int8.onnx"):
        amend_training(out)
    assert (out / MANIFEST).read_text() == before
