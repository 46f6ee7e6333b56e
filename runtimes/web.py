"""The browser runtime: an exported web folder (lmliqa.export.web) scored by its own page in headless Chromium.

The scores are the page's: the photo's bytes go to the page, which decodes, crops and aggregates them with its
JavaScript port of the contract (lmliqa-web.mjs) and runs the network with ONNX Runtime Web's WebAssembly
backend; Python only serves the folder and reads the answers. So this scorer tests the page a user runs, not a
Python stand-in for it. It needs Chromium and its WebDriver (Debian: ``apt-get install chromium chromium-driver``;
no browser is ever downloaded) and ``pip install 'lmliqa[web]'`` (Selenium).

    lmliqa score --model dist/mobile_web --target web photos/ --csv scores.csv
    lmliqa web dist/mobile_web          # the page for a person: http://127.0.0.1:8000/ (COOP/COEP headers set)

Devices: ``wasm`` (default; SIMD, and threads when ``threads`` > 1: the server sends COOP/COEP) or ``webgpu``
(headless Chromium has no GPU: it runs WebGPU through SwiftShader, a smoke test, not a speed claim).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.decode import DEFAULT_MAX_PIXELS, ImageSource, describe, read_bytes
from lmliqa.targets import Capability, Precision, Support

from .base import (
    ArtifactError,
    BackendUnavailable,
    DeviceUnavailable,
    ImageDecodeError,
    ImageResult,
    Scorer,
    parse_metadata,
    stored_precision,
)

METADATA = "contract.json"
MARKER = "lmliqa-web.mjs"
DEVICES = ("wasm", "webgpu")
BLOB_ROUTE = "/__lmliqa__/"
SCRIPT_TIMEOUT_S = 900
# what Chromium needs here: no sandbox as root, nothing that calls home on a closed network
CHROMIUM_FLAGS = ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--disable-default-apps", "--mute-audio")
WEBGPU_FLAGS = ("--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-unsafe-swiftshader")
MIME = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm", ".onnx":
        "application/octet-stream", ".json": "application/json", ".html": "text/html; charset=utf-8"}


# --------------------------------------------------------------------------------------------------- serving
class _Handler(SimpleHTTPRequestHandler):
    """Static files with the headers WebAssembly threads need (cross-origin isolation), and BLOB_ROUTE: bytes the
    scorer hands to the page (photos, crop tensors), each fetched once."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME}
    blobs: dict[str, bytes] = {}

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_GET(self) -> None:
        if self.path.startswith(BLOB_ROUTE):
            data = self.blobs.pop(self.path[len(BLOB_ROUTE):], None)
            if data is None:
                self.send_error(404, "no such blob")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        super().do_GET()

    def log_message(self, *args: Any) -> None:     # quiet: a scorer serves thousands of requests
        pass


