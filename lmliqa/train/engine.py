"""The training engine: LML-IQA (or plain regression) with AMP, DDP via torchrun, resumable checkpoints.

One :class:`Trainer` is one run (``train(cfg)`` makes one and fits it); under ``torchrun`` every process makes one.
The output folder gets
``final.safetensors`` and ``best.safetensors`` (loadable by lmliqa.models.checkpoint), ``last.pt`` (the
resumable training state), ``train_log.csv``, ``eval_log.csv``, ``summary.json``, ``config.json`` and
TensorBoard events under ``tb/``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from .. import presets
from ..contract import ScoreScale
from ..data import open_dataset, resolve_split
from ..errors import ConfigError, first_line
from ..models.checkpoint import save_checkpoint
from ..models.network import ConvTokens, build_model
from .config import RESUME_MAY_CHANGE, ResumeError, TrainConfig
from .evaluate import predict
from .lml import EMATeacher, LMLModel
from .loader import TrainCrops
from .losses import fidelity_rank_loss, local_manifold_loss, plcc_loss, regression_loss

STATE_FILE = "last.pt"


# ------------------------------------------------------------------------------------------- setup
class Dist:
    """Process-group facts; a single process is world 1, rank 0."""

    def __init__(self, device_kind: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def pick_device(cfg: TrainConfig, d: Dist) -> torch.device:
    kind = cfg.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda asked for, but no CUDA device is visible")
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Does this CPU compute bf16 in hardware (AVX512-BF16, AMX-BF16, or an ARM core with BF16)? Without it torch
    emulates bf16: measured on an AVX2-only AMD EPYC, MobileNetV2 training ran 8x slower under bf16 autocast than in
    fp32 (1.2 against 10.8 crops/s)."""
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16")) or torch.ops.mkldnn._is_mkldnn_bf16_supported()


