"""Safe image decoding shared by indexing, querying and the server.

Every image the product touches goes through :func:`load_image`, so that all callers get the
same guarantees: an 8-bit RGB picture the right way up, bounded memory use, and a one-line
:class:`~lookalike.errors.ImageError` (never a raw Pillow traceback) for anything it cannot read.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import os
import socket
import ssl
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, Union

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
_CORRUPT = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError)
_EXPECTED = (*_CORRUPT, MemoryError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def is_supported(path: str | os.PathLike[str]) -> bool:
    """True if the file extension (any letter case) is one we index when scanning folders."""
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS


def is_url(location: str) -> bool:
    """True for http(s) URLs, so the CLI can tell a URL query from a file path."""
    parts = urllib.parse.urlsplit(location)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _error(name: str, reason: str) -> ImageError:
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
            raise _error(name, "it is a directory, not an image file")
        size = path.stat().st_size
        if size > max_bytes:
            raise _error(name, f"file is {size:,} bytes, over the {max_bytes:,}-byte limit")
        return Image.open(path)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
    else:
        raise TypeError(f"expected a path, bytes or binary file, got {type(source).__name__}")
    if len(data) > max_bytes:
        raise _error(name, f"data is over the {max_bytes:,}-byte limit")
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
                raise _error(name, f"{w}x{h} is over the {max_pixels:,}-pixel limit")
            if target_size and img.format in ("JPEG", "MPO"):
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale; draft never goes below target_size.
                img.draft("RGB", (target_size, target_size))
            img.load()  # inside the try: truncated data must raise, not return grey pixels
            return _to_rgb(_exif_transpose(img))
    except ImageError:
        raise
    except _EXPECTED as exc:
        raise _error(name, _reason(exc)) from None


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
    keeping the shorter side >= ``target_size``. Raises ImageError for every failure; its
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


def image_size(source: ImageSource, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[int, int]:
    """(width, height) as displayed, read from the header only, without decoding pixels."""
    name = _name(source)
    try:
        with _open(source, name, max_bytes) as img:
            w, h = img.size
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
        raise _error(name, _reason(exc)) from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _public_ip(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local)


def _resolve_checked(host: str, port: int, allow_private: bool, shown: str) -> list[tuple]:
    """Resolve ``host`` once; refuse it if any address is loopback/private/reserved (SSRF guard).

    The connection is then made to these very addresses, so a DNS answer that changes between
    the check and the connect (DNS rebinding) cannot reach the internal network.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _error(shown, f"cannot resolve host '{host}' ({exc})") from None
    if not allow_private:
        for info in infos:
            if not _public_ip(str(info[4][0])):
                raise _error(
                    shown,
                    f"refusing to fetch from non-public address {info[4][0]} "
                    "(pass allow_private=True to allow it)",
                )
    return infos


def _connect_checked(host: str, port: int, timeout: float | None, allow_private: bool, shown: str):
    error: OSError | None = None
    for family, kind, proto, _, address in _resolve_checked(host, port, allow_private, shown):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"cannot connect to {host}")


class _CheckedHTTPConnection(http.client.HTTPConnection):
    """Connects only to the addresses that passed the public-address check."""

    allow_private = False
    shown = ""

    def connect(self) -> None:
        self.sock = _connect_checked(self.host, self.port, self.timeout, self.allow_private, self.shown)


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    allow_private = False
    shown = ""

    def connect(self) -> None:
        sock = _connect_checked(self.host, self.port, self.timeout, self.allow_private, self.shown)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _checked_handlers(allow_private: bool, shown: str) -> list[urllib.request.BaseHandler]:
    settings = {"allow_private": allow_private, "shown": shown}
    plain = type("_Plain", (_CheckedHTTPConnection,), settings)
    tls = type("_TLS", (_CheckedHTTPSConnection,), settings)

    class Plain(urllib.request.HTTPHandler):
        def http_open(self, req):  # type: ignore[no-untyped-def]
            return self.do_open(plain, req)

    class Secure(urllib.request.HTTPSHandler):
        def https_open(self, req):  # type: ignore[no-untyped-def]
            return self.do_open(tls, req, context=ssl.create_default_context())

    # No proxies: a proxy would be reached instead of the checked host.
    return [urllib.request.ProxyHandler({}), Plain(), Secure()]


def _check_url(url: str, allow_private: bool, shown: str) -> None:
    """Only http(s) URLs; the host's addresses are checked again when connecting."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _error(shown, "only http:// and https:// URLs are allowed")
    if not allow_private:
        _resolve_checked(parts.hostname, parts.port or 443, allow_private, shown)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Re-validate every redirect target, or a public URL could bounce us to 127.0.0.1."""

    def __init__(self, allow_private: bool, shown: str) -> None:
        self.allow_private, self.shown = allow_private, shown

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        _check_url(newurl, self.allow_private, self.shown)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class FetchError(ImageError):
    """A download that failed; ``status`` is the HTTP status of an error answer (0: none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def fetch_url(
    url: str,
    *,
    timeout: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_private: bool = False,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    """Download an http(s) URL with a deadline and a byte cap: ``(status, body, headers)``;
    304 when conditional ``headers`` found nothing changed. Private addresses (redirect targets
    too) are refused by default, so a server exposing this cannot probe the internal network."""
    _check_url(url, allow_private, url)
    opener = urllib.request.build_opener(
        _CheckedRedirects(allow_private, url), *_checked_handlers(allow_private, url)
    )
    request = urllib.request.Request(url, headers={"User-Agent": "lookalike", **(headers or {})})
    deadline, chunks, total = time.monotonic() + timeout, [], 0

    def fail(reason: str, status: int = 0) -> FetchError:
        return FetchError(f"cannot read image '{url}': {reason}", status)

    try:
        with opener.open(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise fail(f"response is {int(length):,} bytes, over the {max_bytes:,}-byte limit")
            while chunk := resp.read(64 * 1024):
                total += len(chunk)
                if total > max_bytes:
                    raise fail(f"response is over the {max_bytes:,}-byte limit")
                if time.monotonic() > deadline:
                    raise fail(f"download took longer than {timeout:g}s")
                chunks.append(chunk)
            return resp.status, b"".join(chunks), dict(resp.headers.items())
    except ImageError:
        raise
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return 304, b"", dict(exc.headers.items())
        reason = str(exc.reason).splitlines()[0] if exc.reason else ""
        if "infinite loop" in reason:
            raise fail("too many redirects (a redirect loop)", exc.code) from None
        raise fail(f"server answered HTTP {exc.code} {reason}", exc.code) from None
    except urllib.error.URLError as exc:
        raise fail(f"download failed ({exc.reason})") from None
    except TimeoutError:
        raise fail(f"download took longer than {timeout:g}s") from None
    except (OSError, ValueError) as exc:
        raise fail(f"download failed ({exc})") from None


def load_image_url(
    url: str,
    *,
    timeout: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_private: bool = False,
    **kw: Any,
) -> Image.Image:
    """Fetch an http(s) image (:func:`fetch_url`), decode it like load_image (``kw``)."""
    _, data, _ = fetch_url(url, timeout=timeout, max_bytes=max_bytes, allow_private=allow_private)
    return _load(data, url, max_bytes=max_bytes, **kw)
