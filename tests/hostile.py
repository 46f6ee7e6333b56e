"""A corpus of odd and hostile inputs, generated (nothing binary is committed), with the outcome each one must get.

``build_corpus(folder, photo)`` writes the files into FOLDER from one real photo and returns ``{name: Expect}``:
either a finite score, or an error whose kind and words are fixed here, so the tests assert the exact outcome of
every case.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Expect:
    kind: str = ""        # "" = scored; else the ImageDecodeError kind
    words: str = ""       # a phrase the error must contain

    @property
    def scored(self) -> bool:
        return not self.kind


SCORED = Expect()


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit PNG of width x height black pixels: a few tens of KB that decode to 400 megapixels."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    z = zlib.compressobj(9)
    parts = [z.compress(row * 1000) for _ in range(height // 1000)]
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))


def _save(img: Image.Image, path: Path, **kw) -> None:
    img.save(path, **kw)


def build_corpus(folder: Path, photo: Path, big: bool = True) -> dict[str, Expect]:
    """Write the corpus into FOLDER (created); PHOTO is a real RGB photo the image cases are made from. big=False
    leaves out the 24-megapixel photo (the slowest case to score)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.open(photo).convert("RGB")
    jpeg = io.BytesIO()
    rgb.save(jpeg, "JPEG", quality=90)
    jpeg_bytes = jpeg.getvalue()
    png = io.BytesIO()
    rgb.save(png, "PNG")
    png_bytes = png.getvalue()
    arr = np.asarray(rgb)
    grey = np.asarray(rgb.convert("L"))
    cases: dict[str, Expect] = {}

    def write(name: str, data: bytes, expect: Expect) -> None:
        (folder / name).write_bytes(data)
        cases[name] = expect

    def save(name: str, img: Image.Image, expect: Expect = SCORED, **kw) -> None:
        img.save(folder / name, **kw)
        cases[name] = expect

    # -------------------------------------------------------------- files that are not (whole) images
    write("zero.jpg", b"", Expect("empty", "empty file (0 bytes)"))
    write("truncated.jpg", jpeg_bytes[:len(jpeg_bytes) // 2], Expect("truncated", "truncated JPEG"))
    write("truncated.png", png_bytes[:len(png_bytes) // 2], Expect("truncated", "truncated PNG"))
    write("header_only.png", png_bytes[:33], Expect("truncated", "truncated PNG"))      # signature + IHDR
    write("random.jpg", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
          Expect("not_an_image", "not an image"))
    write("notes.jpg", b"These are my holiday notes.\nNothing to see here.\n" * 20,
          Expect("not_an_image", "a text file"))
    write("vector.svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="300" height="300">'
          b'<rect width="300" height="300" fill="red"/></svg>\n', Expect("not_an_image", "SVG"))
    write("bomb.png", png_bomb(), Expect("too_large", "image too large: 400 megapixels"))

    # -------------------------------------------------------------- images that must score
    write("jpeg_named.png", jpeg_bytes, SCORED)
    if big:
        save("big_24mp.jpg", rgb.resize((6000, 4000), Image.Resampling.BILINEAR), quality=85)
    save("tiny_32px.png", rgb.resize((32, 32), Image.Resampling.BOX))
    frames = [rgb.resize((320, 240)).quantize(64), rgb.resize((320, 240)).rotate(180).quantize(64)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    cases["animated.gif"] = SCORED
    save("grey16.png", Image.fromarray(grey.astype(np.uint16) * 257))
    save("float.tif", Image.fromarray(grey.astype(np.float32) / 255.0))
    save("bilevel.png", rgb.convert("1"))
    pal = rgb.quantize(32)
    pal.info["transparency"] = 0
    save("palette_alpha.png", pal, transparency=0)
    la = Image.merge("LA", [rgb.convert("L"), Image.linear_gradient("L").resize(rgb.size)])
    save("grey_alpha.png", la)
    rgba = rgb.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    save("rgba.png", rgba)
    save("cmyk.jpg", rgb.convert("CMYK"), quality=90)
    save("progressive.jpg", rgb, quality=90, progressive=True)
    save("photo.webp", rgb, quality=90)
    save("photo.bmp", rgb)
    save("photo.tif", rgb)
    exif = Image.Exif()
    exif[0x0112] = 6                                   # orientation: rotate 90 CW to display
    save("exif_rotated.jpg", Image.fromarray(np.ascontiguousarray(np.rot90(arr, 1))), quality=95, exif=exif)
    save("name with spaces é 写真 📷.jpg", rgb, quality=90)
    return cases


def add_scan_traps(folder: Path) -> dict[str, Expect]:
    """A symlink loop (a file link to itself and a folder link to its parent), a named pipe with an image name
    (opening it would block) and a non-image file; returns the file rows a scan of FOLDER must produce for them
    (the folder loop and the text file are skipped, not rows)."""
    (folder / "loop.jpg").symlink_to("loop.jpg")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "back").symlink_to("..", target_is_directory=True)
    (folder / "README.txt").write_text("not an image, skipped by a scan")
    return {"loop.jpg": Expect("unreadable", "symlink loop"),
            "pipe.jpg": Expect("unreadable", "not a regular file (a pipe, socket or device)")}


def make_unreadable(path: Path) -> None:
    path.write_bytes(b"\xff\xd8\xff")
    os.chmod(path, 0)