def amp_context(cfg: TrainConfig, device: torch.device):
    """(autocast context factory, grad scaler or None, mode name). auto: bf16 on CUDA devices that have it (else
    fp16) and on CPUs with native bf16; fp32 on other CPUs, where bf16 would be emulated and slower than fp32."""
    mode = cfg.amp
    if mode == "auto":
        if device.type == "cpu":
            mode = "bf16" if cpu_has_native_bf16() else "off"
        else:
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "off":
        return contextlib.nullcontext, None, "fp32"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    if device.type == "cpu" and dtype is torch.float16:
        raise ConfigError("fp16 autocast is for CUDA; use --amp bf16 on CPU")
    if device.type == "cpu" and not cpu_has_native_bf16():
        print("lmliqa: warning: --amp bf16 on a CPU without native bf16: torch emulates it, several times slower "
              "than fp32 (--amp auto picks fp32 here)", file=sys.stderr)
    scaler = torch.amp.GradScaler("cuda") if dtype is torch.float16 else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler, mode


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """DEIQT's groups: no weight decay for 1-D params, biases, pos_embed, cls_token; the backbone's lr
    optionally scaled."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(".bias") or name.endswith(("pos_embed", "cls_token"))
        backbone = name.startswith(("net.encoder.vit.", "net.encoder.cnn."))
        groups.setdefault((no_decay, backbone), []).append(p)
    return [{"params": ps, "weight_decay": 0.0 if nd else cfg.weight_decay,
             "lr_scale": cfg.backbone_lr_scale if bb else 1.0} for (nd, bb), ps in groups.items()]


def make_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int, total_steps: int):
    """Per-iteration timm schedulers. deiqt-step reproduces DEIQT's quirk (timm >= 1.0 defaults to
    warmup_prefix=True, which would remove it): t counts from 0 including the
    warm-up, so the lr drops from ~lr to lr/10 the moment warm-up (3 epochs) ends."""
    from timm.scheduler import CosineLRScheduler, StepLRScheduler

    warm = max(0, round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "deiqt-step":
        return StepLRScheduler(optimizer, decay_t=max(1, round(cfg.decay_epochs * steps_per_epoch)),
                               decay_rate=0.1, warmup_lr_init=cfg.warmup_lr, warmup_t=warm, warmup_prefix=False,
                               t_in_epochs=False)
    if cfg.schedule == "cosine":
        return CosineLRScheduler(optimizer, t_initial=max(1, total_steps - warm), lr_min=cfg.min_lr,
                                 warmup_lr_init=cfg.warmup_lr, warmup_t=warm, warmup_prefix=True,
                                 t_in_epochs=False)
    raise ConfigError(f"schedule {cfg.schedule!r}: use deiqt-step or cosine")


def apply_freeze(model: LMLModel, prefixes: list[str]) -> int:
    """Freeze parameters whose name starts with a prefix (relative to the network, e.g.
    'encoder.cnn.blocks.0'); their BatchNorm layers stay in eval mode. Returns the frozen count."""
    frozen = 0
    for name, p in model.net.named_parameters():
        if any(name.startswith(pre) for pre in prefixes):
            p.requires_grad_(False)
            frozen += p.numel()
    if prefixes and not frozen:
        raise ConfigError(f"freeze prefixes {prefixes} match no parameter of the network")
    return frozen


def set_train_mode(model: LMLModel, prefixes: list[str]) -> None:
    model.train()
    for name, m in model.net.named_modules():
        frozen = prefixes and any(name.startswith(pre) for pre in prefixes)
        if frozen and isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


# -------------------------------------------------------------------------------------- checkpoints
def failpoint(name: str) -> None:
    """Fault injection for tests/test_engine.py: LMLIQA_KILL_AT="NAME:K" SIGKILLs this process the K-th time it
    reaches NAME (step, checkpoint_write, checkpoint_replaced, final_write). Unset, this does nothing."""
    spec = os.environ.get("LMLIQA_KILL_AT")
    if not spec or spec.rpartition(":")[0] != name:
        return
    _FAILPOINT_HITS[name] = _FAILPOINT_HITS.get(name, 0) + 1
    if _FAILPOINT_HITS[name] == int(spec.rpartition(":")[2]):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


_FAILPOINT_HITS: dict[str, int] = {}


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write OBJ so that PATH is always either the previous state or the new one, whole: serialise, write a temp
    file in the same folder, fsync it, rename it over PATH, fsync the folder."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getbuffer()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            failpoint("checkpoint_write")          # a kill here leaves a half-written temp file, PATH intact
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        failpoint("checkpoint_replaced")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):       # not every filesystem lets a folder be opened for fsync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_state(path: Path) -> dict[str, Any]:
    """The resumable state at PATH, read with weights_only=True (tensors and plain values only: a state file
    cannot run code), or a clear error saying why it cannot be resumed from."""
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise ResumeError(f"{path} is not a training state lmliqa wrote; refused without running it "
                          f"({first_line(exc)})") from None
    if not isinstance(state, dict) or not {"step", "student", "optimizer", "config", "split"} <= set(state):
        raise ResumeError(f"{path} is not a training state lmliqa wrote (keys {sorted(state)[:8]})"
                          if isinstance(state, dict) else f"{path} is not a training state lmliqa wrote")
    return state


def check_resumable(state: dict[str, Any], cfg: TrainConfig, split: dict[str, list[int]], path: Path) -> None:
    """Refuse to resume STATE under another configuration or data split (RESUME_MAY_CHANGE lists what may)."""
    if state["split"] != split:
        raise ResumeError(f"{path}: the saved run used another split; resume with the same --split and data")
    new = cfg.to_dict()
    # An option the saved state lacks was added to lmliqa after that run started: the run trained with its default.
    defaults = {name: f.default for name, f in TrainConfig.fields().items() if f.default is not dataclasses.MISSING}
    old = {**defaults, **state["config"]}
    changed = sorted(k for k in set(old) | set(new) if k not in RESUME_MAY_CHANGE and old.get(k) != new.get(k))
    if changed:
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ResumeError(f"{path} was saved by a run with other options ({diff}); resuming would mix two trainings. "
                          "Resume with the same options, or train into a new --out")


class CsvLog:
    """A CSV log flushed row by row. Resumed at step S, it keeps the rows up to S and drops those a killed run
    wrote after its last checkpoint (they are written again), so the log reads as one uninterrupted run."""

    def __init__(self, path: Path, columns: list[str], resume: bool, step: int = 0) -> None:
        self.columns = columns
        new = not (resume and path.is_file())
        if not new:
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= step]
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
        self.f = open(path, "w" if new else "a", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=columns, extrasaction="ignore")
        if new:
            self.w.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self.w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.f.flush()

    def close(self) -> None:
        self.f.close()


# ------------------------------------------------------------------------------------------- the trainer
@dataclass
class Schedule:
    """How many optimizer steps a run has, from the training images, the batch and the process count."""

    images_per_step: int
    crops_per_image: int
    steps_per_epoch: int
    total_steps: int

    @classmethod
    def of(cls, cfg: TrainConfig, n_train: int, world: int, steps_per_epoch: int | None = None) -> Schedule:
        B, N = cfg.images_per_step, cfg.crops_per_image
        if N < 3 and cfg.lml_weight > 0:
            raise ConfigError("LML needs >= 3 crops per image (a positive and intra-image negatives)")
        if steps_per_epoch is None:
            steps_per_epoch = n_train * cfg.repeats // (B * world)
        if steps_per_epoch < 1:
            raise ConfigError(f"{n_train} training images x {cfg.repeats} repeats is less than one global batch "
                              f"({B} x {world} processes)")
        total = math.ceil(cfg.epochs * steps_per_epoch)
        return cls(B, N, steps_per_epoch, min(total, cfg.max_steps) if cfg.max_steps else total)


@dataclass
class SourceBatches:
    """An epoch's batches when the training photos come from several data sets: each global batch (B images per
    process) holds photos of one data set only, so the PLCC and ranking losses never compare photos rated in
    different studies. Data set d contributes round(weight_d x repeats x n_d) photos per epoch (a seeded draw:
    its photos shuffled, tiled when the weight is above 1), cut into whole global batches; the batches of all data
    sets are then shuffled together. Seeded by (seed, epoch): the same on every process and after a resume."""

    positions: dict[int, list[int]]       # data set -> positions in the training list
    counts: dict[int, int]                # data set -> photos per epoch (whole global batches)
    batch: int                            # images per process per step
    world: int
    rank: int
    seed: int

    @classmethod
    def of(cls, cfg: TrainConfig, ds, train_idx: list[int], d: Dist) -> SourceBatches | None:
        """None for one data set (the plain shuffled order)."""
        if not ds.parts:
            if cfg.data_weights:
                raise ConfigError("data_weights needs several data sets (data 'A,B')")
            return None
        weights = list(cfg.data_weights) or [1.0] * len(ds.parts)
        if len(weights) != len(ds.parts) or any(w < 0 for w in weights):
            raise ConfigError(f"data_weights {weights}: one non-negative weight per data set ({len(ds.parts)})")
        positions: dict[int, list[int]] = {}
        for pos, i in enumerate(train_idx):
            positions.setdefault(ds.source_of(i), []).append(pos)
        G = cfg.images_per_step * d.world
        counts = {j: int(round(weights[j] * cfg.repeats * len(p))) // G * G for j, p in positions.items()}
        if not sum(counts.values()):
            raise ConfigError(f"no data set fills one global batch ({G} images) with weights {weights}")
        return cls(positions, counts, cfg.images_per_step, d.world, d.rank, cfg.seed)

    @property
    def steps_per_epoch(self) -> int:
        return sum(self.counts.values()) // (self.batch * self.world)

    def epoch(self, epoch: int) -> list[list[int]]:
        """This process's batches of EPOCH, in order."""
        rng = np.random.default_rng([self.seed, 7919, epoch])
        G = self.batch * self.world
        batches = []
        for j in sorted(self.positions):
            pos, n = np.array(self.positions[j]), self.counts[j]
            tiles = -(-n // len(pos))
            drawn = np.concatenate([rng.permutation(pos) for _ in range(tiles)])[:n]
            batches += [drawn[k:k + G] for k in range(0, n, G)]
        order = rng.permutation(len(batches))
        return [batches[k][self.rank::self.world].tolist() for k in order]


class RunLogs:
    """The main process's logs: train_log.csv, eval_log.csv, TensorBoard events and the progress bar (every
    method is a no-op on the other processes)."""

    TRAIN = ["step", "epoch", "lr", "loss", "reg", "plcc", "rank", "lml", "distill", "lml_keys", "crops_per_s",
             "elapsed_s"]
    EVAL = ["step", "epoch", "model", "n", "srcc", "plcc", "plcc_logistic", "krcc", "rmse"]

    def __init__(self, out: Path, main: bool, resume: bool, step: int, total: int) -> None:
        self.main = main
        self.train = CsvLog(out / "train_log.csv", self.TRAIN, resume, step) if main else None
        self.eval = CsvLog(out / "eval_log.csv", self.EVAL, resume, step) if main else None
        self.tb = _tensorboard(out) if main else None
        self.progress = _progress(total, step, main)

    def step(self, row: dict[str, Any]) -> None:
        self.train.write(row)
        self.progress.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2e}", crops_s=f"{row['crops_per_s']:.1f}")
        if self.tb:
            for key in ("loss", "reg", "lml", "distill", "lr", "crops_per_s"):
                if key in row:
                    self.tb.add_scalar(f"train/{key}", row[key], row["step"])

    def evaluation(self, row: dict[str, Any]) -> None:
        self.eval.write(row)
        if self.tb:
            self.tb.add_scalar(f"eval/{row['model']}_srcc", row["srcc"], row["step"])
            self.tb.add_scalar(f"eval/{row['model']}_plcc", row["plcc"], row["step"])
        print(f"  eval epoch {row['epoch']:.2f} {row['model']:<7} SRCC {row['srcc']:.4f} PLCC {row['plcc']:.4f} "
              f"(n={row['n']})", file=sys.stderr)

    def close(self) -> None:
        self.progress.close()
        if self.main:
            self.train.close()
            self.eval.close()
            if self.tb:
                self.tb.close()


