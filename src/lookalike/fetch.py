"""Downloading an image by URL, safely: http(s) only, a deadline and a byte cap, and no
request to a private address unless allowed (redirect targets and every connection are
checked, so neither a redirect nor a DNS answer that changes can reach the internal network).

Kept apart from :mod:`lookalike.images` so that decoding a local photo (a CLI search) does
not import the HTTP stack.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from PIL import Image

from .errors import ImageError
from .images import DEFAULT_MAX_BYTES, load_image, read_error


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
        raise read_error(shown, f"cannot resolve host '{host}' ({exc})") from None
    if not allow_private:
        for info in infos:
            if not _public_ip(str(info[4][0])):
                raise read_error(
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
        raise read_error(shown, "only http:// and https:// URLs are allowed")
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
    """Fetch an http(s) image (:func:`fetch_url`), decode it like
    :func:`~lookalike.images.load_image` (``kw``), errors naming the URL."""
    _, data, _ = fetch_url(url, timeout=timeout, max_bytes=max_bytes, allow_private=allow_private)
    return load_image(data, name=url, max_bytes=max_bytes, **kw)
