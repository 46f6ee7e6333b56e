"""Reliability of `lmliqa score` and the scorer API: odd and hostile inputs, exit status, standard output and
JSON Lines, streaming in input order, and kill + --resume (issue 12). The model is the one that ships in the
package, so these tests need neither the shared photos nor training."""

import csv
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hostile import add_scan_traps, build_corpus

from lmliqa.cli import main
from lmliqa.default_model import RELEASE
from lmliqa.runtimes import load

GOLDEN = RELEASE / "golden"
PHOTO = GOLDEN / "chelsea.jpg"


@pytest.fixture(scope="module")
def scorer():
    from lmliqa.runtimes import load

    return load("default")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    return folder, build_corpus(folder, PHOTO)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_hostile_input_gets_one_row_with_its_exact_outcome(corpus, tmp_path, capsys):
    """Each file named on the command line gets exactly one row, in order: a finite score, or the error kind and
    words fixed in tests/hostile.py; never a traceback. Some failed -> exit status 1."""
    folder, cases = corpus
    names = sorted(cases)
    rc = main(["score", *[str(folder / n) for n in names], "--jsonl", str(tmp_path / "rows.jsonl")])
    assert rc == 1
    rows = _jsonl(tmp_path / "rows.jsonl")
    assert [Path(r["image"]).name for r in rows] == names
    for name, row in zip(names, rows):
        want = cases[name]
        if want.scored:
            assert row["error"] == "" and np.isfinite(row["score"]) and len(row["crop_scores"]) == 9, (name, row)
            assert 0.0 <= row["score"] <= 100.0, (name, row["score"])
        else:
            assert row["score"] is None and row["error_kind"] == want.kind, (name, row)
            assert want.words in row["error"], (name, row["error"])
    assert sum(c.scored for c in cases.values()) >= 17 and sum(not c.scored for c in cases.values()) == 8
    err = capsys.readouterr().err
    assert "Traceback" not in err and "17 scored, 8 failed" in err


def test_pixel_formats_decode_to_the_pixels_they_hold(corpus, scorer):
    """Formats holding the same pixels score the same; EXIF orientation is applied; a grey image scores the same
    from 16-bit PNG and float TIFF; the name with spaces, accents, CJK and an emoji round-trips."""
    folder, _ = corpus
    s = {r.image: r.score for r in scorer.score_many([str(p) for p in sorted(folder.iterdir())], workers=2)}
    at = lambda n: s[str(folder / n)]  # noqa: E731
    # same pixels, other files (1e-4: ONNX Runtime sums a batch of other images in another order)
    assert at("photo.bmp") == pytest.approx(at("photo.tif"), abs=1e-4)
    assert at("jpeg_named.png") == pytest.approx(at("name with spaces é 写真 📷.jpg"), abs=1e-4)
    assert at("grey16.png") == pytest.approx(at("float.tif"), abs=1e-4)
    from PIL import Image

    raw = np.asarray(Image.open(folder / "exif_rotated.jpg").convert("RGB"))
    upright = np.ascontiguousarray(np.rot90(raw, -1))              # what orientation 6 asks the viewer to do
    assert at("exif_rotated.jpg") == pytest.approx(scorer.score(upright).score, abs=1e-4)
    assert abs(at("exif_rotated.jpg") - scorer.score(raw).score) > 1e-3   # the sideways pixels score otherwise


def test_decompression_bombs_are_refused_from_the_header_and_the_limit_is_configurable(corpus, tmp_path, capsys):
    import resource

    from lmliqa.decode import ImageDecodeError, load_rgb

    folder, _ = corpus
    bomb = folder / "bomb.png"
    assert bomb.stat().st_size < 200_000                     # a small file ...
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageDecodeError, match=r"image too large: 400 megapixels \(20000x20000; limit 200") as e:
        load_rgb(bomb)                                       # ... that would decode to 400 MP: refused unread
    assert e.value.kind == "too_large"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000   # KiB: no 400 MB buffer
    assert main(["score", str(PHOTO), "--max-pixels", "0.1", "--csv", "-"]) == 1
    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["error_kind"] == "too_large" and "limit 0.1, --max-pixels" in row["error"]


