"""Rebuild the format-1 catalogues in this folder with the lookalike of commit 8c335ef.

Run from a checkout of that commit (its ``src`` first on the path), e.g.::

    cd /work/base && PYTHONPATH=src python /path/to/tests/data/format1/make_fixture.py

Five Caltech-101 photos are indexed (plus a second copy of one and an undecodable file, so
the ``files`` and ``failures`` tables hold more than one row per image), and the catalogue is
copied out whole (``VACUUM INTO``: no WAL beside it; 1 KB pages keep it small). ``catalogue-nowords.sqlite`` is the
same catalogue with ``local_features.words`` dropped, the shape before visual words.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import lookalike

HERE = Path(__file__).resolve().parent
CALTECH = Path("/work/shared/datasets/caltech101/images")
PHOTOS = [("watch", 1), ("sunflower", 1), ("airplanes", 2), ("Leopards", 1), ("Motorbikes", 1)]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        for label, number in PHOTOS:
            (photos / label).mkdir(parents=True, exist_ok=True)
            shutil.copy2(CALTECH / label / f"image_{number:04d}.jpg", photos / label)
        shutil.copy2(photos / "watch" / "image_0001.jpg", photos / "watch" / "copy.jpg")
        (photos / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
        with lookalike.Index.open(Path(tmp) / "index") as index:
            report = index.add([photos])
            assert report.embedded == len(PHOTOS) and len(report.failed) == 1, report
        source = sqlite3.connect(Path(tmp) / "index" / "catalogue.sqlite")
        for name in ("catalogue.sqlite", "catalogue-nowords.sqlite"):
            (HERE / name).unlink(missing_ok=True)
            source.execute("VACUUM INTO ?", (str(HERE / name),))
        source.close()
    old = sqlite3.connect(HERE / "catalogue-nowords.sqlite")
    old.execute("ALTER TABLE local_features DROP COLUMN words")  # rewrites the table (SQLite 3.35+)
    old.commit()
    old.close()
    for name in ("catalogue.sqlite", "catalogue-nowords.sqlite"):
        db = sqlite3.connect(HERE / name, isolation_level=None)
        db.execute("PRAGMA page_size = 1024")  # less slack around the blobs: a smaller file
        db.execute("VACUUM")
        db.close()


if __name__ == "__main__":
    main()
