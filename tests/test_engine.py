"""The training engine end to end on the tiny preset: outputs, resume, DDP (2 gloo processes), eval."""

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lmliqa.cli import main
from lmliqa.models.checkpoint import load_checkpoint
from lmliqa.train.config import resolve_config
from lmliqa.train.engine import train

FAST = dict(images_per_step=4, crops_per_image=3, log_every=1, eval_every=0, threads=2)


def run(out, **kw):
    cfg = resolve_config("tiny", data=kw.pop("data", "synthetic"), out=str(out), **{**FAST, **kw})
    return train(cfg)


def test_tiny_run_writes_checkpoints_logs_and_metrics(tmp_path, synthetic_dir):
    s = run(tmp_path, data=f"synthetic:{synthetic_dir}", split="random:0", epochs=1, eval_every=1)
    assert s["n_train"] == 250 and s["n_test"] == 50          # 10 of 12 references train, 2 test
    assert s["steps"] == s["steps_per_epoch"] == 250 // 4
    for name in ("final.safetensors", "best.safetensors", "last.pt", "config.json", "split.json",
                 "train_log.csv", "eval_log.csv", "summary.json"):
        assert (tmp_path / name).is_file(), name
    model, meta = load_checkpoint(tmp_path / "final.safetensors")
    assert meta["extra"]["split"] == "random:0" and meta["config"]["name"] == "tiny"
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert len(rows) == s["steps"] and all(float(r["lml"]) > 0 for r in rows)
    assert int(rows[0]["lml_keys"]) == 4 * 3                   # B x N keys: the whole batch
    ev = list(csv.DictReader(open(tmp_path / "eval_log.csv")))
    assert {r["model"] for r in ev} == {"student", "teacher"}
    for key in ("srcc", "plcc", "krcc", "rmse"):
        assert np.isfinite(s["final"][key])
    split = json.loads((tmp_path / "split.json").read_text())
    assert not set(split["train"]) & set(split["test"])


def test_resume_continues_exactly(tmp_path, synthetic_dir):
    data = f"synthetic:{synthetic_dir}"
    kw = dict(data=data, schedule="deiqt-step", warmup_epochs=0.1, decay_epochs=0.1, checkpoint_every=3,
              split="kfold:5:1")
    straight = run(tmp_path / "a", max_steps=8, **kw)
    run(tmp_path / "b", max_steps=5, **kw)                         # "killed" after 5 steps
    state_steps = __import__("torch").load(tmp_path / "b" / "last.pt", weights_only=True)["step"]
    assert state_steps == 5
    resumed = run(tmp_path / "b", max_steps=8, resume=True, **kw)
    assert resumed["steps"] == 8
    assert resumed["state_sha"] == straight["state_sha"]
    logged = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "b" / "train_log.csv"))]
    assert logged == list(range(1, 9))


def test_resume_refuses_another_split(tmp_path, synthetic_dir):
    run(tmp_path, data=f"synthetic:{synthetic_dir}", max_steps=2, split="kfold:5:0")
    with pytest.raises(RuntimeError, match="another split"):
        run(tmp_path, data=f"synthetic:{synthetic_dir}", max_steps=3, split="kfold:5:1", resume=True)


def test_plain_regression_baseline_has_no_teacher(tmp_path, synthetic_dir):
    s = run(tmp_path, data=f"synthetic:{synthetic_dir}", max_steps=3, lml_weight=0.0)
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert s["steps"] == 3 and all(r["lml"] == "" for r in rows)
    assert float(rows[-1]["loss"]) == pytest.approx(float(rows[-1]["reg"]))


