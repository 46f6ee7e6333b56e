"""Decoding: the one place where a file, bytes, a Pillow image or an array becomes an 8-bit RGB image, and where
every way that can fail gets a name a user understands (torch-free).

Failures raise :class:`ImageDecodeError` with a ``kind`` (one of :data:`KINDS`) and a ``reason`` in words
(``truncated JPEG``, ``not an image: a text file``, ``image too large: 400 megapixels (limit 200, --max-pixels)``).
Nothing an image carries besides its pixels and its EXIF orientation tag is interpreted: ICC profiles, XMP and
the rest of EXIF are never parsed, executed or written anywhere.

Decompression bombs are refused from the header, before any pixel is decoded: the pixel limit is an argument
(``max_pixels``), not Pillow's process-wide ``Image.MAX_IMAGE_PIXELS``, which is lifted only while a header is read
under a lock so that this module's limit is the one that holds.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import struct
import threading
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DECODE_KINDS, ImageDecodeError

ImageSource = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]  # noqa: UP007 (a runtime alias)

DEFAULT_MAX_PIXELS = 200_000_000     # above a 200-megapixel phone sensor; an RGB decode of it is 600 MB
# What went wrong, as a word a program can branch on.
KINDS = DECODE_KINDS

_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x01\x00", "ICO"))
_PIL_LIMIT = threading.Lock()


def load_rgb(src: ImageSource, exif_transpose: bool = True, background: tuple[int, int, int] = (255, 255, 255),
             max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode any supported input to an 8-bit RGB Pillow image, or raise ImageDecodeError (never anything else
    for a bad input). max_pixels: refuse larger images from their header (None: no limit)."""
    name = describe(src)
    if isinstance(src, np.ndarray):
        return to_rgb(_from_array(src, name), background)
    if isinstance(src, Image.Image):
        _check_size(src.size, max_pixels, name)
        return to_rgb(_oriented(src, exif_transpose), background)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(bytes(src)), name, exif_transpose, background, max_pixels)
    if not isinstance(src, (str, os.PathLike)):
        raise ImageDecodeError(name, f"unsupported input type {type(src).__name__}; give a path, bytes, a PIL "
                                     "image or an HxW[x3|4] uint8 array", "unsupported")
    with _open_file(Path(src), name) as fp:
        return _decode(fp, name, exif_transpose, background, max_pixels)


@contextlib.contextmanager
def _open_file(path: Path, name: str):
    """The file opened for reading, or ImageDecodeError saying why it cannot be (missing, broken or looping
    symlink, a folder, a pipe or device, permissions)."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise ImageDecodeError(name, "is a folder, not a file", "unreadable")
        if not stat.S_ISREG(st.st_mode):       # a FIFO would block, a device never end
            raise ImageDecodeError(name, "not a regular file (a pipe, socket or device)", "unreadable")
        fp = open(path, "rb")
    except FileNotFoundError:
        if path.is_symlink():
            raise ImageDecodeError(name, f"broken symlink (points to {os.readlink(path)})", "missing") from None
        raise ImageDecodeError(name, "no such file", "missing") from None
    except PermissionError:
        raise ImageDecodeError(name, "permission denied", "unreadable") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageDecodeError(name, "symlink loop", "unreadable") from None
        raise ImageDecodeError(name, f"cannot open: {exc.strerror or exc}", "unreadable") from None
    with fp:
        yield fp


def _decode(fp: Any, name: str, exif_transpose: bool, background: tuple[int, int, int],
            max_pixels: int | None) -> Image.Image:
    head = fp.read(4096)
    fp.seek(0)
    if not head:
        raise ImageDecodeError(name, "empty file (0 bytes)", "empty")
    fmt = sniff(head)
    try:
        with _PIL_LIMIT:            # this module's max_pixels replaces Pillow's global limit for the header read
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = Image.open(fp)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except UnidentifiedImageError:
        raise ImageDecodeError(name, *_unidentified(head, fmt, fp)) from None
    except Exception as exc:    # Pillow's plugins raise many types on malformed data; each is this file's fault
        raise ImageDecodeError(name, *_broken(fmt, exc)) from None
    fmt = img.format or fmt or "image"
    with img:
        _check_size(img.size, max_pixels, name)
        try:
            img.seek(0)  # the first frame of animated files
            out = _oriented(img, exif_transpose)
            out.load()
            return to_rgb(out, background)
        except MemoryError:
            raise ImageDecodeError(name, f"out of memory decoding a {img.size[0]}x{img.size[1]} {fmt}",
                                   "too_large") from None
        except Exception as exc:
            raise ImageDecodeError(name, *_broken(fmt, exc)) from None


def _check_size(size: tuple[int, int], max_pixels: int | None, name: str) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageDecodeError(name, f"image has no pixels ({w}x{h})", "corrupt")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageDecodeError(name, f"image too large: {w * h / 1e6:.0f} megapixels ({w}x{h}; limit "
                                     f"{max_pixels / 1e6:g}, --max-pixels)", "too_large")


def sniff(head: bytes) -> str | None:
    """The image format the first bytes announce, whatever the file's name says (None: not one we know)."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "HEIC" if brand in (b"heic", b"heix", b"hevc", b"mif1", b"msf1") else \
            "AVIF" if brand in (b"avif", b"avis") else None
    return None


