"""A scorer whose network runs on an emulated platform (lmliqa.platforms), e.g. the aarch64 build of LiteRT or ONNX
Runtime under QEMU: ``load(path, platform="arm64")``.

Decoding, cropping and aggregation are the contract's code in this process, as for every scorer; each batch of
crops goes to a worker process on the platform (runtimes/_platform_worker.py), which runs the artifact with
lmliqa's own runtime for its target, built for that platform. ``crops(path)`` asks the worker to decode and crop on
the platform too, so that path can be compared as well. The worker is started in the platform's sysroot with this
lmliqa's torch-free modules staged beside it (a temporary folder: always the code that is running here), and ends
with the scorer (``close()``, or when the scorer is collected).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from lmliqa import platforms, sysroot
from lmliqa.errors import (
    ArtifactError,
    BackendUnavailable,
    ContractError,
    DeviceUnavailable,
    ImageDecodeError,
    PlatformError,
    PrecisionUnsupported,
)
from lmliqa.targets import Precision, Target

from ._platform_worker import read_array, write_message
from .base import Scorer

WORKER = Path(__file__).with_name("_platform_worker.py")
# what the worker may raise, by class name, as the same class here (anything else: PlatformError)
_ERRORS = {c.__name__: c for c in (ArtifactError, BackendUnavailable, PrecisionUnsupported, DeviceUnavailable,
                                   ContractError)}


def stage(dest: Path) -> Path:
    """This lmliqa's torch-free modules (the package's own files, the runtimes) as an importable tree in DEST."""
    import lmliqa

    pkg = dest / "lmliqa"
    (pkg / "runtimes").mkdir(parents=True)
    for src in Path(lmliqa.__file__).parent.glob("*.py"):
        shutil.copyfile(src, pkg / src.name)
    for src in Path(__file__).parent.glob("*.py"):          # this package: lmliqa.runtimes
        shutil.copyfile(src, pkg / "runtimes" / src.name)
    return dest


class Worker:
    """The platform process and its request/reply pipe."""

    def __init__(self, platform: platforms.Platform) -> None:
        if why := platform.unavailable():
            raise PlatformError(f"platform {platform.name} is not available here: {why}")
        self.staged = Path(tempfile.mkdtemp(prefix=f"lmliqa-{platform.name}-"))
        stage(self.staged)
        # as a module, from the staged tree: run as a script, its folder (runtimes/) would come first on sys.path
        # and lmliqa's runtimes/onnxruntime.py would shadow the onnxruntime package
        cmd = sysroot.command(platform) + ["-m", f"lmliqa.runtimes.{WORKER.stem}"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=self.staged, env=sysroot.environment(platform, extra_path=[self.staged]))
        self.stderr: list[str] = []
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        self.lock = threading.Lock()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr = (self.stderr + [line.decode(errors="replace").rstrip()])[-40:]

    def call(self, request: dict[str, Any],
             array: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray | None]:
        with self.lock:
            if self.proc.poll() is not None:
                raise PlatformError(f"the platform worker has exited (status {self.proc.returncode}): "
                                    + " | ".join(self.stderr[-5:]))
            try:
                write_message(self.proc.stdin, request, array)
                line = self.proc.stdout.readline()
                if not line:
                    self.proc.wait(timeout=30)
                    raise PlatformError(f"the platform worker stopped (status {self.proc.returncode}) during "
                                        f"{request['op']}: " + " | ".join(self.stderr[-5:]))
                reply = json.loads(line)
                data = read_array(self.proc.stdout, reply["array"]) if reply.get("array") else None
            except (BrokenPipeError, EOFError, ValueError) as exc:
                raise PlatformError(f"the platform worker's pipe broke during {request['op']} ({exc}): "
                                    + " | ".join(self.stderr[-5:])) from exc
        if not reply["ok"]:
            raise _ERRORS.get(reply["kind"], PlatformError)(f"on the platform: {reply['error']}")
        return reply, data

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.staged, ignore_errors=True)


class EmulatedScorer(Scorer):
    """TARGET's artifact at PATH, its network run on PLATFORM by the platform's build of the target's runtime."""

    def __init__(self, target: Target, path: str | Path, platform: platforms.Platform,
                 precision: Precision | None = None, device: str | None = None, threads: int | None = None) -> None:
        if why := platform.why_not(target.name):
            raise PlatformError(f"{target.name} artifacts do not run on {platform.name}: {why}")
        if device not in (None, "cpu", "CPU"):
            raise DeviceUnavailable(f"{platform.name} runs the CPU kernels; device {device!r} is not emulated")
        self.worker = Worker(platform)
        try:
            reply, _ = self.worker.call({"op": "load", "target": target.name, "path": str(Path(path).resolve()),
                                         "precision": precision.value if precision else None, "threads": threads})
        except BaseException:
            self.worker.close()
            raise
        super().__init__(path, reply["metadata"], reply["precision"], "cpu")
        self.backend = reply["backend"]
        self.platform = platform.name
        self.detail = reply.get("detail", "")
        self.about = {k: reply[k] for k in ("machine", "python", "versions")}
        self.threads = threads

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        _, scores = self.worker.call({"op": "infer"}, crops)
        return scores

    def crops(self, image: str | Path) -> np.ndarray:
        """IMAGE decoded and cropped by the contract's code on the platform (numpy and Pillow built for it)."""
        try:
            _, crops = self.worker.call({"op": "crops", "path": str(Path(image).resolve())})
        except PlatformError as exc:
            raise ImageDecodeError(str(image), str(exc)) from exc
        return crops

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "platform": self.platform, "platform_runtime": self.about}

    def close(self) -> None:
        self.worker.close()

    def __del__(self) -> None:  # pragma: no cover - depends on collection
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker.close()
