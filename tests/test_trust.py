"""Files that cannot be trusted (issue 12 §4): pickles and foreign files given as a model or checkpoint, artifacts
with missing, malformed or too-new metadata, label files that point outside their dataset, and image metadata
(EXIF, ICC, XMP) that must never reach anything that executes or writes."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmliqa.cli import main
from lmliqa.default_model import RELEASE, default_artifact

PHOTO = RELEASE / "golden" / "chelsea.jpg"


class _Evil:
    """Unpickling this creates MARKER: proof that a file was unpickled."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_pickle(path: Path, marker: Path) -> Path:
    _Evil.marker = str(marker)
    path.write_bytes(pickle.dumps({"model": _Evil(), "state_dict": _Evil()}))
    return path


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors", ".onnx", ".tflite", ".pte", ".xml"])
def test_a_pickle_given_as_a_model_is_refused_unopened(suffix, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = _evil_pickle(tmp_path / f"model{suffix}", marker)
    assert main(["score", "--model", str(evil), str(PHOTO)]) == 2
    err = capsys.readouterr().err
    assert "lmliqa: error: " in err and "Traceback" not in err and str(evil) in err
    assert not marker.exists()


@pytest.mark.parametrize("command", [
    ["eval", "--data", "synthetic", "--checkpoint", "{evil}"],
    ["export", "--checkpoint", "{evil}", "--formats", "onnx", "--out", "{tmp}/x"],
    ["release", "--checkpoint", "{evil}", "--calib", "synthetic", "--eval", "synthetic", "--out", "{tmp}/r"],
])
@pytest.mark.parametrize("name", ["evil.pt", "evil.safetensors"])
def test_a_pickle_given_as_a_checkpoint_is_refused_unopened(command, name, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = _evil_pickle(tmp_path / name, marker)
    args = [a.format(evil=evil, tmp=tmp_path) for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{evil}: " in err and not marker.exists()


def test_a_pickle_given_as_pretrained_weights_is_refused_unopened(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = _evil_pickle(tmp_path / "backbone.pth", marker)
    rc = main(["train", "--preset", "tiny", "--pretrained", str(evil), "--out", str(tmp_path / "run"),
               "--max-steps", "1"])
    assert rc == 2 and not marker.exists()
    assert "backbone.pth: not a weights file lmliqa reads safely" in capsys.readouterr().err


def _with_metadata(src: Path, dst: Path, edit) -> Path:
    import onnx

    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    del proto.metadata_props[:]
    for k, v in edit(props).items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(dst))
    return dst


def _meta(change):
    def edit(props):
        meta = json.loads(props["lmliqa"])
        change(meta)
        return {**props, "lmliqa": json.dumps(meta)}
    return edit


@pytest.mark.parametrize("case,edit,message", [
    ("missing", lambda p: {k: v for k, v in p.items() if k != "lmliqa"}, "ONNX model without lmliqa metadata"),
    ("not_json", lambda p: {**p, "lmliqa": "{contract: oops"}, "its lmliqa metadata is not valid JSON"),
    ("a_list", lambda p: {**p, "lmliqa": "[1, 2]"}, "its lmliqa metadata is a JSON list, not an object"),
    ("no_contract", _meta(lambda m: m.pop("contract")), "its lmliqa metadata lacks contract"),
    ("bad_field", _meta(lambda m: m["contract"].update(crop_size="huge")), "malformed lmliqa metadata"),
    ("bad_version", _meta(lambda m: m["contract"].update(version="one")), "malformed lmliqa metadata: contract "
                                                                          "version 'one'"),
    ("newer", _meta(lambda m: m["contract"].update(version=2, tone_map="pq")),
     "was written for preprocessing contract version 2; this lmliqa implements version 1. Upgrade lmliqa"),
])
def test_artifacts_with_missing_malformed_or_newer_metadata_are_refused(case, edit, message, tmp_path, capsys):
    from lmliqa.runtimes import ArtifactError, load

    model = _with_metadata(default_artifact("onnx"), tmp_path / f"{case}.onnx", edit)
    with pytest.raises(ArtifactError) as e:
        load(model)
    assert message in str(e.value)
    assert main(["score", "--model", str(model), str(PHOTO)]) == 2
    assert message in capsys.readouterr().err


def test_a_checkpoint_for_a_newer_contract_is_refused(tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    src = default_artifact("torch")
    with safe_open(str(src), framework="np") as f:
        meta = json.loads(f.metadata()["lmliqa"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["config"]["contract"]["version"] = 2
    save_file(tensors, str(tmp_path / "newer.safetensors"), metadata={"lmliqa": json.dumps(meta)})
    assert main(["score", "--model", str(tmp_path / "newer.safetensors"), str(PHOTO)]) == 2
    assert "cannot be read by this lmliqa (contract version 2 is newer than the version this lmliqa implements (1); " \
           "upgrade lmliqa)" in capsys.readouterr().err


def _folder(root: Path, rows: list[tuple[str, float]]) -> Path:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    Image.open(PHOTO).convert("RGB").save(root / "images" / "good.jpg")
    (root / "scores.csv").write_text("image,mos\n" + "".join(f"{n},{m}\n" for n, m in rows))
    return root


def test_label_files_cannot_point_outside_their_dataset(tmp_path, capsys):
    from lmliqa.data import DatasetError, open_dataset

    outside = tmp_path / "outside.jpg"
    outside.write_bytes(PHOTO.read_bytes())
    root = _folder(tmp_path / "ds", [("good.jpg", 50), ("../../outside.jpg", 40), ("/etc/passwd", 30),
                                     ("link.jpg", 20), ("sub/../good.jpg", 60)])
    (root / "images" / "link.jpg").symlink_to(outside)
    spec = f"folder:{root}"
    with pytest.raises(DatasetError) as e:
        open_dataset(spec)
    msg = str(e.value)
    assert "the label file points outside the dataset root" in msg
    assert "outside.jpg: the label file names a path outside the dataset root" in msg
    assert "/etc/passwd: the label file names a path outside the dataset root" in msg
    assert f"link.jpg: a symlink leads outside the dataset root (to {outside.resolve()})" in msg
    ds = open_dataset(spec, strict=False)
    assert [r.path.name for r in ds.records] == ["good.jpg", "good.jpg"] and len(ds.refused) == 3
    assert main(["data", "check", spec, "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["problem_counts"]["outside_root"] == 3 and rep["ok"] is False
    assert main(["eval", "--checkpoint", str(default_artifact("torch")), "--data", spec, "--split", "all"]) == 2
    assert "points outside the dataset root" in capsys.readouterr().err


_AUDIT = r"""
import json, os, sys
from lmliqa.runtimes import load
scorer = load("default")
warm = sys.argv[1].split(",")          # the same pixels without metadata, one file per format: every import and
clean = [r.score for r in scorer.score_many(warm, workers=2)]       # plugin load happens before the hook
events = []
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
def hook(event, args):
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITE):
            events.append(f"open for writing: {path}")
    elif event.split(".")[0] in ("subprocess", "os", "socket", "urllib", "ctypes", "webbrowser", "shutil") and \
            event not in ("os.listdir", "os.scandir", "os.chdir"):
        events.append(f"{event}: {str(args)[:200]}")
    elif event in ("exec", "compile", "builtins.input", "pickle.find_class", "marshal.loads", "import"):
        events.append(f"{event}: {str(args)[:120]}")
sys.addaudithook(hook)
results = [r.to_dict() for r in scorer.score_many(sys.argv[2:], workers=2)]
seen = list(events)
open(os.devnull, "w").close()                       # the control: the hook does see a write
assert events[len(seen):] == [f"open for writing: {os.devnull}"], events[len(seen):]
sys.stdout.write(json.dumps({"events": seen, "clean": clean, "results": results}))
"""


def test_image_metadata_never_reaches_code_that_executes_or_writes(tmp_path):
    """EXIF strings that look like shell, an XMP packet with external entities, a garbage ICC profile and a
    60 KB MakerNote: under an audit hook, scoring them opens nothing for writing, starts no process, touches no
    socket and imports or compiles nothing; the scores equal those of the same pixels without metadata."""
    from PIL import Image

    rgb = Image.open(PHOTO).convert("RGB")
    rgb.save(tmp_path / "plain.png")
    rgb.save(tmp_path / "plain.webp", lossless=True)
    rgb.save(tmp_path / "plain.jpg", quality=100, subsampling=0)
    marker = tmp_path / "pwned"
    exif = Image.Exif()
    exif[0x010E] = f"$(touch {marker}); `touch {marker}`"                       # ImageDescription
    exif[0x010F] = "'; DROP TABLE photos; --"                                   # Make
    exif[0x927C] = b"\x00" * 60_000                                             # MakerNote: 60 KB
    xmp = (f'<?xpacket begin=""?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd"><!ENTITY n SYSTEM '
           f'"http://127.0.0.1:9/x">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&e;&n;<touch>{marker}</touch>'
           '</x:xmpmeta><?xpacket end="w"?>').encode()
    icc = b"\x00\x00\x02\x00garbage-icc" + os.urandom(500)
    rgb.save(tmp_path / "exif.jpg", quality=100, subsampling=0, exif=exif)
    rgb.save(tmp_path / "xmp.jpg", quality=100, subsampling=0, xmp=xmp)
    rgb.save(tmp_path / "icc.png", icc_profile=icc)
    rgb.save(tmp_path / "all.webp", lossless=True, exif=exif.tobytes(), xmp=xmp, icc_profile=icc)
    rgb.save(tmp_path / "all.png", exif=exif.tobytes(), icc_profile=icc, pnginfo=_png_xmp(xmp))
    files = [tmp_path / n for n in ("exif.jpg", "xmp.jpg", "icc.png", "all.webp", "all.png")]
    warm = ",".join(str(tmp_path / n) for n in ("plain.png", "plain.webp", "plain.jpg"))
    p = subprocess.run([sys.executable, "-c", _AUDIT, warm, *map(str, files)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["events"] == []
    assert not marker.exists()
    plain, plain_jpeg = out["clean"][0], out["clean"][2]
    scores = {Path(r["image"]).name: r["score"] for r in out["results"]}
    assert all(r["error"] == "" for r in out["results"])
    for lossless in ("icc.png", "all.webp", "all.png"):                          # metadata changes nothing
        assert scores[lossless] == pytest.approx(plain, abs=1e-4), lossless
    assert scores["exif.jpg"] == pytest.approx(plain_jpeg, abs=1e-4)            # same JPEG pixels
    assert scores["xmp.jpg"] == pytest.approx(plain_jpeg, abs=1e-4)
    assert np.isfinite(scores["exif.jpg"])


def _png_xmp(xmp: bytes):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    return info
