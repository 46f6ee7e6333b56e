"""The browser target's numbers, in one run: ms per photo in the page (headless Chromium, WebAssembly with 1 and 2
threads, the accurate and fast layouts) next to native ONNX Runtime on the same photo and threads, the live
camera view's frames per second, and the bundle a page downloads (raw and gzip). Writes a JSON result with its
provenance and a screenshot of the page (its .png twin).

    python benchmarks/web_bench.py --models DIR --photo PHOTO --json benchmarks/results/DATE-web-bench.json

DIR is an export folder holding M_web/ (and M_int8_web/ after `lmliqa quantize --targets web`) and M.onnx
(M_int8.onnx): the native rows run those, the same networks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def page_ms(folder: Path, photo: Path, threads: int, layout: str, runs: int) -> dict:
    from lmliqa.decode import read_bytes
    from lmliqa.runtimes.web import WebScorer, run

    scorer = WebScorer(folder, threads=threads)
    try:
        ms = run(scorer.driver, "return await window.lmliqaPage.timeUrl(...args);",
                 scorer.server.put(read_bytes(photo)), runs, 2, layout)
        isolated = scorer.isolated
    finally:
        scorer.close()
    return {"p50_ms": statistics.median(ms), "p95_ms": float(np.percentile(ms, 95)), "runs": runs,
            "cross_origin_isolated": isolated}


def native_ms(model: Path, photo: Path, threads: int, layout: str, runs: int) -> dict:
    """The same photo through lmliqa's Python scorer on native ONNX Runtime (decode, crops, network, mean)."""
    from lmliqa.runtimes import load

    scorer = load(model, threads=threads)
    contract = scorer.contract.with_layout(layout)
    data = photo.read_bytes()
    ms = []
    for i in range(runs + 2):
        t0 = time.perf_counter()
        contract.aggregate(scorer.infer(contract.eval_crops(data)))
        if i >= 2:
            ms.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": statistics.median(ms), "p95_ms": float(np.percentile(ms, 95)), "runs": runs}


def camera(folder: Path, photo: Path, frames: int) -> dict:
    from lmliqa.runtimes.web import WebScorer, fake_camera_file

    with tempfile.TemporaryDirectory() as tmp:
        scorer = WebScorer(folder, threads=2, camera=fake_camera_file(photo, Path(tmp) / "camera.y4m"))
        try:
            t0 = time.perf_counter()
            first = scorer.camera_snapshot(min_frames=1)
            t1 = time.perf_counter()
            last = scorer.camera_snapshot(min_frames=first["frames"] + frames)
            t2 = time.perf_counter()
        finally:
            scorer.close()
    n = last["frames"] - first["frames"]
    return {"frames": n, "frames_per_s": n / (t2 - t1), "page_fps_estimate": last["fps"], "start_s": t1 - t0,
            "frame": [last["width"], last["height"]], "layout": "fast", "threads": 2}


def screenshot(folder: Path, photo: Path, png: Path, extra: list[Path]) -> None:
    from lmliqa.runtimes.web import WebScorer, fake_camera_file

    with tempfile.TemporaryDirectory() as tmp:
        scorer = WebScorer(folder, threads=2, camera=fake_camera_file(photo, Path(tmp) / "camera.y4m"))
        try:
            scorer.camera_snapshot(min_frames=3)
            scorer.show_files(extra, [p.name for p in extra])
            scorer.screenshot(png, 1200, 640)
        finally:
            scorer.close()


def main(argv: list[str] | None = None) -> int:
    from lmliqa.provenance import provenance
    from lmliqa.runtimes.web import chromium_version, describe_folder

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, help="an export folder with M_web/ (and M_int8_web/) and M.onnx")
    ap.add_argument("--photo", required=True, help="the photo every row scores (a camera-sized JPEG)")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--camera-frames", type=int, default=20)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    prov = provenance()
    models, photo = Path(args.models), Path(args.photo)
    rows = []
    for web in sorted(models.glob("*_web")):
        onnx = models / (web.name[: -len("_web")] + ".onnx")
        sizes = describe_folder(web)
        for layout in ("accurate", "fast"):
            for threads in (1, 2):
                row = {"artifact": web.name, "precision": sizes["metadata"]["precision"], "layout": layout,
                       "threads": threads, "page": page_ms(web, photo, threads, layout, args.runs),
                       "native_onnxruntime": native_ms(onnx, photo, threads, layout, args.runs) if onnx.exists()
                       else None}
                if row["native_onnxruntime"]:
                    row["page_over_native"] = row["page"]["p50_ms"] / row["native_onnxruntime"]["p50_ms"]
                rows.append(row)
                print(f"{web.name} {layout:<8} {threads} thread(s): page {row['page']['p50_ms']:.1f} ms, native "
                      f"{(row['native_onnxruntime'] or {}).get('p50_ms', float('nan')):.1f} ms", flush=True)
    fp32 = next(w for w in sorted(models.glob("*_web")) if describe_folder(w)["metadata"]["precision"] == "fp32")
    out = {"provenance": prov, "chromium": chromium_version(), "photo": str(photo), "rows": rows,
           "camera": {"artifact": fp32.name, **camera(fp32, photo, args.camera_frames)},
           "bundles": {w.name: {k: v for k, v in describe_folder(w).items() if k != "metadata"}
                       for w in sorted(models.glob("*_web"))}}
    png = Path(args.json).with_suffix(".png")
    # the screenshot shows the CC0 / public-domain golden probes (the default model's), never a data set's photos
    from lmliqa.default_model import RELEASE

    probes = RELEASE / "golden"
    screenshot(fp32, probes / "chelsea.jpg", png, [probes / n for n in ("coffee_blur.jpg", "coffee_noise.jpg",
                                                                          "astronaut_q8.jpg")])
    out["screenshot"] = png.name
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"camera: {out['camera']['frames_per_s']:.1f} frames/s; wrote {args.json} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
