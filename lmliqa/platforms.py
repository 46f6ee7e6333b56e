"""Platforms: the CPU and instruction set an artifact's network executes on, the second axis next to targets.

The same artifact runs through different kernels on different CPUs: ONNX Runtime's and XNNPACK's INT8 kernels for
ARM are not the x86 ones, so a score checked on this machine says nothing yet about a phone. A platform is one
registry entry, like a target:

- ``native``: this machine's CPU, every target;
- ``arm64``: the aarch64 builds of the runtimes (LiteRT's XNNPACK, ONNX Runtime's MLAS) executed under QEMU
  user-mode emulation of a Cortex-A76 (the big core of recent Android phones, a Raspberry Pi 5), in a sysroot
  built from Debian's arm64 packages and the runtimes' manylinux aarch64 wheels (lmliqa.sysroot).

Emulation executes the ARM instructions the device would (the kernels, their rounding, their instruction choices),
not its timing: speed under QEMU is not a device's. A platform runs the network; decoding and cropping stay the
contract's Python code on this machine (the worker can run them on the platform too, to check that path).
Torch-free.
"""

from __future__ import annotations

import platform as _host
import shutil
from dataclasses import dataclass, field

from .errors import PlatformError

NATIVE = "native"


@dataclass(frozen=True)
class SysrootSpec:
    """What an emulated platform's sysroot is built from (lmliqa.sysroot builds it, under LMLIQA_CACHE)."""

    debian_arch: str                       # dpkg architecture of the packages
    packages: tuple[str, ...]              # Debian packages unpacked into it: the interpreter and what it links
    python: str                            # the interpreter inside the sysroot
    wheel_platforms: tuple[str, ...]       # pip --platform tags of its wheels
    python_version: str                    # pip --python-version
    # the distributions downloaded as the platform's wheels: pinned to this machine's installed version where it
    # has one (the same runtime version on both platforms, so a difference is the platform's), else to this pin
    wheels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Platform:
    name: str                              # the --platform name
    title: str
    arch: str                              # the instruction set (uname -m)
    targets: tuple[str, ...] = ()          # the targets whose runtime it has (empty: every target)
    emulator: str | None = None            # the program that executes it here (None: natively)
    cpu: str | None = None                 # the emulated CPU model
    sysroot: SysrootSpec | None = None
    not_covered: dict[str, str] = field(default_factory=dict)   # target -> why it does not run there
    devices: str = ""                      # what runs it in the field (docs)

    @property
    def native(self) -> bool:
        return self.emulator is None

    def covers(self, target: str) -> bool:
        return not self.targets or target in self.targets

    def why_not(self, target: str) -> str:
        """Why TARGET's artifacts cannot run on this platform ('' when they can, here or once it is set up)."""
        if self.covers(target):
            return ""
        return self.not_covered.get(target, f"{self.name} has no {target} runtime in lmliqa")

    def unavailable(self) -> str:
        """Why this platform cannot run here ('' when it can)."""
        if self.native:
            return ""
        if shutil.which(self.emulator) is None:
            return f"{self.emulator} not found (Debian: apt-get install qemu-user)"
        from . import sysroot

        return sysroot.missing(self)


_PLATFORMS: dict[str, Platform] = {}


def register(p: Platform) -> Platform:
    if p.name in _PLATFORMS:
        raise ValueError(f"platform {p.name!r} is already registered")
    _PLATFORMS[p.name] = p
    return p


def get(name: str | None) -> Platform:
    if name is None:
        return _PLATFORMS[NATIVE]
    if name not in _PLATFORMS:
        raise PlatformError(f"unknown platform {name!r}; choose from {sorted(_PLATFORMS)}")
    return _PLATFORMS[name]


def platforms() -> list[Platform]:
    return list(_PLATFORMS.values())


def names() -> list[str]:
    return list(_PLATFORMS)


def parse(text: str | None) -> list[Platform]:
    """'native,arm64' -> platforms (default: native)."""
    return [get(n.strip()) for n in (text or NATIVE).split(",") if n.strip()]


# ---------------------------------------------------------------------------------------------- the registry
register(Platform(NATIVE, f"this machine ({_host.machine()})", _host.machine(), devices="this machine"))

# python3.11 and what it links, for Debian 12 (bookworm) arm64: apt-cache depends --recurse of python3.11 and
# libstdc++6 (ONNX Runtime's and LiteRT's C++), without dpkg/tar/perl (only the packages' maintainer scripts use them)
ARM64_PACKAGES = (
    "gcc-12-base", "libbz2-1.0", "libc6", "libcom-err2", "libcrypt1", "libdb5.3", "libexpat1", "libffi8", "libgcc-s1",
    "libgssapi-krb5-2", "libk5crypto3", "libkeyutils1", "libkrb5-3", "libkrb5support0", "liblzma5", "libncursesw6",
    "libnsl2", "libpython3.11-minimal", "libpython3.11-stdlib", "libreadline8", "libsqlite3-0", "libssl3",
    "libstdc++6", "libtinfo6", "libtirpc3", "libuuid1", "python3.11", "python3.11-minimal", "zlib1g",
)

register(Platform(
    "arm64", "arm64 (aarch64) CPU kernels, Cortex-A76 under QEMU user-mode emulation", "aarch64",
    targets=("onnx", "litert"), emulator="qemu-aarch64",
    # a Cortex-A76 (ARMv8.2: dot product, fp16 arithmetic). Not -cpu max: QEMU 7.2 then advertises SME, and
    # XNNPACK's INT8 kernels for it return garbage under emulation (measured here)
    cpu="cortex-a76",
    sysroot=SysrootSpec(
        "arm64", ARM64_PACKAGES, "usr/bin/python3.11",
        tuple(f"manylinux_2_{v}_aarch64" for v in (17, 27, 28, 31, 34, 35, 36)) + ("manylinux2014_aarch64",), "3.11",
        {"numpy": "2.4.6", "pillow": "13.0.0", "ai-edge-litert": "2.3.0", "onnxruntime": "1.32.0"}),
    not_covered={
        "executorch": "ExecuTorch's aarch64 wheel runs programs through Python bindings that link torch, and the "
                      "aarch64 torch it needs is a CUDA build of several GB; the device path, its C++ runner cross-"
                      "built for aarch64 (ExecuTorch's source with XNNPACK, Debian's gcc-aarch64-linux-gnu), is not "
                      "built here",
        "openvino": "not set up for arm64 in lmliqa (OpenVINO's ARM CPU plugin uses other kernels: a candidate)",
        "coreml": "Core ML runs on Apple hardware only", "tensorrt": "TensorRT needs an NVIDIA GPU",
        "web": "the browser target runs in Chromium on this machine", "torch": "the reference runs natively",
        "qualcomm": "compiled for the Hexagon NPU, not an arm64 CPU",
    },
    devices="Android phones' and tablets' CPUs, Raspberry Pi 4/5, Jetson and other arm64 Linux boards, Apple Silicon "
            "(Linux)",
))
