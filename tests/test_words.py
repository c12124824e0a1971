"""Visual words on real photos (lookalike.index.words): the shipped vocabulary, the inverted
file, and the word index an index keeps current with its catalogue. The word candidates of
a query (the ``words`` stage) are in test_verification.py. No timing assertions.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from PIL import Image

import lookalike
from conftest import caltech_image
from lookalike.index.words import InvertedFile, Vocabulary, shipped_vocabulary
from lookalike.settings import VerifyParams
from lookalike.verify import extract


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


def test_inverted_file_changes_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    size = 64
    words = [rng.integers(0, size, 30).astype(np.uint16) for _ in range(12)]
    ids = np.arange(1, 13, dtype=np.int64)
    built = InvertedFile.build(ids[:10], words[:10], size)
    changed = built.with_changes(ids[10:], words[10:], np.array([1, 2]))
    assert built.pending == 0 and changed.pending == 4 and len(changed) == 10
    assert changed.search(words[11], 1)[0].tolist() == [12]  # an added image is found
    assert not np.isin(changed.search(words[0], 12)[0], [1, 2]).any()  # removed ones are not
    assert built.search(words[0], 1)[0].tolist() == [1]  # the built file is unchanged
    with pytest.raises(ValueError, match="relative to a built file"):
        changed.with_changes(ids[:0], [], np.array([3]))
    with pytest.raises(ValueError, match="only a built inverted file is saved"):
        changed.save(tmp_path, 5, "vocabulary")
    built.save(tmp_path, 5, "vocabulary")
    loaded, generation = InvertedFile.load(tmp_path, "vocabulary")
    assert generation == 5 and np.array_equal(loaded.image_ids, built.image_ids)
    for query in words:
        found, scores = loaded.search(query, 4)
        expected = built.search(query, 4)
        assert np.array_equal(found, expected[0]) and np.allclose(scores, expected[1], atol=1e-6)
    assert InvertedFile.load(tmp_path, "another vocabulary") == (None, -1)
    (tmp_path / InvertedFile.FILE).write_bytes(b"damaged")
    assert InvertedFile.load(tmp_path, "vocabulary") == (None, -1)


def test_index_from_before_words_gets_them_from_its_descriptors(tmp_path, photos):
    with lookalike.Index.open(tmp_path / "index") as ix:
        ix.add([photos / "watch", photos / "Leopards"])
        expected = ix.search(caltech_image("watch", 4), 3, words=10).matches
        stored = ix.word_index()
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
        rebuilt = ix.word_index()  # quantised from the stored descriptors instead
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
        built = ix.word_index()
        generation = ix.catalogue.generation
    saved, saved_generation = InvertedFile.load(folder, fingerprint)
    assert saved_generation == generation and np.array_equal(saved.image_ids, built.image_ids)
    assert InvertedFile.load(folder, "another-vocabulary") == (None, -1)
    query = shipped_vocabulary().quantise(_descriptors("watch", 2))
    assert np.array_equal(saved.search(query, 3)[0], built.search(query, 3)[0])
    with lookalike.Index.open(folder) as ix:
        assert np.array_equal(ix.word_index().image_ids, built.image_ids)  # loaded as saved
        ix.add([photos / "Leopards"])  # the catalogue changes: rebuilt and saved again
        grown = ix.word_index()
        assert len(grown) == 16
        assert InvertedFile.load(folder, fingerprint)[1] == ix.catalogue.generation


def test_small_changes_are_merged_into_the_word_index_without_a_rebuild(tmp_path, photos):
    folder = tmp_path / "index"
    fingerprint = shipped_vocabulary().fingerprint
    with lookalike.Index.open(folder) as ix:
        ix.add([photos / "watch", photos / "Leopards", photos / "airplanes"])
        built = ix.word_index()
        built_generation = ix.catalogue.generation
        new = photos / "sunflower" / "image_0001.jpg"
        ix.add([new])  # 1 image in 25: merged in, the saved file is not rebuilt
        ix.remove([photos / "watch" / "image_0002.jpg"])
        merged = ix.word_index()
        assert InvertedFile.load(folder, fingerprint)[1] == built_generation
        assert merged.pending == 2 and len(merged) == len(built)
        new_id = ix.catalogue.image_for_location(str(new))
        assert new_id not in built.image_ids
        assert merged.search(shipped_vocabulary().quantise(_descriptors("sunflower", 1)), 1)[0][0] == new_id
        gone = built.search(shipped_vocabulary().quantise(_descriptors("watch", 2)), 1)[0][0]
        assert gone not in merged.search(shipped_vocabulary().quantise(_descriptors("watch", 2)), 30)[0]
        # The same best match as a file built from scratch (lower ranks may differ by idf).
        ids, words = ix.folder.stored_words()
        fresh = InvertedFile.build(ids, words, shipped_vocabulary().size)
        for label, number in (("Leopards", 3), ("airplanes", 5), ("sunflower", 1)):
            query = shipped_vocabulary().quantise(_descriptors(label, number))
            assert merged.search(query, 1)[0][0] == fresh.search(query, 1)[0][0]
        ix.add([photos / "sunflower"])  # 7 more: past the rebuild fraction, built and saved
        rebuilt = ix.word_index()
        assert rebuilt.pending == 0 and len(rebuilt) == 31
        assert InvertedFile.load(folder, fingerprint)[1] == ix.catalogue.generation
