"""Golden probes: a few small images kept in a release, with the torch reference's score of each image and of each
crop, every artifact's own score, and the tolerance per target x precision.

Someone porting a release to a phone runs the probes through their own app (their decoding, cropping and
aggregation included) and compares with ``golden.json``; `lmliqa verify` does the same on every target that runs
here. The probes are real photographs without copyright restrictions (CC0 or public domain, as scikit-image
ships them; the licence of each is recorded) turned into the cases the preprocessing contract must handle:
JPEG, PNG, EXIF rotation, grey, alpha, an image below the crop size, blur, noise, compression, exposure.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .fidelity import Gate, compare
from .stages import Outcome, StageResult, Step
from .targets import Precision

GOLDEN = "golden.json"


@dataclass(frozen=True)
class Probe:
    file: str
    source: str          # the scikit-image photo it is made from
    what: str            # the contract case it exercises


PROBES = (     # small files: a release that ships in the wheel keeps them (under 0.3 MB together)
    Probe("chelsea.jpg", "chelsea", "JPEG q92, 451 x 300, landscape"),
    Probe("coffee_blur.jpg", "coffee", "336 x 224, Gaussian blur radius 2, JPEG q90"),
    Probe("coffee_noise.jpg", "coffee", "336 x 224, additive Gaussian noise sigma 20 (seeded), JPEG q90"),
    Probe("coffee_dark.jpg", "coffee", "336 x 224, exposure x0.4, JPEG q90"),
    Probe("astronaut_q8.jpg", "astronaut", "512 x 512, JPEG q8 (blocking)"),
    Probe("rocket_exif6.jpg", "rocket", "224 x 336 stored rotated with EXIF Orientation 6: must be transposed "
                                        "before cropping"),
    Probe("camera_grey.png", "camera", "256 x 256 8-bit grey PNG (mode L)"),
    Probe("chelsea_alpha.png", "chelsea", "300 x 200 RGBA with an alpha ramp: composited over the contract's "
                                          "background, upscaled to the crop size"),
    Probe("astronaut_small.png", "astronaut", "128 x 128: below the crop size, upscaled by the contract"),
)

LICENCES = {   # as scikit-image's skimage.data documents them
    "chelsea": "CC0 (photographer Stefan van der Walt), via scikit-image",
    "coffee": "CC0 (photographer Rachel Michetti), via scikit-image",
    "astronaut": "public domain (NASA), via scikit-image",
    "rocket": "public domain (SpaceX), via scikit-image",
    "camera": "CC0 (photographer Lav Varshney), via scikit-image",
}


def _source(name: str):
    from PIL import Image

    try:
        import skimage.data
    except ImportError as exc:
        raise RuntimeError("making golden probes needs scikit-image: pip install 'lmliqa[data]'") from exc
    return Image.fromarray(getattr(skimage.data, name)())


def _encode(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _make(p: Probe) -> bytes:
    from PIL import Image, ImageEnhance, ImageFilter

    img = _source(p.source)
    lanczos = Image.Resampling.LANCZOS
    if p.source == "coffee":
        img = img.resize((336, 224), lanczos)
    if p.file == "chelsea.jpg":
        return _encode(img, "JPEG", quality=92)
    if p.file == "coffee_blur.jpg":
        return _encode(img.filter(ImageFilter.GaussianBlur(2)), "JPEG", quality=90)
    if p.file == "coffee_noise.jpg":
        a = np.asarray(img, dtype=np.float32) + np.random.default_rng(0).normal(0, 20, np.asarray(img).shape)
        return _encode(Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8)), "JPEG", quality=90)
    if p.file == "coffee_dark.jpg":
        return _encode(ImageEnhance.Brightness(img).enhance(0.4), "JPEG", quality=90)
    if p.file == "astronaut_q8.jpg":
        return _encode(img, "JPEG", quality=8)
    if p.file == "rocket_exif6.jpg":    # Orientation 6: the viewer rotates 90 degrees clockwise to display
        exif = Image.Exif()
        exif[0x0112] = 6
        small = img.resize((224, 336), lanczos)
        return _encode(small.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=92, exif=exif)
    if p.file == "camera_grey.png":
        return _encode(img.convert("L").resize((256, 256), lanczos), "PNG")
    if p.file == "chelsea_alpha.png":
        small = img.resize((300, 200), lanczos)
        alpha = np.tile(np.linspace(40, 255, small.width).astype(np.uint8), (small.height, 1))
        rgba = small.convert("RGBA")
        rgba.putalpha(Image.fromarray(alpha))
        return _encode(rgba, "PNG")
    if p.file == "astronaut_small.png":
        return _encode(img.resize((128, 128), lanczos), "PNG")
    raise ValueError(f"no recipe for probe {p.file}")


def write_probes(folder: Path) -> list[Path]:
    """The probe images, written into FOLDER (made from the photos each time; the files are what a release keeps)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in PROBES:
        path = folder / p.file
        path.write_bytes(_make(p))
        out.append(path)
    return out