class PageServer:
    """A web folder served on 127.0.0.1 (PORT 0: a free port), in a daemon thread, until close()."""

    def __init__(self, folder: str | Path, port: int = 0, host: str = "127.0.0.1", quiet: bool = True) -> None:
        handler = type("Handler", (_Handler,), {"blobs": {}})
        if not quiet:
            handler.log_message = SimpleHTTPRequestHandler.log_message
        self.httpd = ThreadingHTTPServer((host, port), partial(handler, directory=str(folder)))
        self.blobs: dict[str, bytes] = handler.blobs
        self.url = f"http://{host}:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="lmliqa-web-server", daemon=True)
        self.thread.start()

    def put(self, data: bytes) -> str:
        """A one-time URL the page fetches DATA from."""
        token = uuid.uuid4().hex
        self.blobs[token] = data
        return f"{BLOB_ROUTE}{token}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(folder: str | Path, port: int = 8000, host: str = "127.0.0.1") -> None:
    """`lmliqa web DIR`: serve a web folder for a person (until Ctrl-C), with the headers its page needs."""
    folder = Path(folder)
    if not (folder / MARKER).is_file():
        raise ArtifactError(f"{folder}: not an lmliqa web folder (no {MARKER}; make one with `lmliqa export "
                            "--targets web`)")
    server = PageServer(folder, port, host, quiet=False)
    print(f"serving {folder} at {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


# --------------------------------------------------------------------------------------------------- Chromium
def chromium_paths() -> tuple[str, str]:
    """(the Chromium binary, its chromedriver): LMLIQA_CHROMIUM / LMLIQA_CHROMEDRIVER, else Debian's."""
    browser = os.environ.get("LMLIQA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("LMLIQA_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver:
        missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
        raise BackendUnavailable(f"{missing} not found: install Debian's `chromium chromium-driver` (apt-get; the "
                                 "browser is never downloaded), or set LMLIQA_CHROMIUM and LMLIQA_CHROMEDRIVER")
    return browser, driver


def chromium_version() -> str:
    import subprocess

    browser, _ = chromium_paths()
    out = subprocess.run([browser, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    return out or "unknown version"


def start_browser(extra_flags: Iterable[str] = ()):
    """Headless Chromium through its own chromedriver (Selenium); the caller quits it (a clean WebDriver quit
    leaves no zombie processes, a SIGTERM does here)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise BackendUnavailable("the web target's runtime needs Selenium: pip install 'lmliqa[web]'") from exc
    browser, driver = chromium_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    profile = tempfile.mkdtemp(prefix="lmliqa-chromium-")
    for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        opts.add_argument("--no-sandbox")          # Chromium refuses to run as root with its sandbox
    try:
        drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    except Exception as exc:
        shutil.rmtree(profile, ignore_errors=True)
        raise BackendUnavailable(f"headless Chromium did not start ({type(exc).__name__}: "
                                 f"{str(exc).strip().splitlines()[0][:300]})") from exc
    drv.set_script_timeout(SCRIPT_TIMEOUT_S)
    drv.lmliqa_profile = profile
    return drv


def quit_browser(drv) -> None:
    try:
        drv.quit()
    finally:
        shutil.rmtree(getattr(drv, "lmliqa_profile", ""), ignore_errors=True)


# --------------------------------------------------------------------------------------------------- the scorer
def read_metadata(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    meta = path / METADATA
    if not path.is_dir() or not meta.is_file():
        raise ArtifactError(f"{path}: not an lmliqa web folder (no {METADATA})")
    return parse_metadata(meta.read_text(), path)


def run(drv, script: str, *args: Any) -> Any:
    """An async call into the page: SCRIPT (an async function body) sees ARGS as `args`; its return value comes back,
    a page error is raised here."""
    res = drv.execute_async_script(
        "const done = arguments[arguments.length - 1], args = Array.from(arguments).slice(0, -1);"
        f"(async (...args) => {{ {script} }})(...args)"
        ".then((value) => done({value}), (e) => done({error: String(e && e.stack || e)}));", *args)
    if res.get("error"):
        raise RuntimeError(f"the page failed: {res['error'][:1000]}")
    return res["value"]


class WebScorer(Scorer):
    backend = "web"

    def __init__(self, path: str | Path, precision: Precision | None = None, device: str | None = None,
                 threads: int | None = None, camera: str | Path | None = None) -> None:
        """PATH: a web folder. CAMERA: a Y4M or MJPEG file Chromium plays as its (fake) camera, for the page's
        live view."""
        metadata = read_metadata(path)
        stored = stored_precision(metadata, precision, path, "the browser")
        device = device or "wasm"
        if device not in DEVICES:
            raise DeviceUnavailable(f"web device {device!r}: choose from {', '.join(DEVICES)}")
        flags = list(WEBGPU_FLAGS if device == "webgpu" else ())
        if camera is not None:
            flags += ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                      f"--use-file-for-fake-video-capture={Path(camera).resolve()}"]
        self.server = PageServer(path)
        try:
            self.driver = start_browser(flags)
        except BaseException:
            self.server.close()
            raise
        super().__init__(path, metadata, stored, device)
        self.threads = threads or 1
        try:
            self.driver.get(f"{self.server.url}index.html?threads={self.threads}&device={device}")
            self.isolated = run(self.driver, "await window.lmliqaPage.ready; return self.crossOriginIsolated;")
        except BaseException:
            self.close()
            raise
        self.detail = f"Chromium, {device}, {self.threads} thread{'s' if self.threads > 1 else ''}"

    # ------------------------------------------------------------------ the network
    def _infer(self, crops: np.ndarray) -> np.ndarray:
        url = self.server.put(np.ascontiguousarray(crops, dtype="<f4").tobytes())
        return np.asarray(run(self.driver, "return await window.lmliqaPage.inferUrl(...args);", url,
                              len(crops)), dtype=np.float64)

    # ------------------------------------------------------------------ photos: the page decodes them
    def score_many(self, images: Iterable[ImageSource], batch_size: int = 8, progress: bool = False,
                   workers: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[ImageResult]:
        """One result per input, in order, every score computed by the page from the photo's bytes (WORKERS: not
        used, the page decodes)."""
        items: Iterable[ImageSource] = images
        if progress:
            from tqdm import tqdm

            items = tqdm(images, unit="img", desc=f"scoring ({self.backend}, {self.precision})")
        batch: list[tuple[str, str | None, ImageResult | None]] = []
        for item in items:
            name = describe(item)
            try:
                batch.append((name, self.server.put(read_bytes(item)), None))
            except ImageDecodeError as exc:
                batch.append((name, None, ImageResult(name, None, [], exc.reason, exc.kind)))
            if len(batch) >= batch_size:
                yield from self._score_batch(batch, max_pixels)
                batch = []
        yield from self._score_batch(batch, max_pixels)

    def _score_batch(self, batch, max_pixels: int | None) -> Iterator[ImageResult]:
        urls = [url for _, url, failed in batch if failed is None]
        answers = iter(run(self.driver, "return await window.lmliqaPage.scoreUrls(...args);", urls,
                           max_pixels or 0) if urls else [])
        for name, _, failed in batch:
            if failed is not None:
                yield failed
                continue
            a = next(answers)
            if a.get("error"):
                yield ImageResult(name, None, [], a["error"], a.get("kind") or "corrupt")
            else:
                yield ImageResult(name, float(a["score"]), [float(v) for v in a["crops"]])

    def page_crops(self, image: ImageSource) -> np.ndarray:
        """The crops the page feeds the network for IMAGE (n, 3, s, s), to compare with the contract's."""
        import base64

        r = run(self.driver, "return await window.lmliqaPage.cropsUrl(...args);",
                self.server.put(read_bytes(image)))
        s = self.contract.crop_size
        return np.frombuffer(base64.b64decode(r["b64"]), dtype=np.uint8).reshape(r["n"], 3, s, s).astype(np.float32)

    def camera_snapshot(self, min_frames: int = 3) -> dict[str, Any]:
        """Start the page's live view (the scorer was made with CAMERA) and wait for MIN_FRAMES scored frames: the
        last frame as an (h, w, 3) uint8 array ("frame"), the score the page computed and the text it shows, the
        frame rate; or {"error": the page's message} (e.g. a refused camera)."""
        import base64

        r = run(self.driver, "return await window.lmliqaPage.cameraSnapshot(...args);", min_frames)
        if "b64" in r:
            r["frame"] = np.frombuffer(base64.b64decode(r.pop("b64")), dtype=np.uint8).reshape(r["height"],
                                                                                              r["width"], 3)
        return r

    def show_files(self, images: list[ImageSource], names: list[str]) -> list[str]:
        """Score IMAGES as if a person had dropped them on the page; returns the result list's lines."""
        urls = [self.server.put(read_bytes(i)) for i in images]
        return run(self.driver, "return await window.lmliqaPage.showFiles(...args);", urls, names)

    def screenshot(self, path: str | Path, width: int = 1200, height: int = 900) -> Path:
        self.driver.set_window_size(width, height)
        self.driver.save_screenshot(str(path))
        return Path(path)

    def close(self) -> None:
        driver, self.driver = getattr(self, "driver", None), None
        if driver is not None:
            quit_browser(driver)
        if getattr(self, "server", None) is not None:
            self.server.close()
            self.server = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:   # interpreter shutdown: nothing left to clean
            pass


SCORER = WebScorer


def probe() -> list[Capability]:
    try:
        import selenium  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable("Selenium is not installed") from exc
    version = chromium_version()
    note = (f"the page in headless {version} (WebAssembly; its JavaScript preprocessing checked against Python's); "
            "Safari, Firefox and WebGPU on a real GPU not verified")
    return [Capability("web", Precision.FP32, Support.RUNS, note), Capability("web", Precision.INT8, Support.RUNS,
                                                                            note)]


def fake_camera_file(photo: ImageSource, out: str | Path, frames: int = 30, fps: int = 30) -> Path:
    """A Y4M video of PHOTO (still, FRAMES frames, 4:2:0) for Chromium's fake camera
    (--use-file-for-fake-video-capture): what the live view of a camera-check page sees in a test."""
    from PIL import Image

    from lmliqa.decode import load_rgb

    img = load_rgb(photo)
    w, h = img.width - img.width % 2, img.height - img.height % 2
    ycc = img.crop((0, 0, w, h)).convert("YCbCr")
    y, cb, cr = (np.asarray(c) for c in ycc.split())
    sub = [np.asarray(Image.fromarray(c).resize((w // 2, h // 2), Image.Resampling.BOX)) for c in (cb, cr)]
    frame = b"FRAME\n" + y.tobytes() + sub[0].tobytes() + sub[1].tobytes()
    out = Path(out)
    out.write_bytes(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode() + frame * frames)
    return out


def describe_folder(path: Path) -> dict[str, Any]:
    """Sizes of a web folder, raw and gzip (what a page download costs)."""
    import gzip

    files = [p for p in sorted(Path(path).rglob("*")) if p.is_file()]
    raw = sum(p.stat().st_size for p in files)
    gz = sum(len(gzip.compress(p.read_bytes(), 9)) for p in files)
    return {"files": {p.relative_to(path).as_posix(): p.stat().st_size for p in files}, "raw_bytes": raw,
            "gzip_bytes": gz, "metadata": json.loads((Path(path) / METADATA).read_text())}