def test_a_folder_walk_counts_what_it_skips_and_survives_symlink_loops(corpus, tmp_path, capsys):
    folder, cases = corpus
    walk = tmp_path / "walk"
    shutil.copytree(folder, walk, symlinks=True)
    expect = {n: c for n, c in cases.items() if not n.endswith(".svg")}   # not an image name: skipped by a walk
    add_traps = add_scan_traps(walk)
    expect.update(add_traps)
    rc = main(["score", str(walk), "--jsonl", "-", "--verbose"])
    out, err = capsys.readouterr()
    assert rc == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(Path(r["image"]).name for r in rows) == sorted(expect)      # one row each, the loop included
    for name, want in add_traps.items():
        row = next(r for r in rows if r["image"].endswith(name))
        assert (row["error_kind"], row["error"]) == (want.kind, want.words), name
    assert f"skipped {walk / 'README.txt'}: not an image file name (.txt)" in err
    assert f"skipped {walk / 'vector.svg'}: not an image file name (.svg)" in err
    assert f"skipped {walk / 'sub' / 'back'}: symlink loop: this folder was already walked" in err
    assert "3 skipped" in err
    # named explicitly, the SVG is tried and refused in words
    assert main(["score", str(walk / "vector.svg"), "--quiet"]) == 1
    assert "not an image: SVG vector graphics" in capsys.readouterr().out


def test_a_file_the_user_cannot_read_gets_a_permission_row(tmp_path):
    """Permissions are enforced for the scoring process (as root it runs without CAP_DAC_OVERRIDE)."""
    work = Path(tempfile.mkdtemp(prefix="lmliqa-perm-"))
    try:
        os.chmod(work, 0o755)
        shutil.copy(PHOTO, work / "ok.jpg")
        os.chmod(work / "ok.jpg", 0o644)
        (work / "secret.jpg").write_bytes(PHOTO.read_bytes())
        os.chmod(work / "secret.jpg", 0)
        (work / "locked").mkdir()
        shutil.copy(PHOTO, work / "locked" / "hidden.jpg")
        os.chmod(work / "locked", 0)
        cmd = [sys.executable, "-m", "lmliqa", "score", str(work), "--csv", "-", "--verbose"]
        if os.geteuid() == 0:       # root reads anything: drop the two capabilities that let it (stays uid 0,
            if not shutil.which("setpriv"):     # so the repository and its venv stay readable wherever they live)
                pytest.skip("running as root without setpriv: file permissions cannot be exercised")
            cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
        env = {**os.environ, "HOME": str(work)}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=300)
        rows = list(csv.DictReader(io.StringIO(p.stdout)))
        assert p.returncode == 1, p.stderr
        assert [(Path(r["image"]).name, r["error_kind"], r["error"]) for r in rows] == [
            ("ok.jpg", "", ""), ("secret.jpg", "unreadable", "permission denied")]
        assert f"skipped {work / 'locked'}: permission denied" in p.stderr
    finally:
        os.chmod(work / "locked", 0o755)
        shutil.rmtree(work)


