"""An emulated platform's sysroot: Debian's interpreter for that architecture and the runtimes' wheels for it,
unpacked under LMLIQA_CACHE/platforms/NAME-KEY, where KEY hashes everything it is built from (the package list,
the wheel versions): a new runtime version builds a new sysroot, an old one is never reused for it.

    lmliqa platform setup arm64        (or lmliqa.sysroot.build(lmliqa.platforms.get("arm64")))

What it needs here: ``apt-get`` with the platform's architecture enabled (as root, once: ``dpkg --add-architecture
arm64 && apt-get update``; `make install` does it when it runs as root), ``dpkg``, and pip able to download
manylinux wheels for that architecture. The build records what it fetched (package versions, wheel files and their
sha256) in ``sysroot.json``; the worker that runs inside it is staged fresh from this lmliqa at each start
(lmliqa.runtimes.emulated). Torch-free.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from .cache import cache_dir
from .errors import PlatformError

RECORD = "sysroot.json"

# QEMU 7.2 (Debian 12) does not emulate /proc/cpuinfo for aarch64 guests, so XNNPACK's and ONNX Runtime's CPU
# detection read the host's x86 file and crash; the sysroot carries the file an A76 would show (QEMU's -L prefix
# is searched first for absolute paths). Newer QEMU emulates it itself.
CPUINFO = {"cortex-a76": ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                          "asimddp", "0x41", "0x4", "0xd0b", "1")}


def wheel_pins(spec) -> dict[str, str]:
    """The wheel versions for SPEC: this machine's installed version of each distribution, else the spec's pin."""
    out = {}
    for dist, pin in spec.wheels.items():
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = pin
    return out


def key(platform) -> str:
    spec = platform.sysroot
    text = json.dumps({"packages": spec.packages, "wheels": wheel_pins(spec), "cpu": platform.cpu,
                       "python": spec.python, "format": 1}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def location(platform) -> Path:
    return cache_dir() / "platforms" / f"{platform.name}-{key(platform)}"


def missing(platform) -> str:
    """Why PLATFORM's sysroot is not ready here ('' when it is)."""
    if not (location(platform) / RECORD).is_file():
        return (f"its sysroot is not built for these runtime versions: run `lmliqa platform setup {platform.name}` "
                f"(downloads ~75 MB into {location(platform).parent})")
    return ""


def record(platform) -> dict[str, Any]:
    path = location(platform) / RECORD
    if not path.is_file():
        raise PlatformError(f"{platform.name}: {missing(platform)}")
    return json.loads(path.read_text())


def build(platform, force: bool = False, log=print) -> Path:
    """Download and unpack PLATFORM's sysroot (once per KEY); returns its folder."""
    spec = platform.sysroot
    if spec is None:
        raise PlatformError(f"{platform.name} runs natively: it has no sysroot")
    final = location(platform)
    if (final / RECORD).is_file() and not force:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        root = work / "root"
        debs = _debian_packages(spec, work / "debs", log)
        for deb in debs.values():
            _run(["dpkg-deb", "-x", str(deb["file"]), str(root)], "unpacking " + deb["file"].name)
        _fake_cpuinfo(root, platform.cpu)
        wheels = _wheels(spec, work / "wheels", log)
        site = root / "site"
        for w in wheels:
            with zipfile.ZipFile(w["file"]) as z:
                z.extractall(site)
        rec = {"platform": platform.name, "key": key(platform), "cpu": platform.cpu, "python": spec.python,
               "packages": {n: d["version"] for n, d in sorted(debs.items())},
               "wheels": [{"file": w["file"].name, "sha256": w["sha256"]} for w in wheels],
               "wheel_versions": wheel_pins(spec)}
        for w in wheels + [d for d in debs.values()]:
            w["file"].unlink()
        (root / RECORD).write_text(json.dumps(rec, indent=2))
        _smoke(platform, root)
        if final.exists():
            shutil.rmtree(final)
        os.replace(root, final)
        log(f"{platform.name}: sysroot ready in {final}")
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _debian_packages(spec, folder: Path, log) -> dict[str, dict[str, Any]]:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise PlatformError("building the sysroot needs Debian's apt-get and dpkg-deb")
    folder.mkdir(parents=True)
    names = [f"{p}:{spec.debian_arch}" for p in spec.packages]
    log(f"apt-get download {len(names)} {spec.debian_arch} packages")
    res = subprocess.run(["apt-get", "download", "-q", *names], cwd=folder, capture_output=True, text=True)
    if res.returncode != 0:
        hint = (f"enable the architecture first (as root: dpkg --add-architecture {spec.debian_arch} && apt-get "
                "update)") if "Unable to locate" in res.stderr or "not found" in res.stderr else ""
        raise PlatformError(f"apt-get download of the {spec.debian_arch} packages failed: "
                            f"{res.stderr.strip().splitlines()[-1:] or res.returncode} {hint}".strip())
    out = {}
    for deb in sorted(folder.glob("*.deb")):
        name = _run(["dpkg-deb", "-f", str(deb), "Package"], deb.name).strip()
        out[name] = {"file": deb, "version": _run(["dpkg-deb", "-f", str(deb), "Version"], deb.name).strip()}
    lacking = sorted(set(spec.packages) - set(out))
    if lacking:
        raise PlatformError(f"apt-get did not download {lacking}")
    return out


