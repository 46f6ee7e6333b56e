"""How much of the network ExecuTorch's XNNPACK delegate runs, and what it costs: the FP32 program lowered with the
whole-graph partitioner (what `lmliqa export --targets executorch` does) against ``per_op_mode=True`` (one
delegate per op: the only mode that lowered this network before its shared token projection was called once),
and the bare backbone (the CNN alone) for the floor; timed in interleaved rounds of one run.

    python benchmarks/executorch_partitions.py --checkpoint CKPT [--rounds 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lmliqa.export._graph import example_input, export_program, load_for_export
from lmliqa.export.executorch import delegation_report
from lmliqa.provenance import provenance


class Backbone(torch.nn.Module):
    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.encoder.cnn.forward_features((x - self.net.pixel_mean) / self.net.pixel_std)


def lower(module: torch.nn.Module, x: torch.Tensor, per_op: bool, path: Path):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    edge = to_edge_transform_and_lower(torch.export.export(module, (x,), strict=False),
                                       partitioner=[XnnpackPartitioner(per_op_mode=per_op)])
    report = delegation_report(edge.exported_program().graph_module)
    path.write_bytes(edge.to_executorch().buffer)
    program = Runtime.get().load_program(path)            # loaded from the file: the program keeps its memory
    return report, program, program.load_method("forward")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    model, _ = load_for_export(args.checkpoint)
    n = model.config.contract.n_eval_crops
    x = example_input(model.config.contract.crop_size, n)
    static = torch.export.export(export_program(model).module(), (x,), strict=False).module()
    variants = {"whole graph (lmliqa export)": (static, False), "per-op delegates": (static, True),
                "backbone only (floor)": (Backbone(model).eval(), False)}
    rows, methods = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (module, per_op)) in enumerate(variants.items()):
            t0 = time.perf_counter()
            report, program, method = lower(module, x, per_op, Path(tmp) / f"v{i}.pte")
            methods[name] = (program, method)
            rows.append({"variant": name, "lower_s": round(time.perf_counter() - t0, 1), **report})
            print(f"{name:<30} {report['partitions']:>4} partitions, {report['delegated_ops']} ops delegated, "
                  f"{report['outside_ops']} outside: {report['outside']}", flush=True)
        times: dict[str, list[float]] = {k: [] for k in methods}
        for _ in range(args.rounds):
            for name, (_, method) in methods.items():
                method.execute([x])
                t0 = time.perf_counter()
                for _ in range(5):
                    method.execute([x])
                times[name].append((time.perf_counter() - t0) / 5 * 1e3)
    for row in rows:
        row["ms_per_image"] = float(np.median(times[row["variant"]]))
        print(f"{row['variant']:<30} {row['ms_per_image']:.1f} ms per image ({n} crops)")
    if args.json:
        Path(args.json).write_text(json.dumps({"provenance": provenance(), "checkpoint": args.checkpoint,
                                               "crops_per_call": n, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
