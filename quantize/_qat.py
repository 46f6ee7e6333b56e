"""Quantization-aware fine-tuning of a PT2E quantizer's own graph (issue 25), for the targets that quantize with
PT2E (LiteRT): the fixed-batch program is prepared with the target's quantizer turned into fake quantizers, so the
network trains through exactly the quantize/dequantize pairs its INT8 artifact will hold (LayerNorm, softmax, GELU,
residual adds, stem and head included when the float scope is empty), then converted like a post-training one.

The recipe, measured on LIVE-C fold 0 (README "Quantization-aware fine-tuning"):
- BatchNorm is folded into the convolutions first (what PTQ does at prepare time), so the weights that train are
  the ones the artifact stores, per output channel;
- activation ranges are calibrated once, as PTQ does (histogram observers on the calibration crops), then frozen:
  moving-average min/max ranges that keep following outliers while the weights train left the artifact worse
  than PTQ (a prototype on the fold-0 model: mean |d| 12 against 8.7);
- the loss is distillation: mean squared difference to the float program's crop scores (divided by their spread),
  on one batch of a training photo's evaluation crops per step (half of them mirrored), cosine-decayed learning
  rate. Distilling the float program is what the INT8 gate measures, and it keeps the agreement with people that
  the float model has.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmliqa.export._graph import static_program

from ._pt2e import chunks, litert_quantizer
from .calib import ImageSet


@dataclass(frozen=True)
class QATOptions:
    steps: int                        # optimizer steps of one fixed-size batch of crops each
    lr: float = 1e-5
    seed: int = 0
    device: str = "auto"              # where it trains: auto (CUDA when visible), cpu, cuda, cuda:N
    float_weight: float = 0.0         # > 0: also distil the same weights with fake quantization off (qat_checkpoint)
    state_file: Path | None = None    # the training state is saved here every save_every steps (`QATState`)
    save_every: int = 100
    resume: bool = False              # continue from state_file (the same run: options, photos, source weights)

    def torch_device(self) -> torch.device:
        from lmliqa.errors import ConfigError

        kind = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        if kind.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"--qat-device {self.device} asked for, but no CUDA device is visible")
        return torch.device(kind)


def on_device(module: torch.fx.GraphModule, device: torch.device) -> torch.fx.GraphModule:
    """MODULE (an exported or PT2E-prepared graph) with its parameters, buffers (the fake quantizers' too) and the
    tensors its graph creates (ops with a device argument, which torch.export records as the export's device) on
    DEVICE. Off the CPU its views become reshapes: the CPU export chose aten.view where the CPU kernels' strides
    allowed it, and CUDA kernels (attention) return other strides (measured on an H200: "view size is not compatible
    with input tensor's size and stride"); reshape is the same values, copying only where a view cannot be taken."""
    for node in module.graph.nodes:
        if "device" in node.kwargs:
            node.update_kwarg("device", device)
        if device.type != "cpu" and node.target is torch.ops.aten.view.default:
            node.target = torch.ops.aten.reshape.default
    module.recompile()
    return module.to(device)


def fake_quant_config(config):
    """The PT2E QuantizationConfig CONFIG (litert-torch's or torchao's: the same fields) with every observer turned
    into a fake quantizer: activations observed by a histogram (frozen after calibration by `qat_program`),
    weights by min/max (per channel where CONFIG's weights are)."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantize
    from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver, PerChannelMinMaxObserver

    def fake(spec, observer):
        return None if spec is None else dataclasses.replace(
            spec, observer_or_fake_quant_ctr=FakeQuantize.with_args(observer=observer, eps=2 ** -12))

    per_channel = config.weight is not None and config.weight.qscheme in (torch.per_channel_symmetric,
                                                                           torch.per_channel_affine)
    return dataclasses.replace(config, input_activation=fake(config.input_activation, HistogramObserver),
                               output_activation=fake(config.output_activation, HistogramObserver),
                               weight=fake(config.weight, PerChannelMinMaxObserver if per_channel else MinMaxObserver))


class StepLog:
    """Steps START..TOTAL-1 of a run called DESC: a tqdm bar on a terminal; anywhere else (a log file, nohup, CI) a line
    on stderr every EVERY steps (default a twentieth of the run) with the recent loss (`loss`), the time per step and
    the time left, so an hour-long CPU run shows its progress wherever its output goes."""

    def __init__(self, desc: str, total: int, start: int = 0, every: int | None = None) -> None:
        from tqdm import tqdm

        self.desc, self.total, self.start = desc, total, start
        self.every = every or max(1, total // 20)
        self.bar = tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True) \
            if sys.stderr.isatty() else None
        self.recent: list[float] = []

    def loss(self, value: float) -> None:
        self.recent.append(value)

    def __iter__(self):
        t0 = time.perf_counter()
        for step in range(self.start, self.total):
            yield step
            if self.bar is not None:
                self.bar.update(1)
                continue
            done = step + 1
            if done % self.every == 0 or done == self.total:
                per_step = (time.perf_counter() - t0) / (done - self.start)
                loss = f", loss {np.mean(self.recent):.4g}" if self.recent else ""
                print(f"{self.desc}: step {done}/{self.total}{loss}, {per_step:.2f} s/step, about "
                      f"{per_step * (self.total - done) / 60:.0f} min left", file=sys.stderr, flush=True)
                self.recent.clear()
        if self.bar is not None:
            self.bar.close()


class QATState:
    """An interrupted QAT run's progress in FILE: the fake-quantized module (weights, frozen ranges), optimizer,
    schedule, loss history, the batches' and torch's random state, and a fingerprint of the run (options, batch,
    photo count, fake quantizers, the source weights' checksum), so a resumed run trains on from where it stopped to
    the same weights as an uninterrupted one, and a different run is refused instead of continued."""

    def __init__(self, file: Path, fingerprint: dict[str, Any]) -> None:
        self.file, self.fingerprint = Path(file), fingerprint

    @classmethod
    def of_run(cls, options: QATOptions, batch: int, batches, fakes: list, teacher) -> QATState | None:
        """The state of the run OPTIONS describe (None without options.state_file)."""
        if options.state_file is None:
            if options.resume:
                raise ValueError("QATOptions.resume needs a state_file")
            return None
        return cls(options.state_file, {
            "steps": options.steps, "lr": options.lr, "seed": options.seed, "float_weight": options.float_weight,
            "batch": batch, "photos": len(batches.photos), "fake_quantizers": len(fakes),
            "source_weights": round(float(sum(p.detach().double().sum() for p in teacher.parameters())), 6)})

    def save(self, step: int, prepared, opt, sched, batches, losses: list[float], float_losses: list[float],
             seconds: float) -> None:
        tmp = self.file.with_name(self.file.name + ".tmp")
        self.file.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"fingerprint": self.fingerprint, "step": step, "module": prepared.state_dict(),
                    "optimizer": opt.state_dict(), "schedule": sched.state_dict(), "batches": batches.state_dict(),
                    "torch_rng": torch.get_rng_state(), "losses": losses, "float_losses": float_losses,
                    "train_seconds": seconds}, tmp)
        tmp.replace(self.file)                   # a run killed while saving keeps the previous state

    def restore(self, prepared, opt, sched, batches, device: torch.device) -> dict[str, Any]:
        """Loads the saved state into the run's objects; returns the saved record (step, losses, train_seconds)."""
        from lmliqa.errors import ConfigError

        if not self.file.exists():
            raise ConfigError(f"--resume: no QAT state to continue in {self.file} (a run saves one every few "
                              "hundred steps)")
        state = torch.load(self.file, map_location=device, weights_only=True)   # no pickled code
        if state["fingerprint"] != self.fingerprint:
            diff = sorted(k for k in {**state["fingerprint"], **self.fingerprint}
                          if state["fingerprint"].get(k) != self.fingerprint.get(k))
            raise ConfigError(f"--resume: {self.file} is another QAT run (differs in {', '.join(diff)}); start it "
                              "again without --resume or give the same options")
        prepared.load_state_dict(state["module"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        batches.load_state_dict(state["batches"])
        torch.set_rng_state(state["torch_rng"].cpu())
        return state


class PhotoBatches:
    """Endless fixed-size batches of training crops: a random photo's evaluation crops (the deployment contract's,
    decoded when needed), mirrored half of the time, topped up from the next photo when one has fewer crops than
    BATCH. A photo that cannot be read is skipped and counted."""

    def __init__(self, photos: list[Path], contract, batch: int, seed: int) -> None:
        if not photos:
            raise ValueError("quantization-aware training needs training photos")
        self.photos, self.contract, self.batch = photos, contract, batch
        self.rng = np.random.default_rng(seed)
        self.skipped: list[str] = []

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "skipped": list(self.skipped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.skipped = list(state["skipped"])

    def _crops(self) -> np.ndarray:
        for _ in range(len(self.photos)):
            path = self.photos[int(self.rng.integers(len(self.photos)))]
            try:
                crops = self.contract.eval_crops(path)
            except Exception as exc:    # one bad photo is reported, the rest train
                self.skipped.append(f"{path.name}: {exc}")
                continue
            return crops[..., ::-1] if self.rng.random() < 0.5 else crops
        raise ValueError(f"none of the training photos could be read: {self.skipped[:3]}")

    def __next__(self) -> torch.Tensor:
        got: list[np.ndarray] = []
        while sum(len(c) for c in got) < self.batch:
            got.append(self._crops())
        crops = np.concatenate(got)
        if len(crops) > self.batch:
            crops = crops[np.sort(self.rng.choice(len(crops), self.batch, replace=False))]
        return torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32))


def calibrate_and_freeze(prepared, fakes: list, teacher, batches: list[torch.Tensor],
                         device: torch.device | str = "cpu") -> float:
    """PREPARED's activation ranges observed on BATCHES (moved to DEVICE) as PTQ observes them (fake quantization
    off), then frozen with fake quantization on; FAKES: its fake quantizers. Returns the spread (sd) of TEACHER's crop
    scores on BATCHES, the scale of the distillation loss."""
    from torchao.quantization.pt2e.observer import HistogramObserver

    for f in fakes:
        f.disable_fake_quant()
    with torch.no_grad():
        spread = float(torch.cat([teacher(x.to(device)) for x in batches]).std()) or 1.0
        for x in batches:
            prepared(x.to(device))
    for f in fakes:
        f.enable_fake_quant()
        if isinstance(f.activation_post_process, HistogramObserver):
            f.disable_observer()
    return spread


def train_fake_quantized(ep, batch: int, quantizer, calib: ImageSet, batches: PhotoBatches,
                         options: QATOptions) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    """EP (the program re-exported at BATCH: `static_program`), prepared for QAT with QUANTIZER (fake
    quantizers: `fake_quant_config`), its activation ranges calibrated on CALIB's crops and frozen, fine-tuned for
    OPTIONS.steps on BATCHES against the float program; returns (prepared module back on the CPU, record of the
    training). With
    OPTIONS.float_weight > 0 the same weights are also pulled towards the float program with fake quantization off
    (a checkpoint that stays its own float reference: `qat_checkpoint`)."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantize
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    t0 = time.perf_counter()
    torch.manual_seed(options.seed)
    device = options.torch_device()
    # copies: the exported module shares its parameters with PROGRAM, which the caller keeps using on the CPU (moving
    # it to CUDA in place moved the caller's network too, measured on an H200)
    teacher = copy.deepcopy(ep.module())
    student = copy.deepcopy(teacher)
    _fuse_conv_bn_(student)
    prepared = on_device(prepare_qat_pt2e(student, quantizer), device)
    teacher = on_device(teacher, device)
    fakes = [m for m in prepared.modules() if isinstance(m, FakeQuantize)]
    spread = calibrate_and_freeze(prepared, fakes, teacher, chunks(np.concatenate(calib.crops), batch), device)
    params = [p.requires_grad_(True) for p in prepared.parameters()]
    opt = torch.optim.AdamW(params, lr=options.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(options.steps, 1))
    saver = QATState.of_run(options, batch, batches, fakes, teacher)
    state = saver.restore(prepared, opt, sched, batches, device) if options.resume else {}
    start, done_before = state.get("step", 0), state.get("train_seconds", 0.0)
    losses, float_losses = state.get("losses", []), state.get("float_losses", [])
    t_train = time.perf_counter()
    progress = StepLog("QAT", options.steps, start)
    for step in progress:
        x = next(batches).to(device, non_blocking=True)
        with torch.no_grad():
            target = teacher(x)
        loss = torch.mean(((prepared(x) - target) / spread) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if options.float_weight:
            for f in fakes:
                f.disable_fake_quant()
            float_loss = torch.mean(((prepared(x) - target) / spread) ** 2)
            (options.float_weight * float_loss).backward()
            for f in fakes:
                f.enable_fake_quant()
            float_losses.append(float_loss.item())
        opt.step()
        sched.step()
        losses.append(loss.item())
        progress.loss(losses[-1])
        if saver and (step + 1) % options.save_every == 0 and step + 1 < options.steps:
            saver.save(step + 1, prepared, opt, sched, batches, losses, float_losses,
                       done_before + time.perf_counter() - t_train)
    t_train = done_before + time.perf_counter() - t_train    # loss.item() synchronizes a GPU every step
    prepared = on_device(prepared, torch.device("cpu"))       # converted and lowered on the CPU, as PTQ
    record = {"recipe": "PT2E prepare_qat_pt2e on the target's quantizer graph, BatchNorm folded, activation ranges "
                        "calibrated then frozen, distilling the float program", "steps": options.steps,
              "lr": options.lr, "seed": options.seed, "device": str(device), "batch_crops": batch,
              "photos": len(batches.photos),
              "photos_skipped": batches.skipped[:20], "n_fake_quantizers": len(fakes),
              "loss_first": _window_mean(losses, first=True), "loss_last": _window_mean(losses, first=False),
              "seconds": round(time.perf_counter() - t0 + done_before, 1), "train_seconds": round(t_train, 1),
              "resumed_at_step": start or None}
    if options.float_weight:
        record.update(float_weight=options.float_weight, float_loss_first=_window_mean(float_losses, first=True),
                      float_loss_last=_window_mean(float_losses, first=False))
    return prepared, record


def _window_mean(losses: list[float], first: bool) -> float | None:
    """Mean of the first (or last) quarter of LOSSES, at most 50 steps: the loss at the start and at the end."""
    if not losses:
        return None
    window = max(1, min(50, len(losses) // 4))
    return float(np.mean(losses[:window] if first else losses[-window:]))


def qat_program(program, batch: int, quantizer, calib: ImageSet, batches: PhotoBatches, options: QATOptions,
                fold_quantize: bool = True) -> tuple[torch.nn.Module, torch.Tensor, dict[str, Any]]:
    """`train_fake_quantized`, converted to Q/DQ form; returns (module, example input, record of the training)."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    ep, example = static_program(program, batch)
    prepared, record = train_fake_quantized(ep, batch, quantizer, calib, batches, options)
    move_exported_model_to_eval(prepared)
    return convert_pt2e(prepared, fold_quantize=fold_quantize), example, record


_BATCH_NORMS = ("batch_norm.default", "_native_batch_norm_legit_no_training.default")


def conv_bn_pairs(graph: torch.fx.GraphModule) -> dict[str, tuple[str, float]]:
    """Conv weight attribute -> (the BatchNorm module it feeds, that BatchNorm's eps), read from an exported graph
    before `_fuse_conv_bn_` (which folds each pair into the conv's weight and a new `<weight>_bias` attribute)."""
    pairs = {}
    for node in graph.graph.nodes:
        if node.op != "call_function" or not any(str(node.target).endswith(b) for b in _BATCH_NORMS):
            continue
        conv, bn_weight = node.args[0], node.args[1]
        if (isinstance(conv, torch.fx.Node) and "conv" in str(conv.target) and isinstance(bn_weight, torch.fx.Node)
                and bn_weight.op == "get_attr" and conv.args[1].op == "get_attr"):
            pairs[conv.args[1].target] = (bn_weight.target.rsplit(".", 1)[0], float(node.args[-2]
                                          if str(node.target).endswith("batch_norm.default") else node.args[-1]))
    return pairs


def trained_state(prepared: torch.nn.Module, pairs: dict[str, tuple[str, float]]) -> dict[str, torch.Tensor]:
    """The float weights QAT trained, as state-dict entries of the network the program was exported from: every
    parameter under its own name; a folded conv's weight as trained, with its BatchNorm made the identity that
    carries the folded bias (weight 1, bias the folded bias, mean 0, variance 1 - eps), so that exporting the
    checkpoint folds back to exactly the trained conv."""
    params = dict(prepared.named_parameters())
    state = {}
    for name, value in params.items():
        if name.endswith("_bias") and name[:-len("_bias")] in pairs:
            continue
        state[name] = value.detach().clone()
        if name in pairs:
            bn, eps = pairs[name]
            bias = params.get(f"{name}_bias")
            n = value.shape[0]
            state.update({f"{bn}.weight": torch.ones(n), f"{bn}.running_mean": torch.zeros(n),
                          f"{bn}.running_var": torch.full((n,), 1.0 - eps),
                          f"{bn}.bias": bias.detach().clone() if bias is not None else torch.zeros(n)})
    return state


def qat_checkpoint(model: torch.nn.Module, program, batch: int, quantizer, calib: ImageSet, batches: PhotoBatches,
                   options: QATOptions) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A copy of MODEL (the network PROGRAM was exported from) holding the weights `train_fake_quantized` trained
    through QUANTIZER: a float checkpoint that every target's own post-training quantizer then quantizes (ONNX
    through NNCF, OpenVINO, LiteRT), whatever its graph. Returns (model, record of the training)."""
    ep, _ = static_program(program, batch)
    pairs = conv_bn_pairs(ep.module())
    prepared, record = train_fake_quantized(ep, batch, quantizer, calib, batches, options)
    state = trained_state(prepared, pairs)
    out = copy.deepcopy(model)
    own = out.state_dict()
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ValueError(f"QAT trained weights the network does not have: {unknown[:5]}")
    out.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in state.items()}})
    record["folded_batch_norms"] = len(pairs)
    return out, record


def pt2e_quantized(ctx, config, make_quantizer, fold_quantize: bool, qat_steps: int = 0, qat_lr: float = 1e-5,
                   qat_device: str = "auto") -> tuple[torch.nn.Module, torch.Tensor, dict[str, Any] | None]:
    """The program at the parent's fixed batch, quantized by the PT2E quantizer MAKE_QUANTIZER(CONFIG) builds (its
    float scope applied): post-training (calibrated on CTX's crops) or, with QAT_STEPS, fine-tuned through the same
    quantizer's fake-quantized form first; returns (module, example input, QAT record or None). One path for every
    PT2E target (LiteRT, ExecuTorch)."""
    from ._pt2e import quantize_program

    batch = int(ctx.parent.metadata["batch"])
    if not qat_steps:
        module, example = quantize_program(ctx.program, batch, make_quantizer(config), ctx.calib,
                                           fold_quantize=fold_quantize)
        return module, example, None
    options = QATOptions(qat_steps, qat_lr, device=qat_device)
    batches = PhotoBatches(ctx.train_photos, ctx.contract, batch, seed=options.seed)
    return qat_program(ctx.program, batch, make_quantizer(fake_quant_config(config)), ctx.calib, batches, options,
                       fold_quantize=fold_quantize)


def fine_tune_checkpoint(checkpoint: str | Path, spec: str, out: str | Path, options: QATOptions,
                         n_calib: int = 32, n_val: int = 96, val_spec: str | None = None) -> dict[str, Any]:
    """CHECKPOINT fine-tuned by `qat_checkpoint` through LiteRT's INT8 quantizer with no float scope (int8 per-channel
    weights, int8 per-tensor activations at every op: more quantization points than NNCF or ONNX Runtime place), its
    ranges calibrated on N_CALIB photos of SPEC, trained on SPEC's photos that are not its N_VAL validation photos (or
    on all of them with VAL_SPEC), written to OUT as an ordinary checkpoint. The validation
    photos measure how far the new float network moved from the old (its own float reference for every target
    after this) and both networks' agreement with MOS. Returns the record the checkpoint carries.

    `lmliqa train --qat-from CKPT` runs it. Measured on the default model (benchmarks/qat_checkpoint.py, README
    "Quantization-aware fine-tuning"): NNCF's ONNX and OpenVINO INT8 of it pass their gates with no float scope (the
    network's input / output ops float: export._graph io_node); the PT2E targets' PTQ of it does not (mean |d| 1.4),
    their own-graph QAT from it (`--qat-steps 300`) does."""
    from lmliqa.export._graph import export_program, load_for_export, module_runner, program_runner
    from lmliqa.fidelity import compare
    from lmliqa.models.checkpoint import save_checkpoint

    from .calib import build_sets, image_scores, training_photos

    model, metadata = load_for_export(checkpoint)
    contract = model.config.contract
    calib, val = build_sets(spec, contract, n_calib, n_val, val_spec)
    batches = PhotoBatches(training_photos(spec, val), contract, batch=len(calib.crops[0]), seed=options.seed)
    config, quantizer = litert_quantizer()
    program = export_program(model)
    trained, record = qat_checkpoint(model, program, batches.batch, quantizer(fake_quant_config(config)), calib,
                                     batches, options)
    before = image_scores(program_runner(program), val, contract)
    after = image_scores(module_runner(trained.eval()), val, contract)
    record.update(source_checkpoint=Path(checkpoint).name,
                  source_checkpoint_sha256=metadata["source_checkpoint_sha256"],
                  quantizer="litert-torch PT2EQuantizer, symmetric int8, per-channel weights, no float scope",
                  photos_spec=spec, calibration=calib.record(spec),
                  validation={**val.record(val_spec or spec), "float_before_vs_after":
                              compare(before, after, val.mos, val.file_names).to_dict()})
    save_checkpoint(out, trained, lineage(checkpoint, spec, batches.photos, record))
    if options.state_file is not None:
        Path(options.state_file).unlink(missing_ok=True)        # the checkpoint is written: nothing left to resume
    return record


def lineage(checkpoint: str | Path, spec: str, photos: list[Path], record: dict[str, Any]) -> dict[str, Any]:
    """What a QAT checkpoint records of its data, as a checkpoint trained from another does (init_from,
    lmliqa.data.training_photos): the photos QAT trained on by content hash, and the checkpoint it started from with
    that one's own training photos, so that a release checks its evaluation photos against both."""
    from lmliqa.data import PhotoSet, init_record
    from lmliqa.manifest import sha256_file
    from lmliqa.models.checkpoint import read_metadata

    return {"which": "qat", "dataset": spec, "split": "all", "qat": record,
            "train_images_sha256": sorted(PhotoSet(sha256_file(p) for p in photos)),
            "init_from": init_record(checkpoint, read_metadata(checkpoint).get("extra", {}), also=("train_config",))}
