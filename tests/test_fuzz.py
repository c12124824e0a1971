"""Hostile and broken input: a bounded fuzz of where outside bytes come in (decoding,
indexing, the upload endpoint), and the paths and names users get wrong.

Inputs start from a real photo encoded in each format the product reads (JPEG baseline and
progressive, PNG, GIF, WebP, TIFF, BMP) and are mutated: bytes overwritten (often in the
header, where sizes and offsets live), truncated, spliced with another format's header,
chunks repeated or dropped, a header field set to an extreme, or replaced by random bytes;
or they are valid pictures of an extreme shape (1 to 12 pixels by up to 3,000). Each must be decoded, or refused
with a one-line ImageError (load_image), indexed or skipped with a reason naming the file
(Index.add), answered 200 or 4xx ``{"error": ...}`` (POST /api/search): never another
exception, never a 500, never a hang (each call runs under a watchdog that aborts the test
run with a traceback).

Derandomised and bounded (hypothesis ``derandomize=True``, a seeded generator for the
indexing folder), so CI runs the same inputs every time; the counts asserted at the end of
each test are quoted in docs/reliability.md.

Paths and names: a mistyped folder creates no index; a --db that is a file is called one;
skip reasons name the file; symlink loops, pipes and unreadable folders are listed, not
fatal.
"""

from __future__ import annotations

import faulthandler
import io
import os
import random
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

with warnings.catch_warnings():  # Starlette >= 1.x nags about httpx on import
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from fastapi.testclient import TestClient

from conftest import REPO, caltech_image, copy_subset
from lookalike import Index
from lookalike.errors import ImageError, LookalikeError
from lookalike.images import load_image
from lookalike.server.app import ServerConfig, create_app
from lookalike.settings import Settings

LOAD_EXAMPLES = 1500  # inputs fed to load_image
UPLOAD_EXAMPLES = 300  # inputs uploaded to the server
INDEXED_FILES = 240  # files in the folder given to Index.add
MAX_PIXELS = 4_000_000  # a header may claim any size: keep what a test allocates small
FUZZ = settings(
    derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _seeds() -> dict[str, bytes]:
    """A small real photo in every format and a few variants of each."""
    with Image.open(caltech_image("watch", 5)) as photo:
        rgb = photo.convert("RGB").resize((96, 72))
    out: dict[str, bytes] = {}

    def save(name: str, image: Image.Image, fmt: str, **kw) -> None:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **kw)
        out[name] = buffer.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the EXIF path too
    save("jpeg", rgb, "JPEG", quality=80, exif=exif.tobytes())
    save("jpeg-progressive", rgb, "JPEG", quality=70, progressive=True)
    save("png", rgb, "PNG")
    save("png-alpha", rgb.convert("RGBA"), "PNG")
    save("png-palette", rgb.convert("P"), "PNG")
    save("png-16bit", rgb.convert("I;16"), "PNG")
    save("gif", rgb.convert("P"), "GIF")
    save("gif-animated", rgb.convert("P"), "GIF", save_all=True,
         append_images=[rgb.rotate(90).convert("P")], duration=100, loop=0)
    save("webp", rgb, "WEBP", quality=70)
    save("webp-lossless", rgb, "WEBP", lossless=True)
    save("tiff", rgb, "TIFF")
    save("tiff-lzw", rgb, "TIFF", compression="tiff_lzw")
    save("tiff-cmyk", rgb.convert("CMYK"), "TIFF", compression="tiff_deflate")
    save("bmp", rgb, "BMP")
    return out


SEEDS = _seeds()
NAMES = sorted(SEEDS)


