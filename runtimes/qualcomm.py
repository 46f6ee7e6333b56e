"""Snapdragon NPU (Qualcomm HTP) artifacts, run on the HTP simulator on this x86 machine.

An artifact is a folder ``M_qnn_SOC/`` (``M_int8_qnn_SOC/``): ``model.tflite``, LiteRT's ahead-of-time compilation
of the LiteRT parent for one SoC (the whole graph in one NPU partition, a ``DISPATCH_OP`` whose custom options point
at the QNN context binary inside the file), and ``lmliqa-qnn.json`` (the lmliqa metadata, the SoC, the compiler's
options and partition counts). A phone runs ``model.tflite`` with LiteRT's Qualcomm dispatch library.

Here the scorer cuts the context binary out of the file, wraps it in a one-node ONNX ``EPContext`` model and runs it
with ONNX Runtime's QNN execution provider (the ``onnxruntime-qnn`` wheel: its x86 QAIRT libraries include the HTP
simulator), CPU fallback off. What executes is the compiled graph, instruction for instruction as the NPU would;
its speed is the simulator's, not a phone's, and the phone hardware itself is not verified.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lmliqa.targets import Capability, Precision, Support

from .base import ArtifactError, BackendUnavailable, DeviceUnavailable, Scorer, parse_metadata, stored_precision

MARKER = "lmliqa-qnn.json"
MODEL = "model.tflite"
# SoC -> (QNN soc_model id, HTP architecture) of the QNN SDK's device tables; the compiler takes the SoC's name
SOCS: dict[str, tuple[int, int]] = {"SM8550": (43, 73), "SM8650": (57, 75), "SM8750": (69, 79)}
NOTE = "simulated on x86 (QNN HTP simulator); phone hardware not verified"
_REGISTERED = False


def _qnn():
    try:
        import onnxruntime as ort
        import onnxruntime_qnn
    except ImportError as exc:
        raise BackendUnavailable(f"the QNN HTP simulator needs onnxruntime-qnn ({exc.name} not installed): "
                                 "pip install 'lmliqa[qnn]'") from exc
    return ort, onnxruntime_qnn


def read_metadata(path: str | Path) -> dict[str, Any]:
    marker = Path(path) / MARKER
    if not marker.is_file():
        raise ArtifactError(f"{path}: not a compiled Qualcomm artifact (no {MARKER})")
    return parse_metadata(marker.read_text(), marker)


def context_binary(model: Path) -> tuple[bytes, str, list[int], list[int]]:
    """(the QNN context binary, its graph's name, input shape, output shape) of a LiteRT-compiled .tflite."""
    from ai_edge_litert import schema_py_generated as schema
    from flatbuffers import flexbuffers

    buf = model.read_bytes()
    m = schema.Model.GetRootAs(buf, 0)
    sg = m.Subgraphs(0)
    codes = [m.OperatorCodes(i).CustomCode() for i in range(m.OperatorCodesLength())]
    ops = [sg.Operators(i) for i in range(sg.OperatorsLength())]
    dispatch = [op for op in ops if codes[op.OpcodeIndex()] == b"DISPATCH_OP"]
    if len(ops) != 1 or len(dispatch) != 1:
        raise ArtifactError(f"{model}: expected the whole graph as one NPU dispatch op, found {len(ops)} ops "
                            f"({len(dispatch)} dispatch)")
    opts = flexbuffers.Loads(bytes(dispatch[0].CustomOptionsAsNumpy().tobytes()))
    start, size = int(opts["bytecode_offset"]), int(opts["bytecode_size"])
    if start + size > len(buf):
        raise ArtifactError(f"{model}: its context binary ({start}+{size}) runs past the file ({len(buf)} bytes)")

    def shape(i: int) -> list[int]:
        return [int(v) for v in sg.Tensors(i).ShapeAsNumpy()]

    name = opts["name"]
    return buf[start:start + size], name.decode() if isinstance(name, bytes) else str(name), \
        shape(sg.Inputs(0)), shape(sg.Outputs(0))


def epcontext_model(binary: bytes, graph: str, in_shape: list[int], out_shape: list[int]) -> bytes:
    """A one-node ONNX model that hands BINARY to ONNX Runtime's QNN execution provider."""
    from onnx import TensorProto, helper

    node = helper.make_node("EPContext", ["crops"], ["scores"], name=graph, domain="com.microsoft", main_context=1,
                            embed_mode=1, ep_cache_context=binary, source="QNNExecutionProvider")
    g = helper.make_graph([node], "lmliqa_qnn", [helper.make_tensor_value_info("crops", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("scores", TensorProto.FLOAT, out_shape)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                               helper.make_opsetid("com.microsoft", 1)]).SerializeToString()


def htp_session(model: bytes, soc: str):
    """An ONNX Runtime session on the QNN HTP backend (the simulator on x86) for SOC, CPU fallback off."""
    global _REGISTERED
    ort, qnn = _qnn()
    if soc not in SOCS:
        raise DeviceUnavailable(f"SoC {soc!r} is not in lmliqa's table ({', '.join(SOCS)})")
    if not _REGISTERED:
        ort.register_execution_provider_library(qnn.get_ep_name(), qnn.get_library_path())
        _REGISTERED = True
    devices = [d for d in ort.get_ep_devices() if d.ep_name == qnn.get_ep_name()]
    if not devices:
        raise BackendUnavailable("ONNX Runtime lists no QNN device after registering onnxruntime-qnn")
    soc_model, arch = SOCS[soc]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    so.add_provider_for_devices(devices[:1], {"backend_path": qnn.get_qnn_htp_path(), "soc_model": str(soc_model),
                                              "htp_arch": str(arch)})
    return ort.InferenceSession(model, so)


class QnnScorer(Scorer):
    backend = "qnn-htp-simulator"

    def __init__(self, path: str | Path, precision: Precision | None = None, device: str | None = None,
                 threads: int | None = None) -> None:
        _qnn()
        metadata = read_metadata(path)
        stored = stored_precision(metadata, precision, path, "the HTP")
        if device not in (None, "htp", "HTP"):
            raise DeviceUnavailable(f"device {device!r}: a compiled Qualcomm artifact runs on the HTP (simulated here)")
        binary, graph, ins, outs = context_binary(Path(path) / MODEL)
        self.session = htp_session(epcontext_model(binary, graph, ins, outs), metadata["qnn"]["soc"])
        self.input_name = self.session.get_inputs()[0].name
        super().__init__(path, metadata, stored, "htp")
        self.detail = f"{metadata['qnn']['soc']} HTP, {NOTE}"
        self.threads = threads

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: crops})[0]


SCORER = QnnScorer


def probe() -> list[Capability]:
    _qnn()
    return [Capability("qualcomm", Precision.FP16, Support.RUNS, "the float graph computes in fp16 on the HTP; "
                       + NOTE),
            Capability("qualcomm", Precision.INT8, Support.RUNS, NOTE)]


def write_marker(folder: Path, metadata: dict[str, Any]) -> None:
    (folder / MARKER).write_text(json.dumps(metadata, indent=2, sort_keys=True))
