"""Dataset readers on tiny copies of each native layout, splits, data check and the synthetic set."""

import csv
import json

import numpy as np
import pytest
from layouts import LAYOUTS, make_biq2021, make_csiq, make_folder, make_kadid, make_livec, make_spaq, make_tid2013
from PIL import Image

from lmliqa.cli import main
from lmliqa.data import DatasetError, open_dataset
from lmliqa.data.check import check_dataset
from lmliqa.data.splits import kfold_splits, random_splits

EXPECTED = {  # name -> (higher_is_better, split_by, training scale of the nominal range)
    "live": (False, "reference", (0, 100)),
    "csiq": (False, "reference", (0, 100)),
    "tid2013": (True, "reference", (0, 100)),
    "kadid10k": (True, "reference", (0, 100)),
    "livec": (True, "image", (0, 100)),
    "koniq10k": (True, "image", (0, 100)),
    "spaq": (True, "image", (0, 100)),
    "livefb": (True, "image", (0, 100)),
    "folder": (True, "image", (0, 100)),
    "biq2021": (True, "image", (0, 100)),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_reader_reads_native_layout(name, tmp_path):
    made = LAYOUTS[name](tmp_path)
    ds = open_dataset(f"{name}:{tmp_path}")
    assert len(ds) == made["n"]
    assert np.allclose(ds.mos, made["mos"])
    assert all(r.path.is_file() for r in ds.records), "every resolved image path exists"
    hib, split_by, train_range = EXPECTED[name]
    assert (ds.label.higher_is_better, ds.split_by) == (hib, split_by)
    assert ds.label.training_range == pytest.approx(train_range)


def test_live_drops_reference_copies_and_groups_by_reference(tmp_path):
    LAYOUTS["live"](tmp_path)
    ds = open_dataset(f"live:{tmp_path}")
    assert len(ds) == 982 - len(range(0, 982, 5))
    assert sorted(set(ds.groups)) == ["bikes.bmp", "caps.bmp", "house.bmp"]
    assert ds.records[0].path.name == "img2.bmp" and ds.records[0].distortion == "jp2k"
    assert ds.records[-1].path.parent.name == "fastfading"


def test_livec_original_layout_has_1162_images(tmp_path):
    make_livec(tmp_path)
    ds = open_dataset(f"livec:{tmp_path}")
    assert len(ds) == 1162
    assert ds.records[0].path.name == "1.bmp" and ds.records[0].std == 15.0
    assert ds.mos.min() > 3.42  # t1..t7 dropped


def test_tid2013_lowercase_names_resolve(tmp_path):
    make_tid2013(tmp_path)
    ds = open_dataset(f"tid2013:{tmp_path}")
    assert {r.path.name for r in ds.records} == {p.name for p in (tmp_path / "distorted_images").iterdir()}
    assert sorted(set(ds.groups)) == ["01", "02", "25"]
    assert ds.label.to_training(9.0) == pytest.approx(100.0)


def test_csiq_and_kadid_alternative_folders_and_scales(tmp_path):
    make_csiq(tmp_path / "csiq", folder="dst_imgs")
    ds = open_dataset(f"csiq:{tmp_path / 'csiq'}")
    assert ds.records[0].group == "1600" and ds.records[0].distortion == "AWGN"
    assert ds.label.to_training(0.5) == 50.0
    make_kadid(tmp_path / "kadid", folder="images")
    ds = open_dataset(f"kadid:{tmp_path / 'kadid'}")
    assert ds.records[0].std == pytest.approx(0.5) and ds.label.to_training(5.0) == 100.0
    assert ds.label.to_training(1.0) == 0.0


def test_spaq_original_images_get_the_resize_hint(tmp_path):
    make_spaq(tmp_path, preresized=False)
    ds = open_dataset(f"spaq:{tmp_path}")
    assert ds.contract_hints == {"resize": "fixed", "resize_size": [512, 384]}
    assert ds.records[0].path.parent.name == "TestImage"
    make_spaq(tmp_path / "pre", preresized=True)
    assert open_dataset(f"spaq:{tmp_path / 'pre'}").contract_hints == {}


def test_missing_or_broken_label_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match="mos_with_names.txt"):
        open_dataset(f"tid2013:{tmp_path}")
    (tmp_path / "images").mkdir()
    (tmp_path / "scores.csv").write_text("image,score\n1.png,3\n")
    with pytest.raises(DatasetError, match=r"column\(s\) \['mos'\] missing"):
        open_dataset(f"folder:{tmp_path}")
    (tmp_path / "scores.csv").write_text("image,mos\n1.png,abc\n")
    with pytest.raises(DatasetError, match="scores.csv:2: 'abc' is not a number"):
        open_dataset(f"folder:{tmp_path}")
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'"):
        open_dataset("imagenet:/x")
    with pytest.raises(DatasetError, match="not a directory"):
        open_dataset(f"livec:{tmp_path / 'nope'}")


