"""PyTorch 2 Export (PT2E) post-training quantization, shared by the LiteRT and ExecuTorch targets: the same
fixed-batch program, the same calibration crops and the same float scope, translated into a node filter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lmliqa.export._graph import ATEN_OPS, io_node, module_path, scope_prefixes, static_program
from lmliqa.scope import FloatScope, under

from .calib import ImageSet


def keep_float(scope: FloatScope, metadata: dict[str, Any], program) -> Callable[[torch.fx.Node], bool]:
    """node -> True when SCOPE keeps it in float: it comes from a module under the scope's regions, or its aten op
    is one of the scope's op categories (layer_norm, softmax, gelu, add for residual adds, ...), and always the
    network's input / output ops (export._graph `io_node`: the score head's Linear is float as a whole, since a
    PT2E quantizer annotates an op's own output)."""
    prefixes = scope_prefixes(scope, metadata, program)
    ops = set(scope.op_types(ATEN_OPS))

    def check(node: torch.fx.Node) -> bool:
        if node.op != "call_function":
            return False
        if io_node(node):
            return True
        path = module_path(node)
        if path is not None and under(path, prefixes):
            return True
        return getattr(node.target, "__name__", "").split(".", 1)[0] in ops

    return check


def chunks(crops: np.ndarray, batch: int) -> list[torch.Tensor]:
    """CROPS in batches of BATCH, the last one padded with repeats of its last crop (a fixed-batch program's
    calibration input)."""
    out = []
    for i in range(0, len(crops), batch):
        chunk = crops[i:i + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        out.append(torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)))
    return out


def quantize_program(program, batch: int, quantizer, calib: ImageSet,
                     fold_quantize: bool = True) -> tuple[torch.nn.Module, torch.Tensor]:
    """The program re-exported at BATCH, prepared with QUANTIZER, calibrated on CALIB's crops (chunks of BATCH,
    the last padded) and converted to Q/DQ form; returns (module, example input). FOLD_QUANTIZE: store the weights
    as int8 constants (what ExecuTorch's XNNPACK partitioner matches) rather than float weights quantized in the
    graph (what litert-torch's lowering expects)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    ep, example = static_program(program, batch)
    prepared = prepare_pt2e(ep.module(), quantizer)
    with torch.no_grad():
        for x in chunks(np.concatenate(calib.crops), batch):
            prepared(x)
    return convert_pt2e(prepared, fold_quantize=fold_quantize), example


def strip_annotations(quantizer, keep: Callable[[torch.fx.Node], bool]):
    """QUANTIZER, made to leave the nodes KEEP selects unannotated (for quantizers without a filter function):
    their inputs and outputs stay float, their neighbours' own quantization is unchanged."""
    annotate = quantizer.annotate

    def annotate_scoped(model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        model = annotate(model)
        for node in model.graph.nodes:
            if keep(node):
                node.meta.pop("quantization_annotation", None)
        return model

    quantizer.annotate = annotate_scoped
    return quantizer


def count_kept(program, keep: Callable[[torch.fx.Node], bool]) -> int:
    return sum(keep(n) for n in program.graph.nodes)


def litert_quantizer(keep=None):
    """(litert-torch's static symmetric per-channel config, config -> PT2EQuantizer with it globally, leaving the
    nodes KEEP selects float): LiteRT's quantizer, also what `fine_tune_checkpoint` (quantize/_qat.py) fake-quantizes
    a checkpoint through."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    def quantizer(cfg):
        made = PT2EQuantizer().set_global(cfg)
        return made if keep is None else strip_annotations(made, keep)

    return get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False), quantizer
