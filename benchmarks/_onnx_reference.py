"""What the ONNX INT8 benchmarks (onnx_int8.py, tensorrt_qdq.py, pt2e_onnx.py) start from: a checkpoint exported to
FP32 ONNX and its torch.export program, the calibration and validation photos decoded with its contract, and the
program's scores of the validation photos (the reference every variant is compared with)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class OnnxReference:
    fp32: Path                      # the exported FP32 ONNX
    meta: dict[str, Any]            # its lmliqa metadata (contract, float_scopes, ...)
    program: Any                    # the torch.export program it came from
    contract: Any                   # lmliqa.contract.PreprocessContract
    calib: Any                      # lmliqa.quantize.calib.ImageSet
    val: Any
    reference: np.ndarray           # the program's score of each validation photo

    def compare(self, run, images=None, reference=None):
        """Fidelity of RUN (crops -> scores) to the program on IMAGES (default: the validation photos)."""
        from lmliqa.fidelity import compare
        from lmliqa.quantize.calib import image_scores

        images = self.val if images is None else images
        reference = self.reference if reference is None else reference
        return compare(reference, image_scores(run, images, self.contract), images.mos, images.file_names)


def export_reference(checkpoint: str, tmp: Path, calib: str, n_calib: int, n_val: int,
                     val: str | None = None) -> OnnxReference:
    """CHECKPOINT ("default": the shipped model's) exported to ONNX in TMP, with the sets of
    lmliqa.quantize.calib.build_sets(CALIB, N_CALIB, N_VAL, VAL) and the program's validation scores."""
    from lmliqa.contract import PreprocessContract
    from lmliqa.default_model import default_artifact
    from lmliqa.export import export_checkpoint
    from lmliqa.export._graph import load_program, program_runner
    from lmliqa.quantize.calib import build_sets, image_scores
    from lmliqa.runtimes.onnxruntime import read_metadata

    export_checkpoint(default_artifact("torch") if checkpoint == "default" else Path(checkpoint), ["onnx"], tmp)
    pt2 = next(tmp.glob("*.pt2"))
    fp32 = tmp / f"{pt2.stem}.onnx"                # the FP32 file (beside it: the reduced precisions)
    meta = read_metadata(fp32)
    program, _ = load_program(pt2)
    contract = PreprocessContract.from_dict(meta["contract"])
    calib_set, val_set = build_sets(calib, contract, n_calib, n_val, val)
    return OnnxReference(fp32, meta, program, contract, calib_set, val_set,
                         image_scores(program_runner(program), val_set, contract))


def ort_runner(model, threads: int | None = None):
    """crops -> scores with ONNX Runtime's CPU provider on MODEL (a path or a ModelProto)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model) if isinstance(model, Path) else model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda crops: sess.run(None, {name: crops})[0]
