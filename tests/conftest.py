import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("LMLIQA_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def livec_dev() -> Path:
    """The shared LIVE-C dev half (609 photos with MOS); CI always has it."""
    path = shared_dir() / "data" / "livec-dev"
    if not (path / "scores.csv").is_file():
        pytest.skip(f"shared LIVE-C dev photos not found at {path} (set LMLIQA_SHARED)")
    return path


@pytest.fixture(scope="session")
def wheel_photo():
    """Path of a real photo shipped in the scikit-image wheel."""
    import skimage.data

    base = Path(skimage.data.__file__).parent
    return lambda name: base / name


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    from lmliqa.data.synthetic import build_synthetic

    cache = os.environ.get("LMLIQA_CACHE")
    out = Path(cache) / "synthetic-v1-seed0" if cache else tmp_path_factory.mktemp("synthetic")
    return build_synthetic(out, seed=0)


@pytest.fixture(scope="session")
def mobile_run(tmp_path_factory, synthetic_dir):
    """One CI-sized real training run shared by the tests: ImageNet MobileNetV2 + decoder, 2 epochs of
    LML on 10 synthetic references (about a minute on 2 cores). Returns (out dir, summary)."""
    from lmliqa.train.config import resolve_config
    from lmliqa.train.engine import train

    out = tmp_path_factory.mktemp("mobile_run")
    cfg = resolve_config("mobile", data=f"synthetic:{synthetic_dir}", out=str(out), split="random:0",
                         epochs=2, deploy="student", threads=2)
    return out, train(cfg)
