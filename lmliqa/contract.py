"""The preprocessing contract: the one definition of how an image becomes model input.

Training, evaluation, export metadata and every runtime read this object, so an image is turned
into crops by exactly one code path (numpy + Pillow, no torch). The contract serialises to JSON and
travels inside every checkpoint and exported artifact.

Pipeline, in order (each step is a field of :class:`PreprocessContract`):

1. **decode** with Pillow (:mod:`lmliqa.decode`: errors by kind, decompression bombs refused); the first frame
   of animated files.
2. **EXIF orientation** applied (``ImageOps.exif_transpose``) when ``exif_transpose`` is true.
3. **to RGB**, with explicit rules per mode (see :func:`to_rgb`): 16-bit grey/int images are scaled
   by 1/257 and rounded, float images are taken as 0..1, alpha and palette transparency are composited
   over ``background``, CMYK uses Pillow's conversion (ICC profiles are ignored everywhere).
4. **resize** (``resize``): ``none`` keeps native resolution (DEIQT's choice), ``shorter_side`` /
   ``longer_side`` scale with the aspect kept, ``fixed`` scales to ``[height, width]``. Pillow's
   filters antialias when they shrink. An image whose shorter side is then below ``crop_size`` is
   upscaled (aspect kept) so every crop lies inside it, or rejected if ``small_image == "error"``.
5. **crops** of ``crop_size``²: evaluation uses a fixed grid (``eval_rows`` × ``eval_cols``; crop
   ``(r, c)`` has its top-left corner at ``round(r * (H - s) / (rows - 1))``, ``round(c * (W - s) /
   (cols - 1))``, centred when rows or cols is 1; row-major order). Training draws random crops and
   flips them horizontally with probability ``train_hflip``. With ``eval_hflip`` every grid crop is also
   scored mirrored (test-time flip averaging: the grid's crops, then their mirror images, in that order).
6. **model input**: float32, NCHW, RGB, raw pixel values 0..255. Normalisation with ``mean``/``std``
   (given on the 0..1 scale) happens *inside* the network, so devices feed pixels.
7. **aggregation** of the per-crop scores into the image score (``mean`` or ``median``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .decode import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageSource, load_rgb, to_rgb
from .errors import ContractError

CONTRACT_VERSION = 1     # the contract this lmliqa implements; artifacts declare theirs

__all__ = ["CONTRACT_VERSION", "PreprocessContract", "ScoreScale", "ContractError", "ImageDecodeError", "ImageSource",
           "load_rgb", "to_rgb", "DEFAULT_MAX_PIXELS"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
_RESIZE_MODES = ("none", "shorter_side", "longer_side", "fixed")

# Evaluation layouts: how many network calls a photo costs, as a named speed/accuracy choice made at export time
# (`lmliqa export --layout NAME`) and recorded in the artifact's contract (notes["layout"]). Grid layouts keep the
# model's own resize; "whole" layouts make the photo one crop. benchmarks/layouts.py measures each one's accuracy
# (5-fold CV) and camera-check latency; the README has the table.
LAYOUTS: dict[str, str] = {
    "accurate": "3 x 3 grid of crops at the model's resolution (DEIQT's evaluation; 9 network calls)",
    "fast": "2 x 2 grid (4 calls)",
    "centre": "the centre crop (1 call)",
    "whole": "the whole photo resized to one crop, aspect not kept (1 call)",
    "whole_aspect": "shorter side resized to the crop size, then its centre crop (1 call)",
    "accurate_flip": "3 x 3 grid, each crop also mirrored (test-time flip averaging; 18 calls)",
    "dense": "4 x 4 grid (16 calls)",
}
_AGGREGATIONS = ("mean", "median")


@dataclass(frozen=True)
class ScoreScale:
    """What the model's output means: the label scale it was trained on and its direction."""

    min: float = 0.0
    max: float = 100.0
    higher_is_better: bool = True
    name: str = "MOS"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreScale:
        return cls(**d)


