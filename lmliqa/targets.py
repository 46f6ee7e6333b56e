"""The deployment targets: one registry entry per runtime, read by `export`, `quantize`, `parity`, `bench`,
`info`, the capability matrix and the CLI.

A target binds its own stage files, by convention:

- ``export/<t>.py``: ``export(ctx: ExportContext, **options) -> list[Path]`` (from the one torch.export program);
- ``quantize/<t>.py``: ``quantize(ctx: QuantizeContext, **options) -> QuantOutput`` (from the FP32 parent);
- ``runtimes/<t>.py``: ``SCORER`` (a Scorer class: ``SCORER(path, precision, device, threads)``),
  ``read_metadata(path) -> dict``, ``probe() -> list[Capability]`` and, optionally,
  ``run_precisions(stored) -> tuple`` (the precisions an artifact can be executed in; default: as stored) and
  ``inspect(path) -> str`` (what can be checked where it cannot run, e.g. Core ML off macOS).

Adding a target is one ``register(Target(...))`` plus those files; a stage is a module path (imported only when
used, so this module and ``lmliqa.runtimes`` stay torch-free) or, for a target defined at run time, any object
with those attributes. Every value here is typed: precisions, support levels and options, not strings parsed
back.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import ArtifactError, BackendUnavailable, LmliqaError, TargetError, first_line
from .fidelity import EXACT, QUANTIZED, REDUCED, Gate


class Precision(str, Enum):
    """What executes (compute) or what is stored (weights)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"              # int8 weights and activations on the linear ops, the float scope in float
    INT8_BF16 = "int8+bf16"    # INT8, with the float parts in bf16 (OpenVINO)
    W8 = "w8"                  # int8 weights, float compute (Core ML)
    PAL6 = "pal6"              # 6-bit palettized weights (Core ML)
    PAL4 = "pal4"              # 4-bit palettized weights (Core ML)

    @property
    def quantized(self) -> bool:
        return self in (Precision.INT8, Precision.INT8_BF16, Precision.W8, Precision.PAL6, Precision.PAL4)

    @property
    def gate(self) -> Gate:
        if self.quantized:
            return QUANTIZED
        return EXACT if self is Precision.FP32 else REDUCED

    def __str__(self) -> str:
        return self.value


class Support(str, Enum):
    """What this machine can do with a target x precision."""

    RUNS = "runs here"
    SIMULATED = "simulated"                       # checked without native execution
    EXPORT_ONLY = "exported, not verified"        # the artifact can be written here, not run
    UNSUPPORTED = "unsupported"                   # cannot be produced or run (here)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Capability:
    target: str
    precision: Precision
    support: Support
    note: str = ""

    def __str__(self) -> str:
        return f"{self.support}" + (f": {self.note}" if self.note else "")


class Stage(str, Enum):
    EXPORT = "export"
    QUANTIZE = "quantize"
    RUNTIME = "runtime"


@dataclass(frozen=True)
class Option:
    """A target-specific option of `lmliqa export` or `lmliqa quantize` (name = the stage function's keyword)."""

    name: str
    flag: str
    help: str
    stage: Stage = Stage.EXPORT
    default: Any = None
    type: Callable[[str], Any] | None = str
    choices: tuple[Any, ...] | None = None
    is_flag: bool = False            # a switch (store_true)