def test_ddp_two_gloo_processes_stay_identical_and_see_the_global_batch(tmp_path, synthetic_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "lmliqa", "train", "--preset", "tiny", "--data", f"synthetic:{synthetic_dir}",
           "--out", str(tmp_path), "--max-steps", "4", "--device", "cpu", "--threads", "1",
           "--set", "images_per_step=3", "--set", "crops_per_image=3", "--set", "log_every=1",
           "--set", "eval_every=0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 4
    assert ranks[0]["state_sha"] == ranks[1]["state_sha"]          # replicas identical after 4 steps
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert {int(r["lml_keys"]) for r in rows} == {2 * 3 * 3}          # 2 ranks x B x N keys per anchor row
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["world_size"] == 2


def test_eval_cli_reports_metrics_and_survives_a_bad_image(tmp_path, capsys):
    from layouts import make_folder

    data = tmp_path / "data"
    make_folder(data, n=8, size=(120, 100))
    rng = np.random.default_rng(0)
    for i in range(8):  # noisier images get lower MOS
        a = np.clip(128 + rng.normal(0, 10 + 10 * i, (100, 120, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(data / "images" / f"{i}.png")
    run(tmp_path / "run", data=f"folder:{data}", max_steps=2, split="all")
    (data / "images" / "3.png").write_bytes(b"broken")
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "final.safetensors"), "--data", f"folder:{data}",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 7 and r["n_failed"] == 1 and list(r["failed"]) == [str(data / "images" / "3.png")]
    for key in ("srcc", "plcc", "krcc", "rmse", "plcc_logistic"):
        assert np.isfinite(r[key])


def test_training_refuses_unreadable_images_up_front(tmp_path):
    from layouts import make_folder

    from lmliqa.data import DatasetError

    make_folder(tmp_path / "data", n=8, size=(120, 100))
    (tmp_path / "data" / "images" / "5.png").write_bytes(b"broken")
    with pytest.raises(DatasetError, match=r"1 training image\(s\) cannot be read.*5\.png"):
        run(tmp_path / "run", data=f"folder:{tmp_path / 'data'}", max_steps=1)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_deploy_teacher_ships_the_ema_weights(tmp_path, synthetic_dir):
    import torch

    s = run(tmp_path, data=f"synthetic:{synthetic_dir}", max_steps=3, deploy="teacher", lml_weight=0.0)
    assert s["deployed"] == "teacher"
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    model, _ = load_checkpoint(tmp_path / "final.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(v, state["teacher"]["net." + k]), k
    assert not torch.equal(model.state_dict()["head.weight"], state["student"]["net.head.weight"])


def test_mobile_preset_learns_real_photos(livec_run, livec_dev, photos, torch_scores):
    """A CI-sized real training run (ImageNet MobileNetV2 + decoder, 3 epochs of the mobile recipe on 160 LIVE-C dev
    photos) ranks 24 photos it never saw by their opinion scores."""
    from scipy import stats

    _, s = livec_run
    assert s["n_train"] == 160 and s["steps"] == 3 * (160 // 8)
    mos = {r["image"]: float(r["mos"]) for r in csv.DictReader(open(livec_dev / "scores.csv"))}
    y = np.array([mos[Path(p).name] for p in photos])
    assert stats.spearmanr(torch_scores, y)[0] > 0.5 and stats.pearsonr(torch_scores, y)[0] > 0.5


def test_eval_uses_the_recorded_test_split_however_the_path_is_spelled(tmp_path, capsys, monkeypatch):
    from layouts import make_folder

    make_folder(tmp_path / "data", n=15, size=(120, 100))
    monkeypatch.chdir(tmp_path)
    run(tmp_path / "run", data="folder:data", max_steps=1, split="kfold:5:2")
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "final.safetensors"),
                 "--data", f"folder:{tmp_path / 'data'}/", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["split"] == "test" and r["n"] == len(split["test"]) == 3


# ------------------------------------------------------------------ killed runs (issue 12)
KILL_ARGS = ["--preset", "tiny", "--max-steps", "8", "--split", "all", "--threads", "2", "--set", "images_per_step=4",
             "--set", "crops_per_image=3", "--set", "log_every=1", "--set", "eval_every=0", "--set",
             "checkpoint_every=2"]


def _train_cli(out, data, *extra, kill=None):
    env = {k: v for k, v in os.environ.items() if k != "LMLIQA_KILL_AT"}
    if kill:
        env["LMLIQA_KILL_AT"] = kill
    return subprocess.run([sys.executable, "-m", "lmliqa", "train", "--data", data, "--out", str(out), *KILL_ARGS,
                           *extra], env=env, capture_output=True, text=True, timeout=600)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.parametrize("kill", ["step:3", "checkpoint_write:2", "checkpoint_replaced:3", "final_write:1"])
def test_sigkill_anywhere_then_resume_gives_the_uninterrupted_weights(kill, tmp_path, synthetic_dir, straight_run):
    """SIGKILL after an optimizer step, half way through writing last.pt, just after replacing it, and while the
    final weights are written: last.pt always loads (weights_only) and --resume ends with the uninterrupted run's
    weights, bitwise (same seed, CPU, one process)."""
    import torch

    from lmliqa.train.engine import load_state

    data = f"synthetic:{synthetic_dir}"
    killed = _train_cli(tmp_path, data, kill=kill)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "final.safetensors").exists()
    state = load_state(tmp_path / "last.pt")                       # never corrupt: the previous or the new state
    assert state["step"] in {"step:3": (2,), "checkpoint_write:2": (2,), "checkpoint_replaced:3": (6,),
                             "final_write:1": (8,)}[kill]
    resumed = _train_cli(tmp_path, data, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not list(tmp_path.glob("last.pt*.tmp"))
    a, b = _weights(straight_run / "final.safetensors"), _weights(tmp_path / "final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "train_log.csv"))]
    assert steps == list(range(1, 9))                              # rows after the checkpoint were not doubled


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, synthetic_dir):
    out = tmp_path_factory.mktemp("straight")
    r = _train_cli(out, f"synthetic:{synthetic_dir}")
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_resume_refuses_other_options_and_foreign_state_files(tmp_path, synthetic_dir, straight_run, capsys):
    import shutil

    shutil.copy(straight_run / "last.pt", tmp_path / "last.pt")
    data = f"synthetic:{synthetic_dir}"
    other = _train_cli(tmp_path, data, "--resume", "--set", "lr=0.005", "--seed", "3")
    assert other.returncode == 2
    assert "other options (lr: 0.001 -> 0.005, seed: 0 -> 3)" in other.stderr and "Traceback" not in other.stderr
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle

    (tmp_path / "last.pt").write_bytes(pickle.dumps({"step": Evil()}))
    evil = _train_cli(tmp_path, data, "--resume")
    assert evil.returncode == 2 and not marker.exists()
    assert "last.pt is not a training state lmliqa wrote; refused without running it" in evil.stderr


def test_ranking_losses_are_logged_and_a_deploy_only_teacher_runs_no_forward(tmp_path, synthetic_dir, monkeypatch):
    """The mobile recipe's loss: SmoothL1 + PLCC + ranking, each logged; with LML off the EMA teacher is only
    deployed, so it must never be called during training."""
    from lmliqa.train.lml import EMATeacher

    def no_call(*a, **k):
        raise AssertionError("the teacher ran a forward pass it does not need")

    monkeypatch.setattr(EMATeacher, "__call__", no_call)
    monkeypatch.setattr(EMATeacher, "salient", no_call)
    s = run(tmp_path, data=f"synthetic:{synthetic_dir}", max_steps=3, deploy="teacher", lml_weight=0.0,
            plcc_weight=1.0, rank_weight=0.5)
    assert s["deployed"] == "teacher"
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    for r in rows:
        reg, plcc, rank = float(r["reg"]), float(r["plcc"]), float(r["rank"])
        assert 0 <= plcc <= 1 and 0 <= rank <= 1 and r["lml"] == ""
        assert float(r["loss"]) == pytest.approx(reg + plcc + 0.5 * rank, rel=1e-4)


def test_batches_of_several_data_sets_hold_one_data_set_each():
    """Each global batch draws from one data set; a data set's weight sets how many of its photos an epoch visits;
    the order is seeded by (seed, epoch), so a resumed epoch sees the same batches; ranks split each batch."""
    from types import SimpleNamespace

    from lmliqa.train.engine import Dist, SourceBatches

    ds = SimpleNamespace(parts=[{}, {}], source_of=lambda i: 0 if i < 100 else 1)
    train_idx = list(range(0, 100)) + list(range(100, 130))
    cfg = resolve_config("tiny", images_per_step=4, data_weights=[0.5, 2.0], seed=3)
    one = Dist("cpu")
    s = SourceBatches.of(cfg, ds, train_idx, one)
    assert s.counts == {0: 48, 1: 60} and s.steps_per_epoch == (48 + 60) // 4
    batches = s.epoch(0)
    assert all(len({train_idx[p] >= 100 for p in b}) == 1 for b in batches)      # one data set per batch
    assert sum(1 for b in batches if train_idx[b[0]] >= 100) == 15
    assert batches == s.epoch(0) and batches != s.epoch(1)
    drawn = [p for b in batches for p in b if train_idx[p] < 100]
    assert len(set(drawn)) == 48                        # weight 0.5: 48 different photos of the 100, none twice
    two = [SourceBatches.of(cfg, ds, train_idx, SimpleNamespace(world=2, rank=r)) for r in (0, 1)]
    a, b = two[0].epoch(0), two[1].epoch(0)
    assert len(a) == len(b) == two[0].steps_per_epoch and all(len(x) == 4 for x in a)
    assert all({train_idx[p] >= 100 for p in x + y} in ({True}, {False}) for x, y in zip(a, b))
    with pytest.raises(Exception, match="one non-negative weight per data set"):
        SourceBatches.of(resolve_config("tiny", data_weights=[1.0]), ds, train_idx, one)


def test_training_on_two_data_sets_evaluates_each_on_its_own(tmp_path, synthetic_dir):
    """--data A --data B with one split each: the run trains on both (its batches per data set), evaluates each
    part's test photos on its own (the headline SRCC is their mean), and records the parts in its checkpoint."""
    from layouts import make_folder

    make_folder(tmp_path / "f", n=12)
    out = tmp_path / "run"
    rc = main(["train", "--preset", "tiny", "--data", f"synthetic:{synthetic_dir}",
               "--data", f"folder:{tmp_path / 'f'}",
               "--split", "random:0,kfold:2:0", "--data-weights", "0.2,1", "--epochs", "1", "--out", str(out),
               "--set", "images_per_step=4", "--set", "crops_per_image=3", "--set", "eval_every=0",
               "--threads", "2"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["n_train"] == 250 + 6 and s["n_test"] == 50 + 6
    assert s["steps_per_epoch"] == (48 + 4) // 4
    parts = s["final"]["parts"]
    assert set(parts) == {"synthetic", "folder"} and parts["synthetic"]["n"] == 50 and parts["folder"]["n"] == 6
    assert s["final"]["srcc"] == pytest.approx((parts["synthetic"]["srcc"] + parts["folder"]["srcc"]) / 2)
    _, meta = load_checkpoint(out / "final.safetensors")
    assert meta["extra"]["dataset"] == f"synthetic:{synthetic_dir},folder:{tmp_path / 'f'}"
    assert [p["name"] for p in meta["extra"]["parts"]] == ["synthetic", "folder"]
    assert meta["extra"]["train_config"]["data_weights"] == [0.2, 1.0]


def test_cross_dataset_table_never_credits_a_model_with_its_training_photos(tmp_path, synthetic_dir, capsys):
    """lmliqa eval --cross: each checkpoint on each data set's evaluation photos (BIQ2021: its official test split;
    others: all photos) minus the checkpoint's own training photos by content hash; a data set it was trained on
    entirely is marked, not scored."""
    from layouts import make_biq2021, make_folder

    make_folder(tmp_path / "f", n=12)
    make_biq2021(tmp_path / "b", size=(64, 64))
    run(tmp_path / "syn", data=f"synthetic:{synthetic_dir}", split="random:0", max_steps=2)
    run(tmp_path / "fold", data=f"folder:{tmp_path / 'f'}", split="all", max_steps=2)
    out = tmp_path / "cross.json"
    specs = [f"synthetic:{synthetic_dir}", f"folder:{tmp_path / 'f'}", f"biq2021:{tmp_path / 'b'}"]
    rc = main(["eval", "--cross", "--checkpoint", str(tmp_path / "syn" / "final.safetensors"),
               str(tmp_path / "fold" / "final.safetensors"), *sum((["--data", s] for s in specs), []),
               "--bootstrap", "200", "--out", str(out)])
    assert rc == 0
    table = json.loads(out.read_text())
    syn, fold = table["rows"]
    assert [c["evaluates"] for c in table["columns"]] == ["all photos", "all photos", "official test split"]
    cell = syn["cells"][specs[0]]
    assert cell["n"] == 50 and cell["n_excluded_training"] == 250 and np.isfinite(cell["srcc"])
    assert cell["ci95"]["srcc"]["low"] <= cell["srcc"] <= cell["ci95"]["srcc"]["high"]
    assert syn["cells"][specs[2]]["n"] == 4 and syn["cells"][specs[1]]["n"] == 12
    assert fold["cells"][specs[1]]["status"].startswith("trained on it") and fold["cells"][specs[0]]["n"] == 300
    md = out.with_suffix(".md").read_text()
    assert "trained on it" in md and "official test split" in md and "provenance" in table
    # the card merges tables over the same data sets: every row keeps the run that measured it
    from lmliqa.card import cross_dataset
    from lmliqa.errors import DatasetError

    later = {**table, "rows": [{**fold, "name": "again"}], "provenance": {"command": "lmliqa eval B", "commit": "b"}}
    merged = cross_dataset([table, later])
    assert [r["name"] for r in merged["rows"]] == [syn["name"], fold["name"], "again"]
    assert merged["rows"][2]["provenance"] == {"command": "lmliqa eval B", "commit": "b"}
    assert merged["rows"][0]["provenance"]["command"] == table["provenance"]["command"]
    assert merged["command"] == f"{table['provenance']['command']}; lmliqa eval B" and "biq2021" in merged["published"]
    with pytest.raises(DatasetError, match="different data sets"):
        cross_dataset([table, {**later, "columns": table["columns"][:2]}])


def test_init_from_starts_from_a_trained_checkpoint_of_the_same_network(tmp_path, synthetic_dir):
    """init_from loads every weight of a trained checkpoint (the decoder included); with a zero learning rate the
    run ends where it started. A checkpoint of another backbone is refused by name."""
    import torch

    from lmliqa.errors import CheckpointError

    data = f"synthetic:{synthetic_dir}"
    run(tmp_path / "a", data=data, split="random:0", max_steps=2)
    first = tmp_path / "a" / "final.safetensors"
    run(tmp_path / "b", data=data, split="random:1", max_steps=1, init_from=str(first), lr=0.0, warmup_lr=0.0,
        min_lr=0.0, lml_weight=0.0)
    a, _ = load_checkpoint(first)
    b, meta = load_checkpoint(tmp_path / "b" / "final.safetensors")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith("score_")), "weights moved at lr 0"
    assert meta["extra"]["train_config"]["init_from"] == str(first)
    from lmliqa.data import training_photos

    _, before = training_photos(load_checkpoint(first)[1])
    spec, both = training_photos(meta)                  # a model started from another learned from its photos too
    assert both > before and len(both) > 250 and spec == f"{data}, then {data}"
    assert meta["extra"]["init_from"]["split"] == "random:0"
    with pytest.raises(CheckpointError, match="a .* network; this run trains mobilenetv2_100"):
        train(resolve_config("mobile", data=data, out=str(tmp_path / "c"), init_from=str(first), max_steps=1,
                             threads=2))


def test_the_graph_qat_recipe_refuses_the_training_engines_options(tmp_path, capsys):
    """`lmliqa train --qat-from` (graph recipe: quantize/_qat.py fine_tune_checkpoint) names the options it would
    otherwise ignore (epochs and splits are the engine's; --resume continues OUT/qat_state.pt), before any work."""
    base = ["train", "--qat-from", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "q")]
    assert main(base) == 2
    assert "--data (the photos it fine-tunes on) and --out are required" in capsys.readouterr().err
    assert main(base + ["--data", "folder:x", "--split", "all", "--epochs", "2"]) == 2
    assert "--epochs, --split: the training engine's options" in capsys.readouterr().err
    assert main(base + ["--data", "folder:x", "--set", "lml_weight=0"]) == 2
    assert "--set lml_weight: the graph QAT recipe takes lr, seed, float_weight" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("deploy", ["student", "teacher"])
def test_qat_fine_tunes_fake_quantized_and_saves_the_float_network(tmp_path, synthetic_dir, deploy):
    """--qat-from --qat-recipe eager: every conv and linear trains fake-quantized (int8 weights, uint8 inputs); the
    checkpoint is the plain float network (it loads as any other), which differs from the start; the run records how
    it was made.
    deploy=teacher (the mobile recipe's): the EMA copy follows the observers' buffers, which size themselves on the
    first step (per-channel weight ranges: [1] -> [out channels])."""
    import torch

    from lmliqa.train.qat import FakeQuantized, prepare, unwrapped

    data = f"synthetic:{synthetic_dir}"
    run(tmp_path / "a", data=data, split="random:0", max_steps=2, lml_weight=0.0)
    start = tmp_path / "a" / "final.safetensors"
    args = ["train", "--preset", "tiny", "--qat-from", str(start), "--qat-recipe", "eager", "--data", data,
            "--split", "random:0",
            "--out", str(tmp_path / "q"), "--threads", "2", "--set", "lml_weight=0", "--set", "images_per_step=4",
            "--set", "crops_per_image=3", "--set", "eval_every=0", "--set", f"deploy={deploy}",
            "--set", "checkpoint_every=1"]
    assert main(args + ["--max-steps", "2"]) == 0
    assert main(args + ["--max-steps", "3", "--resume"]) == 0      # the observers' sized buffers load back
    assert torch.load(tmp_path / "q" / "last.pt", map_location="cpu", weights_only=False)["step"] == 3
    qat, meta = load_checkpoint(tmp_path / "q" / "final.safetensors")
    cfg = meta["extra"]["train_config"]
    assert cfg["deploy"] == deploy
    assert cfg["qat"] and cfg["init_from"] == str(start) and cfg["epochs"] == 2 and cfg["warmup_epochs"] == 0
    base, base_meta = load_checkpoint(start)
    assert cfg["lr"] == pytest.approx(base_meta["extra"]["train_config"]["lr"] / 10)
    assert not any(isinstance(m, FakeQuantized) for m in qat.modules())
    assert any(not torch.equal(a, b) for a, b in zip(base.state_dict().values(), qat.state_dict().values()))
    n = prepare(base)                       # every nn.Conv2d / nn.Linear called as a module is wrapped
    assert n == sum(type(m) in (torch.nn.Conv2d, torch.nn.Linear) for m in unwrapped(base).modules()) > 3
    x = torch.rand(2, 3, 96, 96) * 255
    base.eval()
    assert torch.allclose(base(x), base(x)) and not torch.equal(base(x), unwrapped(base)(x))   # it quantizes


def test_resume_treats_an_option_added_since_the_run_started_as_its_default(tmp_path):
    """A run saved before lmliqa gained an option (here: qat) resumes when that option keeps its default, and is
    refused when it does not: the saved run trained with the default."""
    from lmliqa.train.config import ResumeError, TrainConfig
    from lmliqa.train.engine import check_resumable

    cfg = TrainConfig(data="synthetic:x")
    saved = {k: v for k, v in cfg.to_dict().items() if k != "qat"}
    state = {"config": saved, "split": {"train": [0, 1]}}
    check_resumable(state, cfg, {"train": [0, 1]}, tmp_path / "last.pt")
    changed = dataclasses.replace(cfg, qat=True)
    with pytest.raises(ResumeError, match=r"other options \(qat: False -> True\)"):
        check_resumable(state, changed, {"train": [0, 1]}, tmp_path / "last.pt")
