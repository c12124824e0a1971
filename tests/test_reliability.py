"""Storage faults, reproduced for real: file names that are not UTF-8, read-only indexes
(bind mounts, immutable folders), a full disk (a small tmpfs) and a damaged catalogue.

Each test sets up and tears down its own mounts (try/finally) and skips, saying why, only
where this machine refuses them. See docs/reliability.md.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import caltech_image
from lookalike import Index

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


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 1 and a single ``error: ...`` line holding every fragment; no traceback."""
    err = proc.stderr.decode("utf-8")
    lines = [line for line in err.splitlines() if not line.startswith("indexing:")]
    assert proc.returncode == 1 and "Traceback" not in err, (proc.returncode, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(f in lines[0] for f in fragments), (fragments, lines[0])
    return lines[0]


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


def odd_photos(folder: Path) -> Path:
    """Three normal photos and two whose names are not valid UTF-8."""
    folder.mkdir(parents=True)
    for label, number in NORMAL:
        shutil.copy(caltech_image(label, number), folder / f"{label}-{number}.jpg")
    for raw, (label, number) in ODD_NAMES.items():
        shutil.copy(caltech_image(label, number), folder / os.fsdecode(raw))
    return folder


# --- bad file names ---------------------------------------------------------------------
def test_undecodable_file_names_are_indexed_stored_losslessly_and_shown(tmp_path):
    photos, db = odd_photos(tmp_path / "photos"), tmp_path / "index"
    total = len(NORMAL) + len(ODD_NAMES)

    first = strict_json(ok(cli("index", photos, "--db", db, "--json")))
    assert first["embedded"] == total and first["failed"] == []  # the normal ones too
    again = strict_json(ok(cli("index", photos, "--db", db, "--json")))
    assert again["unchanged"] == total and again["embedded"] == again["removed"] == 0

    # Stored losslessly: the raw bytes as a BLOB, the other names as TEXT.
    with sqlite3.connect(db / "catalogue.sqlite") as raw:
        stored = dict(raw.execute("SELECT location, typeof(location) FROM files").fetchall())
    for name in ODD_NAMES:
        assert stored.pop(os.fsencode(photos) + b"/" + name) == "blob"
    assert sorted(stored.values()) == ["text"] * len(NORMAL)

    # Search by each odd name finds it; --json is strict JSON and path_bytes is the name.
    for name in ODD_NAMES:
        query = photos / os.fsdecode(name)
        [result] = strict_json(ok(cli("search", query, "--db", db, "--top", "3", "--json")))
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


def _client(index: Index):
    with warnings.catch_warnings():  # Starlette >= 1.x nags about httpx on import
        warnings.filterwarnings("ignore", message="Using `httpx`")
        from fastapi.testclient import TestClient
    from lookalike.server.app import ServerConfig, create_app

    return TestClient(create_app(index, ServerConfig()))
