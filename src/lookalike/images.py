"""Safe image decoding shared by indexing, querying and the server.

Every image the product touches goes through :func:`load_image`, so that all callers get the
same guarantees: an 8-bit RGB picture the right way up, bounded memory use, and a one-line
:class:`~lookalike.errors.ImageError` (never a raw Pillow traceback) for anything it cannot read.
"""

from __future__ import annotations

import io
import os
import struct
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from lookalike.errors import ImageError

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tiff", ".tif"}
)
DEFAULT_MAX_PIXELS = 200_000_000
DEFAULT_MAX_BYTES = 200 * 1024 * 1024

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

_ORIENTATION = 0x0112
# Key of a loaded picture's ``info``: its (width, height) as displayed at full size, which a
# reduced JPEG decode (``target_size``) does not have (:func:`load_image`).
FULL_SIZE = "lookalike_full_size"
_CORRUPT = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError)
_EXPECTED = (*_CORRUPT, MemoryError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def is_supported(path: str | os.PathLike[str]) -> bool:
    """True if the file extension (any letter case) is one we index when scanning folders."""
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS


def is_url(location: str) -> bool:
    """True for http(s) URLs, so the CLI can tell a URL query from a file path."""
    parts = urllib.parse.urlsplit(location)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def read_error(name: str, reason: str) -> ImageError:
    """The one-line error for an image ``name`` that cannot be read."""
    if not name:
        return ImageError(f"cannot read the image: {reason}")
    return ImageError(f"cannot read image '{name}': {reason}")


def _reason(exc: BaseException) -> str:
    """Short, actionable wording for the exceptions Pillow and the OS raise on bad input."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "too many pixels (decompression bomb?)"
    for kind, text in (
        (FileNotFoundError, "file not found"),
        (PermissionError, "permission denied"),
        (IsADirectoryError, "it is a directory, not an image file"),
        (UnidentifiedImageError, "not an image, or an image format that cannot be read"),
    ):
        if isinstance(exc, kind):
            return text
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"file is truncated or corrupt ({detail})"


def _name(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", ""))  # unnamed data: "the image"


def _open(source: ImageSource, name: str, max_bytes: int) -> Image.Image:
    """Open (header only) after enforcing the byte cap; Pillow sniffs the format from content."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise read_error(name, "it is a directory, not an image file")
        size = path.stat().st_size
        if size > max_bytes:
            raise read_error(name, f"file is {size:,} bytes, over the {max_bytes:,}-byte limit")
        return Image.open(path)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
    else:
        raise TypeError(f"expected a path, bytes or binary file, got {type(source).__name__}")
    if len(data) > max_bytes:
        raise read_error(name, f"data is over the {max_bytes:,}-byte limit")
    return Image.open(io.BytesIO(data))


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """Rescale 16/32-bit and float grayscale to 0..255; a plain convert() would clip to 255."""
    a = np.nan_to_num(np.asarray(img, dtype=np.float64))
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if img.mode.startswith("I;16"):
        a = a / 257.0
    elif img.mode == "F" and lo >= 0 and hi <= 1.0:
        a = a * 255.0
    elif lo >= 0 and hi <= 255:
        pass  # already 8-bit range
    elif lo >= 0 and hi <= 65535:
        a = a / 257.0  # 16-bit data stored in a 32-bit mode (e.g. PGM, TIFF)
    else:
        a = (a - lo) * (255.0 / ((hi - lo) or 1.0))
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency becomes white, as viewers show it."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return _to_8bit_gray(img).convert("RGB")
    if img.mode == "CMYK" and img.info.get("icc_profile"):
        try:  # the embedded profile knows the inks; Pillow's formula is only a fallback
            src = ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
            out = ImageCms.profileToProfile(
                img, src, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
            if out is not None:
                return out
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _exif_transpose(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation; broken EXIF must not cost us an otherwise readable picture."""
    try:
        return ImageOps.exif_transpose(img)
    except (*_CORRUPT, TypeError):
        return img.copy()  # a copy: the caller closes the original


def _load(
    source: ImageSource,
    name: str,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    target_size: int | None = None,
) -> Image.Image:
    try:
        with _open(source, name, max_bytes) as img:
            w, h = img.size  # known from the header; refuse bombs before decoding any pixel
            if w * h > max_pixels:
                raise read_error(name, f"{w}x{h} is over the {max_pixels:,}-pixel limit")
            if target_size and img.format in ("JPEG", "MPO"):
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale; draft never goes below target_size.
                img.draft("RGB", (target_size, target_size))
            img.load()  # inside the try: truncated data must raise, not return grey pixels
            decoded = img.size
            picture = _to_rgb(_exif_transpose(img))
            turned = picture.size != decoded  # EXIF orientation swapped width and height
            picture.info[FULL_SIZE] = (h, w) if turned else (w, h)
            return picture
    except ImageError:
        raise
    except _EXPECTED as exc:
        raise read_error(name, _reason(exc)) from None


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    target_size: int | None = None,
) -> Image.Image:
    """Decode ``source`` (path, bytes or binary file) to an upright 8-bit RGB image.

    ``target_size`` lets JPEGs decode at a reduced DCT scale (much faster for big photos) while
    keeping the shorter side >= ``target_size``; the picture's size at full resolution, as
    displayed, is then in ``info[FULL_SIZE]``. Raises ImageError for every failure; its
    message calls the image ``name`` (default: the path, or the file object's name), so
    bytes read from a file are reported under the file's name.
    """
    return _load(
        source, name or _name(source), max_pixels=max_pixels, max_bytes=max_bytes, target_size=target_size
    )


def load_first_readable(
    locations: Iterable[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    target_size: int | None = None,
) -> Image.Image | None:
    """The picture of the first of ``locations`` (files of one image) that decodes, or None:
    copies of an image are interchangeable, and one that vanished or broke is skipped."""
    for location in locations:
        if os.path.isfile(location):
            try:
                return load_image(
                    location, max_pixels=max_pixels, max_bytes=max_bytes, target_size=target_size
                )
            except ImageError:
                continue
    return None


def image_header(source: ImageSource, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[tuple[int, int], str]:
    """``((width, height), format)``: the size as displayed (EXIF orientation applied) and
    the format, read from the header only, without decoding pixels."""
    name = _name(source)
    try:
        with _open(source, name, max_bytes) as img:
            w, h = img.size
            kind = img.format or ""
            try:  # PNG getexif() may decode all pixels looking for a late eXIf chunk
                exif = Image.Exif() if img.format == "PNG" else img.getexif()
                if img.format == "PNG":
                    exif.load(img.info.get("exif", b""))
                orientation = exif.get(_ORIENTATION, 1)
            except (*_CORRUPT, TypeError):
                orientation = 1
    except ImageError:
        raise
    except _EXPECTED as exc:
        raise read_error(name, _reason(exc)) from None
    return ((h, w) if orientation in (5, 6, 7, 8) else (w, h)), kind
