"""The preprocessing contract: serialisation, decoding rules and golden vectors."""

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from lmliqa.contract import ContractError, ImageDecodeError, PreprocessContract, load_rgb


def positional_image(h: int, w: int) -> np.ndarray:
    """Every pixel tells where it is: R = x mod 256, G = y mod 256, B = (x // 256) * 16 + y // 256."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x % 256, y % 256, (x // 256) * 16 + y // 256], axis=2).astype(np.uint8)


def test_json_round_trip_and_validation():
    c = PreprocessContract(resize="shorter_side", resize_size=(384,), eval_rows=2, eval_cols=5, aggregation="median")
    back = PreprocessContract.from_json(c.to_json())
    assert back == c and back.n_eval_crops == 10
    assert json.loads(c.to_json())["resize_size"] == [384]
    with pytest.raises(ContractError, match="unknown preprocessing contract fields"):
        PreprocessContract.from_dict({**c.to_dict(), "colour": "bgr"})
    with pytest.raises(ContractError, match="needs 1 positive size"):
        PreprocessContract(resize="shorter_side")
    with pytest.raises(ContractError, match="aggregation"):
        PreprocessContract(aggregation="max")
    with pytest.raises(ContractError, match="newer"):
        PreprocessContract.from_dict({"version": 2})


def test_grid_positions_are_the_documented_formula():
    c = PreprocessContract()  # 224 px, 3 x 3
    assert c.eval_boxes(500, 500) == [(t, l) for t in (0, 138, 276) for l in (0, 138, 276)]
    assert c.eval_boxes(224, 300) == [(0, l) for _ in range(3) for l in (0, 38, 76)]
    one = c.replace(eval_rows=1, eval_cols=1)
    assert one.eval_boxes(301, 500) == [(38, 138)]


def test_eval_crops_are_exact_slices_of_the_image():
    a = positional_image(300, 520)
    c = PreprocessContract()
    crops = c.eval_crops(a)
    assert crops.shape == (9, 3, 224, 224) and crops.dtype == np.float32
    for crop, (t, l) in zip(crops, c.eval_boxes(300, 520)):
        assert np.array_equal(crop.transpose(1, 2, 0), a[t:t + 224, l:l + 224].astype(np.float32))
    # the centre crop starts at (38, 148): R encodes x, G encodes y
    assert crops[4, 0, 0, 0] == 148 and crops[4, 1, 0, 0] == 38


def test_training_crops_and_flips():
    a = positional_image(256, 300)
    c = PreprocessContract(train_hflip=0.5)
    boxes = c.random_boxes(256, 300, 4000, np.random.default_rng(0))
    assert boxes[:, 0].min() >= 0 and boxes[:, 0].max() <= 256 - 224
    assert boxes[:, 1].min() >= 0 and boxes[:, 1].max() <= 300 - 224
    assert 0.46 < boxes[:, 2].mean() < 0.54
    crops = c.crops_from_boxes(a, np.array([[5, 7, 0], [5, 7, 1]]))
    assert crops[0, 0, 0, 0] == 7 and crops[1, 0, 0, 0] == 7 + 223  # flipped: first column is the last one
    assert np.array_equal(crops[1], crops[0][:, :, ::-1])


def test_resize_policies():
    img = Image.fromarray(positional_image(300, 400))
    c = PreprocessContract(resize="shorter_side", resize_size=(240,))
    assert c.load(img).size == (320, 240)
    assert PreprocessContract(resize="longer_side", resize_size=(300,)).load(img).size == (300, 225)
    assert PreprocessContract(resize="fixed", resize_size=(512, 384)).load(img).size == (384, 512)  # H, W
    small = Image.fromarray(positional_image(100, 150))
    assert PreprocessContract().load(small).size == (336, 224)  # upscaled, aspect kept
    with pytest.raises(ContractError, match="crops need 224px"):
        PreprocessContract(small_image="error").load(small)


def test_exif_orientation_is_applied():
    a = positional_image(20, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", exif=exif.tobytes())
    assert np.array_equal(np.asarray(load_rgb(buf.getvalue())), np.rot90(a, -1))
    assert np.array_equal(np.asarray(load_rgb(buf.getvalue(), exif_transpose=False)), a)


def test_mode_conversions():
    px = lambda img: np.asarray(load_rgb(img)).reshape(-1, 3).tolist()  # noqa: E731
    assert px(Image.fromarray(np.array([[65535, 25700, 128]], dtype=np.uint16))) == [[255] * 3, [100] * 3, [0] * 3]
    assert px(Image.new("F", (1, 1), 0.5)) == [[128, 128, 128]]
    assert px(Image.new("LA", (1, 1), (10, 0))) == [[255, 255, 255]]          # transparent -> background
    assert px(Image.new("RGBA", (1, 1), (0, 0, 0, 255))) == [[0, 0, 0]]
    assert px(Image.new("RGBA", (1, 1), (0, 0, 0, 128))) == [[127, 127, 127]]  # composited over white
    assert load_rgb(Image.new("RGBA", (1, 1), (0, 0, 0, 0)), background=(0, 0, 255)).getpixel((0, 0)) == (0, 0, 255)
    assert px(Image.new("CMYK", (1, 1), (255, 0, 0, 0))) == [[0, 255, 255]]
    assert px(Image.new("1", (2, 1), 1)) == [[255, 255, 255]] * 2
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0
    assert px(pal) == [[255, 255, 255], [200, 100, 50]]
    assert px(np.full((1, 1), 77, np.uint8)) == [[77, 77, 77]]


def test_decode_errors_name_the_input(tmp_path):
    with pytest.raises(ImageDecodeError, match="no such file"):
        load_rgb(tmp_path / "missing.jpg")
    bad = tmp_path / "truncated.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageDecodeError, match="truncated.png: truncated PNG") as e:
        load_rgb(bad)
    assert e.value.kind == "truncated"
    with pytest.raises(ImageDecodeError, match="not an image"):
        load_rgb(np.zeros((4, 4), np.float32))


def test_aggregation_and_reference_normalisation():
    c = PreprocessContract()
    assert c.aggregate(np.array([1.0, 2.0, 9.0])) == 4.0
    assert c.replace(aggregation="median").aggregate(np.array([1.0, 2.0, 9.0])) == 2.0
    x = np.full((1, 3, 2, 2), 255 * 0.485, np.float32)
    assert abs(float(c.normalise(x)[0, 0, 0, 0])) < 1e-6
    assert float(c.normalise(np.zeros((1, 3, 1, 1), np.float32))[0, 2, 0, 0]) == pytest.approx(-0.406 / 0.225)


# Golden vectors on real photos that ship in the scikit-image wheel. The crop grid is checked against
# independently sliced arrays; the hashes pin the exact uint8 content so any drift (decoder, resize
# filter, rounding) fails loudly.
GOLDEN = {
    "chelsea.png": ("7fa8af35010a2f86701e07ff03eaf8f5115cf73eedb0f05b0d3bd28e3f052b96", 112.012215, [136, 95, 67]),
    "coffee.png": ("48ffc59746b8a40a927617fdbba4c432c1cf2ec199ab71f99ece40c8eba2a69c", 98.900955, [247, 233, 215]),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_vectors_on_wheel_photos(name, wheel_photo):
    sha, mean, centre_px = GOLDEN[name]
    c = PreprocessContract()
    crops = c.eval_crops(wheel_photo(name))
    raw = np.asarray(Image.open(wheel_photo(name)).convert("RGB"))
    for crop, (t, l) in zip(crops, c.eval_boxes(*raw.shape[:2])):
        assert np.array_equal(crop.transpose(1, 2, 0), raw[t:t + 224, l:l + 224])
    assert hashlib.sha256(crops.astype(np.uint8).tobytes()).hexdigest() == sha
    assert float(crops.mean()) == pytest.approx(mean, abs=1e-4)
    assert crops[4, :, 0, 0].tolist() == centre_px


def test_golden_resized_centre_crop(wheel_photo):
    c = PreprocessContract(resize="shorter_side", resize_size=(256,), eval_rows=1, eval_cols=1)
    crops = c.eval_crops(wheel_photo("coffee.png"))
    assert crops.shape == (1, 3, 224, 224)
    assert hashlib.sha256(crops.astype(np.uint8).tobytes()).hexdigest() == (
        "2ecdc1c12134ffaa5a123040eb10b2d0dd76eda628f1504b20a44f80d039eec0")
    assert crops[0, :, 100, 100].tolist() == [235, 146, 53]