def test_exit_status_and_standard_output(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["score", str(PHOTO), str(GOLDEN / "coffee_blur.jpg"), "--csv", "-"]) == 0      # all scored
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [Path(r["image"]).name for r in rows] == ["chelsea.jpg", "coffee_blur.jpg"] and all(r["score"] for r in rows)
    assert not (tmp_path / "-").exists()                                   # '-' is standard output, not a file
    assert main(["score", str(PHOTO), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"] == {"scored": 1, "failed": 0, "resumed_rows": 0, "resumed_failed": 0, "skipped": 0}
    assert doc["model"]["backend"] == load().backend and np.isfinite(doc["results"][0]["score"])
    assert main(["score", str(PHOTO), str(tmp_path / "gone.jpg"), "--jsonl", "-"]) == 1           # some failed
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["error_kind"] for r in rows] == ["", "missing"] and rows[1]["error"] == "no such file"
    some = ["score", str(PHOTO), str(tmp_path / "gone.jpg"), "--csv", str(tmp_path / "r.csv"), "--quiet"]
    assert main(some) == 1 and main(some + ["--resume"]) == 1          # a resumed file's failed rows still count
    assert len(list(csv.reader(open(tmp_path / "r.csv")))) == 3
    for f in ("r.csv", "r.csv.run.json"):
        (tmp_path / f).unlink()
    assert main(["score", str(tmp_path / "none*.jpg")]) == 2                                      # nothing to score
    assert "the pattern matched nothing" in capsys.readouterr().err
    assert main(["score", "--model", str(tmp_path / "nope.onnx"), str(PHOTO)]) == 2               # model error
    assert "nope.onnx: no such file" in capsys.readouterr().err
    photo = tmp_path / "mine.jpg"
    photo.write_bytes(PHOTO.read_bytes())
    assert main(["score", "--json", str(photo), str(GOLDEN / "coffee_blur.jpg")]) == 2    # not written over a photo
    assert photo.read_bytes() == PHOTO.read_bytes() and "that is an image's name" in capsys.readouterr().err
    photo.unlink()
    with pytest.raises(SystemExit) as e:                                                          # usage error
        main(["score", str(PHOTO), "--csv", "a.csv", "--jsonl", "b.jsonl"])
    assert e.value.code == 2
    assert not list(tmp_path.iterdir())


def test_score_many_streams_lazily_in_input_order(scorer):
    """An endless input is consumed as far as results are taken; threaded decoding keeps the input order and
    gives the same scores as decoding in the calling thread; bad inputs of every type become rows."""
    names = sorted(str(p) for p in GOLDEN.glob("*.[jp][pn]g"))

    def endless():
        yield from itertools.cycle(names)

    first = list(itertools.islice(scorer.score_many(endless(), batch_size=4, workers=3), 12))
    assert [r.image for r in first] == list(itertools.islice(endless(), 12))
    serial = list(scorer.score_many(names + [b"junk", np.zeros((4, 4, 2), np.uint8)], batch_size=3, workers=0))
    threaded = list(scorer.score_many(names + [b"junk", np.zeros((4, 4, 2), np.uint8)], batch_size=3, workers=4))
    assert [r.to_dict() for r in serial] == [r.to_dict() for r in threaded]
    assert [r.error_kind for r in serial[-2:]] == ["not_an_image", "unsupported"]
    assert [r.score for r in first[:len(names)]] == pytest.approx([r.score for r in serial[:len(names)]], abs=1e-5)


def _photos(tmp_path: Path, n: int) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    src = sorted(GOLDEN.glob("*.[jp][pn]g"))
    for i in range(n):
        (d / f"{i:03d}_{src[i % len(src)].name}").symlink_to(src[i % len(src)])
    return d


def test_a_killed_run_resumes_to_the_uninterrupted_output(tmp_path):
    """SIGKILL mid-run keeps every finished row; --resume drops a row cut in half, skips what is done and ends with
    the bytes an uninterrupted run writes. Another model (here: another decode limit) is refused."""
    photos = _photos(tmp_path, 48)
    base = [sys.executable, "-m", "lmliqa", "score", str(photos), "--batch", "1", "--workers", "1", "--quiet"]
    straight = tmp_path / "straight.csv"
    assert subprocess.run(base + ["--csv", str(straight)], timeout=600).returncode == 0
    out = tmp_path / "killed.csv"
    proc = subprocess.Popen(base + ["--csv", str(out)])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 15:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = out.read_text()
    n_kept = kept.count("\n") - 1
    assert 14 <= n_kept < 48, n_kept                          # killed halfway, every written row whole
    assert straight.read_text().startswith(kept)
    with open(out, "a") as f:                                 # as if killed inside a row
        f.write(str(photos / "half"))
    resumed = subprocess.run(base + ["--csv", str(out), "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_text() == straight.read_text()
    record = json.loads((tmp_path / "killed.csv.run.json").read_text())
    assert record["summary"]["resumed_rows"] == n_kept and record["summary"]["scored"] == 48 - n_kept
    other = subprocess.run(base + ["--csv", str(out), "--resume", "--max-pixels", "100"], capture_output=True,
                           text=True, timeout=600)
    assert other.returncode == 2 and "max_pixels: 200000000 -> 100000000" in other.stderr
    assert out.read_text() == straight.read_text()


def test_resume_refuses_what_it_cannot_append_to(tmp_path, capsys):
    assert main(["score", str(PHOTO), "--json", str(tmp_path / "a.json"), "--resume"]) == 2
    assert "a JSON document cannot be appended to" in capsys.readouterr().err
    (tmp_path / "b.csv").write_text("image,score,error,error_kind\n")
    assert main(["score", str(PHOTO), "--csv", str(tmp_path / "b.csv"), "--resume"]) == 2
    assert "has no b.csv.run.json" in capsys.readouterr().err
    assert main(["score", str(PHOTO), "--csv", "-", "--resume"]) == 2


def test_ray_actor_pool_scores_equal_the_single_process_run(tmp_path, capsys):
    """`lmliqa score --ray local` with 2 actors: the same rows, in the same order, as one process."""
    pytest.importorskip("ray", reason="Ray Data is an optional extra (lmliqa[ray])")
    photos = _photos(tmp_path, 12)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    assert main(["score", str(photos), "--jsonl", str(tmp_path / "one.jsonl"), "--quiet"]) == 1
    assert main(["score", str(photos), "--jsonl", str(tmp_path / "ray.jsonl"), "--ray", "local", "--ray-actors", "2",
                 "--batch", "4", "--quiet"]) == 1
    one, ray_rows = _jsonl(tmp_path / "one.jsonl"), _jsonl(tmp_path / "ray.jsonl")
    assert [r["image"] for r in ray_rows] == [r["image"] for r in one] and len(one) == 13
    for a, b in zip(one, ray_rows):
        assert (a["error_kind"], a["error"]) == (b["error_kind"], b["error"])
        assert (a["score"] is None and b["score"] is None) or a["score"] == pytest.approx(b["score"], abs=1e-4)
