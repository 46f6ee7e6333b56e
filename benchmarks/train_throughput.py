"""Training throughput of the real LML step (student forward/backward, EMA teacher, saliency, AdamW):
trained crops per second and peak memory, on CPU or CUDA.

    python benchmarks/train_throughput.py --presets mobile,paper --device cpu --amp bf16 [--json]
    torchrun --nproc_per_node 1 benchmarks/train_throughput.py --presets paper --device cuda --steps 300

Random pixels and labels (speed only). The engine's own compute_losses/optimizer_step are timed, so this
measures what `lmliqa train` runs minus data loading.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from lmliqa import presets
from lmliqa.models.network import ConvTokens, build_model
from lmliqa.train.config import TrainConfig
from lmliqa.train.engine import Dist, amp_context, compute_losses, optimizer_step, param_groups
from lmliqa.train.lml import EMATeacher, LMLModel


def measure(preset: str, device: str, amp: str, images: int, crops: int, steps: int, lml_weight: float,
            channels_last: str, warmup: int = 3) -> dict:
    cfg = TrainConfig(preset=preset, device=device, amp=amp, images_per_step=images, crops_per_image=crops,
                      lml_weight=lml_weight, channels_last=channels_last)
    dev = torch.device(device)
    net = build_model(presets.get(preset).config, pretrained="none")
    student = LMLModel(net).to(dev)
    cl = channels_last == "on" or (channels_last == "auto" and isinstance(net.encoder, ConvTokens))
    if cl:
        student.to(memory_format=torch.channels_last)
    teacher = EMATeacher(student, cfg.ema_momentum) if lml_weight > 0 else None
    opt = torch.optim.AdamW(param_groups(student, cfg), lr=1e-4)
    autocast, scaler, amp_mode = amp_context(cfg, dev)
    s = net.config.contract.crop_size
    x = torch.rand(images * crops, 3, s, s, device=dev) * 255
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    whole = torch.rand(images, 3, s, s, device=dev) * 255
    b = torch.rand(images, crops, 2, device=dev) * 0.5
    boxes = torch.cat([b, b + 0.5], dim=-1)
    y = torch.rand(images, device=dev) * 100
    d = Dist(dev.type)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    student.train()
    for i in range(warmup + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast():
            loss, _ = compute_losses(cfg, student, student, teacher, x, whole, boxes, y, d)
        optimizer_step(loss, opt, scaler, student, cfg.clip_grad)
        if teacher is not None:
            teacher.update(student)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    peak = (torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"preset": preset, "device": device, "amp": amp_mode, "channels_last": cl, "lml": lml_weight > 0,
            "crops_per_step": images * crops, "steps": steps, "threads": torch.get_num_threads(),
            "median_step_s": med, "crops_per_s": images * crops / med,
            "peak_mem_gib": round(peak, 3), "peak_mem_kind": "cuda allocated" if dev.type == "cuda" else "process RSS"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="mobile")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--crops", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lml-weight", type=float, default=1.0)
    ap.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [measure(p, args.device, args.amp, args.images, args.crops, args.steps, args.lml_weight,
                    args.channels_last) for p in args.presets.split(",")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['preset']:<13} {r['device']:<5} amp={r['amp']:<5} lml={r['lml']!s:<5} "
              f"{r['crops_per_step']:>4} crops/step  {r['crops_per_s']:7.1f} crops/s  "
              f"peak {r['peak_mem_gib']:.2f} GiB ({r['peak_mem_kind']})")


if __name__ == "__main__":
    main()