@dataclass(frozen=True)
class PreprocessContract:
    version: int = 1
    exif_transpose: bool = True
    background: tuple[int, int, int] = (255, 255, 255)
    resize: str = "none"
    resize_size: tuple[int, ...] = ()
    interpolation: str = "bilinear"
    small_image: str = "upscale"
    crop_size: int = 224
    eval_rows: int = 3
    eval_cols: int = 3
    eval_hflip: bool = False
    train_hflip: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_dtype: str = "float32"
    input_layout: str = "NCHW"
    input_range: tuple[float, float] = (0.0, 255.0)
    aggregation: str = "mean"
    notes: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # JSON gives lists; keep tuples so the object stays hashable and comparable.
        for name in ("background", "resize_size", "mean", "std", "input_range"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessContract:
        version = d.get("version", 1)
        if version != CONTRACT_VERSION:
            newer = isinstance(version, int) and version > CONTRACT_VERSION
            raise ContractError(f"contract version {version!r} is {'newer than' if newer else 'not'} the version this "
                                f"lmliqa implements ({CONTRACT_VERSION})" + ("; upgrade lmliqa" if newer else ""))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ContractError(f"unknown preprocessing contract fields: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> PreprocessContract:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> PreprocessContract:
        return dataclasses.replace(self, **changes)

    def with_layout(self, name: str) -> PreprocessContract:
        """This contract with the evaluation layout NAME (one of LAYOUTS), recorded in notes["layout"]."""
        s = self.crop_size
        changes: dict[str, Any] = {
            "accurate": {"eval_rows": 3, "eval_cols": 3},
            "fast": {"eval_rows": 2, "eval_cols": 2},
            "centre": {"eval_rows": 1, "eval_cols": 1},
            "whole": {"resize": "fixed", "resize_size": (s, s), "eval_rows": 1, "eval_cols": 1},
            "whole_aspect": {"resize": "shorter_side", "resize_size": (s,), "eval_rows": 1, "eval_cols": 1},
            "accurate_flip": {"eval_rows": 3, "eval_cols": 3, "eval_hflip": True},
            "dense": {"eval_rows": 4, "eval_cols": 4},
        }.get(name, {})
        changes.setdefault("eval_hflip", False)
        if name not in LAYOUTS:
            raise ContractError(f"unknown layout {name!r}; choose from {', '.join(LAYOUTS)}")
        return dataclasses.replace(self, **changes, notes={**self.notes, "layout": name})

    @property
    def layout(self) -> str:
        """The layout's name when one was chosen (with_layout), else a description of the grid."""
        return self.notes.get("layout") or f"{self.eval_rows}x{self.eval_cols} grid"

    def validate(self) -> None:
        if self.resize not in _RESIZE_MODES:
            raise ContractError(f"resize must be one of {_RESIZE_MODES}, got {self.resize!r}")
        want = {"none": 0, "shorter_side": 1, "longer_side": 1, "fixed": 2}[self.resize]
        if len(self.resize_size) != want or any(int(s) <= 0 for s in self.resize_size):
            raise ContractError(f"resize={self.resize!r} needs {want} positive size value(s), got {self.resize_size}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ContractError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}")
        if self.small_image not in ("upscale", "error"):
            raise ContractError("small_image must be 'upscale' or 'error'")
        if self.crop_size < 16 or self.eval_rows < 1 or self.eval_cols < 1:
            raise ContractError("crop_size must be >= 16 and eval_rows/eval_cols >= 1")
        if not 0.0 <= self.train_hflip <= 1.0:
            raise ContractError("train_hflip is a probability in [0, 1]")
        if self.aggregation not in _AGGREGATIONS:
            raise ContractError(f"aggregation must be one of {_AGGREGATIONS}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ContractError("mean and std need 3 values each, std > 0")
        if (self.input_dtype, self.input_layout, self.input_range) != ("float32", "NCHW", (0.0, 255.0)):
            raise ContractError("this lmliqa version hands models float32 NCHW input in 0..255")

    @property
    def n_eval_crops(self) -> int:
        return self.eval_rows * self.eval_cols * (2 if self.eval_hflip else 1)

    # ----------------------------------------------------------------- pipeline
    def decode(self, src: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
        """Steps 1-3: decode, orient and convert to RGB (lmliqa.decode refuses images over max_pixels)."""
        return load_rgb(src, exif_transpose=self.exif_transpose, background=self.background, max_pixels=max_pixels)

    def load(self, src: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
        """Steps 1-4: decode, orient, convert to RGB and resize."""
        return self.resize_image(self.decode(src, max_pixels))

    def resize_image(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        if self.resize == "shorter_side":
            s = self.resize_size[0] / min(w, h)
            target = (round(w * s), round(h * s))
        elif self.resize == "longer_side":
            s = self.resize_size[0] / max(w, h)
            target = (round(w * s), round(h * s))
        elif self.resize == "fixed":
            target = (int(self.resize_size[1]), int(self.resize_size[0]))
        else:
            target = (w, h)
        tw, th = target
        if min(tw, th) < self.crop_size:
            if self.small_image == "error":
                raise ContractError(f"image is {w}x{h} (after resize {tw}x{th}); crops need {self.crop_size}px")
            s = self.crop_size / min(tw, th)
            tw, th = max(self.crop_size, round(tw * s)), max(self.crop_size, round(th * s))
        if (tw, th) == (w, h):
            return img
        return img.resize((tw, th), _INTERPOLATIONS[self.interpolation])

    def eval_boxes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Top-left corners (top, left) of the deterministic evaluation crops, row-major."""
        s = self.crop_size
        if height < s or width < s:
            raise ContractError(f"image {width}x{height} is smaller than the {s}px crop")
        return [(_grid_pos(r, self.eval_rows, height - s), _grid_pos(c, self.eval_cols, width - s))
                for r in range(self.eval_rows) for c in range(self.eval_cols)]

    def eval_crops(self, src: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """The model input for one image: (n_eval_crops, 3, s, s) float32 pixels 0..255."""
        return self.grid_crops(self.decode(src, max_pixels))

    def grid_crops(self, rgb: Image.Image) -> np.ndarray:
        """Steps 4-6 for a decoded RGB image (step 3's output): resize, then the evaluation grid's crops."""
        arr = np.asarray(self.resize_image(rgb), dtype=np.uint8)
        s = self.crop_size
        crops = [arr[t:t + s, l:l + s] for t, l in self.eval_boxes(*arr.shape[:2])]
        if self.eval_hflip:
            crops += [c[:, ::-1] for c in crops]
        return np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2), dtype=np.float32)

    def random_boxes(self, height: int, width: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """n random crop boxes (top, left, flip) for training; uniform positions, flips with train_hflip."""
        s = self.crop_size
        tops = rng.integers(0, height - s + 1, size=n)
        lefts = rng.integers(0, width - s + 1, size=n)
        flips = rng.random(n) < self.train_hflip
        return np.stack([tops, lefts, flips.astype(np.int64)], axis=1)

    def crops_from_boxes(self, arr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Cut (top, left[, flip]) boxes out of an HxWx3 uint8 array -> (n, 3, s, s) float32."""
        s = self.crop_size
        out = np.empty((len(boxes), 3, s, s), dtype=np.float32)
        for i, box in enumerate(boxes):
            t, l = int(box[0]), int(box[1])
            crop = arr[t:t + s, l:l + s]
            if len(box) > 2 and box[2]:
                crop = crop[:, ::-1]
            out[i] = crop.transpose(2, 0, 1)
        return out

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """Reference normalisation (the network applies the same inside): (x/255 - mean)/std, NCHW."""
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, 3, 1, 1)
        return (x / np.float32(255.0) - mean) / std

    def aggregate(self, crop_scores: np.ndarray) -> float:
        crop_scores = np.asarray(crop_scores, dtype=np.float64)
        if self.aggregation == "median":
            return float(np.median(crop_scores))
        return float(np.mean(crop_scores))


def _grid_pos(i: int, n: int, span: int) -> int:
    if n == 1:
        return span // 2
    return int(round(i * span / (n - 1)))