def mutate(pick: Callable[[int, int], int]) -> bytes:
    """One input; ``pick(lo, hi)`` draws an integer in [lo, hi] (hypothesis or a Random)."""
    data = bytearray(SEEDS[NAMES[pick(0, len(NAMES) - 1)]])
    how = pick(0, 7)
    if how == 0:  # overwrite bytes, most of them in the header (sizes, offsets, counts)
        for _ in range(pick(1, 12)):
            end = 64 if pick(0, 2) else len(data) - 1
            data[pick(0, min(end, len(data) - 1))] = pick(0, 255)
    elif how == 1:  # truncate
        del data[pick(0, len(data) - 1):]
    elif how == 2:  # another format's header on this body
        other = SEEDS[NAMES[pick(0, len(NAMES) - 1)]]
        cut = pick(2, 64)
        data[:cut] = other[:cut]
    elif how == 3:  # a chunk repeated
        start = pick(0, len(data) - 1)
        chunk = data[start:start + pick(1, 512)]
        data[start:start] = chunk * pick(1, 50)
    elif how == 4:  # a chunk dropped
        start = pick(0, len(data) - 1)
        del data[start:start + pick(1, 256)]
    elif how == 5:  # random bytes after a real magic number
        rng = random.Random(pick(0, 2**31))
        data = data[:pick(0, 16)] + bytearray(rng.randbytes(pick(0, 4096)))
    elif how == 6:  # a header field set to an extreme value (sizes, counts, offsets)
        position = pick(0, min(48, len(data) - 4))
        data[position:position + 4] = pick(0, 2**32 - 1).to_bytes(4, "big" if pick(0, 1) else "little")
    else:  # a valid picture of an extreme shape: 1 to 12 pixels by up to 3,000
        side, length = pick(1, 12), pick(1, 3000)
        size = (side, length) if pick(0, 1) else (length, side)
        picture = Image.effect_mandelbrot(size, (-2.0, -1.5, 1.0, 1.5), 30).convert("RGB")
        buffer = io.BytesIO()
        picture.save(buffer, ["PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP"][pick(0, 5)])
        return buffer.getvalue()
    return bytes(data)


def from_hypothesis(draw) -> Callable[[int, int], int]:
    return lambda lo, hi: draw(st.integers(lo, hi))


@st.composite
def inputs(draw) -> bytes:
    return mutate(from_hypothesis(draw))


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Abort the whole run with every thread's traceback if the block hangs (works while
    C code holds the GIL, where an exception could not be raised)."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def test_load_image_decodes_or_refuses_every_input():
    outcomes = {"decoded": 0, "refused": 0}

    @settings(FUZZ, max_examples=LOAD_EXAMPLES)
    @given(inputs())
    def check(data: bytes) -> None:
        with watchdog(30):
            try:
                image = load_image(data, name="fuzzed", max_pixels=MAX_PIXELS, target_size=64)
            except ImageError as exc:
                message = str(exc)
                assert message.startswith("cannot read image 'fuzzed': ") and "\n" not in message
                outcomes["refused"] += 1
                return
        assert image.mode == "RGB" and image.width * image.height <= MAX_PIXELS
        outcomes["decoded"] += 1

    check()
    tried = outcomes["decoded"] + outcomes["refused"]
    print(f"load_image: {tried} inputs, {outcomes}")
    assert tried >= LOAD_EXAMPLES and min(outcomes.values()) >= LOAD_EXAMPLES // 10


def test_indexing_indexes_or_skips_every_file(tmp_path):
    rng = random.Random(20240601)
    folder = copy_subset(tmp_path / "photos", ("watch",), 2)  # some real photos too
    for number in range(INDEXED_FILES):
        suffix = rng.choice([".jpg", ".png", ".gif", ".webp", ".tif", ".bmp"])
        (folder / f"fuzzed-{number:03d}{suffix}").write_bytes(mutate(rng.randint))
    with Index.open(tmp_path / "db", settings=Settings(max_pixels=MAX_PIXELS)) as index:
        with watchdog(240):
            report = index.add([folder])
        files = index.catalogue.files_by_location()
    every = {str(p) for p in folder.rglob("*") if p.is_file()}
    failed = dict(report.failed)
    assert not report.interrupted and report.discovered == len(every) == INDEXED_FILES + 2
    assert set(files) | set(failed) == every and not set(files) & set(failed)
    for location, reason in failed.items():
        assert f"'{location}'" in reason or "larger than" in reason, reason
    print(f"indexing: {len(every)} files, {len(files)} indexed ({report.embedded} embedded, "
          f"{report.reused} duplicates), {len(failed)} skipped with a reason")
    assert len(files) >= 2 + INDEXED_FILES // 10 and len(failed) >= INDEXED_FILES // 10


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-server")
    with Index.open(root / "db") as index:
        index.add([copy_subset(root / "photos", ("watch", "Leopards"), 3)])
    index = Index.open(root / "db", create=False)
    client = TestClient(create_app(index, ServerConfig(max_pixels=MAX_PIXELS)))
    yield client
    client.app.state.lookalike.close()


