"""How fast quantization-aware training (quantize/_qat.py, `--qat-steps`) steps on each device: the default model's
program, prepared for QAT with a PT2E quantizer and trained with the recipe's loss (distilling the float program),
timed per optimizer step (the training loop alone; set-up and calibration are in wall_s).

    python benchmarks/qat_device.py --device cpu --steps 20 --out benchmarks/results/DATE-qat-steps-cpu.json
    python benchmarks/qat_device.py --device cuda --steps 200 --out $OUT/qat-steps-cuda.json     # the lent GPU

The quantizer is torchao's XNNPACK quantizer with LiteRT's configuration (symmetric int8 per-tensor activations,
per-channel int8 weights, empty float scope): litert-torch's own PT2E quantizer is the same recipe but pulls in
TensorFlow and JAX, which the GPU machine does not have. Crops are synthetic (timing only; `qat_program` itself is
what `lmliqa quantize --qat-steps` runs, and the suite checks that it trains on the device it is given).
"""

from __future__ import annotations

import argparse
import json
import time
import types
from pathlib import Path

import numpy as np

from lmliqa.provenance import provenance


class SyntheticBatches:
    """Endless batches of random crops, PhotoBatches' interface (timing only)."""

    def __init__(self, batch: int, size: int) -> None:
        self.rng, self.batch, self.size = np.random.default_rng(0), batch, size
        self.photos, self.skipped = ["synthetic"], []

    def __next__(self):
        import torch

        return torch.from_numpy(self.rng.normal(size=(self.batch, 3, self.size, self.size)).astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=9, help="crops per step (the recipe: one photo's 9 crops)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    record = {"provenance": provenance(), **{k: v for k, v in vars(args).items() if k != "out"}}

    import torch
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    from lmliqa.default_model import default_artifact
    from lmliqa.export._graph import export_program, load_for_export
    from lmliqa.quantize._qat import QATOptions, fake_quant_config, qat_program

    model, meta = load_for_export(default_artifact("torch") if args.checkpoint == "default" else args.checkpoint)
    program = export_program(model)
    size = model.config.contract.crop_size
    config = fake_quant_config(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))
    calib = types.SimpleNamespace(crops=[next(SyntheticBatches(args.batch, size)).numpy() for _ in range(4)])
    t0 = time.perf_counter()
    _, _, rec = qat_program(program, args.batch, XNNPACKQuantizer().set_global(config), calib,
                            SyntheticBatches(args.batch, size), QATOptions(args.steps, device=args.device))
    per_step = rec["train_seconds"] / args.steps        # the training loop alone (loss.item() syncs each step)
    record.update(qat=rec, wall_s=round(time.perf_counter() - t0, 1), seconds_per_step=round(per_step, 4),
                  steps_per_s=round(1 / per_step, 2), model=meta["model"], crop_size=size, torch=torch.__version__,
                  gpu=torch.cuda.get_device_name(0) if rec["device"].startswith("cuda") else None)
    Path(args.out).write_text(json.dumps(record, indent=2, default=str))
    print(f"{per_step * 1000:.1f} ms per QAT step on {rec['device']}; wrote {args.out}")


if __name__ == "__main__":
    main()
