"""Duplicate finding on real Caltech photos and real edited copies made with Pillow: the
three tiers, the suggested keep, "not a duplicate", incremental checks, the CLI."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

import lookalike
from conftest import caltech_image
from lookalike.cli import main
from lookalike.dupes.pairs import current_graph
from lookalike.errors import LookalikeError
from lookalike.settings import Settings

ORIGINALS = [(c, n) for c in ("watch", "sunflower", "Leopards", "pizza") for n in (1, 2, 3, 4)]
SHOTS = [("car_side", n) for n in (3, 4, 5)]  # one car, consecutive shots: close, not copies


def edits(label: str, number: int) -> dict[str, Image.Image]:
    im = Image.open(caltech_image(label, number)).convert("RGB")
    w, h = im.size
    overlaid = ImageEnhance.Contrast(im).enhance(1.3)
    ImageDraw.Draw(overlaid).text((10, h - 20), "(c) holiday 2026", fill=(255, 255, 255))
    return {
        "crop_rot90": im.crop((int(w * .1), int(h * .15), int(w * .85), int(h * .9))).rotate(90, expand=True),
        "bigger": im.resize((w * 2, h * 2)),
        "mirror": ImageOps.mirror(im),
        "grey_overlay": ImageOps.grayscale(overlaid).convert("RGB"),
    }


COPIES = {"watch_1": ("crop_rot90", "bigger"), "sunflower_2": ("mirror",), "Leopards_3": ("grey_overlay",)}


def make_photos(root: Path) -> Path:
    photos = root / "photos"
    photos.mkdir(parents=True)
    for label, n in ORIGINALS + SHOTS:
        shutil.copy2(caltech_image(label, n), photos / f"{label}_{n}.jpg")
    for name, kinds in COPIES.items():
        label, n = name.split("_")
        made = edits(label, int(n))
        for kind in kinds:
            made[kind].save(photos / f"copy_{name}_{kind}.jpg", quality=85)
    # the same bytes twice: the older file is the one to keep
    shutil.copy2(photos / "pizza_1.jpg", photos / "pizza_1 (copy).jpg")
    os.utime(photos / "pizza_1.jpg", ns=(1_500_000_000 * 10**9,) * 2)
    return photos


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("dupes")
    photos = make_photos(root)
    with lookalike.Index.open(root / "index") as index:
        index.add([photos])
    return root / "index", photos


def names(groups) -> list[set[str]]:
    return [{Path(f.path).name for f in g.files} for g in groups]


def test_copies_group_each_original_with_its_edited_copies_only(collection):
    with lookalike.Index.open(collection[0], create=False) as index:
        groups = index.duplicates("copies")
    found = names(groups)
    assert {"watch_1.jpg", "copy_watch_1_crop_rot90.jpg", "copy_watch_1_bigger.jpg"} in found
    assert {"sunflower_2.jpg", "copy_sunflower_2_mirror.jpg"} in found
    assert {"Leopards_3.jpg", "copy_Leopards_3_grey_overlay.jpg"} in found
    assert len(found) == 3  # nothing else: no two different photos, no similar shots
    watch = next(g for g in groups if "watch_1.jpg" in names([g])[0])
    assert Path(watch.keep.path).name == "copy_watch_1_bigger.jpg"  # the largest pixel size
    assert watch.reason.startswith("largest pixel size")
    params = index.settings.dupes
    assert all(n >= params.copy_inliers and moved <= params.pixels.max_moved for _, _, _, n, moved in watch.pairs)
    record = watch.as_dict()
    assert set(record) == {"level", "image_ids", "files", "keep", "reason", "pairs"}
    assert set(record["files"][0]) == {"image_id", "path", "size", "width", "height", "modified",
                                       "format", "keep"}
    assert record["files"][0]["format"] == "JPEG" and record["files"][0]["keep"] is True


def test_exact_groups_are_one_content_at_several_locations(collection):
    with lookalike.Index.open(collection[0], create=False) as index:
        [group] = index.duplicates("exact")
    assert names([group]) == [{"pizza_1.jpg", "pizza_1 (copy).jpg"}]
    assert len(group.image_ids) == 1
    assert Path(group.keep.path).name == "pizza_1.jpg" and "oldest" in group.reason


def test_similar_shots_are_their_own_tier(collection):
    with lookalike.Index.open(collection[0], create=False) as index:
        similar = names(index.duplicates("similar"))
        copies = names(index.duplicates("copies"))
    shots = {f"{label}_{n}.jpg" for label, n in SHOTS}
    assert any(group >= {"car_side_4.jpg", "car_side_5.jpg"} and group <= shots for group in similar)
    assert not any(group & shots for group in copies)
    assert not any(group in copies for group in similar)


def test_not_a_duplicate_survives_reindexing_and_checks_are_incremental(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for label, n in ORIGINALS[:8]:
        shutil.copy2(caltech_image(label, n), photos / f"{label}_{n}.jpg")
    edits("watch", 1)["mirror"].save(photos / "watch_mirror.jpg")
    calls: list[tuple[int, int]] = []
    with lookalike.Index.open(tmp_path / "index") as index:
        index.add([photos])
        [group] = index.duplicates(progress=lambda done, total: calls.append((done, total)))
        assert calls[-1] == (9, 9)
        calls.clear()
        assert names(index.duplicates(progress=lambda d, t: calls.append((d, t)))) == names([group])
        assert calls == []  # unchanged: nothing checked again
        assert index.not_duplicate(group.image_ids) == 1
        assert index.duplicates() == []
        index.remove([photos / "watch_mirror.jpg"])
        edits("sunflower", 2)["bigger"].save(photos / "sunflower_big.jpg")
        index.add([photos])  # the mirror comes back under a new image id
        assert index.catalogue.image_for_location(str(photos / "watch_mirror.jpg")) not in group.image_ids
        calls.clear()
        found = index.duplicates(progress=lambda d, t: calls.append((d, t)))
        assert calls[-1] == (2, 2)  # only the two new images' neighbourhoods
        assert names(found) == [{"sunflower_2.jpg", "sunflower_big.jpg"}]
        with pytest.raises(LookalikeError, match="no indexed image with id 999"):
            index.not_duplicate([1, 999])
        with pytest.raises(LookalikeError, match="at least two image ids"):
            index.not_duplicate([1, 1])
        with pytest.raises(LookalikeError, match="unknown duplicate level"):
            index.duplicates("twins")


def test_cli_json_csv_and_not_duplicate(collection, tmp_path, capsys):
    db = str(tmp_path / "index")
    shutil.copytree(collection[0], db)
    assert main(["dupes", "--db", db, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["level"] == "copies" and doc["total_groups"] == 3 == len(doc["groups"])
    assert doc["total_files"] == sum(len(g["files"]) for g in doc["groups"])
    assert main(["dupes", "--db", db, "--csv", "--min-group", "3"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("group,level,image_id,path,size,width,height,modified,format,keep,reason")
    assert len(rows) == 4 and all(r.startswith("1,copies,") for r in rows[1:])
    ids = [str(i) for i in doc["groups"][-1]["image_ids"]]
    assert main(["dupes", "--db", db, "--not-duplicate", *ids]) == 0
    assert "marked 1 pair as not duplicates" in capsys.readouterr().out
    assert main(["dupes", "--db", db]) == 0
    assert capsys.readouterr().out.startswith("copies: 2 groups, 5 files")
    assert main(["dupes", "--db", db, "--not-duplicate", "1", "99999"]) == 1
    assert capsys.readouterr().err == "error: no indexed image with id 99999\n"


def test_a_format4_catalogue_gains_the_dupes_tables(tmp_path):
    from lookalike.index.catalogue import Catalogue

    path = tmp_path / "catalogue.sqlite"
    cat = Catalogue(path)
    for table in ("not_duplicates", "dupe_pairs", "dupe_state"):
        cat.db.execute(f"DROP TABLE {table}")
    cat.db.execute("UPDATE meta SET value = '4' WHERE key = 'format_version'")
    cat.close()
    readonly = Catalogue(path, readonly=True)  # read as it is: nothing to find yet
    assert readonly.version == 4 and readonly.dupe_pairs() == [] and readonly.dupe_state() == {}
    readonly.close()
    cat = Catalogue(path)
    assert cat.version == Catalogue.VERSION
    cat.save_dupe_pairs([], {"checked": "0"})
    assert cat.dupe_state() == {"checked": "0"} and cat.not_duplicate_pairs() == set()
    cat.close()


def test_a_format5_catalogue_checks_its_pairs_afresh(tmp_path):
    """Format 6 stores the share of cells that moved per pair: the pairs stored before
    (derived, without it) are dropped, and the next check starts from the first image."""
    from lookalike.index.catalogue import Catalogue

    path = tmp_path / "catalogue.sqlite"
    cat = Catalogue(path)
    cat.db.execute("DROP TABLE dupe_pairs")
    cat.db.execute("CREATE TABLE dupe_pairs (a INTEGER NOT NULL, b INTEGER NOT NULL, cosine REAL NOT NULL, "
                   "inliers INTEGER NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID")
    cat.db.execute("INSERT INTO dupe_pairs VALUES (1, 2, 0.9, 80)")
    cat.db.execute("INSERT INTO dupe_state VALUES ('checked', '2')")
    cat.db.execute("UPDATE meta SET value = '5' WHERE key = 'format_version'")
    cat.close()
    cat = Catalogue(path)
    assert cat.version == Catalogue.VERSION and cat.dupe_pairs() == [] and cat.dupe_state() == {}
    cat.close()


def test_a_current_neighbour_graph_replaces_the_search(collection, tmp_path):
    """Where the saved neighbour graph is current (indexing keeps it where queries diffuse),
    its rows are read instead of searching: the same pairs are checked (word candidates
    off, which find the copies by themselves)."""
    copy = tmp_path / "index"
    shutil.copytree(collection[0], copy)
    settings = Settings().with_(dupes=replace(Settings().dupes, words=0))
    with lookalike.Index.open(copy, settings=settings, create=False) as index:
        assert current_graph(index.folder) is None  # too few images to diffuse: none saved
        index.duplicates("copies")
        searched = sorted(index.catalogue.dupe_pairs())
        index.graph()
        assert current_graph(index.folder) is not None
        index.catalogue.save_dupe_pairs([], {}, clear=True)
        index.duplicates("copies")
        assert sorted(index.catalogue.dupe_pairs()) == searched and len(searched) >= 4



def test_the_approximate_store_finds_the_same_groups(collection, tmp_path):
    """Neighbours searched in the approximate store (a batch of queries per chunk, re-scored
    together) give the exact store's groups."""
    copy = tmp_path / "index"
    shutil.copytree(collection[0], copy)
    base = Settings().with_(dupes=replace(Settings().dupes, words=0, chunk=8))
    with lookalike.Index.open(copy, settings=base, create=False) as index:
        exact = names(index.duplicates("copies", save=False))
    settings = base.with_(ann=replace(base.ann, threshold=10))
    with lookalike.Index.open(copy, settings=settings, create=False) as index:
        assert index.folder.store.inner.kind == "ann"
        assert names(index.duplicates("copies", save=False)) == exact and len(exact) == 3