class Trainer:
    """One training run; under torchrun every process makes one. ``fit()`` runs it:

    - ``__init__`` (setup): process group, device, data and split, the network, teacher, optimizer, schedule;
    - ``resume()``: continue OUT/last.pt when asked (refusing a state saved with other options or split);
    - ``train_step(batch)``: one optimizer step; ``evaluate(epoch)``: the test split, best.safetensors;
    - ``save_state()``: the resumable state, atomically; ``finish()``: final.safetensors and summary.json.

    Subclasses change one part (e.g. the losses: ``compute_losses``) without copying the loop."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.d = Dist("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
                      else "cpu")
        self.device = pick_device(cfg, self.d)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out)
        if self.d.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.d.barrier()
        torch.manual_seed(cfg.seed + self.d.rank)
        random.seed(cfg.seed + self.d.rank)
        self.ds = open_dataset(cfg.data, seed=cfg.seed)
        self.train_idx, self.test_idx = resolve_split(cfg.split, self.ds, seed=cfg.split_seed)
        _preflight(self.ds, self.train_idx)
        self._build_models()
        self.sampler = SourceBatches.of(cfg, self.ds, self.train_idx, self.d)
        self.schedule = Schedule.of(cfg, len(self.train_idx), self.d.world,
                                    self.sampler.steps_per_epoch if self.sampler else None)
        self.optimizer = torch.optim.AdamW(param_groups(self.student, cfg), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
        self.scheduler = make_scheduler(self.optimizer, cfg, self.schedule.steps_per_epoch, self.schedule.total_steps)
        self.autocast, self.scaler, self.amp_mode = amp_context(cfg, self.device)
        self.data = TrainCrops(self.ds, self.train_idx, self.mcfg.contract, cfg.crops_per_image,
                               cfg.whole_size or self.mcfg.contract.crop_size, cfg.seed, cfg.cache_images)
        self.step, self.best = 0, {"srcc": -2.0}
        self.state_path = self.out / STATE_FILE

    def _build_models(self) -> None:
        cfg, ds = self.cfg, self.ds
        preset = presets.get(cfg.preset).config
        lo, hi = ds.label.training_range
        self.mcfg = preset.replace(contract=preset.contract.replace(**ds.contract_hints),
                                   score=ScoreScale(lo, hi, ds.label.higher_is_better, ds.label.name))
        net = build_model(self.mcfg, pretrained="none" if cfg.init_from else cfg.pretrained)
        if cfg.init_from:
            self.init_record = _init_from(net, cfg.init_from)
        if cfg.label_norm:
            y_train = ds.label.to_training(np.array([ds.records[i].mos for i in self.train_idx]))
            net.score_shift.fill_(float(y_train.mean()))
            net.score_scale.fill_(float(y_train.std()) or 1.0)
        if cfg.qat:
            from .qat import prepare

            self.n_fake_quantized = prepare(net)
        self.student = LMLModel(net, cfg.proj_hidden, cfg.proj_dim, cfg.feature)
        self.frozen = apply_freeze(self.student, cfg.freeze)
        self.channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto"
                                                           and isinstance(net.encoder, ConvTokens))
        self.student.to(self.device)
        if self.channels_last:
            self.student.to(memory_format=torch.channels_last)
        use_teacher = cfg.lml_weight > 0 or cfg.distill_weight > 0 or cfg.deploy == "teacher"
        self.teacher = EMATeacher(self.student, cfg.ema_momentum) if use_teacher else None
        self.ddp_student = (nn.parallel.DistributedDataParallel(
            self.student, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=cfg.lml_weight == 0) if self.d.enabled else self.student)
        self.deploy_name = "teacher" if cfg.deploy == "teacher" and self.teacher is not None else "student"

    # ------------------------------------------------------------------ resume and save
    def resume(self) -> None:
        if self.d.main:
            for stale in self.out.glob(f"{STATE_FILE}*.tmp"):    # a temp file left by a process killed mid-write
                stale.unlink()
        if not self.cfg.resume:
            return
        if not self.state_path.is_file():
            if self.d.main:
                print(f"--resume: no {self.state_path} yet; starting fresh", file=sys.stderr)
            return
        state = load_state(self.state_path)
        check_resumable(state, self.cfg, {"train": self.train_idx, "test": self.test_idx}, self.state_path)
        self.student.load_state_dict(state["student"])
        if self.teacher is not None:
            self.teacher.module.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng_torch"]
        torch.set_rng_state(rng[self.d.rank] if self.d.rank < len(rng) else rng[0])
        self.step, self.best = int(state["step"]), state["best"]
        if self.d.main:
            print(f"resumed {self.state_path} at step {self.step}/{self.schedule.total_steps}", file=sys.stderr)

    def save_state(self) -> None:
        if not self.d.main:
            return
        atomic_torch_save({
            "step": self.step, "best": self.best, "split": {"train": self.train_idx, "test": self.test_idx},
            "student": self.student.state_dict(), "teacher": self.teacher.module.state_dict() if self.teacher else {},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng_torch": [torch.get_rng_state()], "config": self.cfg.to_dict(),
        }, self.state_path)

    def write_run_files(self) -> None:
        if not self.d.main:
            return
        (self.out / "config.json").write_text(json.dumps({
            "train": self.cfg.to_dict(), "model": self.mcfg.to_dict(), "dataset": self.ds.spec,
            "n_train": len(self.train_idx), "n_test": len(self.test_idx), "world_size": self.d.world,
            "amp": self.amp_mode, "channels_last": self.channels_last, "frozen_params": self.frozen}, indent=2))
        (self.out / "split.json").write_text(json.dumps({"split": self.cfg.split, "seed": self.cfg.split_seed,
                                                          "train": self.train_idx, "test": self.test_idx}))

    # ------------------------------------------------------------------ the loop
    def deployed(self) -> nn.Module:
        return self.teacher.module.net if self.deploy_name == "teacher" else self.student.net

    def fit(self) -> dict[str, Any]:
        self.resume()
        self.write_run_files()
        self.logs = RunLogs(self.out, self.d.main, self.cfg.resume, self.step, self.schedule.total_steps)
        self._t_start = time.perf_counter()
        self._crops_done, self._last_log = 0, self._t_start
        while self.step < self.schedule.total_steps:
            self.train_epoch()
        self.logs.progress.close()
        wall = time.perf_counter() - self._t_start
        sched, cfg = self.schedule, self.cfg
        if self.test_idx and cfg.eval_every and self.step % (sched.steps_per_epoch * cfg.eval_every) != 0:
            self.evaluate(self.step / sched.steps_per_epoch)  # the last, partial epoch
        return self.finish(wall)

    def train_epoch(self) -> None:
        """The rest of the current epoch (all of it, unless the run resumed in the middle of it or stops early)."""
        sched, cfg = self.schedule, self.cfg
        epoch, in_epoch = divmod(self.step, sched.steps_per_epoch)
        self.data.set_epoch(epoch)
        if self.sampler is not None:
            batches = self.sampler.epoch(epoch)[in_epoch:]
        else:
            order = _epoch_order(len(self.train_idx), cfg.repeats, cfg.seed, epoch, self.d)
            B = sched.images_per_step
            batches = [order[i * B:(i + 1) * B] for i in range(in_epoch, sched.steps_per_epoch)]
        loader = DataLoader(self.data, batch_sampler=batches, num_workers=cfg.workers,
                            pin_memory=self.device.type == "cuda", persistent_workers=False)
        set_train_mode(self.student, cfg.freeze)
        for batch in loader:
            loss, stats, n_crops = self.train_step(batch)
            self._after_step(loss, stats, n_crops)
            end_of_epoch = self.step % sched.steps_per_epoch == 0
            if self.step % cfg.checkpoint_every == 0 or end_of_epoch or self.step == sched.total_steps:
                self.save_state()
            if end_of_epoch and cfg.eval_every and (self.step // sched.steps_per_epoch) % cfg.eval_every == 0:
                self.evaluate(self.step / sched.steps_per_epoch)
            if self.step >= sched.total_steps or end_of_epoch:
                break

    def train_step(self, batch) -> tuple[torch.Tensor, dict[str, float], int]:
        """One optimizer step on one batch; returns (loss, its parts, crops in the step on this process)."""
        crops, whole, boxes, y = (t.to(self.device, non_blocking=True) for t in batch)
        x = crops.flatten(0, 1)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            loss, stats = compute_losses(self.cfg, self.student, self.ddp_student, self.teacher, x, whole, boxes, y,
                                         self.d)
        optimizer_step(loss, self.optimizer, self.scaler, self.student, self.cfg.clip_grad)
        self.step += 1
        failpoint("step")
        self.scheduler.step_update(self.step)
        if self.teacher is not None:
            self.teacher.update(self.student)
        return loss, stats, x.shape[0]

    def _after_step(self, loss: torch.Tensor, stats: dict[str, float], n_crops: int) -> None:
        self._crops_done += n_crops * self.d.world
        if not self.d.main:
            return
        self.logs.progress.update(1)
        if self.step % self.cfg.log_every and self.step != self.schedule.total_steps:
            return
        now = time.perf_counter()
        self.logs.step({"step": self.step, "epoch": round(self.step / self.schedule.steps_per_epoch, 3),
                        "lr": self.optimizer.param_groups[0]["lr"], "loss": loss.item(),
                        "crops_per_s": self._crops_done / max(now - self._last_log, 1e-9),
                        "elapsed_s": round(now - self._t_start, 1), **stats})
        self._crops_done, self._last_log = 0, now

    def evaluate(self, epoch: float) -> None:
        """Score the test split with the student (and the teacher when asked or deployed); keep the best."""
        if not self.test_idx or not self.d.main:
            return
        rows = {"student": self.student.net}
        if self.teacher is not None and (self.cfg.eval_teacher or self.deploy_name == "teacher"):
            rows["teacher"] = self.teacher.module.net
        for who, model in rows.items():
            m = predict(model, self.ds, self.test_idx, device=str(self.device)).metrics(self.ds)
            self.logs.evaluation({"step": self.step, "epoch": round(epoch, 3), "model": who, **m})
            if who == self.deploy_name and m["srcc"] > self.best["srcc"]:
                self.best = {**m, "step": self.step, "epoch": epoch, "model": who}
                save_checkpoint(self.out / "best.safetensors", _float(model), extra=self._extra("best", self.best))
        self.student.train()

    # ------------------------------------------------------------------ the end
    def finish(self, wall: float) -> dict[str, Any]:
        """final.safetensors (and best.safetensors when nothing better was kept), summary.json; every rank's digest
        under DDP."""
        summary = self._summary(wall)
        if self.d.main:
            failpoint("final_write")
            save_checkpoint(self.out / "final.safetensors", _float(self.deployed()), extra=self._extra("final", None))
            summary.update(self._final_evaluation())
        summary["state_sha"] = _state_digest(self.student)
        if self.d.main:
            summary["amp"] = self.amp_mode
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
            self.logs.close()
        if self.d.enabled:  # every rank records its replica's digest, so replica agreement can be checked
            (self.out / f"rank{self.d.rank}.json").write_text(json.dumps(
                {"rank": self.d.rank, "state_sha": summary["state_sha"], "steps": self.step}))
        self.d.barrier()
        return summary

    def _summary(self, wall: float) -> dict[str, Any]:
        cfg, sched = self.cfg, self.schedule
        return {"deployed": self.deploy_name, "steps": self.step, "steps_per_epoch": sched.steps_per_epoch,
                "wall_s": round(wall, 1), "world_size": self.d.world, "n_train": len(self.train_idx),
                "n_test": len(self.test_idx),
                # whole-run throughput (data loading, logging and checkpoints included)
                "train_crops_per_s": round(self.step * cfg.images_per_step * cfg.crops_per_image * self.d.world
                                           / max(wall, 1e-9), 1),
                "peak_mem_gib": round(_peak_memory_gib(self.device), 3),
                "peak_mem_kind": "cuda max allocated" if self.device.type == "cuda" else "process RSS"}

    def _final_evaluation(self) -> dict[str, Any]:
        """The deployed network on the test split; best.safetensors becomes the final model when nothing was kept."""
        if not self.test_idx:
            shutil.copyfile(self.out / "final.safetensors", self.out / "best.safetensors")
            return {"best": "no test split: best.safetensors is the final model"}
        final = predict(self.deployed(), self.ds, self.test_idx, device=str(self.device)).metrics(self.ds)
        if "step" in self.best:
            return {"final": final, "best": self.best}
        # eval_every=0: nothing was evaluated during training, so the final model is the best known
        shutil.copyfile(self.out / "final.safetensors", self.out / "best.safetensors")
        return {"final": final, "best": "no evaluation during training: best.safetensors is the final model"}

    def _extra(self, which: str, metrics: dict | None) -> dict[str, Any]:
        cfg, ds = self.cfg, self.ds
        return {"which": which, "dataset": ds.spec, "dataset_name": ds.name, "dataset_root": str(ds.root.resolve()),
                "split": cfg.split, "split_seed": cfg.split_seed, "train_config": cfg.to_dict(), "metrics": metrics,
                **({"parts": ds.parts} if ds.parts else {}),
                **({"init_from": self.init_record} if cfg.init_from else {})}


def train(cfg: TrainConfig) -> dict[str, Any]:
    """One training run (lmliqa train): the Trainer's fit, returning its summary."""
    return Trainer(cfg).fit()


