"""Storage faults, reproduced for real: file names that are not UTF-8, read-only indexes
(bind mounts, immutable folders) and a full disk (a small tmpfs); a damaged catalogue and
``lookalike check`` are in test_check.py.

Each test sets up and tears down its own mounts (try/finally) and skips, saying why, only
where this machine refuses them. See docs/reliability.md.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np
import pytest

from conftest import caltech_image
from lookalike import Index
from lookalike.errors import ReadOnlyIndexError
from lookalike.index.catalogue import Catalogue

NORMAL = [("airplanes", 1), ("airplanes", 2), ("Motorbikes", 1)]
ODD_NAMES = {b"\xff\xfe.jpg": ("Leopards", 1), b"caf\xe9.jpg": ("watch", 1)}


def cli(*args: str | os.PathLike) -> subprocess.CompletedProcess:
    """``lookalike ARGS`` in a fresh process; stdout and stderr as bytes."""
    return subprocess.run(
        [sys.executable, "-m", "lookalike", *map(os.fspath, args)],
        capture_output=True, timeout=300,
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    """The process's stdout, which must be valid UTF-8, after asserting it succeeded."""
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout.decode("utf-8")


def json_of(result: tuple[int, str, str]) -> str:
    """The JSON a successful in-process run printed."""
    assert result[0] == 0, result
    return result[1]


def strict_json(text: str):
    """Parse as strict JSON: no NaN/Infinity, and no string holding a lone surrogate (which
    other JSON parsers reject)."""
    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")

    def check(value):
        if isinstance(value, str):
            value.encode("utf-8")  # raises on a lone surrogate
        elif isinstance(value, dict):
            for key, item in value.items():
                check(key), check(item)
        elif isinstance(value, list):
            for item in value:
                check(item)
        return value

    return check(json.loads(text, parse_constant=refuse))


