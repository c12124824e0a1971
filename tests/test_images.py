"""Edge cases for lookalike.images, built as real files with Pillow in tmp_path."""

from __future__ import annotations

import functools
import http.server
import io
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from lookalike.errors import ImageError
from lookalike.fetch import load_image_url
from lookalike.images import (
    FULL_SIZE,
    SUPPORTED_EXTENSIONS,
    image_header,
    is_supported,
    is_url,
    load_image,
)

DATASET = Path(__file__).resolve().parents[1].parent / "shared/datasets/caltech101"
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def close(pixel, expected, tol=12):
    return all(abs(a - b) <= tol for a, b in zip(pixel, expected, strict=True))


def save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def noisy(w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_extensions_and_urls():
    assert SUPPORTED_EXTENSIONS == {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".gif",
        ".webp",
        ".tiff",
        ".tif",
    }
    assert is_supported("a/B.JPG") and is_supported(Path("x.TiF")) and is_supported("y.webp")
    assert not is_supported("notes.txt") and not is_supported("jpg")
    assert is_url("https://example.com/a.jpg") and is_url("HTTP://example.com")
    assert not is_url("file:///etc/passwd") and not is_url("ftp://x/a.png")
    assert not is_url("photos/a.jpg") and not is_url("http://")


@pytest.mark.parametrize(
    "ext", sorted(SUPPORTED_EXTENSIONS | {e.upper() for e in SUPPORTED_EXTENSIONS})
)
def test_every_extension_any_case_loads(tmp_path, ext):
    path = save(Image.new("RGB", (16, 12), BLUE), tmp_path / f"img{ext}")
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (16, 12)
    assert close(img.getpixel((8, 6)), BLUE)
    assert load_image(str(path)).size == (16, 12)


def test_bytes_and_file_like_sources(tmp_path):
    path = save(Image.new("RGB", (10, 7), GREEN), tmp_path / "g.png")
    data = path.read_bytes()
    assert load_image(data).size == (10, 7)
    assert load_image(io.BytesIO(data)).size == (10, 7)
    with open(path, "rb") as fh:
        assert close(load_image(fh).getpixel((0, 0)), GREEN)


def _oriented(size=(40, 20)) -> Image.Image:
    img = Image.new("RGB", size, WHITE)
    img.paste(RED, (0, 0, 8, 8))  # marker in the stored top-left corner
    return img


def test_exif_orientation_6_rotates_and_moves_marker(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(_oriented(), tmp_path / "rot.jpg", exif=exif, quality=95)
    img = load_image(path)
    assert img.size == (20, 40)
    # Orientation 6 means "rotate 90 degrees clockwise to display": top-left -> top-right.
    assert close(img.getpixel((16, 3)), RED, 40)
    assert close(img.getpixel((3, 3)), WHITE, 40)
    assert image_header(path) == ((20, 40), "JPEG")


def test_grayscale_one_bit_and_la(tmp_path):
    assert load_image(save(Image.new("L", (5, 5), 100), tmp_path / "g.png")).getpixel((0, 0)) == (
        100,
        100,
        100,
    )
    assert load_image(save(Image.new("1", (5, 5), 1), tmp_path / "b.bmp")).getpixel((0, 0)) == WHITE
    la = Image.new("LA", (5, 5), (0, 0))  # black but fully transparent
    assert load_image(save(la, tmp_path / "la.png")).getpixel((2, 2)) == WHITE


def test_cmyk_jpeg_converts_to_rgb(tmp_path):
    path = save(Image.new("RGB", (16, 16), RED).convert("CMYK"), tmp_path / "c.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    img = load_image(path)
    assert img.mode == "RGB" and close(img.getpixel((8, 8)), RED, 20)


def test_rgba_transparent_area_becomes_white(tmp_path):
    rgba = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 10, 10))
    img = load_image(save(rgba, tmp_path / "a.png"))
    assert img.getpixel((2, 5)) == RED and img.getpixel((15, 5)) == WHITE


def test_palette_gif_with_transparency(tmp_path):
    pal = Image.new("P", (20, 10), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * (254 * 3))
    pal.paste(1, (10, 0, 20, 10))
    img = load_image(save(pal, tmp_path / "t.gif", transparency=0))
    assert img.getpixel((3, 5)) == WHITE and img.getpixel((15, 5)) == GREEN


def test_16bit_png_scales_instead_of_clipping(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 257).round().astype(np.uint16), (4, 1))
    src = Image.fromarray(ramp)
    assert src.mode == "I;16"
    img = load_image(save(src, tmp_path / "deep.png"))
    row = [img.getpixel((x, 0))[0] for x in range(257)]
    assert row[0] == 0 and row[-1] == 255 and abs(row[128] - 128) <= 1
    assert row == sorted(row)  # monotonic: no wrap-around or clipping garbage


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_other_deep_grayscale_modes(mode):
    src = Image.new(mode, (4, 2), 0)
    src.putpixel((3, 0), 65535)
    src.putpixel((1, 0), 32896)
    buf = io.BytesIO()
    src.save(buf, "TIFF")
    img = load_image(buf.getvalue())
    assert img.getpixel((3, 0)) == WHITE and abs(img.getpixel((1, 0))[0] - 128) <= 1


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_takes_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (12, 12), c) for c in (RED, GREEN, BLUE)]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    assert close(load_image(path).getpixel((6, 6)), RED, 20)


def test_png_named_jpg_is_sniffed(tmp_path):
    path = tmp_path / "really_png.jpg"
    Image.new("RGB", (9, 9), GREEN).save(path, "PNG")
    assert load_image(path).getpixel((4, 4)) == GREEN