def probe_records() -> list[dict[str, str]]:
    return [{"file": p.file, "source": p.source, "licence": LICENCES[p.source], "what": p.what} for p in PROBES]


def score_probes(scorer, folder: Path) -> dict[str, dict[str, Any]]:
    """{probe file: {score, crops}} for every probe in FOLDER's golden.json (or PROBES), scored by SCORER."""
    names = [p["file"] for p in read_golden(folder)["probes"]] if (folder / GOLDEN).exists() else \
        [p.file for p in PROBES]
    out = {}
    for r in scorer.score_many([str(folder / n) for n in names], batch_size=1):
        if not r.ok:
            raise RuntimeError(f"golden probe {r.image} failed to score: {r.error}")
        out[Path(r.image).name] = {"score": float(r.score), "crops": [float(c) for c in r.crop_scores]}
    return out


def read_golden(folder: Path) -> dict[str, Any]:
    return json.loads((folder / GOLDEN).read_text())


def check_probes(golden: dict[str, Any], artifact: str, got: dict[str, dict[str, Any]], target: str = "",
                 step: Step = Step.VERIFY, platform: str = "native") -> StageResult:
    """An artifact's probe scores (score_probes) against the reference scores, held to the artifact's tolerance
    (``Gate(max_abs=tolerance)``); without a recorded tolerance the check fails."""
    ref = golden["reference"]["scores"]
    missing = sorted(set(ref) - set(got))
    if missing:
        raise RuntimeError(f"{artifact}: probes not scored: {missing}")
    names = sorted(ref)
    entry = golden["artifacts"].get(artifact, {})
    tol = entry.get("tolerance")
    fid = compare(np.array([ref[n]["score"] for n in names]), np.array([got[n]["score"] for n in names]), names=names,
                  worst=1)
    precision = entry.get("precision")
    result = StageResult(step, target or entry.get("target", ""), Outcome.VERIFIED, artifact=artifact,
                         precision=Precision(precision) if precision else None, fidelity=fid,
                         gate=Gate(max_abs=float(tol)) if tol is not None else None, platform=platform)
    if tol is None:
        result.outcome, result.reason = Outcome.FAILED, "no tolerance recorded in golden.json"
    return result


def probe_line(r: StageResult) -> str:
    """One line per probe check: ok/FAIL, the largest |d| against the reference, the tolerance, the worst probe."""
    f = r.fidelity
    tol = "no tolerance recorded" if r.gate is None else f"tolerance {r.gate.max_abs:g}"
    where = "" if r.platform == "native" else f" on {r.platform}"
    return (f"{'FAIL' if r.failed else 'ok  '} {r.artifact}{where}: {f.n} probes, max |d| vs reference {f.max_abs:.4g} "
            f"({tol}; worst {f.worst[0]['image']})")