@dataclass(frozen=True)
class Target:
    name: str                        # the --targets / --target name
    title: str                       # the runtime's name
    runtime: str                     # Scorer.backend of its artifacts
    devices: str                     # what it serves (docs)
    suffixes: tuple[str, ...]        # artifact files
    precisions: tuple[Precision, ...]
    runtime_module: Any              # module path (str) or module-like object
    export_module: Any = None
    quantize_module: Any = None
    requires: dict[Stage, tuple[str, ...]] = field(default_factory=dict)   # import names per stage
    tools: tuple[str, ...] = ()      # distributions recorded in artifacts (tool versions)
    options: tuple[Option, ...] = ()
    folder: bool = False             # an artifact may be a folder holding one file with a suffix (OpenVINO IR)
    reference: bool = False          # the torch reference, not a deployment target
    gates: dict[Precision, Gate] = field(default_factory=dict)
    extra: str = "all"               # the pip extra that installs its tools: lmliqa[extra]
    device_names: tuple[str, ...] = ()   # what load(..., device=) and --device take
    companions: tuple[str, ...] = ()     # files beside an artifact file that belong to it (same stem, these suffixes)
    marker: str | None = None            # an artifact is a folder holding this file (the browser's web folder)
    # a runtime ~100x slower than this CPU (a simulator): quantize's validation and parity score at most this many
    # photos of theirs with it (each result records its n)
    check_photos: int | None = None

    # ------------------------------------------------------------------ stages
    def stage(self, stage: Stage):
        ref = {Stage.EXPORT: self.export_module, Stage.QUANTIZE: self.quantize_module,
               Stage.RUNTIME: self.runtime_module}[stage]
        if ref is None:
            raise TargetError(f"target {self.name} has no {stage.value} stage")
        return importlib.import_module(ref) if isinstance(ref, str) else ref

    def missing(self, stage: Stage) -> list[str]:
        """Import names this stage needs that are not installed here."""
        return [m for m in self.requires.get(stage, ()) if importlib.util.find_spec(m) is None]

    def unavailable(self, stage: Stage) -> str:
        """Why this stage cannot run here ('' when it can): the missing packages and how to install them."""
        missing = self.missing(stage)
        return f"{', '.join(missing)} not installed ({self.requires_hint()})" if missing else ""

    def options_for(self, stage: Stage) -> tuple[Option, ...]:
        return tuple(o for o in self.options if o.stage is stage)

    def gate(self, precision: Precision, weights: Precision | None = None) -> Gate:
        """The tolerance of an execution precision (reduced when the weights are stored in less than fp32)."""
        p = precision if weights in (None, Precision.FP32) or precision.quantized else weights
        return self.gates.get(p, p.gate)

    # ------------------------------------------------------------------ runtime
    def load(self, path: str | Path, precision: Precision | str | None = None, device: str | None = None,
             threads: int | None = None):
        """A Scorer for one of this target's artifacts."""
        precision = Precision(precision) if precision is not None else None
        try:
            return self.stage(Stage.RUNTIME).SCORER(path, precision=precision, device=device, threads=threads)
        except (LmliqaError, ImportError, MemoryError):
            raise
        except Exception as exc:    # the runtime's own parser refused the file: a foreign or damaged artifact
            raise ArtifactError(f"{path}: not a readable {self.name} artifact ({type(exc).__name__}: "
                                f"{first_line(exc)[:300]})") from exc

    def read_metadata(self, path: str | Path) -> dict[str, Any]:
        return self.stage(Stage.RUNTIME).read_metadata(path)

    def probe(self) -> list[Capability]:
        """What this machine can do with each of the target's precisions (the runtime module's probe; a runtime
        whose packages are missing is unsupported here, with the install hint)."""
        try:
            return list(self.stage(Stage.RUNTIME).probe())
        except (BackendUnavailable, ImportError) as exc:
            note = f"{exc} ({self.requires_hint()})"
            return [Capability(self.name, p, Support.UNSUPPORTED, note) for p in self.precisions]

    def run_precisions(self, stored: Precision) -> tuple[Precision | None, ...]:
        """The execution precisions to try for an artifact stored in STORED (None: as stored)."""
        fn = getattr(self.stage(Stage.RUNTIME), "run_precisions", None)
        return tuple(fn(stored)) if fn else (None,)

    def inspect(self, path: Path) -> str | None:
        """What can be checked of an artifact that cannot run here (None: nothing)."""
        fn = getattr(self.stage(Stage.RUNTIME), "inspect", None)
        return fn(path) if fn else None

    def requires_hint(self) -> str:
        return f"pip install 'lmliqa[{self.extra}]'"

    # ------------------------------------------------------------------ artifacts
    def owns(self, path: Path) -> bool:
        """Is PATH one of this target's artifacts (by suffix; a folder holding one such file for OpenVINO; a folder
        holding the target's marker file)?"""
        if self.marker is not None:
            return path.is_dir() and (path / self.marker).is_file()
        name = path.name.lower()
        if any(name.endswith(s) for s in self.suffixes):
            return True
        return self.folder and path.is_dir() and any(f.suffix in self.suffixes for f in path.iterdir())

    def files(self, path: Path) -> list[Path]:
        """The files that make up the artifact at PATH: a folder's files, or the file and its companions (an
        OpenVINO IR's .xml and .bin)."""
        path = Path(path)
        if path.is_dir():
            return [p for p in sorted(path.rglob("*")) if p.is_file()]
        return [path] + [c for c in (path.with_suffix(s) for s in self.companions) if c.exists()]

    def size_mb(self, path: Path) -> float:
        return sum(f.stat().st_size for f in self.files(path)) / 1e6


@dataclass(frozen=True)
class Artifact:
    """An artifact on disk with the target that runs it and the precision it stores."""

    path: Path
    target: Target
    precision: Precision
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.path.name


_REGISTRY: dict[str, Target] = {}