def test_upload_answers_200_or_a_4xx_error_for_every_input(client):
    statuses: dict[int, int] = {}

    @settings(FUZZ, max_examples=UPLOAD_EXAMPLES)
    @given(inputs(), st.sampled_from(["q.jpg", "q.png", "q", "../../etc/passwd", "ü.gif"]))
    def check(data: bytes, name: str) -> None:
        with watchdog(60):
            response = client.post("/api/search", params={"k": 3},
                                   files={"file": (name, data, "application/octet-stream")})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"] == "application/json"
        if response.status_code == 200:
            assert len(response.json()["matches"]) == 3
        else:
            assert set(response.json()) == {"error"}

    check()
    tried = sum(statuses.values())
    print(f"upload: {tried} inputs, statuses {statuses}")
    assert tried >= UPLOAD_EXAMPLES and statuses.get(200, 0) >= UPLOAD_EXAMPLES // 10


def run(*args: object) -> subprocess.CompletedProcess:
    """``lookalike`` as a user runs it, from this checkout."""
    path = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-m", "lookalike.cli", *map(str, args)], capture_output=True,
        text=True, timeout=180, env={**os.environ, "PYTHONPATH": path},
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr


# --- paths and names -----------------------------------------------------------------------
def test_indexing_a_missing_folder_creates_no_index(tmp_path):
    db = tmp_path / "typo-db"
    proc = run("index", tmp_path / "no-such-folder", "--db", db)
    assert_one_line_error(proc, f"no such file or folder: {tmp_path / 'no-such-folder'}")
    assert not db.exists()
    photos = copy_subset(tmp_path / "photos", ("watch",), 1)
    with Index.open(tmp_path / "db") as index:  # the API checks every path before writing
        generation = index.catalogue.generation
        with pytest.raises(LookalikeError, match="no such file or folder"):
            index.add([photos, tmp_path / "no-such-folder"])
        assert index.catalogue.generation == generation and len(index) == 0


def test_a_db_that_is_a_file_is_called_one(tmp_path):
    db = tmp_path / "notes.txt"
    db.write_text("not an index")
    proc = run("search", caltech_image("watch", 1), "--db", db)
    assert_one_line_error(proc, f"{db} is a file, not an index folder")
    assert "create one with" not in proc.stderr and db.read_text() == "not an index"


def test_skip_reasons_name_the_file(tmp_path):
    photos = copy_subset(tmp_path / "photos", ("watch",), 2)
    truncated = photos / "watch" / "truncated.jpg"
    truncated.write_bytes(caltech_image("watch", 3).read_bytes()[:2000])
    garbage = photos / "watch" / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with Index.open(tmp_path / "db") as index:
        report = index.add([photos])
    reasons = dict(report.failed)
    assert report.embedded == 2 and set(reasons) == {str(truncated), str(garbage)}
    for location, reason in reasons.items():
        assert f"'{location}'" in reason and "<in-memory image>" not in reason, reason


def test_symlink_loops_pipes_and_unreadable_folders_are_listed_not_fatal(tmp_path, monkeypatch):
    photos = copy_subset(tmp_path / "photos", ("watch", "Leopards"), 2)
    (photos / "watch" / "back-up").symlink_to(photos, target_is_directory=True)  # a cycle
    (photos / "self.jpg").symlink_to(photos / "self.jpg")  # ELOOP
    elsewhere = copy_subset(tmp_path / "elsewhere", ("airplanes",), 1)
    (photos / "linked").symlink_to(elsewhere)  # not a loop: not followed, not listed
    os.mkfifo(photos / "pipe.jpg")  # reading it would block for ever
    db = tmp_path / "db"
    with Index.open(db) as index:
        report = index.add([photos], prune=True)
        assert report.embedded == 4
        assert dict(report.failed) == {
            str(photos / "watch" / "back-up"): f"symlink loop (points back to {photos})",
            str(photos / "self.jpg"): "symlink loop",
            str(photos / "pipe.jpg"): "not a regular file (a pipe, socket or device)",
        }

        # An unreadable folder (simulated: the tests may run as root, who reads anything) is
        # listed, and its files already indexed are not pruned as if they were gone.
        unreadable = str(photos / "Leopards")
        real_scandir = os.scandir

        def scandir(path="."):
            if os.fspath(path) == unreadable:
                raise PermissionError(13, "Permission denied", unreadable)
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
        report = index.add([photos], prune=True)
        assert (unreadable, "permission denied") in report.failed
        assert report.removed == 0 and len(index) == 4

    proc = run("index", photos, "--db", db)  # the CLI lists them, and succeeds
    assert proc.returncode == 0, proc.stderr
    assert f"skipped {photos / 'watch' / 'back-up'}: symlink loop" in proc.stderr