def _unidentified(head: bytes, fmt: str | None, fp: Any) -> tuple[str, str]:
    """(reason, kind) for bytes Pillow could not identify."""
    if fmt == "PNG" and _png_truncated(fp):
        return "truncated PNG: the file ends inside its header", "truncated"
    if fmt in ("HEIC", "AVIF"):
        return (f"{fmt} image: this Pillow cannot decode {fmt} (install pillow-heif, or convert it to JPEG)",
                "unsupported")
    if fmt:
        return f"corrupt {fmt}: its header cannot be read", "corrupt"
    text = _as_text(head)
    if text is not None:
        low = text.lower()
        if "<svg" in low:
            return "not an image: SVG vector graphics (rasterise it to PNG first)", "not_an_image"
        if "<html" in low or "<!doctype html" in low:
            return "not an image: an HTML page", "not_an_image"
        return "not an image: a text file", "not_an_image"
    return f"not an image: unrecognised format (starts with {head[:8].hex(' ')})", "not_an_image"


def _broken(fmt: str | None, exc: BaseException) -> tuple[str, str]:
    """(reason, kind) for an image whose header read but whose data did not decode."""
    fmt = fmt or "image"
    msg = str(exc)
    if "truncated" in msg.lower() or isinstance(exc, EOFError) or "EOF" in msg:
        return f"truncated {fmt} (the file ends before the image data does)", "truncated"
    if not (isinstance(exc, (OSError, ValueError)) and msg):
        msg = f"{type(exc).__name__}: {msg}"
    return f"corrupt {fmt}: {msg}", "corrupt"


def _png_truncated(fp: Any) -> bool:
    """Whether a PNG's chunk list runs past the end of the file before its first image data chunk."""
    fp.seek(8)
    while True:
        hdr = fp.read(8)
        if len(hdr) < 8:
            return True
        length, tag = struct.unpack(">I4s", hdr)
        if tag in (b"IDAT", b"IEND"):
            return False
        data = fp.read(length + 4)
        if len(data) < length + 4:
            return True


def _as_text(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the sample is still text
        try:
            text = head[:-4].decode("utf-8")
        except UnicodeDecodeError:
            return None
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return text if text and printable / len(text) > 0.95 else None


def _oriented(img: Image.Image, exif_transpose: bool) -> Image.Image:
    """A loaded copy of img, turned upright by its EXIF orientation tag when asked."""
    if exif_transpose:
        out = ImageOps.exif_transpose(img)
        if out is not None and out is not img:
            return out
    return img.copy()


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB with explicit, documented rules."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit (or 32-bit integer) grey: the 0..65535 range maps to 0..255 (v / 257, rounded).
        a = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float64))  # float grey is taken as 0..1
        return Image.fromarray(np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    # L, 1, CMYK (Pillow's naive conversion), YCbCr, LAB, HSV
    return img.convert("RGB")


def _from_array(a: np.ndarray, name: str) -> Image.Image:
    if a.dtype == np.uint8:
        if a.ndim == 2:
            return Image.fromarray(a)
        if a.ndim == 3 and a.shape[2] in (3, 4):
            return Image.fromarray(np.ascontiguousarray(a))
    elif a.dtype == np.uint16 and a.ndim == 2:
        return Image.fromarray(a)
    raise ImageDecodeError(name, f"array of shape {a.shape} and dtype {a.dtype} is not an image: give HxW or "
                                 "HxWx3/4 uint8 (RGB order) or HxW uint16", "unsupported")


def describe(src: Any) -> str:
    """How an input is named in results and errors."""
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    if isinstance(src, np.ndarray):
        return f"<array {src.shape} {src.dtype}>"
    if isinstance(src, Image.Image):
        return f"<PIL {src.mode} {src.size[0]}x{src.size[1]}>"
    return f"<{type(src).__name__}>"


def read_bytes(src: ImageSource) -> bytes:
    """An input's encoded bytes, for a decoder outside this process (the browser target): a file is read with the
    errors load_rgb gives (missing, unreadable, empty), bytes pass through, and a Pillow image or an array is
    encoded as PNG (lossless: the decoder sees these very pixels)."""
    name = describe(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    elif isinstance(src, (str, os.PathLike)):
        with _open_file(Path(src), name) as fp:
            data = fp.read()
    else:
        img = _from_array(src, name) if isinstance(src, np.ndarray) else src
        if not isinstance(img, Image.Image):
            raise ImageDecodeError(name, f"unsupported input type {type(src).__name__}; give a path, bytes, a PIL "
                                         "image or an HxW[x3|4] uint8 array", "unsupported")
        buf = io.BytesIO()
        img.save(buf, "PNG")
        data = buf.getvalue()
    if not data:
        raise ImageDecodeError(name, "empty file (0 bytes)", "empty")
    return data