def register(target: Target) -> Target:
    if target.name in _REGISTRY:
        raise ValueError(f"target {target.name!r} is already registered")
    clash = [t.name for t in _REGISTRY.values() if set(t.suffixes) & set(target.suffixes)]
    if clash:
        raise ValueError(f"target {target.name!r}: suffixes {target.suffixes} already belong to {clash}")
    _REGISTRY[target.name] = target
    return target


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def targets(stage: Stage | None = None, reference: bool = False) -> list[Target]:
    """Registered targets in registration order; STAGE: only those with that stage; reference: include torch."""
    out = [t for t in _REGISTRY.values() if reference or not t.reference]
    if stage is Stage.EXPORT:
        out = [t for t in out if t.export_module is not None]
    elif stage is Stage.QUANTIZE:
        out = [t for t in out if t.quantize_module is not None]
    return out


def reference() -> Target:
    """The torch reference every artifact is compared with."""
    return next(t for t in _REGISTRY.values() if t.reference)


def get(name: str) -> Target:
    """A target by its name or by its runtime's name (e.g. 'onnx' or 'onnxruntime')."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for t in _REGISTRY.values():
        if t.runtime == name:
            return t
    raise TargetError(f"unknown target {name!r}; choose from {sorted(_REGISTRY)}")


def names(stage: Stage | None = None) -> list[str]:
    return [t.name for t in targets(stage)]


def target_for(path: str | Path) -> Target:
    path = Path(path)
    for t in _REGISTRY.values():
        if t.owns(path):
            return t
    suffixes = sorted(s for t in _REGISTRY.values() for s in t.suffixes)
    raise ArtifactError(f"{path}: unknown artifact type; expected one of {suffixes} (or an OpenVINO IR folder)")


def discover(folder: str | Path, reference: bool = False) -> list[Artifact]:
    """Every artifact directly under FOLDER (one level: an OpenVINO IR lives in its own folder), sorted by name.
    A file that a target claims but whose metadata cannot be read is skipped (parity and bench report it)."""
    out = []
    for p in sorted(Path(folder).iterdir()):
        for t in targets(reference=reference):
            if not t.owns(p):
                continue
            try:
                meta = t.read_metadata(p)
                stored = Precision(meta.get("precision", "fp32"))
            except Exception:   # unreadable or foreign: the caller reports it when it tries to load it
                meta, stored = {}, Precision.FP32
            out.append(Artifact(p, t, stored, meta))
            break
    return out


def parse_targets(text: str, stage: Stage) -> list[Target]:
    """'onnx,openvino' -> targets, checking each has STAGE."""
    chosen = [get(n.strip()) for n in text.split(",") if n.strip()]
    allowed = names(stage)
    bad = [t.name for t in chosen if t.name not in allowed]
    if bad:
        raise TargetError(f"{bad}: no {stage.value} stage; choose from {allowed}")
    return chosen


def check_options(chosen: Iterable[Target], stage: Stage, given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Split GIVEN options (name -> value; None or False = not given) per chosen target. An option that belongs
    to no chosen target is an error, never silently ignored."""
    chosen = list(chosen)
    owners = {o.name: [t.name for t in targets(stage) if o in t.options_for(stage)]
              for t in targets(stage) for o in t.options_for(stage)}
    unknown = [k for k in given if k not in owners]
    if unknown:
        raise TargetError(f"unknown {stage.value} options {unknown}")
    for key, value in given.items():
        if value in (None, False) or any(t.name in owners[key] for t in chosen):
            continue
        flag = next(o.flag for t in targets(stage) for o in t.options_for(stage) if o.name == key)
        raise TargetError(f"{flag} applies to {', '.join(owners[key])}, which is not among the chosen targets "
                         f"({', '.join(t.name for t in chosen)})")
    return {t.name: {o.name: given[o.name] if given.get(o.name) is not None else o.default
                     for o in t.options_for(stage)} for t in chosen}


def tool_versions() -> dict[str, str]:
    """Versions of every registered target's tools (recorded in each artifact)."""
    import importlib.metadata

    dists = dict.fromkeys(["torch"] + [d for t in _REGISTRY.values() for d in t.tools])
    out = {}
    for dist in dists:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


