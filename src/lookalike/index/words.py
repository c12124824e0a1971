"""Visual words: a bag-of-words search over the stored ORB features.

The global CNN descriptor finds most edited copies of a photo, but it fails where the picture
itself changed a lot for the network: a copy shrunk to a thumbnail, a small crop, heavy blur,
a photo re-photographed at an angle. Local features still match in those cases, and
spatial verification (:mod:`lookalike.verify`) accepts the original when it is among the
candidates it checks. This module supplies such candidates, the classic way (Sivic and
Zisserman's "Video Google"; Nistér and Stewénius's vocabulary tree; DBoW2 for ORB):

* a :class:`Vocabulary` tree of binary centroids (32 branches, 3 levels: 32,768 words) maps
  each 256-bit ORB descriptor to a word, by Hamming distance, in about 2 µs;
* an :class:`InvertedFile` lists the images that contain each word and ranks a query's
  word set by tf-idf cosine (binary term frequencies, idf from the collection).

The vocabulary ships with the package (``orb-words-32x3.npz``, 1.1 MB). It was trained by
:func:`main` on ORB descriptors of Caltech-101 photos; ORB vocabularies transfer between
image collections (a vocabulary trained on half the Caltech classes ranks copies of photos
from the other half as well as from its own half: docs/descriptor.md), so it is not refitted
per collection, and words computed at index time stay valid.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .files import load_with_meta, save_with_meta
from .formats import DESCRIPTOR_BYTES, WORD_DTYPE

VOCABULARY_FILE = Path(__file__).with_name("orb-words-32x3.npz")


class Vocabulary:
    """A tree of binary centroids: ``levels[l]`` holds ``branching ** (l + 1)`` descriptors,
    the children of node ``n`` of level ``l - 1`` being rows ``n * branching ...``."""

    def __init__(self, levels: Sequence[np.ndarray], branching: int):
        self.branching = branching
        self.levels = [np.ascontiguousarray(c, dtype=np.uint8) for c in levels]
        for depth, centroids in enumerate(self.levels):
            if centroids.shape != (branching ** (depth + 1), DESCRIPTOR_BYTES):
                raise ValueError(f"vocabulary level {depth} has shape {centroids.shape}")
        # Per parent node, its children as (4 x 64-bit words) x branching, so one gather gives
        # every descriptor's candidate children in the layout the XOR/popcount wants.
        self._children = [
            np.ascontiguousarray(
                c.view(np.uint64).reshape(-1, branching, DESCRIPTOR_BYTES // 8).transpose(0, 2, 1)
            )
            for c in self.levels
        ]

    @property
    def size(self) -> int:
        """Number of words (leaves)."""
        return self.branching ** len(self.levels)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Identifies the centroids, so saved word data is never read with another tree."""
        digest = hashlib.sha256(np.int64(self.branching).tobytes())
        for centroids in self.levels:
            digest.update(centroids.tobytes())
        return digest.hexdigest()[:16]

    def quantise(self, descriptors: np.ndarray) -> np.ndarray:
        """The word of each ORB descriptor ``(N, 32) uint8``, descending the tree greedily."""
        descriptors = np.ascontiguousarray(descriptors, dtype=np.uint8).reshape(-1, DESCRIPTOR_BYTES)
        bits = descriptors.view(np.uint64)[:, :, None]
        node = np.zeros(len(descriptors), dtype=np.intp)
        for children in self._children:
            diff = children[node]  # (N, 4, branching) uint64
            diff ^= bits
            counts = np.bitwise_count(diff)
            distance = counts[:, 0] + counts[:, 1]
            distance += counts[:, 2]
            distance += counts[:, 3]
            node = node * self.branching + distance.argmin(axis=1)
        return node.astype(WORD_DTYPE)

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path, branching=np.int64(self.branching), **{f"level{i}": c for i, c in enumerate(self.levels)}
        )

    @classmethod
    def load(cls, path: Path = VOCABULARY_FILE) -> Vocabulary:
        with np.load(path) as data:
            depth = sum(1 for name in data.files if name.startswith("level"))
            return cls([data[f"level{i}"] for i in range(depth)], int(data["branching"]))

    @classmethod
    def train(
        cls, descriptors: np.ndarray, *, branching: int = 32, levels: int = 3,
        iterations: int = 5, seed: int = 0,
    ) -> Vocabulary:
        """Hierarchical k-majority clustering (k-means for bit strings) of ``descriptors``."""
        rng = np.random.default_rng(seed)
        descriptors = np.ascontiguousarray(descriptors, dtype=np.uint8)
        groups: list[np.ndarray] = [descriptors]
        tree: list[np.ndarray] = []
        for _ in range(levels):
            centroids, next_groups = [], []
            for members in groups:
                if len(members) < branching:  # a sparse branch: pad with random descriptors
                    members = np.concatenate(
                        [members, descriptors[rng.choice(len(descriptors), branching)]]
                    )
                found, assignment = _k_majority(members, branching, iterations, rng)
                centroids.append(found)
                next_groups += [members[assignment == j] for j in range(branching)]
            tree.append(np.concatenate(centroids))
            groups = next_groups
        return cls(tree, branching)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances between two sets of 32-byte descriptors."""
    x = np.bitwise_xor(a.view(np.uint64)[:, None, :], b.view(np.uint64)[None, :, :])
    return np.bitwise_count(x).sum(axis=2, dtype=np.int32)


def _nearest(members: np.ndarray, centroids: np.ndarray, chunk: int = 8192) -> np.ndarray:
    return np.concatenate(
        [_hamming(members[s : s + chunk], centroids).argmin(axis=1) for s in range(0, len(members), chunk)]
    )


def _k_majority(members: np.ndarray, k: int, iterations: int, rng) -> tuple[np.ndarray, np.ndarray]:
    centroids = members[rng.choice(len(members), k, replace=False)].copy()
    bits = np.unpackbits(members, axis=1)
    assignment = _nearest(members, centroids)
    for _ in range(iterations):
        for j in range(k):
            mine = assignment == j
            if mine.any():  # each bit by majority vote of the cluster's members
                centroids[j] = np.packbits(bits[mine].mean(axis=0) > 0.5)
        assignment = _nearest(members, centroids)
    return centroids, assignment


@functools.cache
def shipped_vocabulary() -> Vocabulary:
    """The vocabulary that ships with lookalike (loaded once per process)."""
    return Vocabulary.load(VOCABULARY_FILE)


class InvertedFile:
    """Which images contain each visual word; ranks images by tf-idf cosine to a query.

    Built from every image's word set (4 bytes per distinct word of an image) and saved
    in the index folder with
    the catalogue generation it reflects, so a new process (a CLI search) loads it instead.
    A changed collection is followed without a rebuild (:meth:`with_changes`): added images
    go into a small second file scored with this file's idf, removed ones are masked.
    """

    FILE = "words-index.npz"

    def __init__(
        self, image_ids: np.ndarray, postings: np.ndarray, starts: np.ndarray, norms: np.ndarray,
        idf: np.ndarray | None = None,
    ):
        self.image_ids = np.asarray(image_ids, dtype=np.int64)
        self._postings = np.asarray(postings, dtype=np.int32)  # row numbers, grouped by word
        self._starts = np.asarray(starts, dtype=np.int64)  # word w: postings[starts[w]:starts[w+1]]
        self._norms = np.asarray(norms, dtype=np.float64)
        self.size = len(self._starts) - 1
        if idf is None:
            frequency = np.diff(self._starts)
            idf = np.log(max(len(self.image_ids), 1) / np.maximum(frequency, 1))
        self._idf = np.asarray(idf, dtype=np.float32)
        self._added: InvertedFile | None = None  # images added since this file was built
        self._removed = np.zeros(0, dtype=np.int64)  # ids of this file's images since removed

    @classmethod
    def build(
        cls, image_ids: np.ndarray, words: Sequence[np.ndarray], size: int,
        idf: np.ndarray | None = None,
    ) -> InvertedFile:
        """The inverted file of ``words[i]`` (any order, repeats allowed) of ``image_ids[i]``,
        weighted by ``idf`` (default: learned from these images)."""
        count = len(image_ids)
        lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
        owners = np.repeat(np.arange(count, dtype=np.int64), lengths)
        flat = np.concatenate(words).astype(np.int64) if len(words) else np.zeros(0, np.int64)
        # One sort of (word, image) keys gives the postings grouped by word, each image once.
        keys = np.sort(flat * max(count, 1) + owners)  # (np.unique is 50x slower here)
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys
        word_of, owner_of = keys // max(count, 1), keys % max(count, 1)
        starts = np.searchsorted(word_of, np.arange(size + 1))
        if idf is None:
            idf = np.log(max(count, 1) / np.maximum(np.diff(starts), 1)).astype(np.float32)
        norms = np.sqrt(np.bincount(owner_of, weights=idf[word_of] ** 2, minlength=count))
        return cls(image_ids, owner_of, starts, norms, idf)

    def with_changes(
        self, added_ids: np.ndarray, added_words: Sequence[np.ndarray], removed_ids: np.ndarray
    ) -> InvertedFile:
        """This file followed by ``added_ids`` (with their words) and ``removed_ids``, in
        time proportional to the change. Scores use this file's idf, which drifts from the
        collection's as it changes: rebuild when the change is a sizeable part of it."""
        if self.pending:
            raise ValueError("changes are taken relative to a built file, not a changed one")
        changed = InvertedFile(self.image_ids, self._postings, self._starts, self._norms, self._idf)
        changed._removed = np.unique(np.asarray(removed_ids, dtype=np.int64))
        if len(added_ids):
            changed._added = InvertedFile.build(added_ids, added_words, self.size, idf=self._idf)
        return changed

    @property
    def pending(self) -> int:
        """Images added or removed since this file was built."""
        return len(self._removed) + (len(self._added) if self._added is not None else 0)

    def save(self, folder: Path, generation: int, vocabulary: str) -> None:
        if self.pending:
            raise ValueError("only a built inverted file is saved; rebuild it to fold in changes")
        save_with_meta(
            Path(folder) / self.FILE, {"generation": generation, "vocabulary": vocabulary},
            ids=self.image_ids, postings=self._postings, starts=self._starts,
            norms=self._norms.astype(np.float32), idf=self._idf,
        )

    @classmethod
    def load(cls, folder: Path, vocabulary: str) -> tuple[InvertedFile | None, int]:
        """The saved file and the catalogue generation it reflects, or ``(None, -1)``."""
        names = ("ids", "postings", "starts", "norms", "idf")
        saved = load_with_meta(Path(folder) / cls.FILE, names, mapped=True, vocabulary=vocabulary)
        if saved is None:
            return None, -1
        return cls(*(saved[0][name] for name in names)), saved[1]

    def __len__(self) -> int:
        added = len(self._added) if self._added is not None else 0
        return len(self.image_ids) - len(self._removed) + added

    def search(
        self, words: np.ndarray, k: int, *, allowed: np.ndarray | None = None,
        exclude: Sequence[int] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` images whose word sets are closest to ``words``: ``(ids, scores)``."""
        query = np.sort(np.asarray(words, dtype=np.int64))
        query = query[np.concatenate(([True], query[1:] != query[:-1]))] if len(query) else query
        if not len(self) or not len(query):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        norm = max(float(np.sqrt((self._idf[query] ** 2).sum())), 1e-12)
        ids, scores = self.image_ids, self._scores(query) / norm
        if self._added is not None:
            ids = np.concatenate([ids, self._added.image_ids])
            scores = np.concatenate([scores, self._added._scores(query) / norm])
        dropped = np.concatenate([self._removed, np.asarray(list(exclude), dtype=np.int64)])
        if len(dropped):
            scores[np.isin(ids, dropped)] = 0.0
        if allowed is not None:
            scores[~np.isin(ids, allowed)] = 0.0
        k = min(k, int((scores > 0).sum()))
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return ids[best], scores[best].astype(np.float32)

    def _scores(self, query: np.ndarray) -> np.ndarray:
        """Each image's idf-weighted overlap with the distinct words ``query``, over its norm."""
        begins, ends = self._starts[query], self._starts[query + 1]
        lengths = ends - begins
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(len(self.image_ids))
        # Every posting of every query word, in word order: copied list by list instead of
        # gathered through an offset per posting (faster; the same order, so the same sums).
        postings = np.concatenate([self._postings[b:e] for b, e in zip(begins.tolist(), ends.tolist(), strict=True)])
        weight = np.repeat(self._idf[query] ** 2, lengths)
        scores = np.bincount(postings, weights=weight, minlength=len(self.image_ids))
        return scores / np.maximum(self._norms, 1e-12)


def main(argv: list[str] | None = None) -> None:
    """Train the shipped vocabulary from folders of photos (run from a source checkout):

    ``python -m lookalike.index.words ../shared/datasets/caltech101/images``
    """
    from PIL import Image

    from ..images import load_image
    from ..verify import VerifyParams, extract

    parser = argparse.ArgumentParser(description="train the ORB vocabulary tree")
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--sample", type=int, default=400_000, help="descriptors to cluster")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=VOCABULARY_FILE)
    args = parser.parse_args(argv)
    params = VerifyParams()
    paths = sorted(p for folder in args.folders for p in folder.rglob("*.jpg"))
    parts = []
    for path in paths:
        image: Image.Image = load_image(path, target_size=params.size * 3 // 4)
        descriptors = extract(image, params).descriptors
        if descriptors is not None:
            parts.append(descriptors)
    descriptors = np.concatenate(parts)
    rng = np.random.default_rng(args.seed)
    sample = descriptors[rng.choice(len(descriptors), min(args.sample, len(descriptors)), replace=False)]
    vocabulary = Vocabulary.train(sample, seed=args.seed)
    vocabulary.save(args.out)
    print(f"{len(paths)} photos, {len(descriptors)} descriptors, {len(sample)} clustered -> {args.out}")


if __name__ == "__main__":
    main()
