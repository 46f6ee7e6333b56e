"""The scorer every backend shares: preprocessing and aggregation from the artifact's contract, so an image
is cropped and averaged by the same code whatever executes the network."""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.contract import CONTRACT_VERSION, PreprocessContract, ScoreScale
from lmliqa.decode import DEFAULT_MAX_PIXELS, ImageSource, describe
from lmliqa.errors import (  # noqa: F401 - the runtime's errors, importable from here
    ArtifactError,
    BackendUnavailable,
    ContractError,
    DeviceUnavailable,
    ImageDecodeError,
    PrecisionUnsupported,
)
from lmliqa.targets import Precision


def parse_metadata(raw: str | bytes, path: Any) -> dict[str, Any]:
    """The lmliqa metadata JSON an artifact carries, as a dict, or ArtifactError saying it is malformed."""
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: its lmliqa metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: its lmliqa metadata is a JSON {type(meta).__name__}, not an object")
    return meta


def read_contract(metadata: dict[str, Any], path: Any) -> tuple[PreprocessContract, ScoreScale]:
    """The contract and score scale an artifact's metadata declares; refused (ArtifactError) when missing or
    malformed, and when written for a newer contract version than this runtime implements: its preprocessing
    would be guessed, and the scores silently wrong."""
    contract, score = metadata.get("contract"), metadata.get("score")
    if not isinstance(contract, dict) or not isinstance(score, dict):
        missing = [k for k, v in (("contract", contract), ("score", score)) if not isinstance(v, dict)]
        raise ArtifactError(f"{path}: its lmliqa metadata lacks {' and '.join(missing)}; was it written by "
                            "`lmliqa export`?")
    version = contract.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ArtifactError(f"{path}: malformed lmliqa metadata: contract version {version!r}")
    if version > CONTRACT_VERSION:
        raise ArtifactError(f"{path} was written for preprocessing contract version {version}; this lmliqa implements "
                            f"version {CONTRACT_VERSION}. Upgrade lmliqa to score with it (its preprocessing is not "
                            "guessed)")
    try:
        return PreprocessContract.from_dict(contract), ScoreScale.from_dict(score)
    except (ContractError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: malformed lmliqa metadata: {exc}") from None


def require(module: str, target: str):
    """Import MODULE for TARGET's runtime, or raise BackendUnavailable with the target's install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        from lmliqa import targets

        raise BackendUnavailable(f"{module} is not installed: {targets.get(target).requires_hint()}") from exc


def stored_precision(metadata: dict[str, Any], asked: Precision | None, path: Any, runtime: str) -> Precision:
    """The precision an artifact stores, for runtimes that run an artifact only as stored; asking for another
    one is refused, not silently ignored."""
    stored = Precision(metadata.get("precision", "fp32"))
    if asked not in (None, stored):
        raise PrecisionUnsupported(f"{path} is a {stored} artifact; {runtime} runs it as stored (asked for {asked}): "
                                   "export that precision instead")
    return stored


@dataclass
class ImageResult:
    """One input's outcome: a finite score with its crop scores, or the error (``error`` says why in words,
    ``error_kind`` is one of lmliqa.decode.KINDS)."""

    image: str
    score: float | None
    crop_scores: list[float] = field(default_factory=list)
    error: str = ""
    error_kind: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Scorer:
    """Base class: subclasses implement ``_infer`` (crops (n, 3, s, s) float32 pixels -> scores (n,)).

    Constructors take ``(path, precision=None, device=None, threads=None)``; ``precision`` None means the
    artifact's own. An artifact exported for a fixed batch (``metadata["batch"]``, e.g. one image's crops for
    LiteRT and ExecuTorch) is fed in chunks of that size, the last one padded."""

    backend = "base"
    platform = "native"     # where the network executes (lmliqa.platforms)

    def __init__(self, path: str | Path, metadata: dict[str, Any], precision: Precision | str,
                 device: str | None = None) -> None:
        self.path = Path(path)
        self.metadata = metadata
        self.contract, self.scale = read_contract(metadata, path)
        self.precision = Precision(precision)   # the precision that executes, as the backend reports it
        self.weights = Precision(metadata.get("weights") or "fp32")   # how the artifact stores its weights
        self.device = device or "cpu"
        self.detail = ""            # what else the backend does to the precision (e.g. layers kept f32)
        batch = metadata.get("batch")
        self.fixed_batch: int | None = int(batch) if isinstance(batch, int) else None

    # ------------------------------------------------------------------ subclasses
    def _infer(self, crops: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    def infer(self, crops: np.ndarray) -> np.ndarray:
        """Raw network call on contract-ready crops; returns float64 scores (n,)."""
        crops = np.ascontiguousarray(crops, dtype=np.float32)
        s = self.contract.crop_size
        if crops.ndim != 4 or crops.shape[1:] != (3, s, s):
            raise ValueError(f"crops must be (n, 3, {s}, {s}) float32 pixels, got {crops.shape}")
        b = self.fixed_batch
        if b is None or len(crops) == b:
            return np.asarray(self._infer(crops), dtype=np.float64).reshape(-1)
        out = []
        for i in range(0, len(crops), b):   # fixed-batch artifact: whole chunks, the last one padded
            chunk = crops[i:i + b]
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            out.append(np.asarray(self._infer(np.ascontiguousarray(chunk)), dtype=np.float64).reshape(-1)[:n])
        return np.concatenate(out)

    def score(self, image: ImageSource) -> ImageResult:
        return next(iter(self.score_many([image], batch_size=1)))

    def score_many(self, images: Iterable[ImageSource], batch_size: int = 8, progress: bool = False,
                   workers: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[ImageResult]:
        """Score images lazily and in input order: one result per input, a finite score or the error that kept
        it from one (the rest are scored). batch_size counts images per inference call (each brings the
        contract's n crops). Decoding runs in ``workers`` threads (default: min(4, CPUs); 0: in this thread),
        ahead of inference by at most two batches, so memory stays bounded however many inputs come.
        max_pixels: images larger than this are refused from their header (lmliqa.decode)."""
        items: Iterable[ImageSource] = images
        if progress:
            from tqdm import tqdm

            items = tqdm(images, unit="img", desc=f"scoring ({self.backend}, {self.precision})")
        workers = min(4, os.cpu_count() or 1) if workers is None else workers

        def decode(image: ImageSource) -> np.ndarray:
            return self.contract.eval_crops(image, max_pixels=max_pixels)

        pending: list[tuple[str, np.ndarray]] = []
        for name, crops in _ordered_map(decode, items, workers, ahead=2 * batch_size + workers):
            if isinstance(crops, BaseException):
                yield from self._flush(pending)
                pending = []
                yield _failed(name, crops)
                continue
            pending.append((name, crops))
            if len(pending) >= batch_size:
                yield from self._flush(pending)
                pending = []
        yield from self._flush(pending)

    def _flush(self, pending: list[tuple[str, np.ndarray]]) -> Iterator[ImageResult]:
        if not pending:
            return
        scores = self.infer(np.concatenate([c for _, c in pending]))
        pos = 0
        for name, crops in pending:
            s = scores[pos:pos + len(crops)]
            pos += len(crops)
            score = self.contract.aggregate(s)
            if np.isfinite(score):
                yield ImageResult(name, score, [float(v) for v in s])
            else:
                yield ImageResult(name, None, [float(v) for v in s], "the model returned a non-finite score",
                                  "corrupt")

    def close(self) -> None:
        """Release what the scorer holds beyond memory (an emulated platform's worker process)."""

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "platform": self.platform, "precision": self.precision.value,
                "precision_detail": self.detail,
                "weights": self.weights.value, "device": self.device, "path": str(self.path),
                "model": self.metadata.get("model"), "crop_size": self.contract.crop_size,
                "eval_crops": self.contract.n_eval_crops, "layout": self.contract.layout, "score": self.scale.to_dict()}


def _failed(name: str, exc: BaseException) -> ImageResult:
    if isinstance(exc, ImageDecodeError):
        return ImageResult(name, None, [], exc.reason, exc.kind)
    return ImageResult(name, None, [], str(exc), "unsupported")   # ContractError: e.g. small_image="error"


def _ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int,
                 ahead: int) -> Iterator[tuple[str, Any]]:
    """(name, fn(item) or the input error it raised) for each item, in input order; with workers > 0, fn runs in
    a thread pool at most AHEAD items ahead of the consumer. Errors other than bad input propagate."""
    expected = (ImageDecodeError, ContractError)
    if workers <= 0:
        for item in items:
            try:
                yield describe(item), fn(item)
            except expected as exc:
                yield describe(item), exc
        return
    window: deque[tuple[str, Future]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="lmliqa-decode") as pool:
        try:
            for item in items:
                window.append((describe(item), pool.submit(fn, item)))
                if len(window) >= ahead:
                    yield _take(window.popleft(), expected)
            while window:
                yield _take(window.popleft(), expected)
        finally:
            for _, fut in window:        # the consumer stopped early (or an error propagates): drop the rest
                fut.cancel()


def _take(entry: tuple[str, Future], expected: tuple[type[BaseException], ...]) -> tuple[str, Any]:
    name, fut = entry
    try:
        return name, fut.result()
    except expected as exc:
        return name, exc
