"""Snapdragon NPU (Qualcomm HTP): LiteRT's ahead-of-time compilation of the LiteRT parent for each SoC.

``apply_plugin_main`` (in the ai-edge-litert wheel) with LiteRT's Qualcomm compiler plugin partitions the .tflite
for the NPU and compiles each partition with QAIRT's HTP compiler into a context binary inside the output .tflite.
The QAIRT x86 libraries come from the ``onnxruntime-qnn`` wheel (``ai-edge-litert-sdk-qualcomm`` only downloads an
SDK at install time, which fails offline while pip reports success); its missing ``libQnnLpai.so`` (the low-power
island backend, unused for the HTP) is satisfied by an empty stub built once with the C compiler.

Two checks make a compile an artifact:

- every op on the NPU: the compiler's partition count must be one partition holding all ops, else the export
  fails naming how many fell off (a phone would run those on the CPU, slower and with other numerics);
- ``qualcomm_use_fold_relu`` is off by default. LiteRT's default (on) drops the ReLU6 fused into a quantized conv,
  which is only valid when the conv's output range starts at 0: on lmliqa's INT8 models it moved photo scores by up
  to 34.8 points (measured here, and caught by parity: tests/targets/test_qualcomm.py). Pass
  ``--qualcomm-fold-relu`` to compile LiteRT's way, e.g. to reproduce that.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from lmliqa.cache import cache_dir
from lmliqa.errors import ExportError

DEFAULT_SOCS = "SM8650,SM8750"
_PARTITIONS = re.compile(r"Partitioned subgraph<(\d+)>, selected (\d+) ops, from a total of (\d+) ops\. "
                         r"resulted in (\d+) partitions\.")


def export(ctx, socs: str = DEFAULT_SOCS, qualcomm_fold_relu: bool = False) -> list[Path]:
    """The lmliqa.targets stage: M_qnn_SOC/ for each SoC, compiled from this run's M.tflite (converted here when
    the litert target was not chosen)."""
    from .litert import export as litert_export

    made = [Path(p) for p in ctx.produced.get("litert", []) if Path(p).name == f"{ctx.model_name}.tflite"]
    with tempfile.TemporaryDirectory() as tmp:
        if not made:
            from dataclasses import replace

            made = [p for p in litert_export(replace(ctx, out=Path(tmp))) if p.name == f"{ctx.model_name}.tflite"]
        from lmliqa.runtimes.litert import read_metadata

        meta = {**read_metadata(made[0]), "precision": "fp16", "weights": "fp32"}
        return [compile_for(made[0], ctx.path("{m}_qnn_" + soc.lower()), soc, meta, qualcomm_fold_relu)
                for soc in parse_socs(socs)]


def parse_socs(socs: str) -> list[str]:
    from lmliqa.runtimes.qualcomm import SOCS

    chosen = [s.strip().upper() for s in socs.split(",") if s.strip()]
    bad = [s for s in chosen if s not in SOCS]
    if bad or not chosen:
        raise ExportError(f"--socs {socs!r}: choose from {', '.join(SOCS)}")
    return chosen


def compile_for(tflite: Path, folder: Path, soc: str, metadata: dict[str, Any], fold_relu: bool = False) -> Path:
    """FOLDER: TFLITE compiled for SOC's HTP (model.tflite) and its lmliqa metadata; every op on the NPU or an
    ExportError."""
    from lmliqa.runtimes.qualcomm import MODEL, write_marker

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    stats, log = apply_plugin(tflite, folder / MODEL, soc, {"qualcomm_use_fold_relu": str(fold_relu).lower()})
    selected, total, parts = (sum(s[i] for s in stats) for i in (1, 2, 3))
    if not stats or selected != total or parts != 1:
        shutil.rmtree(folder)
        raise ExportError(f"{soc}: {total - selected} of {total} ops fell off the NPU ({parts} partitions); "
                          f"a phone would run them on its CPU. Compiler output: {log[-300:]}")
    import onnxruntime_qnn

    write_marker(folder, {**metadata, "format": "qualcomm", "qnn": {
        "soc": soc, "compiler": f"ai-edge-litert {_version('ai-edge-litert')} apply_plugin_main (Qualcomm plugin)",
        "qairt": getattr(onnxruntime_qnn.build_and_package_info, "qnn_version", "unknown"),
        "onnxruntime_qnn": _version("onnxruntime-qnn"), "options": {"qualcomm_use_fold_relu": fold_relu},
        "ops_on_npu": selected, "ops_total": total, "partitions": parts, "parent": tflite.name}})
    return folder


def apply_plugin(src: Path, dst: Path, soc: str, flags: dict[str, str]) -> tuple[list[tuple[int, ...]], str]:
    """Run LiteRT's apply_plugin_main for SOC; returns the partition statistics and the compiler's output."""
    import ai_edge_litert
    import onnxruntime_qnn

    base = Path(ai_edge_litert.__file__).parent
    binary, plugin = base / "tools" / "apply_plugin_main", base / "vendors" / "qualcomm" / "compiler"
    qairt = Path(onnxruntime_qnn.__file__).parent
    if not binary.is_file() or not plugin.is_dir():
        raise ExportError(f"ai-edge-litert {_version('ai-edge-litert')} has no AOT compiler here ({binary})")
    libs = [stub_dir(), qairt, plugin, base]
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(map(str, libs + [os.environ.get("LD_LIBRARY_PATH", "")]))}
    cmd = [str(binary), "--cmd=apply", f"--model={src}", f"--o={dst}", "--soc_manufacturer=Qualcomm",
           f"--soc_model={soc}", f"--libs={plugin}", f"--qualcomm_qnn_lib_dir={qairt}", "--qualcomm_log_level=error",
           *(f"--{k}={v}" for k, v in flags.items())]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log = res.stdout + res.stderr
    if res.returncode != 0 or not dst.is_file():
        raise ExportError(f"LiteRT's Qualcomm compiler failed for {soc} (status {res.returncode}): "
                          + " | ".join(line for line in log.splitlines() if "rror" in line)[-400:])
    return [tuple(int(v) for v in m) for m in _PARTITIONS.findall(log)], log


def stub_dir() -> Path:
    """A folder with an empty libQnnLpai.so (the plugin links it; the wheel does not ship it), built once."""
    folder = cache_dir() / "qnn-stub"
    lib = folder / "libQnnLpai.so"
    if lib.is_file():
        return folder
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise ExportError("compiling for the Qualcomm NPU needs a C compiler once (to stub libQnnLpai.so, which "
                          "onnxruntime-qnn does not ship): apt-get install gcc")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "stub.c"
        src.write_text("/* stands in for QAIRT's LPAI backend, which lmliqa does not use */\n"
                       "void lmliqa_qnn_lpai_stub(void) {}\n")
        res = subprocess.run([cc, "-shared", "-fPIC", "-o", str(Path(tmp) / lib.name), str(src)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise ExportError(f"building the libQnnLpai.so stub failed: {res.stderr.strip()[:300]}")
        os.replace(Path(tmp) / lib.name, lib)
    return folder


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
