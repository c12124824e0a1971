"""A watched folder: real copies, moves, renames, deletes and overwrites under a folder that
a FolderWatcher keeps an index in sync with, and `lookalike watch` stopped by Ctrl-C."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import lookalike
from conftest import caltech_image
from lookalike.errors import LookalikeError
from lookalike.index.catalogue import Catalogue
from lookalike.indexing import hash_bytes
from lookalike.settings import WatchParams
from lookalike.watching import FolderWatcher, apply_to

# A quiet time well above a stall of a loaded machine between two copies of the burst.
PARAMS = WatchParams(quiet=2.0, max_wait=30.0, settle=0.5)
PHOTOS = [caltech_image(label, n) for label in ("airplanes", "Leopards", "watch") for n in (1, 2, 3, 4)]


def _locations(db) -> dict[str, int]:
    try:  # the CLI may not have created it yet
        catalogue = Catalogue(db / "catalogue.sqlite", readonly=True)
    except LookalikeError:
        return {}
    try:
        return {loc: rec.image_id for loc, rec in catalogue.files_by_location().items()}
    finally:
        catalogue.close()


def _wait_for(db, predicate, what: str, timeout: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        found = _locations(db)
        if predicate(found):
            return found
        assert time.monotonic() < deadline, f"{what}: index holds {sorted(found)}"
        time.sleep(0.1)


@pytest.fixture
def watched(tmp_path):
    """An index of ``photos/`` (two photos) kept in sync by a watcher on its own thread;
    yields ``(photos, db, reports)``, the reports of every batch applied."""
    photos, db = tmp_path / "photos", tmp_path / "db"
    photos.mkdir()
    for photo in PHOTOS[:2]:
        shutil.copy(photo, photos / photo.name.replace("image", photo.parent.name))
    index = lookalike.Index.open(db)
    index.add([photos], prune=True)
    reports = []
    watcher = FolderWatcher([str(photos)], lambda batch: reports.append(apply_to(index, batch)), PARAMS,
                            exclude=[str(db)])
    watcher.start()
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    yield photos, db, reports
    watcher.close()
    thread.join(timeout=60)
    assert not thread.is_alive()
    index.close()


def test_copies_moves_deletes_and_overwrites_are_applied(watched):
    photos, db, reports = watched
    # A burst of copies (one hidden file among them, skipped) is one indexing run.
    burst = photos / "burst"
    burst.mkdir()
    for i, photo in enumerate(PHOTOS[2:]):
        shutil.copy(photo, burst / f"{i:02d}.jpg")
    shutil.copy(PHOTOS[0], burst / ".hidden.jpg")
    found = _wait_for(db, lambda f: len(f) == len(PHOTOS), "the burst")
    # The run's report is appended once its end stages are done, after the last commit.
    deadline = time.monotonic() + 60
    while sum(r.embedded for r in reports if r is not None) < len(PHOTOS) - 2:
        assert time.monotonic() < deadline, reports
        time.sleep(0.1)
    runs = [r.as_dict() for r in reports if r is not None]
    assert len([r for r in runs if r["embedded"]]) == 1, runs
    assert sum(r["embedded"] for r in runs) == len(PHOTOS) - 2, runs

    # Rename and move (into a new folder): the same images, no embedding.
    image_of = found[str(burst / "00.jpg")]
    before = len(reports)
    (photos / "album").mkdir()
    (burst / "00.jpg").rename(burst / "renamed.jpg")
    (burst / "01.jpg").rename(photos / "album" / "moved.jpg")
    found = _wait_for(db, lambda f: str(photos / "album" / "moved.jpg") in f
                      and str(burst / "renamed.jpg") in f and str(burst / "00.jpg") not in f, "the moves")
    assert found[str(burst / "renamed.jpg")] == image_of and len(found) == len(PHOTOS)
    assert sum(r.embedded for r in reports[before:] if r) == 0

    # Delete one; overwrite another with a different photo.
    (burst / "02.jpg").unlink()
    overwritten = burst / "03.jpg"
    old_image = found[str(overwritten)]
    shutil.copy(PHOTOS[0].parent / "image_0005.jpg", overwritten)
    found = _wait_for(db, lambda f: str(burst / "02.jpg") not in f
                      and f.get(str(overwritten)) not in (None, old_image), "delete and overwrite")
    assert len(found) == len(PHOTOS) - 1


def test_half_written_files_are_indexed_once_complete(watched):
    photos, db, reports = watched
    data = PHOTOS[5].read_bytes()
    target = photos / "slow-copy.jpg"
    with open(target, "wb") as f:
        f.write(data[: len(data) // 3])
        f.flush()
        time.sleep(2.5)  # longer than the quiet time: a run sees the half-written file
        f.write(data[len(data) // 3:])
    found = _wait_for(db, lambda f: str(target) in f, "the completed file")
    catalogue = Catalogue(db / "catalogue.sqlite", readonly=True)
    try:
        assert str(target) not in catalogue.failures()
        assert Catalogue.image_id_for_hash(catalogue.db, hash_bytes(data)) == found[str(target)]
    finally:
        catalogue.close()


def test_cli_watch_stops_cleanly_on_ctrl_c(tmp_path):
    photos, db = tmp_path / "photos", tmp_path / "db"
    photos.mkdir()
    shutil.copy(PHOTOS[0], photos / "a.jpg")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookalike", "watch", str(photos), "--db", str(db), "--quiet", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for(db, lambda f: len(f) == 1, "the first run")
        shutil.copy(PHOTOS[1], photos / "b.jpg")
        _wait_for(db, lambda f: len(f) == 2, "the new file")
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped" in stderr and "Traceback" not in stderr, stderr
    assert "1 embedded" in stdout


def test_serve_watch_shows_new_photos_without_a_restart(tmp_path):
    from test_server import client_for

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(PHOTOS[0], photos / "a.jpg")
    index = lookalike.Index.open(tmp_path / "db")
    client = client_for(index)
    state = client.app.state.lookalike
    try:
        state.watch([str(photos)])
        _wait_for(tmp_path / "db", lambda f: len(f) == 1, "the first run")
        shutil.copy(PHOTOS[6], photos / "b.jpg")
        deadline = time.monotonic() + 60
        while client.get("/api/info").json()["images"] != 2:
            assert time.monotonic() < deadline, client.get("/api/index").json()
            time.sleep(0.1)
        with open(PHOTOS[6], "rb") as f:
            found = client.post("/api/search", files={"file": ("q.jpg", f, "image/jpeg")}).json()
        assert found["matches"][0]["path"] == str(photos / "b.jpg")
    finally:
        state.close()