def main(capsys, *args: str | os.PathLike) -> tuple[int, str, str]:
    """``lookalike ARGS`` in this process (faster than a new one): exit code, out, err."""
    from lookalike.cli import main as lookalike_main

    code = lookalike_main([os.fspath(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def clean_error(result: tuple[int, str, str], *fragments: str) -> str:
    """Exit 1 and a single ``error: ...`` line (besides progress) holding every fragment."""
    code, _, err = result
    lines = [line for line in err.splitlines() if not line.startswith(("indexing:", "evaluating:"))]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result
    assert all(f in lines[0] for f in fragments), (fragments, lines[0])
    return lines[0]


def sh(*command: str | os.PathLike) -> subprocess.CompletedProcess:
    return subprocess.run([os.fspath(c) for c in command], capture_output=True, text=True)


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def odd_photos(folder: Path) -> Path:
    """Three normal photos and two whose names are not valid UTF-8."""
    folder.mkdir(parents=True)
    for label, number in NORMAL:
        shutil.copy(caltech_image(label, number), folder / f"{label}-{number}.jpg")
    for raw, (label, number) in ODD_NAMES.items():
        shutil.copy(caltech_image(label, number), folder / os.fsdecode(raw))
    return folder


# --- bad file names ---------------------------------------------------------------------
def test_undecodable_file_names_are_indexed_stored_losslessly_and_shown(tmp_path, capsys):
    photos, db = odd_photos(tmp_path / "photos"), tmp_path / "index"
    total = len(NORMAL) + len(ODD_NAMES)

    first = strict_json(ok(cli("index", photos, "--db", db, "--json")))
    assert first["embedded"] == total and first["failed"] == []  # the normal ones too
    again = strict_json(json_of(main(capsys, "index", photos, "--db", db, "--json")))
    assert again["unchanged"] == total and again["embedded"] == again["removed"] == 0

    # Stored losslessly: the raw bytes as a BLOB, the other names as TEXT.
    with closing(sqlite3.connect(db / "catalogue.sqlite")) as raw:
        stored = dict(raw.execute("SELECT location, typeof(location) FROM files").fetchall())
    for name in ODD_NAMES:
        assert stored.pop(os.fsencode(photos) + b"/" + name) == "blob"
    assert sorted(stored.values()) == ["text"] * len(NORMAL)

    # Search by each odd name finds it; --json is strict JSON and path_bytes is the name.
    for name in ODD_NAMES:
        query = photos / os.fsdecode(name)
        [result] = strict_json(json_of(main(capsys, "search", query, "--db", db, "--top", "3", "--json")))
        best = result["matches"][0]
        assert base64.b64decode(best["path_bytes"]) == os.fsencode(query)
        assert best["path"] == os.fsencode(query).decode("utf-8", "backslashreplace")
        assert result["query"] == best["path"]
        assert all("path_bytes" not in m for m in result["matches"][1:])  # normal names
    text = ok(cli("search", photos / os.fsdecode(b"caf\xe9.jpg"), "--db", db, "--top", "5"))
    assert f"{photos}/caf\\xe9.jpg" in text and f"{photos}/\\xff\\xfe.jpg" in text

    # The Python API gives Python's own str for the name; the REST API as the CLI's JSON.
    with Index.open(db, create=False) as index:
        odd = str(photos / os.fsdecode(b"\xff\xfe.jpg"))
        assert odd in index.catalogue.files_by_location()
        image_id = index.catalogue.image_for_location(odd)
        client = _client(index)
        similar = strict_json(client.get(f"/api/images/{image_id}/similar?k=2").text)
        assert base64.b64decode(similar["matches"][0]["path_bytes"]) == os.fsencode(odd)
        details = strict_json(client.get(f"/api/images/{image_id}").text)
        assert [base64.b64decode(b) for b in details["paths_bytes"]] == [os.fsencode(odd)]
        assert details["paths"] == [os.fsencode(odd).decode("utf-8", "backslashreplace")]
        normal = index.catalogue.image_for_location(str(photos / "airplanes-1.jpg"))
        assert "paths_bytes" not in client.get(f"/api/images/{normal}").json()


def _client(index: Index, **config):
    with warnings.catch_warnings():  # Starlette >= 1.x nags about httpx on import
        warnings.filterwarnings("ignore", message="Using `httpx`")
        from fastapi.testclient import TestClient
    from lookalike.server.app import ServerConfig, create_app

    return TestClient(create_app(index, ServerConfig(**config)))


# --- read-only indexes ------------------------------------------------------------------
@contextmanager
def made_read_only(folder: Path, how: str) -> Iterator[Path]:
    """``folder`` (an index) as read-only media would show it; undone however the block ends.

    ``bind``: a read-only bind mount of it; ``immutable``: ``chattr +i`` on the folder and its
    files; ``immutable-file``: on the catalogue only; ``chmod``: modes (not for root, whom
    modes do not stop)."""
    files = [p for p in folder.iterdir()]
    if how == "bind":
        view = folder.with_name(folder.name + "-ro")
        view.mkdir()
        mounted = sh("mount", "--bind", folder, view)
        if mounted.returncode:
            pytest.skip(f"this machine refuses a bind mount: {mounted.stderr.strip()}")
        try:
            remounted = sh("mount", "-o", "remount,bind,ro", view)
            if remounted.returncode:
                pytest.skip(f"this machine refuses a read-only remount: {remounted.stderr.strip()}")
            yield view
        finally:
            if sh("umount", view).returncode:  # still in use: detach it anyway
                sh("umount", "--lazy", view)
        return
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root ignores file modes; the immutable and bind cases cover root")
        try:
            for path in files:
                path.chmod(0o444)
            folder.chmod(0o555)
            yield folder
        finally:
            folder.chmod(0o755)
            for path in files:
                path.chmod(0o644)
        return
    targets = [folder / "catalogue.sqlite"] if how == "immutable-file" else [*files, folder]
    done = sh("chattr", "+i", *targets)
    try:
        if done.returncode:
            pytest.skip(f"this machine refuses chattr +i: {done.stderr.strip()}")
        yield folder
    finally:
        sh("chattr", "-i", *targets)


@pytest.mark.parametrize("how", ["bind", "immutable", "immutable-file", "chmod"])
def test_read_only_index_searches_and_refuses_writes_in_one_line(tmp_path, capsys, how):
    photos = tmp_path / "photos"
    photos.mkdir()
    for label, number in NORMAL:
        shutil.copy(caltech_image(label, number), photos / f"{label}-{number}.jpg")
    with Index.open(tmp_path / "index") as index:
        assert index.add([photos]).embedded == len(NORMAL)
    before = contents(tmp_path / "index")
    query = photos / "airplanes-1.jpg"

    with made_read_only(tmp_path / "index", how) as db:
        code, out, _ = main(capsys, "info", "--db", db, "--json")
        assert code == 0 and json.loads(out)["images"] == len(NORMAL)
        code, out, _ = main(capsys, "search", query, "--db", db, "--json", "--top", "2")
        assert code == 0 and json.loads(out)[0]["matches"][0]["path"] == str(query)
        code, out, _ = main(capsys, "eval", "--db", db, "--json", "--rerank", "none", "--verify", "0")
        assert code == 0 and json.loads(out)["queries"] >= 1
        for command in (["index", photos], ["remove", query], ["search", query, "--add"]):
            clean_error(main(capsys, *command, "--db", db), f"the index at {db} is read-only: ")
        with Index.open(db, create=False) as index:  # the API: writes fail in one line too
            assert index.catalogue.readonly
            with pytest.raises(ReadOnlyIndexError, match="is read-only"):
                index.remove([query])
            client = _client(index, token="secret")
            try:
                assert client.get("/api/info").json()["images"] == len(NORMAL)
                similar = client.get("/api/images/1/similar?k=2")
                assert similar.status_code == 200 and len(similar.json()["matches"]) == 2
                shutil.copy(caltech_image("watch", 2), photos / "new.jpg")  # work to write
                started = client.post("/api/index", json={"paths": [str(photos)]},
                                      headers={"Authorization": "Bearer secret"})
                assert started.status_code == 202
                job = _finished(client)
                assert job["state"] == "failed" and "is read-only" in job["error"], job
            finally:
                client.app.state.lookalike.close()  # the index the job swapped in
    after = contents(tmp_path / "index")
    if how == "immutable-file":  # the folder was writable: derived files could be saved,
        assert "catalogue.sqlite-shm" in after  # and SQLite's mode=ro made its -shm file
        after, before = after["catalogue.sqlite"], before["catalogue.sqlite"]
    assert after == before  # nothing written, nothing migrated


def test_read_only_open_does_not_migrate_an_older_catalogue(tmp_path, capsys):
    folder = tmp_path / "index"
    folder.mkdir()
    shutil.copy(Path(__file__).parent / "data" / "format1" / "catalogue.sqlite", folder)
    before = contents(folder)
    with made_read_only(folder, "bind") as db:
        code, out, _ = main(capsys, "info", "--db", db, "--json")
        assert code == 0 and json.loads(out)["format_version"] == 1
        code, out, _ = main(capsys, "search", caltech_image("watch", 1), "--db", db, "--json")
        assert code == 0 and json.loads(out)[0]["matches"][0]["score"] > 0.99
    assert contents(folder) == before


def _finished(client, attempts: int = 600) -> dict:
    """The indexing job's state once it is no longer running."""
    for _ in range(attempts):
        job = client.get("/api/index").json()
        if job["state"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError(f"the indexing job still runs: {job}")


# --- full disk ----------------------------------------------------------------------------
@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder``, unmounted however the block ends."""
    folder.mkdir()
    mounted = sh("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder)
    if mounted.returncode:
        pytest.skip(f"this machine refuses a tmpfs mount: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if sh("umount", folder).returncode:  # still in use: detach it anyway
            sh("umount", "--lazy", folder)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` with one file, then give back ``leave`` bytes of it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(65536))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, max(filler.stat().st_size - leave, 0))
    return filler


def test_full_disk_fails_in_one_line_keeps_batches_and_resumes(tmp_path, capsys):
    from lookalike.index.files import atomic_save, atomic_write, save_with_meta

    photos = tmp_path / "photos"
    classes = ("airplanes", "Leopards", "Motorbikes", "watch")
    for label in classes:
        (photos / label).mkdir(parents=True)
        for number in range(1, 7):
            shutil.copy(caltech_image(label, number), photos / label / f"{number}.jpg")
    total = len(classes) * 6
    with small_disk(tmp_path / "disk", "3m") as disk:
        db = disk / "index"
        code, _, _ = main(capsys, "index", photos / "airplanes", "--db", db)
        assert code == 0
        # Full: reads work, also where SQLite must make its shared-memory file anew.
        filler = fill(disk)
        assert not (db / "catalogue.sqlite-shm").exists()
        code, out, _ = main(capsys, "info", "--db", db, "--json")
        assert code == 0 and json.loads(out)["images"] == 6
        code, out, _ = main(capsys, "search", photos / "airplanes" / "1.jpg", "--db", db, "--json")
        assert code == 0 and json.loads(out)[0]["matches"][0]["score"] > 0.99
        message = (f"error: no space left on the device of {db} (mounted at {disk}); "
                   "nothing was lost: finished batches are saved")
        clean_error(main(capsys, "remove", photos / "airplanes", "--db", db), message)
        assert _images(db) == 6

        # Room for two or three batches of 4: those are kept, the one that fails is not.
        os.truncate(filler, filler.stat().st_size - 300_000)
        clean_error(main(capsys, "index", photos, "--db", db, "--batch-size", "4"), message)
        assert not list(db.glob("*.tmp*"))  # no half-written derived file
        kept = _images(db)
        assert 6 < kept < total
        # Derived files that cannot be written leave no temporary file behind.
        big = np.zeros(1 << 20, dtype=np.float32)
        for save in (lambda: atomic_save(db / "x.npy", big), lambda: atomic_write(db / "x", big.tobytes()),
                     lambda: save_with_meta(db / "x.npz", {}, big=big)):
            with pytest.raises(OSError) as error:
                save()
            assert error.value.errno == errno.ENOSPC and not list(db.glob("x*"))

        # With space again, the same command resumes and ends with exactly the right images.
        for path in disk.glob("filler*"):
            path.unlink()
        code, out, _ = main(capsys, "index", photos, "--db", db, "--json")
        report = json.loads(out)
        assert code == 0 and report["embedded"] == total - kept and report["failed"] == []
        assert _images(db) == total
        with Index.open(db, create=False) as index:
            assert sorted(index.catalogue.files_by_location()) == sorted(
                str(p) for p in photos.rglob("*.jpg"))
            assert index.catalogue.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _images(db: Path) -> int:
    catalogue = Catalogue(db / "catalogue.sqlite", readonly=True)
    try:
        return catalogue.count_images()
    finally:
        catalogue.close()