def _wheels(spec, folder: Path, log) -> list[dict[str, Any]]:
    pins = [f"{d}=={v}" for d, v in wheel_pins(spec).items()]
    log(f"pip download {' '.join(pins)} (and what they need) for {spec.wheel_platforms[0]}")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-cache-dir",
           "--only-binary=:all:", "--python-version", spec.python_version, "--implementation", "cp",
           "--abi", f"cp{spec.python_version.replace('.', '')}", "-d", str(folder)]
    for tag in spec.wheel_platforms:
        cmd += ["--platform", tag]
    res = subprocess.run(cmd + pins, capture_output=True, text=True)
    if res.returncode != 0:
        raise PlatformError(f"pip download of the {spec.debian_arch} wheels failed: "
                            f"{[l for l in res.stderr.splitlines() if 'ERROR' in l][-2:] or res.returncode}")
    return [{"file": w, "sha256": hashlib.sha256(w.read_bytes()).hexdigest()} for w in sorted(folder.glob("*.whl"))]


def _fake_cpuinfo(root: Path, cpu: str | None) -> None:
    if cpu not in CPUINFO:
        return
    features, implementer, variant, part, revision = CPUINFO[cpu]
    block = (f"processor\t: {{i}}\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: {implementer}\n"
             f"CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n")
    (root / "proc").mkdir(exist_ok=True)
    n = os.cpu_count() or 1
    (root / "proc" / "cpuinfo").write_text("\n".join(block.format(i=i) for i in range(n)) + "\n")


def command(platform, root: Path | None = None) -> list[str]:
    """The command that starts the platform's Python (arguments follow)."""
    root = root or location(platform)
    return [shutil.which(platform.emulator) or platform.emulator, "-cpu", platform.cpu, "-L", str(root),
            str(root / platform.sysroot.python)]


def environment(platform, root: Path | None = None, extra_path: list[Path] = ()) -> dict[str, str]:
    root = root or location(platform)
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "PATH")}
    return {**keep, "PYTHONPATH": os.pathsep.join([*map(str, extra_path), str(root / "site")]),
            "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _smoke(platform, root: Path) -> None:
    code = ("import platform, numpy, PIL, onnxruntime, ai_edge_litert.interpreter; "
            "assert platform.machine() == 'aarch64', platform.machine(); print('ok')")
    res = subprocess.run(command(platform, root) + ["-c", code], capture_output=True, text=True,
                         env=environment(platform, root), timeout=600)
    if res.returncode != 0 or "ok" not in res.stdout:
        raise PlatformError(f"{platform.name}: the new sysroot's Python failed its smoke test: "
                            f"{(res.stderr or res.stdout).strip().splitlines()[-3:]}")


def _run(cmd: list[str], what: str) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise PlatformError(f"{what}: {' '.join(cmd[:2])} failed: {res.stderr.strip()[:300]}")
    return res.stdout
