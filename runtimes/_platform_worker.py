"""The process that runs an artifact on an emulated platform (lmliqa.runtimes.emulated starts it under the
platform's emulator, in its sysroot, with this lmliqa's torch-free modules staged beside it).

It loads the artifact with lmliqa's own runtime for its target (the same session options as on this machine:
threads, graph optimisation, XNNPACK) and answers requests on stdin, one JSON line each, replies on the original
stdout: a JSON line, then for an array its raw bytes (the line gives "array": {"dtype", "shape"}; no pickles).
Anything the runtimes print goes to stderr.

    {"op": "load", "target": "litert", "path": "...", "precision": null, "threads": 2}
    {"op": "infer"} + crops (n, 3, s, s) float32      -> scores (n,)
    {"op": "crops", "path": "..."}                    -> the contract's crops, decoded and cut on this platform
    {"op": "about"}                                   -> machine, Python and runtime versions
"""

from __future__ import annotations

import json
import os
import platform
import sys
import traceback


def main() -> int:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    inp = sys.stdin.buffer
    scorer = None
    while True:
        line = inp.readline()
        if not line:
            return 0
        req = json.loads(line)
        array = read_array(inp, req["array"]) if req.get("array") else None
        try:
            reply, data = handle(req, array, scorer)
            if req["op"] == "load":
                scorer, reply = reply, describe(reply)
            _send(out, {"ok": True, **reply}, data)
        except Exception as exc:     # noqa: BLE001 - every error goes back to the caller, with its class name
            _send(out, {"ok": False, "kind": type(exc).__name__, "error": str(exc) or type(exc).__name__,
                        "trace": traceback.format_exc(limit=4)}, None)


def handle(req, array, scorer):
    op = req["op"]
    if op == "load":
        from lmliqa import targets

        return targets.get(req["target"]).load(req["path"], precision=req.get("precision"),
                                              threads=req.get("threads")), None
    if op == "about":
        return about(), None
    if scorer is None:
        raise RuntimeError("no artifact loaded")
    if op == "infer":
        return {}, scorer._infer(array)
    if op == "crops":
        return {}, scorer.contract.eval_crops(req["path"])
    raise ValueError(f"unknown op {op!r}")


def describe(scorer) -> dict:
    return {"metadata": scorer.metadata, "precision": scorer.precision.value, "detail": scorer.detail,
            "backend": scorer.backend, **about()}


def about() -> dict:
    import importlib.metadata

    versions = {}
    for dist in ("numpy", "pillow", "ai-edge-litert", "onnxruntime"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"machine": platform.machine(), "python": platform.python_version(), "versions": versions}


def _send(out, header: dict, data) -> None:
    write_message(out, header, data)


def write_message(stream, header: dict, data=None) -> None:
    """HEADER as one JSON line (with the array's dtype and shape), then DATA's bytes; flushed."""
    import numpy as np

    if data is not None:
        data = np.ascontiguousarray(data)
        header = {**header, "array": {"dtype": data.dtype.str, "shape": list(data.shape)}}
    stream.write(json.dumps(header, default=str).encode() + b"\n")
    if data is not None:
        stream.write(data.tobytes())
    stream.flush()


def read_array(stream, spec: dict):
    """The array a message announced (SPEC: its dtype and shape), read exactly."""
    import numpy as np

    dtype = np.dtype(spec["dtype"])
    if dtype.hasobject:
        raise ValueError("object arrays are refused")
    n = int(np.prod(spec["shape"], dtype=np.int64)) * dtype.itemsize
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            raise EOFError(f"the stream ended {n - len(buf)} bytes into an array")
        buf += chunk
    return np.frombuffer(bytes(buf), dtype=dtype).reshape(spec["shape"])


if __name__ == "__main__":
    sys.exit(main())