def compute_losses(cfg: TrainConfig, student: LMLModel, ddp_student: nn.Module, teacher: EMATeacher | None,
                   x: torch.Tensor, whole: torch.Tensor, boxes: torch.Tensor, y: torch.Tensor,
                   d: Dist) -> tuple[torch.Tensor, dict[str, float]]:
    """One step's loss (method.md §3.7): teacher keys and salient crops, student scores and embeddings,
    L = L_reg + lambda L_LML (+ lambda_d L_distill). x holds B x N crops, image-major."""
    B, N = boxes.shape[:2]
    # The teacher's keys and salient crops feed LML and distillation; a teacher kept only to be deployed (its EMA
    # weights) needs no forward pass.
    if teacher is not None and (cfg.lml_weight > 0 or cfg.distill_weight > 0):
        with torch.no_grad():
            t_score, k = teacher(x)
            salient = teacher.salient(whole, boxes, cfg.saliency)
    score, z = ddp_student(x)
    target = y.repeat_interleave(N)
    net = student.net
    # In units of the training labels' std under label_norm (score_scale/shift are their std/mean), else raw.
    unit_score = (score - net.score_shift) / net.score_scale
    unit_target = (target - net.score_shift) / net.score_scale
    reg = regression_loss(unit_score, unit_target) if cfg.label_norm else regression_loss(score, target)
    loss, stats = cfg.reg_weight * reg, {"reg": reg.item()}
    if cfg.plcc_weight > 0:        # linearity over the batch's crops
        plcc = plcc_loss(score, target)
        loss = loss + cfg.plcc_weight * plcc
        stats["plcc"] = plcc.item()
    if cfg.rank_weight > 0:        # order of every pair of crops from different images, in label-std units
        rank = fidelity_rank_loss(unit_score, unit_target, torch.arange(B, device=x.device).repeat_interleave(N),
                                  cfg.rank_sigma)
        loss = loss + cfg.rank_weight * rank
        stats["rank"] = rank.item()
    if cfg.lml_weight > 0:
        k = k.view(B, N, -1).float()
        k_all = d.all_gather(k)
        lml = local_manifold_loss(z.view(B, N, -1), k, salient, cfg.tau, k_all, d.rank * B)
        loss = loss + cfg.lml_weight * lml
        stats.update(lml=lml.item(), lml_keys=k_all.shape[0] * N)
    if cfg.distill_weight > 0:
        pick = torch.arange(B, device=x.device) * N + salient
        distill = regression_loss(score[pick] / net.score_scale, t_score[pick].float() / net.score_scale)
        loss = loss + cfg.distill_weight * distill
        stats["distill"] = distill.item()
    return loss, stats


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler, student: nn.Module,
                   clip_grad: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if clip_grad:
        torch.nn.utils.clip_grad_norm_([p for p in student.parameters() if p.requires_grad], clip_grad)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def _float(net: nn.Module) -> nn.Module:
    """The network to save: under QAT, a copy without the fake-quant wrappers (the float weights QAT trained)."""
    from .qat import is_prepared, unwrapped

    return unwrapped(net) if is_prepared(net) else net