def test_truncated_jpeg_raises(tmp_path):
    data = io.BytesIO()
    noisy(400, 300).save(data, "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg.*truncated or corrupt"):
        load_image(path)


def test_not_an_image_missing_and_directory(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(ImageError, match="junk.jpg"):
        load_image(junk)
    with pytest.raises(ImageError, match="nope.png.*not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(ImageError):
        image_header(junk)
    with pytest.raises(ImageError):
        load_image(b"")


def test_permission_denied(tmp_path, monkeypatch):
    # CI runs as root, which ignores file modes, so the OS refusal is simulated at open().
    path = save(Image.new("RGB", (4, 4)), tmp_path / "locked.png")

    def refuse(fp, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(ImageError, match="permission denied"):
        load_image(path)


def test_pixel_limit_checked_before_decoding(tmp_path, monkeypatch):
    path = save(Image.new("RGB", (100, 100)), tmp_path / "big.png")
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    with pytest.raises(ImageError, match="big.png.*100x100"):
        load_image(path, max_pixels=5000)


def test_pillow_bomb_error_becomes_image_error(tmp_path, monkeypatch):
    path = save(Image.new("RGB", (100, 100)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="bomb.png"):
        load_image(path)


def test_byte_limit(tmp_path):
    path = save(noisy(64, 64), tmp_path / "heavy.png")
    with pytest.raises(ImageError, match="heavy.png.*limit"):
        load_image(path, max_bytes=100)
    with pytest.raises(ImageError, match="limit"):
        load_image(path.read_bytes(), max_bytes=100)


def test_draft_decodes_big_jpeg_at_reduced_scale(tmp_path):
    path = save(noisy(2000, 1500), tmp_path / "big.jpg", quality=80)
    img = load_image(path, target_size=224)
    assert img.mode == "RGB" and 224 <= min(img.size) < 1500
    assert img.size[0] > img.size[1]
    assert img.info[FULL_SIZE] == (2000, 1500)  # the size as stored and shown, not as decoded
    assert load_image(path, target_size=1500).size == (2000, 1500)
    assert load_image(path).size == (2000, 1500)


def test_draft_keeps_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(_oriented((2000, 1000)).resize((2000, 1000)), tmp_path / "r.jpg", exif=exif)
    img = load_image(path, target_size=224)
    assert img.size[1] > img.size[0] and min(img.size) >= 224
    assert img.info[FULL_SIZE] == image_header(path)[0] == (1000, 2000)
    assert close(img.getpixel((img.size[0] - 1, 0)), RED, 40)


def test_real_dataset_photo_loads():
    photos = sorted((DATASET / "images").glob("*/*.jpg"))[:3]
    assert photos, f"dataset not found at {DATASET}"
    for photo in photos:
        img = load_image(photo, target_size=224)
        assert img.mode == "RGB" and min(img.size) > 0
        assert image_header(photo)[0] == load_image(photo).size == img.info[FULL_SIZE]


# --- URLs: only a local server on 127.0.0.1, never any other address -----------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        if self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(b"\x89PNG")
            self.wfile.flush()
            time.sleep(3)
            return
        if self.path == "/nolength":  # no Content-Length: only the streaming cap can stop it
            self.send_response(200)
            self.end_headers()
            self.wfile.write(os.urandom(300_000))
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    save(Image.new("RGB", (30, 20), RED), tmp_path / "red.png")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    save(noisy(200, 200), tmp_path / "big.png")
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(tmp_path))
    )
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_url_fetch_and_errors(server):
    img = load_image_url(f"{server}/red.png", allow_private=True)
    assert img.mode == "RGB" and img.size == (30, 20) and img.getpixel((0, 0)) == RED
    assert load_image_url(f"{server}/red.png", allow_private=True, max_pixels=100_000).size
    with pytest.raises(ImageError, match="not found|404"):
        load_image_url(f"{server}/missing.png", allow_private=True)
    with pytest.raises(ImageError, match="junk.jpg"):
        load_image_url(f"{server}/junk.jpg", allow_private=True)
    with pytest.raises(ImageError, match="limit"):
        load_image_url(f"{server}/big.png", allow_private=True, max_bytes=1000)
    with pytest.raises(ImageError, match="response is over the 100,000-byte limit"):
        load_image_url(f"{server}/nolength", allow_private=True, max_bytes=100_000)
    with pytest.raises(ImageError, match="limit"):
        load_image_url(f"{server}/red.png", allow_private=True, max_pixels=10)
    start = time.monotonic()
    with pytest.raises(ImageError):
        load_image_url(f"{server}/slow", allow_private=True, timeout=0.5)
    assert time.monotonic() - start < 2.5


def test_url_refuses_loopback_and_other_schemes(server):
    with pytest.raises(ImageError, match="non-public"):
        load_image_url(f"{server}/red.png")
    with pytest.raises(ImageError, match="non-public"):
        load_image_url(server.replace("127.0.0.1", "localhost") + "/red.png")
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/a.png", "http:///x.png"):
        with pytest.raises(ImageError, match="only http"):
            load_image_url(url, allow_private=True)


def test_url_dns_rebinding_is_refused_at_connect(server, monkeypatch):
    """A name that resolves public at the check and loopback at connect time is refused.

    No traffic leaves the machine: the "public" answer is only ever checked, never
    connected to, and the second answer points at the local test server.
    """
    import lookalike.fetch as fetch

    port = int(server.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]])

    def rebinding(host, *args, **kwargs):
        if host == "rebind.test":
            return next(answers, real("127.0.0.1", port, type=socket.SOCK_STREAM))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(fetch.socket, "getaddrinfo", rebinding)
    with pytest.raises(ImageError, match="non-public address 127.0.0.1"):
        load_image_url(f"http://rebind.test:{port}/red.png")
