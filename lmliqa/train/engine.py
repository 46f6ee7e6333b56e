"""The training engine: LML-IQA (or plain regression) with AMP, DDP via torchrun, resumable checkpoints.

One call of :func:`train` is one run; under ``torchrun`` every process calls it. The output folder gets
``final.safetensors`` and ``best.safetensors`` (loadable by lmliqa.models.checkpoint), ``last.pt`` (the
resumable training state), ``train_log.csv``, ``eval_log.csv``, ``summary.json``, ``config.json`` and
TensorBoard events under ``tb/``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from ..config import get_preset
from ..contract import ScoreScale
from ..data import open_dataset
from ..data.splits import kfold_splits, random_splits
from ..errors import first_line
from ..evaluate import predict
from ..models.checkpoint import save_checkpoint
from ..models.network import ConvTokens, build_model
from .config import RESUME_MAY_CHANGE, ResumeError, TrainConfig
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
            raise RuntimeError("--device cuda asked for, but no CUDA device is visible")
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")


def amp_context(cfg: TrainConfig, device: torch.device):
    mode = cfg.amp
    if mode == "auto":
        mode = "bf16" if device.type == "cpu" or torch.cuda.is_bf16_supported() else "fp16"
    if mode == "off":
        return contextlib.nullcontext, None, "fp32"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    if device.type == "cpu" and dtype is torch.float16:
        raise ValueError("fp16 autocast is for CUDA; use --amp bf16 on CPU")
    scaler = torch.amp.GradScaler("cuda") if dtype is torch.float16 else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler, mode


def resolve_split(cfg: TrainConfig, ds) -> tuple[list[int], list[int]]:
    kind, *args = cfg.split.split(":")
    if kind == "all":
        return list(range(len(ds))), []
    if kind == "random":
        j = int(args[0]) if args else 0
        s = random_splits(ds, n_splits=j + 1, seed=cfg.split_seed)[j]
        return s.train, s.test
    if kind == "kfold":
        k, j = int(args[0]), int(args[1])
        s = kfold_splits(ds, k=k, seed=cfg.split_seed)[j]
        return s.train, s.test
    raise ValueError(f"split {cfg.split!r}: use all, random:J or kfold:K:J")


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
    raise ValueError(f"schedule {cfg.schedule!r}: use deiqt-step or cosine")


def apply_freeze(model: LMLModel, prefixes: list[str]) -> int:
    """Freeze parameters whose name starts with a prefix (relative to the network, e.g.
    'encoder.cnn.blocks.0'); their BatchNorm layers stay in eval mode. Returns the frozen count."""
    frozen = 0
    for name, p in model.net.named_parameters():
        if any(name.startswith(pre) for pre in prefixes):
            p.requires_grad_(False)
            frozen += p.numel()
    if prefixes and not frozen:
        raise ValueError(f"freeze prefixes {prefixes} match no parameter of the network")
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
    old, new = state["config"], cfg.to_dict()
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


# ------------------------------------------------------------------------------------------- train
def train(cfg: TrainConfig) -> dict[str, Any]:
    d = Dist("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    device = pick_device(cfg, d)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    d.barrier()
    torch.manual_seed(cfg.seed + d.rank)
    random.seed(cfg.seed + d.rank)

    ds = open_dataset(cfg.data, seed=cfg.seed)
    train_idx, test_idx = resolve_split(cfg, ds)
    _preflight(ds, train_idx)
    preset = get_preset(cfg.preset)
    lo, hi = ds.label.training_range
    mcfg = preset.replace(contract=preset.contract.replace(**ds.contract_hints),
                          score=ScoreScale(lo, hi, ds.label.higher_is_better, ds.label.name))
    net = build_model(mcfg, pretrained=cfg.pretrained)
    if cfg.label_norm:
        y_train = ds.label.to_training(np.array([ds.records[i].mos for i in train_idx]))
        net.score_shift.fill_(float(y_train.mean()))
        net.score_scale.fill_(float(y_train.std()) or 1.0)
    student = LMLModel(net, cfg.proj_hidden, cfg.proj_dim, cfg.feature)
    frozen = apply_freeze(student, cfg.freeze)
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and isinstance(net.encoder, ConvTokens))
    student.to(device)
    if channels_last:
        student.to(memory_format=torch.channels_last)
    use_teacher = cfg.lml_weight > 0 or cfg.distill_weight > 0 or cfg.deploy == "teacher"
    teacher = EMATeacher(student, cfg.ema_momentum) if use_teacher else None
    ddp_student = (nn.parallel.DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda"
                                                       else None, find_unused_parameters=cfg.lml_weight == 0)
                   if d.enabled else student)

    B, N = cfg.images_per_step, cfg.crops_per_image
    if N < 3 and cfg.lml_weight > 0:
        raise ValueError("LML needs >= 3 crops per image (a positive and intra-image negatives)")
    per_epoch_items = len(train_idx) * cfg.repeats
    steps_per_epoch = per_epoch_items // (B * d.world)
    if steps_per_epoch < 1:
        raise ValueError(f"{len(train_idx)} training images x {cfg.repeats} repeats is less than one global batch "
                         f"({B} x {d.world} processes)")
    total_steps = math.ceil(cfg.epochs * steps_per_epoch)
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    optimizer = torch.optim.AdamW(param_groups(student, cfg), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch, total_steps)
    autocast, scaler, amp_mode = amp_context(cfg, device)

    data = TrainCrops(ds, train_idx, mcfg.contract, N, cfg.whole_size or mcfg.contract.crop_size, cfg.seed,
                      cfg.cache_images)
    step, best = 0, {"srcc": -2.0}
    state_path = out / STATE_FILE
    if d.main:
        for stale in out.glob(f"{STATE_FILE}*.tmp"):    # a temp file left by a process killed mid-write
            stale.unlink()
    if cfg.resume and state_path.is_file():
        state = load_state(state_path)
        check_resumable(state, cfg, {"train": train_idx, "test": test_idx}, state_path)
        student.load_state_dict(state["student"])
        if teacher is not None:
            teacher.module.load_state_dict(state["teacher"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_torch"][d.rank] if d.rank < len(state["rng_torch"]) else state["rng_torch"][0])
        step, best = int(state["step"]), state["best"]
        if d.main:
            print(f"resumed {state_path} at step {step}/{total_steps}", file=sys.stderr)
    elif cfg.resume and d.main:
        print(f"--resume: no {state_path} yet; starting fresh", file=sys.stderr)

    if d.main:
        (out / "config.json").write_text(json.dumps({"train": cfg.to_dict(), "model": mcfg.to_dict(),
                                                     "dataset": ds.spec, "n_train": len(train_idx),
                                                     "n_test": len(test_idx), "world_size": d.world,
                                                     "amp": amp_mode, "channels_last": channels_last,
                                                     "frozen_params": frozen}, indent=2))
        (out / "split.json").write_text(json.dumps({"split": cfg.split, "seed": cfg.split_seed,
                                                    "train": train_idx, "test": test_idx}))
    log = CsvLog(out / "train_log.csv", ["step", "epoch", "lr", "loss", "reg", "plcc", "rank", "lml", "distill",
                                         "lml_keys", "crops_per_s", "elapsed_s"], cfg.resume, step) if d.main else None
    evlog = CsvLog(out / "eval_log.csv", ["step", "epoch", "model", "n", "srcc", "plcc", "plcc_logistic", "krcc",
                                          "rmse"], cfg.resume, step) if d.main else None
    tb = _tensorboard(out) if d.main else None

    deploy_name = "teacher" if cfg.deploy == "teacher" and teacher is not None else "student"

    def deployed() -> nn.Module:
        return teacher.module.net if deploy_name == "teacher" else student.net

    def save_state(step_in: int) -> None:
        if not d.main:
            return
        atomic_torch_save({
            "step": step_in, "best": best, "split": {"train": train_idx, "test": test_idx},
            "student": student.state_dict(), "teacher": teacher.module.state_dict() if teacher else {},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "rng_torch": [torch.get_rng_state()], "config": cfg.to_dict(),
        }, state_path)

    def evaluate(epoch: float) -> None:
        nonlocal best
        if not test_idx or not d.main:
            return
        rows = {"student": student.net}
        if teacher is not None and (cfg.eval_teacher or deploy_name == "teacher"):
            rows["teacher"] = teacher.module.net
        for who, model in rows.items():
            m = predict(model, ds, test_idx, device=str(device)).metrics(ds)
            evlog.write({"step": step, "epoch": round(epoch, 3), "model": who, **m})
            if tb:
                tb.add_scalar(f"eval/{who}_srcc", m["srcc"], step)
                tb.add_scalar(f"eval/{who}_plcc", m["plcc"], step)
            print(f"  eval epoch {epoch:.2f} {who:<7} SRCC {m['srcc']:.4f} PLCC {m['plcc']:.4f} "
                  f"(n={m['n']})", file=sys.stderr)
            if who == deploy_name and m["srcc"] > best["srcc"]:
                best = {**m, "step": step, "epoch": epoch, "model": who}
                save_checkpoint(out / "best.safetensors", model, extra=_extra(cfg, ds, "best", best))
        student.train()

    progress = _progress(total_steps, step, d.main)
    t_start, crops_done, last_log = time.perf_counter(), 0, time.perf_counter()
    while step < total_steps:
        epoch = step // steps_per_epoch
        in_epoch = step % steps_per_epoch
        data.set_epoch(epoch)
        order = _epoch_order(len(train_idx), cfg.repeats, cfg.seed, epoch, d)
        batches = [order[i * B:(i + 1) * B] for i in range(in_epoch, steps_per_epoch)]
        loader = DataLoader(data, batch_sampler=batches, num_workers=cfg.workers, pin_memory=device.type == "cuda",
                            persistent_workers=False)
        set_train_mode(student, cfg.freeze)
        for crops, whole, boxes, y in loader:
            crops, whole, boxes, y = (t.to(device, non_blocking=True) for t in (crops, whole, boxes, y))
            x = crops.flatten(0, 1)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                loss, stats = compute_losses(cfg, student, ddp_student, teacher, x, whole, boxes, y, d)
            optimizer_step(loss, optimizer, scaler, student, cfg.clip_grad)
            step += 1
            failpoint("step")
            scheduler.step_update(step)
            if teacher is not None:
                teacher.update(student)
            crops_done += x.shape[0] * d.world
            if d.main:
                progress.update(1)
                if step % cfg.log_every == 0 or step == total_steps:
                    now = time.perf_counter()
                    row = {"step": step, "epoch": round(step / steps_per_epoch, 3),
                           "lr": optimizer.param_groups[0]["lr"], "loss": loss.item(),
                           "crops_per_s": crops_done / max(now - last_log, 1e-9),
                           "elapsed_s": round(now - t_start, 1), **stats}
                    log.write(row)
                    progress.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2e}",
                                         crops_s=f"{row['crops_per_s']:.1f}")
                    if tb:
                        for key in ("loss", "reg", "lml", "distill", "lr", "crops_per_s"):
                            if key in row:
                                tb.add_scalar(f"train/{key}", row[key], step)
                    crops_done, last_log = 0, now
            end_of_epoch = step % steps_per_epoch == 0
            if step % cfg.checkpoint_every == 0 or end_of_epoch or step == total_steps:
                save_state(step)
            if end_of_epoch and cfg.eval_every and (step // steps_per_epoch) % cfg.eval_every == 0:
                evaluate(step / steps_per_epoch)
            if step >= total_steps or end_of_epoch:
                break
    progress.close()
    wall = time.perf_counter() - t_start
    if test_idx and cfg.eval_every and step % (steps_per_epoch * cfg.eval_every) != 0:
        evaluate(step / steps_per_epoch)  # the last, partial epoch

    summary: dict[str, Any] = {"deployed": deploy_name, "steps": step, "steps_per_epoch": steps_per_epoch,
                               "wall_s": round(wall, 1),
                               "world_size": d.world, "n_train": len(train_idx), "n_test": len(test_idx),
                               # whole-run throughput (data loading, logging and checkpoints included)
                               "train_crops_per_s": round(step * cfg.images_per_step * cfg.crops_per_image
                                                          * d.world / max(wall, 1e-9), 1),
                               "peak_mem_gib": round(_peak_memory_gib(device), 3),
                               "peak_mem_kind": "cuda max allocated" if device.type == "cuda" else "process RSS"}
    if d.main:
        failpoint("final_write")
        save_checkpoint(out / "final.safetensors", deployed(), extra=_extra(cfg, ds, "final", None))
        if test_idx:
            final = predict(deployed(), ds, test_idx, device=str(device)).metrics(ds)
            if "step" in best:
                summary.update(final=final, best=best)
            else:  # eval_every=0: nothing was evaluated during training, so the final model is the best known
                shutil.copyfile(out / "final.safetensors", out / "best.safetensors")
                summary.update(final=final, best="no evaluation during training: best.safetensors is the final model")
        else:
            shutil.copyfile(out / "final.safetensors", out / "best.safetensors")
            summary["best"] = "no test split: best.safetensors is the final model"
        summary["state_sha"] = _state_digest(student)
        summary["amp"] = amp_mode
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        log.close()
        evlog.close()
        if tb:
            tb.close()
    else:
        summary["state_sha"] = _state_digest(student)
    if d.enabled:  # every rank records its replica's digest, so replica agreement can be checked
        (out / f"rank{d.rank}.json").write_text(json.dumps({"rank": d.rank, "state_sha": summary["state_sha"],
                                                             "steps": step}))
    d.barrier()
    return summary


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


def _extra(cfg: TrainConfig, ds, which: str, metrics: dict | None) -> dict[str, Any]:
    return {"which": which, "dataset": ds.spec, "dataset_name": ds.name, "dataset_root": str(ds.root.resolve()),
            "split": cfg.split, "split_seed": cfg.split_seed,
            "train_config": cfg.to_dict(), "metrics": metrics}


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
