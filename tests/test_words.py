"""Visual words on real photos: the shipped vocabulary, the inverted file and word candidates.

Uses the shared Caltech-101 subset (5 classes x 8 photos). No timing assertions.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from PIL import Image

import lookalike
from conftest import caltech_image
from lookalike.index.words import InvertedFile, Vocabulary, shipped_vocabulary
from lookalike.verify import VerifyParams, extract


def _descriptors(label: str, number: int, edit=None) -> np.ndarray:
    image = Image.open(caltech_image(label, number)).convert("RGB")
    if edit is not None:
        image = edit(image)
    return extract(image, VerifyParams()).descriptors


def _thumbnail(image: Image.Image) -> Image.Image:
    """A centre crop of ~60 % of the area, shrunk to a third of its side."""
    w, h = image.size
    crop = image.crop((int(w * 0.12), int(h * 0.12), int(w * 0.88), int(h * 0.88)))
    return crop.resize((max(16, crop.width // 3), max(16, crop.height // 3)), Image.Resampling.LANCZOS)


def test_shipped_vocabulary_maps_descriptors_to_stable_words():
    vocabulary = shipped_vocabulary()
    assert vocabulary.size == 32 ** 3
    descriptors = _descriptors("watch", 1)
    words = vocabulary.quantise(descriptors)
    assert words.dtype == np.uint16 and len(words) == len(descriptors)
    assert np.array_equal(words, vocabulary.quantise(descriptors.copy()))
    assert len(np.unique(words)) > 0.5 * len(words)  # a fine vocabulary: few collisions
    # One flipped bit in each descriptor leaves most words unchanged.
    flipped = descriptors.copy()
    flipped[:, 0] ^= 1
    assert np.mean(vocabulary.quantise(flipped) == words) > 0.8


def test_training_and_saving_a_small_vocabulary(tmp_path):
    descriptors = np.concatenate([_descriptors("Leopards", n) for n in range(1, 6)])
    vocabulary = Vocabulary.train(descriptors, branching=4, levels=2, iterations=3, seed=1)
    assert vocabulary.size == 16
    assert [c.shape for c in vocabulary.levels] == [(4, 32), (16, 32)]
    words = vocabulary.quantise(descriptors)
    assert len(np.unique(words)) >= 12  # the leaves are used
    vocabulary.save(tmp_path / "v.npz")
    again = Vocabulary.load(tmp_path / "v.npz")
    assert np.array_equal(again.quantise(descriptors), words)


def test_inverted_file_ranks_the_original_of_a_thumbnail_first():
    vocabulary = shipped_vocabulary()
    photos = [(label, n) for label in ("airplanes", "Leopards", "Motorbikes", "watch") for n in range(1, 9)]
    words = [vocabulary.quantise(_descriptors(label, n)) for label, n in photos]
    ids = np.arange(100, 100 + len(photos))
    inverted = InvertedFile.build(ids, words, vocabulary.size)
    assert len(inverted) == len(photos)
    query = vocabulary.quantise(_descriptors("Motorbikes", 3, _thumbnail))
    found, scores = inverted.search(query, 5)
    original = ids[photos.index(("Motorbikes", 3))]
    assert found[0] == original
    assert np.all(np.diff(scores) <= 0) and 0 < scores[0] <= 1
    # Filters: an allowed set, and ids to leave out.
    allowed = ids[:8]
    assert set(inverted.search(query, 5, allowed=allowed)[0]) <= set(allowed)
    assert original not in inverted.search(query, 5, exclude=[int(original)])[0]
    # An empty index or query finds nothing.
    assert len(InvertedFile.build(np.zeros(0, np.int64), [], vocabulary.size).search(query, 5)[0]) == 0
    assert len(inverted.search(np.zeros(0, np.uint16), 5)[0]) == 0


def test_word_candidates_are_verified_with_the_first_matches(built_index):
    db, photos = built_index
    original = str(photos / "Motorbikes" / "image_0005.jpg")
    im = Image.open(caltech_image("Motorbikes", 5)).convert("RGB")
    w, h = im.size
    query = im.crop((int(w * 0.1), int(h * 0.15), int(w * 0.8), int(h * 0.85))).rotate(90, expand=True)
    with lookalike.Index.open(db) as ix:
        plain = [m.path for m in ix.search(query, 10, rerank="none", verify=0).matches]
        assert plain[0] != original  # the global ranking does not put it first
        # Verifying only the first match misses it; the word candidates bring it in.
        alone = ix.search(query, 10, rerank="none", verify=1, words=0, regions=0).matches
        assert alone[0].path != original
        helped = ix.search(query, 10, rerank="none", verify=1, words=5, regions=0).matches
        assert helped[0].path == original and helped[0].inliers >= 15
        with pytest.raises(lookalike.LookalikeError, match="words must be"):
            ix.search(query, 5, words=-1)


def test_index_from_before_words_gets_them_from_its_descriptors(tmp_path, photos):
    with lookalike.Index.open(tmp_path / "index") as ix:
        ix.add([photos / "watch", photos / "Leopards"])
        expected = ix.search(caltech_image("watch", 4), 3, words=10).matches
        stored = ix._inverted_file()
    # An index written before words existed: the column is missing.
    db = sqlite3.connect(tmp_path / "index" / "catalogue.sqlite")
    db.execute("ALTER TABLE local_features DROP COLUMN words")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")  # format 1
    db.commit()
    db.close()
    (tmp_path / "index" / InvertedFile.FILE).unlink()  # and no saved word index
    with lookalike.Index.open(tmp_path / "index") as ix:
        rows = list(ix.catalogue.visual_words())
        assert rows and all(words is None for _, words, _ in rows)  # column added back, empty
        rebuilt = ix._inverted_file()  # quantised from the stored descriptors instead
        query = shipped_vocabulary().quantise(_descriptors("watch", 4))
        assert np.array_equal(rebuilt.search(query, 5)[0], stored.search(query, 5)[0])
        assert [m.path for m in ix.search(caltech_image("watch", 4), 3, words=10).matches] == [
            m.path for m in expected
        ]
        ix.add([photos / "airplanes"])  # new images get their words again
        assert sum(words is not None for _, words, _ in ix.catalogue.visual_words()) == 8


def test_word_index_is_saved_and_follows_the_collection(tmp_path, photos):
    folder = tmp_path / "index"
    fingerprint = shipped_vocabulary().fingerprint
    with lookalike.Index.open(folder) as ix:
        ix.add([photos / "watch"])
        built = ix._inverted_file()
        generation = ix.catalogue.generation
    saved, saved_generation = InvertedFile.load(folder, fingerprint)
    assert saved_generation == generation and np.array_equal(saved.image_ids, built.image_ids)
    assert InvertedFile.load(folder, "another-vocabulary") == (None, -1)
    query = shipped_vocabulary().quantise(_descriptors("watch", 2))
    assert np.array_equal(saved.search(query, 3)[0], built.search(query, 3)[0])
    with lookalike.Index.open(folder) as ix:
        assert np.array_equal(ix._inverted_file().image_ids, built.image_ids)  # loaded as saved
        ix.add([photos / "Leopards"])  # the catalogue changes: rebuilt and saved again
        grown = ix._inverted_file()
        assert len(grown) == 16
        assert InvertedFile.load(folder, fingerprint)[1] == ix.catalogue.generation


def test_small_changes_are_merged_into_the_word_index_without_a_rebuild(tmp_path, photos):
    folder = tmp_path / "index"
    fingerprint = shipped_vocabulary().fingerprint
    with lookalike.Index.open(folder) as ix:
        ix.add([photos / "watch", photos / "Leopards", photos / "airplanes"])
        built = ix._inverted_file()
        built_generation = ix.catalogue.generation
        new = photos / "sunflower" / "image_0001.jpg"
        ix.add([new])  # 1 image in 25: merged in, the saved file is not rebuilt
        ix.remove([photos / "watch" / "image_0002.jpg"])
        merged = ix._inverted_file()
        assert InvertedFile.load(folder, fingerprint)[1] == built_generation
        assert merged.pending == 2 and len(merged) == len(built)
        new_id = ix.catalogue.image_for_location(str(new))
        assert new_id not in built.image_ids
        assert merged.search(shipped_vocabulary().quantise(_descriptors("sunflower", 1)), 1)[0][0] == new_id
        gone = built.search(shipped_vocabulary().quantise(_descriptors("watch", 2)), 1)[0][0]
        assert gone not in merged.search(shipped_vocabulary().quantise(_descriptors("watch", 2)), 30)[0]
        # The same best match as a file built from scratch (lower ranks may differ by idf).
        ids, words = ix._stored_words()
        fresh = InvertedFile.build(ids, words, shipped_vocabulary().size)
        for label, number in (("Leopards", 3), ("airplanes", 5), ("sunflower", 1)):
            query = shipped_vocabulary().quantise(_descriptors(label, number))
            assert merged.search(query, 1)[0][0] == fresh.search(query, 1)[0][0]
        ix.add([photos / "sunflower"])  # 7 more: past the rebuild fraction, built and saved
        rebuilt = ix._inverted_file()
        assert rebuilt.pending == 0 and len(rebuilt) == 31
        assert InvertedFile.load(folder, fingerprint)[1] == ix.catalogue.generation


def test_word_candidates_are_skipped_above_the_size_limit(built_index):
    db, photos = built_index
    im = Image.open(caltech_image("Motorbikes", 5)).convert("RGB")
    w, h = im.size
    query = im.crop((int(w * 0.1), int(h * 0.15), int(w * 0.8), int(h * 0.85))).rotate(90, expand=True)
    small = lookalike.Settings(word_index_max_images=10)  # the test index has 40 images
    with lookalike.Index.open(db, settings=small) as ix:
        capped = ix.search(query, 10, rerank="none", verify=1, words=5, regions=0).matches
        assert ix._words is None  # no word index was built or loaded
        assert capped[0].path != str(photos / "Motorbikes" / "image_0005.jpg")