def test_data_check_reports_missing_unreadable_and_small(tmp_path):
    from layouts import make_folder

    make_folder(tmp_path, n=5)
    (tmp_path / "images" / "1.png").unlink()
    (tmp_path / "images" / "2.png").write_bytes(b"not a png")
    Image.new("RGB", (100, 300)).save(tmp_path / "images" / "3.png")
    rep = check_dataset(open_dataset(f"folder:{tmp_path}"))
    assert rep["problem_counts"] == {"missing": 1, "unreadable": 1, "small": 1}
    assert {p["file"].rsplit("/", 1)[1] for p in rep["problems"]} == {"1.png", "2.png", "3.png"}
    assert rep["n"] == 5 and rep["n_readable"] == 3 and rep["ok"] is False


def test_cli_data_check_json_on_livec_layout(tmp_path, capsys):
    make_livec(tmp_path)
    assert main(["data", "check", f"livec:{tmp_path}", "--json", "--min-side", "8"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n"] == 1162 and rep["mos_max"] == pytest.approx(92.43)
    assert rep["mos_mean"] == pytest.approx(np.linspace(3.42, 92.43, 1169)[7:].mean())
    assert main(["data", "check", f"livec:{tmp_path / 'absent'}"]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_cli_data_check_shared_livec_dev(livec_dev, capsys):
    assert main(["data", "check", f"folder:{livec_dev}", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    with open(livec_dev / "scores.csv") as f:
        mos = np.array([float(r["mos"]) for r in csv.DictReader(f)])
    assert rep["n"] == 609 == len(mos) and rep["n_readable"] == 609
    assert (rep["mos_min"], rep["mos_max"]) == pytest.approx((mos.min(), mos.max()))
    assert rep["mos_mean"] == pytest.approx(mos.mean()) and rep["problem_counts"] == {}


def test_random_splits_by_reference_are_seeded_and_disjoint(tmp_path):
    make_kadid(tmp_path)
    ds = open_dataset(f"kadid10k:{tmp_path}")
    splits = random_splits(ds, n_splits=10, seed=3)
    assert [s.to_dict() for s in splits] == [s.to_dict() for s in random_splits(ds, n_splits=10, seed=3)]
    assert len({tuple(s.test) for s in splits}) > 1
    for s in splits:
        train_refs = {ds.records[i].group for i in s.train}
        test_refs = {ds.records[i].group for i in s.test}
        assert not train_refs & test_refs and len(train_refs) == 2 and len(test_refs) == 1  # round(0.8 * 3)
        assert sorted(s.train + s.test) == list(range(len(ds)))


def test_image_splits_80_20_and_kfold_partition(livec_dev):
    ds = open_dataset(f"folder:{livec_dev}")
    s = random_splits(ds, n_splits=1, seed=0)[0]
    assert (len(s.train), len(s.test)) == (487, 122)
    folds = kfold_splits(ds, k=5, seed=0)
    tests = [set(f.test) for f in folds]
    assert sorted(i for t in tests for i in t) == list(range(609))
    assert [len(t) for t in tests] == [122, 122, 122, 122, 121]


def test_synthetic_set_is_monotone_in_severity(synthetic_dir):
    ds = open_dataset(f"synthetic:{synthetic_dir}")
    assert len(ds) == 12 * 25 and ds.split_by == "reference" and len(set(ds.groups)) == 12
    by = {(r.group, r.distortion, r.path.stem.rsplit("_", 1)[1]): r.mos for r in ds.records}
    assert all(v == 100.0 for (_, d, _), v in by.items() if d == "reference")
    for ref in set(ds.groups):
        for dist in ("gblur", "noise", "jpeg", "contrast"):
            levels = [by[(ref, dist, str(k))] for k in range(1, 5)]
            assert levels == sorted(levels, reverse=True), (ref, dist, levels)
    assert 5 < ds.mos.min() and ds.mos.std() > 15  # a spread of qualities, not a constant


def test_synthetic_pseudo_mos_is_ssim(synthetic_dir):
    from skimage.metrics import structural_similarity

    ds = open_dataset(f"synthetic:{synthetic_dir}")
    rec = next(r for r in ds.records if r.path.name == "coffee__jpeg_3.png")
    ref = np.asarray(Image.open(synthetic_dir / "images" / "coffee__reference_0.png"))
    dist = np.asarray(Image.open(rec.path))
    ssim = structural_similarity(ref, dist, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
    assert rec.mos == pytest.approx(100 * ssim, abs=1e-3)


def test_two_column_label_files_name_the_bad_line(tmp_path):
    make_csiq(tmp_path)
    label = tmp_path / "csiq_label.txt"
    label.write_text(label.read_text() + "1600.AWGN.3.png 0.2 extra\n")
    with pytest.raises(DatasetError, match=r"csiq_label.txt:19: expected '<image> <dmos>'"):
        open_dataset(f"csiq:{tmp_path}")


def test_biq2021_official_split_and_its_guard(tmp_path):
    """BIQ2021: MOS read on 0..100, the subset as the distortion field, a .JPG listed as .jpg found, the published
    split as 'official' / 'official-train' / 'official:kfold:K:J'; a plain split is refused (it would mix the test
    photos into training), and the k-fold never reaches the test photos."""
    from lmliqa.data import resolve_split
    from lmliqa.errors import ConfigError

    made = make_biq2021(tmp_path)
    ds = open_dataset(f"biq2021:{tmp_path}")
    assert [r.distortion for r in ds.records[:3]] == ["ss01", "ss02", "ss03"]
    assert ds.records[1].path.name.endswith(").JPG") and ds.records[1].path.is_file()
    train, test = resolve_split("official", ds)
    assert (len(train), len(test)) == (made["n_train"], made["n_test"]) and not set(train) & set(test)
    assert resolve_split("official-train", ds) == (train, [])
    folds = [resolve_split(f"official:kfold:5:{j}", ds) for j in range(5)]
    assert sorted(i for _, te in folds for i in te) == sorted(train)       # the folds cover the training photos
    assert all(set(tr) | set(te) == set(train) for tr, te in folds)       # and never a test photo
    for bad in ("all", "kfold:5:0", "random:0"):
        with pytest.raises(ConfigError, match="published train/test split"):
            resolve_split(bad, ds)
    with pytest.raises(ConfigError, match="no published"):
        resolve_split("official", open_dataset(f"folder:{_folder(tmp_path)}"))


def _folder(tmp_path):
    make_folder(tmp_path / "f")
    return tmp_path / "f"


def test_two_data_sets_read_as_one_with_labels_on_the_first_ones_scale(tmp_path):
    """'A,B': records of both, B's labels mapped from its nominal range onto A's (here KADID 1..5 -> 0..100 beside
    BIQ2021's 0..100), one split per data set resolved within it, the licence of each."""
    from layouts import make_kadid

    from lmliqa.data import licence_of, resolve_split

    make_biq2021(tmp_path / "b")
    make_kadid(tmp_path / "k")
    spec = f"biq2021:{tmp_path / 'b'},kadid10k:{tmp_path / 'k'}"
    ds = open_dataset(spec)
    biq, kadid = open_dataset(f"biq2021:{tmp_path / 'b'}"), open_dataset(f"kadid10k:{tmp_path / 'k'}")
    assert len(ds) == len(biq) + len(kadid) and [p["name"] for p in ds.parts] == ["biq2021", "kadid10k"]
    assert np.allclose(ds.mos[:len(biq)], biq.mos)
    assert np.allclose(ds.mos[len(biq):], (kadid.mos - 1.0) * 25.0)          # 1..5 onto 0..100
    train, test = resolve_split("official,kfold:2:0", ds)
    b_train, b_test = resolve_split("official", biq)
    k_train, k_test = resolve_split("kfold:2:0", kadid)
    assert train == b_train + [len(biq) + i for i in k_train] and test == b_test + [len(biq) + i for i in k_test]
    assert resolve_split("official-train,all", ds)[1] == []
    with pytest.raises(Exception, match="one split each"):
        resolve_split("official,all,all", ds)
    assert licence_of(spec) == f"{licence_of('biq2021:x')}; {licence_of('kadid10k:x')}"
    assert "BIQ2021" in licence_of(spec)


def test_a_fine_tuned_checkpoint_names_the_data_of_its_whole_lineage():
    """training_spec / training_photos: a checkpoint fine-tuned from another (init_from; e.g. `lmliqa train --qat-from`)
    names its start's data, then its own, for the spec and the split, also when its recorded photo hashes already
    cover its start's (train_images_complete: a released fp16 checkpoint); licence_of credits each data set once."""
    from lmliqa.data import PhotoSet, licence_of, training_photos, training_spec

    first = {"dataset": "livec:L,biq2021:B", "split": "all,official-train", "train_images_sha256": ["a" * 16]}
    qat = {"dataset": "livec:L,folder:F", "split": "all", "train_images_sha256": ["a" * 16, "b" * 16],
           "train_images_complete": True, "init_from": first}
    spec, photos = training_photos({"extra": qat})
    assert spec == "livec:L,biq2021:B, then livec:L,folder:F" == training_spec(qat)
    assert training_spec(qat, "split") == "all,official-train, then all"
    assert photos == PhotoSet(["a" * 16, "b" * 16])
    assert training_spec(first) == "livec:L,biq2021:B" and training_spec({"init_from": first}) is None
    assert licence_of(spec) == "; ".join([licence_of("livec:x"), licence_of("biq2021:x"), licence_of("folder:x")])
    assert licence_of(spec).count("LIVE In the Wild") == 1 and "BIQ2021" in licence_of(spec)


def test_photo_sets_compare_content_hashes_by_their_first_16_digits():
    from lmliqa.data import PhotoSet

    a, b = "ab" * 32, "cd" * 32
    s = PhotoSet([a])
    assert a in s and a[:16] in s and b not in s and 123 not in s
    u = s | [b[:16]]
    assert isinstance(u, PhotoSet) and b in u and len(u) == 2 and u > s
