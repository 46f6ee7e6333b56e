"""The browser target: the exported page's JavaScript preprocessing gives Python's crops pixel for pixel (the golden
probes and every hostile case a browser decodes; the rest refused with the reason), its live camera view scores
the frame it shows like Python does, the page refuses a newer contract, and `lmliqa web` serves what WebAssembly
threads need. Its FP32 and INT8 gates are the generated ones (test_every_target.py)."""

import shutil

import numpy as np
import pytest
from conftest import needs

from lmliqa.runtimes import load

# what Chromium decodes, but not as Pillow does (16-bit PNG and CMYK JPEG: not pixel-identical in general), and what
# it does not decode at all: refused by the page, never scored differently
REFUSED = {"grey16.png": "16-bit PNG", "cmyk.jpg": "CMYK JPEG", "float.tif": "TIFF", "photo.tif": "TIFF"}


@pytest.fixture(scope="module")
def page(exported):
    needs("web", "fp32")
    _, out, _ = exported
    scorer = load(out / "mobile_web")
    yield scorer
    scorer.close()


def _golden_probes():
    from lmliqa.default_model import RELEASE

    return sorted(p for p in (RELEASE / "golden").iterdir() if p.suffix != ".json")


def test_page_crops_equal_the_contracts_on_the_golden_probes(page):
    for probe in _golden_probes():
        got, want = page.page_crops(probe), page.contract.eval_crops(probe)
        assert got.shape == want.shape and np.array_equal(got, want), (probe.name, int((got != want).sum()))


def test_hostile_inputs_get_pythons_crops_or_a_clear_refusal(page, tmp_path, exported):
    from hostile import build_corpus

    from lmliqa.default_model import RELEASE

    _, out, _ = exported
    cases = build_corpus(tmp_path, RELEASE / "golden" / "chelsea.jpg", big=False)
    names = sorted(cases)
    web = {r.image: r for r in page.score_many([str(tmp_path / n) for n in names])}
    onnx = {r.image: r for r in load(out / "mobile.onnx").score_many([str(tmp_path / n) for n in names])}
    for n in names:
        w, o = web[str(tmp_path / n)], onnx[str(tmp_path / n)]
        if n in REFUSED:
            assert o.ok and w.error_kind == "unsupported" and REFUSED[n] in w.error, (n, w.error)
        elif not o.ok:                                   # what Python refuses, the page refuses the same way
            assert w.error_kind == o.error_kind and w.error.split(" ")[0] == o.error.split(" ")[0], (n, w, o)
        else:
            assert w.ok, (n, w.error)
            got, want = page.page_crops(tmp_path / n), page.contract.eval_crops(tmp_path / n)
            assert np.array_equal(got, want), (n, int((got != want).sum()))
            assert abs(w.score - o.score) <= 0.01, (n, w.score, o.score)


def test_the_live_camera_view_scores_the_frame_it_shows(exported, tmp_path):
    """Chromium's fake camera plays a probe photo; the score the page draws over the video is Python's score of
    that very frame (its fast layout), within the FP32 gate."""
    from PIL import Image

    from lmliqa.runtimes.web import WebScorer, fake_camera_file

    needs("web", "fp32")
    _, out, _ = exported
    cam = fake_camera_file(_golden_probes()[0], tmp_path / "camera.y4m")
    scorer = WebScorer(out / "mobile_web", camera=cam)
    try:
        snap = scorer.camera_snapshot(min_frames=3)
    finally:
        scorer.close()
    assert "error" not in snap, snap
    fast = scorer.contract.with_layout("fast")
    frame = snap["frame"]
    assert frame.shape[2] == 3 and frame.std() > 10             # a real picture, not a blank frame
    python = fast.aggregate(load(out / "mobile.onnx").infer(fast.grid_crops(Image.fromarray(frame))))
    assert abs(snap["score"] - python) <= 0.01 and snap["shown"] == f"{snap['score']:.1f}"
    assert snap["frames"] >= 3 and snap["fps"] > 0


def test_the_page_refuses_a_newer_contract_and_a_camera_it_cannot_open(page):
    from lmliqa.runtimes.web import run

    msg = run(page.driver, "const m = await import('./lmliqa-web.mjs');"
                           "try { m.checkMetadata({contract: {version: 2}}); return 'accepted'; }"
                           "catch (e) { return e.message; }")
    assert "contract version 2" in msg and "implements version 1" in msg
    snap = page.camera_snapshot()                # this browser was started without a camera
    assert snap.get("error", "").startswith(("No camera was found", "Camera access was refused",
                                             "The camera could not be started")), snap


def test_the_server_sends_what_webassembly_threads_need(exported):
    import urllib.request

    from lmliqa.runtimes.web import PageServer

    _, out, _ = exported
    server = PageServer(out / "mobile_web")
    try:
        for name, mime in (("lmliqa-web.mjs", "text/javascript"), ("ort/ort-wasm-simd-threaded.wasm",
                                                                   "application/wasm")):
            with urllib.request.urlopen(server.url + name) as res:
                assert res.headers["Content-Type"].startswith(mime), name
                assert res.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert res.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        token = server.put(b"abc")
        with urllib.request.urlopen(server.url.rstrip("/") + token) as res:
            assert res.read() == b"abc"
        with pytest.raises(urllib.error.HTTPError):       # a blob is fetched once
            urllib.request.urlopen(server.url.rstrip("/") + token)
    finally:
        server.close()


def test_the_folder_is_self_contained_and_its_contract_travels_as_json(exported, tmp_path):
    import json

    from lmliqa.export.web import ORT_FILES, ort_version

    ckpt, out, _ = exported
    folder = out / "mobile_web"
    assert {p.name for p in folder.iterdir()} == {"index.html", "lmliqa-web.mjs", "contract.json", "model.onnx", "ort"}
    assert sorted(p.name for p in (folder / "ort").iterdir()) == sorted(ORT_FILES)
    meta = json.loads((folder / "contract.json").read_text())
    assert meta["contract"] == load(ckpt).metadata["contract"] and meta["onnxruntime_web"] == ort_version()
    html = (folder / "index.html").read_text() + (folder / "lmliqa-web.mjs").read_text()
    assert "http://" not in html.replace("http://localhost", "") and "https://" not in html   # nothing from a CDN
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)                  # the folder works wherever it is copied
    scorer = load(copy)
    try:
        assert scorer.score(_golden_probes()[0]).ok
    finally:
        scorer.close()