def _init_from(net: nn.Module, path: str) -> dict[str, Any]:
    """NET's weights from a trained checkpoint of the same network (refused, naming it, when it does not fit); returns
    what the new checkpoint records of it: its hash and the data it learned from (with the data that one started
    from, in turn), so that a model's training photos can be named without the file (lmliqa.data.training_photos)."""
    from ..data import init_record
    from ..errors import CheckpointError
    from ..models.checkpoint import load_checkpoint

    trained, meta = load_checkpoint(path)
    if meta["config"]["backbone"] != net.config.backbone:
        raise CheckpointError(f"init_from {path}: a {meta['config']['backbone']} network; this run trains "
                              f"{net.config.backbone}")
    missing, unexpected = net.load_state_dict(trained.state_dict(), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"init_from {path}: weights do not fit: missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]}")
    return init_record(path, meta.get("extra", {}))


def _preflight(ds, indices: list[int]) -> None:
    """Fail before the first step, naming every training image that cannot be opened (no silent fallback)."""
    from PIL import Image

    from ..data.base import DatasetError

    bad = []
    for i in indices:
        path = ds.records[i].path
        try:
            with Image.open(path) as im:
                im.size  # noqa: B018 - the header is read lazily
        except Exception as exc:
            bad.append(f"{path} ({type(exc).__name__}: {exc})")
    if bad:
        raise DatasetError(f"{len(bad)} training image(s) cannot be read; fix or remove them "
                           f"(lmliqa data check lists all): " + "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))


def _epoch_order(n: int, repeats: int, seed: int, epoch: int, d: Dist) -> list[int]:
    """This process's share of a seeded permutation of the epoch's (repeated) items."""
    perm = np.random.default_rng([seed, 7919, epoch]).permutation(n * repeats) % n
    usable = len(perm) - len(perm) % d.world
    return perm[d.rank:usable:d.world].tolist()


def _peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _state_digest(model: nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def _progress(total: int, start: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="step", disable=not enabled or None,
                dynamic_ncols=True)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))
