"""The embedded default data set: real photos shipped inside PyPI wheels, synthetically distorted and
scored with a full-reference metric as pseudo-MOS.

It needs nothing but the installed packages, so the demo and the tests run on any machine. It is a
demo/test set, not a benchmark: its "MOS" is 100 x SSIM (scikit-image, per RGB channel, Gaussian
weighting as in Wang et al. 2004) between the distorted image and its reference, not human opinion.

Layout written (the folder layout, with a ``ref`` column so splits follow reference content)::

    DIR/scores.csv        image,mos,ref,distortion
    DIR/images/<ref>__<distortion>_<level>.png
    DIR/manifest.json     seed, version, sources, distortion table
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from .base import DatasetError

VERSION = 1
SHORT_SIDE = 320  # references are resized so the shorter side is this (then centre-cropped to <= 4:3)

# (distortion, levels): increasing severity. Chosen to cover the families of TID2013/KADID that
# a camera pipeline produces: blur, sensor noise, compression, contrast, colour, exposure.
DISTORTIONS: dict[str, tuple[float, ...]] = {
    "gblur": (0.8, 1.6, 3.0, 5.0),               # Gaussian blur sigma (px)
    "noise": (6.0, 14.0, 26.0, 42.0),            # additive Gaussian noise sigma (0-255)
    "jpeg": (40, 20, 10, 4),                      # JPEG quality
    "contrast": (0.75, 0.55, 0.38, 0.22),         # contrast factor (towards mean grey)
    "saturation": (0.55, 0.3, 1.9, 2.8),          # colour factor (desaturate / oversaturate)
    "brightness": (1.35, 1.7, 0.65, 0.4),         # exposure factor
}


def wheel_photos() -> dict[str, Path]:
    """Real photographs that ship in scikit-image, scikit-learn and matplotlib wheels."""
    try:
        import matplotlib
        import skimage.data
        import sklearn.datasets
    except ImportError as exc:
        raise DatasetError("the synthetic set needs scikit-image, scikit-learn and matplotlib: "
                           "pip install 'lmliqa[data]'") from exc
    sk = Path(skimage.data.__file__).parent
    photos = {n: sk / f for n, f in [
        ("astronaut", "astronaut.png"), ("chelsea", "chelsea.png"), ("coffee", "coffee.png"),
        ("rocket", "rocket.jpg"), ("ihc", "ihc.png"), ("hubble", "hubble_deep_field.jpg"),
        ("motorcycle_left", "motorcycle_left.png"), ("motorcycle_right", "motorcycle_right.png"),
        ("retina", "retina.jpg")]}
    skl = Path(sklearn.datasets.__file__).parent / "images"
    photos["china"] = skl / "china.jpg"
    photos["flower"] = skl / "flower.jpg"
    photos["grace_hopper"] = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    missing = [str(p) for p in photos.values() if not p.is_file()]
    if missing:
        raise DatasetError(f"wheel-shipped photos missing: {missing}")
    return photos


def _prepare_reference(path: Path) -> Image.Image:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = SHORT_SIDE / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS)
    w, h = img.size
    max_long = SHORT_SIDE * 4 // 3
    if max(w, h) > max_long:
        left, top = (w - min(w, max_long)) // 2, (h - min(h, max_long)) // 2
        img = img.crop((left, top, left + min(w, max_long), top + min(h, max_long)))
    return img


def distort(img: Image.Image, kind: str, level: float, rng: np.random.Generator) -> Image.Image:
    if kind == "gblur":
        return img.filter(ImageFilter.GaussianBlur(level))
    if kind == "noise":
        a = np.asarray(img, dtype=np.float64) + rng.normal(0.0, level, size=(img.size[1], img.size[0], 3))
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    if kind == "jpeg":
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(level))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "contrast":
        return ImageEnhance.Contrast(img).enhance(level)
    if kind == "saturation":
        return ImageEnhance.Color(img).enhance(level)
    if kind == "brightness":
        return ImageEnhance.Brightness(img).enhance(level)
    raise ValueError(f"unknown distortion {kind!r}")


def pseudo_mos(reference: Image.Image, distorted: Image.Image) -> float:
    from skimage.metrics import structural_similarity

    ssim = structural_similarity(np.asarray(reference), np.asarray(distorted), channel_axis=2,
                                 data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    return float(np.clip(100.0 * ssim, 0.0, 100.0))


def default_dir(seed: int) -> Path:
    from ..cache import cache_dir

    return cache_dir() / f"synthetic-v{VERSION}-seed{seed}"


def build_synthetic(out: Path | None = None, seed: int = 0) -> Path:
    """Write (or reuse, when its manifest matches) the synthetic set; returns its folder."""
    out = Path(out) if out is not None else default_dir(seed)
    manifest = {"version": VERSION, "seed": seed, "short_side": SHORT_SIDE,
                "distortions": {k: list(v) for k, v in DISTORTIONS.items()},
                "pseudo_mos": "100 * SSIM(reference, distorted), skimage, RGB channels, gaussian sigma 1.5",
                "note": "demo/test set; pseudo-MOS from a full-reference metric, not human opinion"}
    mpath = out / "manifest.json"
    if mpath.is_file() and (out / "scores.csv").is_file():
        try:
            if {k: v for k, v in json.loads(mpath.read_text()).items() if k != "sources"} == manifest:
                return out
        except json.JSONDecodeError:
            pass
    photos = wheel_photos()
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for ref_index, (ref, src) in enumerate(sorted(photos.items())):
        rng = np.random.default_rng([seed, ref_index])
        reference = _prepare_reference(src)
        name = f"{ref}__reference_0.png"
        reference.save(out / "images" / name)
        rows.append((name, 100.0, ref, "reference"))
        for kind, levels in DISTORTIONS.items():
            for li, level in enumerate(levels, 1):
                d = distort(reference, kind, level, rng)
                name = f"{ref}__{kind}_{li}.png"
                d.save(out / "images" / name)
                rows.append((name, round(pseudo_mos(reference, d), 4), ref, kind))
    tmp = out / "scores.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "mos", "ref", "distortion"])
        w.writerows(rows)
    os.replace(tmp, out / "scores.csv")
    manifest["sources"] = {k: str(v) for k, v in sorted(photos.items())}
    mpath.write_text(json.dumps(manifest, indent=2))
    return out
