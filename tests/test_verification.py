"""Spatial verification stages (lookalike.query.verification): ``verify``, ``words`` and
``regions`` on real edited copies of indexed photos. No timing assertions."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

import lookalike
from conftest import PER_CLASS, SUBSET_CLASSES, caltech_image, copy_subset, edited
from lookalike.index.words import InvertedFile
from lookalike.settings import VerifyParams, WordParams

SURE = VerifyParams().sure_inliers


def _pasted(label: str, number: int, background: int, area: float = 0.2) -> Image.Image:
    """A photo shrunk to ``area`` of an unrelated (unindexed) photo and pasted onto it."""
    return _collage(("BACKGROUND_Google", background), label, number, area)


def _collage(background: tuple[str, int], label: str, number: int, area: float = 0.2) -> Image.Image:
    """A photo shrunk to ``area`` of another photo (``(class, number)``) and pasted onto it."""
    back = Image.open(caltech_image(*background)).convert("RGB").resize((480, 360))
    photo = Image.open(caltech_image(label, number)).convert("RGB")
    scale = (area * back.width * back.height / (photo.width * photo.height)) ** 0.5
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)))
    back.paste(photo, (back.width - photo.width - 20, 30))
    return back


# --- verify:N ----------------------------------------------------------------------------
def test_verification_promotes_the_original_of_an_edited_copy(index, built_index):
    _, photos = built_index
    original = str(photos / "Motorbikes" / "image_0005.jpg")
    query = edited("Motorbikes", 5)
    plain = [m.path for m in index.search(query, 10, rerank="none", verify=0).matches]
    assert plain[0] != original and original in plain  # the global ranking misses it...
    verified = index.search(query, 10, rerank="none", verify=10).matches
    assert verified[0].path == original  # ...spatial verification puts it first
    assert verified[0].inliers >= 15
    assert all(m.inliers is not None for m in verified)
    # Only the first N are checked: the others carry no inlier count.
    partly = index.search(query, 10, pipeline="cosine,verify:3").matches
    assert sum(m.inliers is not None for m in partly) == 3
    assert all(m.inliers is None for m in index.search(query, 10, verify=0).matches)


def test_verification_leaves_class_level_results_alone(index):
    # A different sunflower photo (not in the index): similar pictures, nothing identical.
    query = caltech_image("sunflower", 20)
    plain = index.search(query, 10, rerank="none", verify=0).matches
    checked = index.search(query, 10, rerank="none", verify=10).matches
    assert [m.image_id for m in checked] == [m.image_id for m in plain]
    assert all(m.inliers is not None and m.inliers < 15 for m in checked)
    assert set(checked[0].as_dict()) == set(plain[0].as_dict())  # the JSON schema is stable


def test_verification_by_id_and_missing_files(tmp_path):
    photos = copy_subset(tmp_path / "photos", classes=SUBSET_CLASSES[:2])
    without = lookalike.Settings(local_features=False)
    with lookalike.Index.open(tmp_path / "index") as ix, \
            lookalike.Index.open(tmp_path / "plain", settings=without) as plain:
        ix.add([photos])
        plain.add([photos])
        stored = ix.catalogue.local_features_for([1, 2])
        assert len(stored) == 2 and all(len(p) == len(d) > 100 for p, d in stored.values())
        assert not plain.catalogue.local_features_for([1, 2])
        (photos / "airplanes" / "image_0002.jpg").unlink()
        # Features stored at index time still verify a match whose file has gone...
        result = ix.search(caltech_image("airplanes", 2), 5, verify=5)
        gone = [m for m in result.matches if m.path.endswith("airplanes/image_0002.jpg")]
        assert gone and gone[0].rank == 1 and gone[0].inliers >= 15
        # ...without them, such a match (its features not cached) cannot be verified.
        result = plain.search(caltech_image("airplanes", 2), 5, verify=5)
        gone = [m for m in result.matches if m.path.endswith("airplanes/image_0002.jpg")]
        assert gone and gone[0].inliers == 0
        # "More like this" reads the indexed image's own file as the query picture.
        image_id = ix.catalogue.image_for_location(str(photos / "airplanes" / "image_0001.jpg"))
        first = ix.search_by_id(image_id, 3, verify=5).matches[0]
        assert first.image_id == image_id and first.inliers >= 15
        # Forgetting images forgets their features in the same transaction.
        ix.remove([photos / "Leopards"])
        count = ix.catalogue.db.execute
        assert count("SELECT count(*) FROM local_features").fetchone() == count(
            "SELECT count(*) FROM images").fetchone() == (PER_CLASS,)


# --- words:N -----------------------------------------------------------------------------
def test_word_candidates_are_verified_with_the_first_matches(index, built_index):
    _, photos = built_index
    original = str(photos / "Motorbikes" / "image_0005.jpg")
    query = edited("Motorbikes", 5)
    plain = [m.path for m in index.search(query, 10, rerank="none", verify=0).matches]
    assert plain[0] != original  # the global ranking does not put it first
    # Verifying only the first match misses it; the word candidates bring it in.
    alone = index.search(query, 10, rerank="none", verify=1, words=0, regions=0).matches
    assert alone[0].path != original
    helped = index.search(query, 10, rerank="none", verify=1, words=5, regions=0).matches
    assert helped[0].path == original and helped[0].inliers >= 15
    # The words stage works on its own too (no first matches verified).
    words_only = index.search(query, 10, pipeline="cosine,words:5").matches
    assert words_only[0].path == original


def test_word_candidates_are_skipped_above_the_size_limit(built_index, tmp_path):
    db, photos = built_index
    folder = tmp_path / "index"
    shutil.copytree(db, folder)
    (folder / InvertedFile.FILE).unlink(missing_ok=True)  # no word index yet
    small = lookalike.Settings(words=WordParams(max_images=10))  # the test index has 40 images
    with lookalike.Index.open(folder, settings=small) as ix:
        capped = ix.search(edited("Motorbikes", 5), 10, rerank="none", verify=1, words=5, regions=0).matches
        assert not (folder / InvertedFile.FILE).exists()  # no word index was built or loaded
        assert capped[0].path != str(photos / "Motorbikes" / "image_0005.jpg")
        assert capped[0].inliers is not None  # the first match is still verified


# --- regions:N ---------------------------------------------------------------------------
def test_regional_stage_runs_unless_a_match_is_sure(index, built_index):
    """A collage of two indexed photos: a weak verified match (< VerifyParams.sure_inliers)
    may explain only part of the query, so the regions are still searched and the pasted
    photo is checked against its own region; a sure match ends the query as before."""
    _, photos = built_index
    watch = str(photos / "watch" / "image_0006.jpg")

    def inliers_of(matches) -> int:
        return next((m.inliers or 0 for m in matches if m.path == watch), 0)

    weak = _collage(("sunflower", 7), "watch", 6)
    plain = index.search(weak, 5, rerank="none", verify=5, regions=0).matches
    assert 15 <= max(m.inliers or 0 for m in plain) < SURE  # verified, but weakly
    found = index.search(weak, 5, rerank="none", verify=5, regions=5).matches
    assert found[0].path == watch and inliers_of(found) >= SURE > inliers_of(plain)
    strong = _collage(("Leopards", 8), "watch", 6)
    plain = index.search(strong, 5, rerank="none", verify=5, regions=0).matches
    assert max(m.inliers or 0 for m in plain) >= SURE  # the background photo, surely
    assert inliers_of(index.search(strong, 5, rerank="none", verify=5, regions=5).matches) == inliers_of(plain)


def test_regional_search_finds_a_photo_pasted_into_another(index, built_index):
    _, photos = built_index
    original = str(photos / "watch" / "image_0006.jpg")
    query = _pasted("watch", 6, background=3)
    # Against the whole collage, local features do not confirm the original (too few of
    # the query's keypoints fall on it), wherever the global search ranks it...
    plain = index.search(query, 5, rerank="none", verify=5, regions=0).matches
    assert not any(m.path == original and m.inliers >= 15 for m in plain)
    # ...the regional search finds it from the region it fills and verifies it against
    # that region, so it comes first.
    found = index.search(query, 5, rerank="none", verify=5, regions=5).matches
    assert found[0].path == original and found[0].inliers >= 15
    # A query with no copy in the index is left in its cosine order.
    other = caltech_image("sunflower", 20)
    assert [m.image_id for m in index.search(other, 10, rerank="none", regions=5).matches] == [
        m.image_id for m in index.search(other, 10, rerank="none", verify=0).matches
    ]


@pytest.mark.parametrize("pipeline", ["cosine,verify:5", "cosine,verify:5,words:5,regions:5"])
def test_a_query_without_a_picture_is_not_verified(index, pipeline):
    # Index.rank with raw vectors and no picture: nothing to verify against.
    vectors = index.catalogue.vectors_for([3])
    ranked = index.rank(vectors, lookalike.SearchOptions(k=5, pipeline=pipeline))[0]
    assert ranked.inliers == {} and ranked.ids[0] == 3