# ---------------------------------------------------------------------------------------------- the registry
P = Precision
_NNCF_OPTS = (
    Option("smooth_quant_alpha", "--smooth-quant-alpha", "NNCF SmoothQuant alpha (ViT backbones)", Stage.QUANTIZE,
           default=0.95, type=float),
    Option("fast_bias_correction", "--fast-bias-correction", "NNCF's fast bias correction (quicker; full "
           "correction measured more accurate here)", Stage.QUANTIZE, default=False, type=None, is_flag=True),
)
_MAX_DROP = Option("max_drop", "--max-drop", "accuracy control: the largest SRCC-vs-MOS drop allowed on the "
                   "validation images (NNCF quantize_with_accuracy_control; ONNX Runtime: widen the float scope)",
                   Stage.QUANTIZE, type=float)

register(Target(
    "torch", "PyTorch (reference)", "torch", "CPU, CUDA", (".safetensors",), (P.FP32, P.BF16),
    "lmliqa.runtimes.torch", reference=True, requires={Stage.RUNTIME: ("torch", "timm")}, tools=("torch", "timm"),
    extra="train", device_names=("cpu", "cuda[:N]"),
))
register(Target(
    "onnx", "ONNX Runtime", "onnxruntime",
    "any CPU (x86, ARM); CUDA, TensorRT, DirectML, CoreML... through execution providers where installed",
    (".onnx",), (P.FP32, P.FP16, P.INT8), "lmliqa.runtimes.onnxruntime", "lmliqa.export.onnx", "lmliqa.quantize.onnx",
    requires={Stage.EXPORT: ("onnx", "onnxscript"), Stage.QUANTIZE: ("onnx", "onnxruntime", "nncf"),
              Stage.RUNTIME: ("onnxruntime",)},
    tools=("onnx", "onnxscript", "onnxruntime", "nncf"),
    options=(Option("onnx_tool", "--onnx-tool", "nncf (default; measured best) or ort (ONNX Runtime's "
                    "quantize_static)", Stage.QUANTIZE, default="nncf", choices=("nncf", "ort")),
             _MAX_DROP, *_NNCF_OPTS),
    extra="onnx", device_names=("cpu", "cuda[:N]", "an execution provider's name"),
))
register(Target(
    "openvino", "OpenVINO", "openvino", "Intel/AMD/ARM CPUs (CPU), Intel GPUs (GPU), Intel NPUs (NPU), AUTO",
    (".xml",), (P.FP32, P.BF16, P.FP16, P.INT8, P.INT8_BF16), "lmliqa.runtimes.openvino", "lmliqa.export.openvino",
    "lmliqa.quantize.openvino", folder=True, companions=(".bin",), device_names=("CPU", "GPU", "NPU", "AUTO"),
    requires={Stage.EXPORT: ("openvino",), Stage.QUANTIZE: ("openvino", "nncf"), Stage.RUNTIME: ("openvino",)},
    tools=("openvino", "nncf"),
    options=(Option("keep_f32", "--keep-f32", "layers the OpenVINO IR keeps in f32 when it runs bf16/f16: float-scope "
                    "regions (stem, first_stage, second_stage, head, decoder, ...), 'default' (the network's: "
                    "stem,first_stage,second_stage for CNNs) or 'none'"),
             Option("openvino_fp16_weights", "--openvino-fp16-weights", "store the IR's weights in fp16 (half the "
                    "size, decompressed to f32 at load)", type=None, is_flag=True, default=False),
             _MAX_DROP, *_NNCF_OPTS),
    extra="openvino",
))
register(Target(
    "coreml", "Core ML", "coreml", "iPhone, iPad, Mac: CPU, GPU, Neural Engine (compute units ALL, CPU_ONLY, "
    "CPU_AND_GPU, CPU_AND_NE)", (".mlpackage",), (P.FP32, P.FP16, P.W8, P.PAL6, P.PAL4),
    "lmliqa.runtimes.coreml", "lmliqa.export.coreml", "lmliqa.quantize.coreml",
    requires={Stage.EXPORT: ("coremltools",), Stage.QUANTIZE: ("coremltools",), Stage.RUNTIME: ("coremltools",)},
    tools=("coremltools",), extra="export", device_names=("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE"),
))
register(Target(
    "tensorrt", "TensorRT", "tensorrt", "NVIDIA GPUs (datacenter, RTX, Jetson): cuda:N", (".plan", ".engine"),
    (P.FP16, P.INT8), "lmliqa.runtimes.tensorrt", "lmliqa.export.tensorrt", "lmliqa.quantize.tensorrt",
    requires={Stage.EXPORT: ("onnx", "onnxscript", "onnxconverter_common"),
              Stage.QUANTIZE: ("onnx", "onnxruntime", "nncf"), Stage.RUNTIME: ("tensorrt",)},
    tools=("onnxconverter-common", "tensorrt"), options=(*_NNCF_OPTS,), extra="export", device_names=("cuda:N",),
))
# quantization-aware fine-tuning of a PT2E target's own INT8 graph (quantize/_qat.py): LiteRT and ExecuTorch
PT2E_QAT_OPTIONS = (
    Option("qat_steps", "--qat-steps", "quantization-aware fine-tuning of the INT8 graph itself before conversion "
           "(PT2E QAT distilling the float program; quantize/_qat.py): steps of one batch of crops of the calibration "
           "spec's photos that are not validation photos; with no --float-scope the ladder then starts at the narrow "
           "scope (no regions). 0: post-training quantization", Stage.QUANTIZE, default=0, type=int),
    Option("qat_lr", "--qat-lr", "learning rate of --qat-steps (cosine-decayed)", Stage.QUANTIZE, default=1e-5,
           type=float),
    Option("qat_device", "--qat-device", "where --qat-steps trains: auto (CUDA when visible, else CPU), cpu, cuda, "
           "cuda:N; conversion and lowering stay on the CPU", Stage.QUANTIZE, default="auto", type=str),
)
register(Target(
    "litert", "LiteRT (TFLite)", "litert", "Android and embedded Linux CPUs through XNNPACK (GPU/NPU delegates on "
    "device: not exercised here)", (".tflite",), (P.FP32, P.FP16, P.INT8), "lmliqa.runtimes.litert",
    "lmliqa.export.litert", "lmliqa.quantize.litert",
    requires={Stage.EXPORT: ("litert_torch", "ai_edge_litert"), Stage.QUANTIZE: ("litert_torch", "ai_edge_litert"),
              Stage.RUNTIME: ("ai_edge_litert",)},
    tools=("litert-torch", "ai-edge-litert", "torchao"), extra="android",
    options=PT2E_QAT_OPTIONS,
))
register(Target(
    "executorch", "ExecuTorch", "executorch", "Android, iOS and embedded CPUs through the XNNPACK delegate",
    (".pte",), (P.FP32, P.INT8), "lmliqa.runtimes.executorch", "lmliqa.export.executorch",
    "lmliqa.quantize.executorch",
    requires={Stage.EXPORT: ("executorch",), Stage.QUANTIZE: ("executorch", "torchao"),
              Stage.RUNTIME: ("executorch",)},
    tools=("executorch", "torchao"), extra="android", options=PT2E_QAT_OPTIONS,
))
register(Target(
    "web", "ONNX Runtime Web (browser)", "web", "web pages: the camera-check page and any site, in browsers with "
    "WebAssembly (Chromium, Firefox, Safari; WebGPU where the browser has it)", (), (P.FP32, P.INT8),
    "lmliqa.runtimes.web", "lmliqa.export.web", "lmliqa.quantize.web", folder=True, marker="lmliqa-web.mjs",
    requires={Stage.EXPORT: ("onnx", "onnxscript"), Stage.QUANTIZE: ("onnx", "onnxruntime", "nncf"),
              Stage.RUNTIME: ("selenium",)},
    tools=("onnx", "selenium"), extra="web", device_names=("wasm", "webgpu"),
))
register(Target(
    "qualcomm", "Qualcomm AI Engine Direct (Snapdragon HTP), via LiteRT AOT", "qnn",
    "Snapdragon phones' NPU (Hexagon HTP): SM8550, SM8650, SM8750; the compiled .tflite runs with LiteRT's Qualcomm "
    "dispatch on the phone", (), (P.FP16, P.INT8), "lmliqa.runtimes.qualcomm", "lmliqa.export.qualcomm",
    "lmliqa.quantize.qualcomm", folder=True, marker="lmliqa-qnn.json",
    requires={Stage.EXPORT: ("litert_torch", "ai_edge_litert", "onnxruntime_qnn"),
              Stage.QUANTIZE: ("litert_torch", "ai_edge_litert", "onnxruntime_qnn"),
              Stage.RUNTIME: ("onnxruntime", "onnxruntime_qnn", "ai_edge_litert", "onnx")},
    tools=("ai-edge-litert", "onnxruntime-qnn"), extra="qnn", device_names=("htp",), check_photos=8,
    gates={P.FP16: REDUCED},
    options=tuple(o for stage in (Stage.EXPORT, Stage.QUANTIZE) for o in (
        Option("socs", "--socs", "Snapdragon SoCs to compile for (SM8550, SM8650, SM8750)", stage,
               default="SM8650,SM8750"),
        Option("qualcomm_fold_relu", "--qualcomm-fold-relu", "compile with LiteRT's default fold-ReLU (wrong on "
               "quantized convs whose output range starts below 0: kept for reproducing it)", stage, default=False,
               type=None, is_flag=True))),
))
