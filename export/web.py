"""The browser target: a self-contained static folder that scores photos in a web page with ONNX Runtime Web.

    M_web/  index.html        the camera-check page (live camera view + photo picker)
            lmliqa-web.mjs    the preprocessing contract ported exactly, the aggregation, the model calls
            contract.json     the lmliqa metadata (ONNX Runtime Web does not expose an ONNX model's own metadata)
            model.onnx        the network (FP32 here; `lmliqa quantize --targets web` makes M_int8_web/)
            ort/              the pinned onnxruntime-web files (WebAssembly), copied, never fetched from a CDN

The onnxruntime-web version is pinned by lmliqa/webpage/package.json and package-lock.json; `npm ci` installs it
once into LMLIQA_CACHE (or LMLIQA_ORT_WEB names a folder holding its dist/ files). Serve the folder with
`lmliqa web DIR` (COOP/COEP headers, so WebAssembly threads work) or any static server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from lmliqa.cache import cache_dir

PAGE = Path(__file__).resolve().parents[1] / "lmliqa" / "webpage"
PAGE_FILES = ("index.html", "lmliqa-web.mjs")
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MARKER = "lmliqa-web.mjs"          # what makes a folder a web artifact (lmliqa.targets)
METADATA = "contract.json"


def page_dir() -> Path:
    """The page's own files: lmliqa/webpage in a checkout, lmliqa.webpage's package data when installed."""
    if (PAGE / MARKER).is_file():
        return PAGE
    import importlib.resources

    return Path(str(importlib.resources.files("lmliqa.webpage")))


def ort_version() -> str:
    return json.loads((page_dir() / "package.json").read_text())["dependencies"]["onnxruntime-web"]


def ort_dist(install: bool = True) -> Path:
    """The pinned onnxruntime-web dist/ folder: LMLIQA_ORT_WEB, else the npm install in LMLIQA_CACHE (made with
    `npm ci` from the pinned lock file when INSTALL and npm is here). ImportError (the target is then reported
    unavailable) when there is none."""
    if os.environ.get("LMLIQA_ORT_WEB"):
        dist = Path(os.environ["LMLIQA_ORT_WEB"])
        if all((dist / f).is_file() for f in ORT_FILES):
            return dist
        raise ImportError(f"LMLIQA_ORT_WEB={dist} lacks {', '.join(ORT_FILES)}")
    cache = cache_dir() / f"onnxruntime-web-{ort_version()}"
    dist = cache / "node_modules" / "onnxruntime-web" / "dist"
    if all((dist / f).is_file() for f in ORT_FILES):
        return dist
    if not install or shutil.which("npm") is None:
        raise ImportError(f"onnxruntime-web {ort_version()} is not installed and npm is not here: install Node.js "
                          f"and run `npm ci --prefix {cache}` with lmliqa/webpage's package files, or set "
                          "LMLIQA_ORT_WEB to a folder holding its dist/ files")
    cache.mkdir(parents=True, exist_ok=True)
    for f in ("package.json", "package-lock.json"):
        shutil.copyfile(page_dir() / f, cache / f)
    res = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=cache, capture_output=True,
                         text=True)
    if res.returncode != 0 or not all((dist / f).is_file() for f in ORT_FILES):
        raise ImportError(f"npm ci of onnxruntime-web {ort_version()} failed in {cache}: "
                          f"{(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    return dist


def write_folder(folder: Path, onnx_model: Path, metadata: dict[str, Any]) -> Path:
    """FOLDER as a web artifact around ONNX_MODEL (copied in as model.onnx), with METADATA as contract.json."""
    dist = ort_dist()
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "ort").mkdir(parents=True)
    for f in PAGE_FILES:
        shutil.copyfile(page_dir() / f, folder / f)
    for f in ORT_FILES:
        shutil.copyfile(dist / f, folder / "ort" / f)
    shutil.copyfile(onnx_model, folder / "model.onnx")
    meta = {**metadata, "format": "web", "onnxruntime_web": ort_version(),
            "tools": {**metadata.get("tools", {}), "onnxruntime-web": ort_version()}}
    (folder / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return folder


def export(ctx) -> list[Path]:
    """The lmliqa.targets stage: M_web/ from the FP32 ONNX of this run (exported here when the onnx target was not
    chosen), checked in the browser against the program where Chromium is installed."""
    import tempfile

    from .onnx import torch2onnx

    with tempfile.TemporaryDirectory() as tmp:
        produced = [p for p in ctx.produced.get("onnx", []) if Path(p).name == f"{ctx.model_name}.onnx"]
        model = Path(produced[0]) if produced else torch2onnx(ctx.program, Path(tmp) / "model.onnx", ctx.metadata)
        folder = write_folder(ctx.path("{m}_web"), model, {**ctx.metadata, "precision": "fp32"})
    _check_in_browser(ctx.program, folder)
    return [folder]


def _check_in_browser(program, folder: Path) -> None:
    """The page's network against the program on a random batch, when a browser is here (else the artifact is
    checked by `lmliqa parity` wherever one is)."""
    from lmliqa.errors import BackendUnavailable
    from lmliqa.runtimes.web import WebScorer

    from ._graph import check_against_program

    try:
        scorer = WebScorer(folder)
    except BackendUnavailable:
        return
    try:
        check_against_program(program, scorer)
    finally:
        scorer.close()
