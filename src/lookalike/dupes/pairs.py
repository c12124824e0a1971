"""Which image pairs may be duplicates: each image's nearest neighbours from the index's own
kNN search (the vector store: exact, HNSW or remote alike; read from the neighbour graph
instead when its file is current, as indexing leaves it where queries diffuse), and in
collections up to :attr:`DupesParams.words_max_images` the images sharing the most visual
words with it (the query cascade's word index: copies turned a quarter, whose global
descriptor changed too much), checked by spatial verification of their stored local
features. No all-pairs matrix: time and memory grow with the number of images times
:attr:`DupesParams.neighbours`. The pairs that verify as copies are also compared pixel by
pixel once aligned (:mod:`lookalike.dupes.pixels`): the only files a check reads, and only
theirs.

Checked pairs are kept in the catalogue with the image id they reach, so a later run only
checks the neighbourhoods of images added since (a pair of an old and a new image is found
from the new one's side); settings that change which pairs are checked start it afresh.
The raw measures (cosine, inliers, the share of cells that moved) are kept, so
:mod:`lookalike.dupes.groups` classifies them with the current thresholds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict

import numpy as np
from PIL import ImageOps

from ..index.catalogue_dupes import PairRow
from ..index.folder import IndexFolder
from ..index.graph import KnnGraph, nearest_neighbours
from ..settings import DupesParams
from ..verify import Fit, extract_grey, fit, grey
from .pixels import moved_share

Progress = Callable[[int, int], None]


def fingerprint(folder: IndexFolder) -> str:
    """The settings that decide which pairs are checked and what their measures mean."""
    p, v = folder.settings.dupes, folder.settings.verify
    words = p.words if len(folder.store) <= p.words_max_images else 0
    pixels = {k: x for k, x in asdict(p.pixels).items() if k != "max_moved"}  # a threshold, applied later
    return json.dumps([folder.settings.model, p.neighbours, p.min_cosine, p.mirror_cosine, words,
                       min(p.similar_inliers, p.copy_inliers), p.copy_inliers, pixels,
                       v.size, v.features, v.ratio, v.reprojection])


def kept(pair: PairRow, params: DupesParams) -> bool:
    """Whether a checked pair is worth storing: verified enough to be a copy or a similar shot."""
    return pair[3] >= min(params.similar_inliers, params.copy_inliers)


def checked_up_to(folder: IndexFolder) -> tuple[bool, int]:
    """Whether the stored pairs are void (settings changed since), and the last image id
    whose neighbourhood they cover: images with larger ids are still to check."""
    state = folder.catalogue.dupe_state()
    fresh = state.get("fingerprint") != fingerprint(folder)
    return fresh, 0 if fresh else int(state.get("checked", 0))


def pending(folder: IndexFolder) -> int:
    """Images whose neighbourhoods the stored pairs do not cover yet."""
    ids = folder.catalogue.image_ids()
    return int((ids > checked_up_to(folder)[1]).sum())


def checks_in_memory(pending_images: int, params: DupesParams) -> bool:
    """Whether a read-only answer checks the ``pending_images`` added since the last
    stored check in memory: only up to ``DupesParams.read_check_max`` of them."""
    return pending_images <= params.read_check_max


def update_pairs(folder: IndexFolder, progress: Progress | None = None, save: bool = True) -> list[PairRow]:
    """Check the neighbourhoods of the images not checked yet and return every stored pair;
    ``save`` stores what was checked (a read-only catalogue checks them in memory, every
    time). Without ``save`` (a read-only answer) at most ``DupesParams.read_check_max``
    pending images are checked in memory; more are left for a stored check, and only the
    stored pairs are returned."""
    catalogue, params = folder.catalogue, folder.settings.dupes
    current = fingerprint(folder)
    fresh, checked = checked_up_to(folder)
    ids = catalogue.image_ids()
    todo = ids[ids > checked]
    if not save and not checks_in_memory(len(todo), params):
        todo = todo[:0]
    pairs: dict[tuple[int, int], PairRow] = {} if fresh else {(p[0], p[1]): p for p in catalogue.dupe_pairs()}
    writable = save and not catalogue.readonly
    seen: set[tuple[int, int]] = set()
    starts = range(0, len(todo), params.chunk)
    chunks = [todo[start : start + params.chunk] for start in starts]
    for start, chunk, neighbours in zip(starts, chunks, neighbourhoods(folder, chunks), strict=True):
        found = [p for p in check_chunk(folder, chunk, neighbours, seen) if kept(p, params)]
        pairs.update(((p[0], p[1]), p) for p in found)
        if writable:
            state = {"fingerprint": current, "checked": str(int(chunk[-1]))}
            catalogue.save_dupe_pairs(found, state, clear=fresh and start == 0)
        if progress is not None:
            progress(start + len(chunk), len(todo))
    if writable and fresh and not len(todo):
        catalogue.save_dupe_pairs([], {"fingerprint": current, "checked": "0"}, clear=True)
    alive = set(ids.tolist())
    return [p for p in pairs.values() if p[0] in alive and p[1] in alive]


def current_graph(folder: IndexFolder) -> KnnGraph | None:
    """The saved neighbour graph when it is current with the catalogue and holds enough
    neighbours per image: its rows are the kNN search's answers, already paid for."""
    graph, generation = KnnGraph.load(folder.path, folder.store.transform.fingerprint)
    if graph is None or generation != folder.catalogue.generation or graph.k < folder.settings.dupes.neighbours:
        return None
    return graph


def neighbourhoods(folder: IndexFolder, chunks: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Each chunk's nearest neighbours (:func:`lookalike.index.graph.nearest_neighbours`):
    read from the neighbour graph when it is current, else searched in the store."""
    k, store = folder.settings.dupes.neighbours, folder.store
    graph = current_graph(folder) if chunks else None
    for chunk in chunks:
        found = graph.nearest(chunk, k) if graph is not None else None
        yield search_neighbours(store.vectors, store.inner, chunk, k) if found is None else found


def search_neighbours(vectors_of: Callable[[np.ndarray], np.ndarray], inner, chunk: np.ndarray,
                      k: int) -> np.ndarray:
    """The ``k`` nearest neighbours of ``chunk``'s images by the ``inner`` store's search
    of their vectors (``vectors_of``, in its space); an approximate store skimps on exact
    re-scoring: these are candidates for a check."""
    def rough(queries, count, candidates):
        return inner.search(queries, count, candidates, rough=True)

    return nearest_neighbours(chunk, vectors_of(chunk), rough, k)[0]


def check_chunk(folder: IndexFolder, chunk: np.ndarray, neighbours: np.ndarray,
                seen: set[tuple[int, int]]) -> list[PairRow]:
    """The pairs of ``chunk``'s images with their ``neighbours`` (a row each) and the
    images sharing the most visual words with them (each pair once per run): cosine of the
    stored descriptors, and inliers of the stored local features (the mirrored picture too,
    for close pairs that do not verify)."""
    params, store = folder.settings.dupes, folder.store
    rows = dict(zip(chunk.tolist(), neighbours.tolist(), strict=True))
    by_words: dict[int, list[int]] = {}
    if params.words and len(store) <= params.words_max_images:
        index = folder.word_index()
        for image_id, words in zip(*folder.stored_words(chunk), strict=True):
            found, _ = index.search(words, params.words, exclude=(int(image_id),))
            by_words[int(image_id)] = found.tolist()
    candidates: dict[int, list[int]] = {}
    for image_id, row in rows.items():
        for other in row + by_words.get(image_id, []):
            key = (min(image_id, other), max(image_id, other))
            if other >= 0 and key not in seen:
                seen.add(key)
                candidates.setdefault(image_id, []).append(other)
    involved = sorted({i for i in candidates} | {o for row in candidates.values() for o in row})
    if not involved:
        return []
    found, vectors = folder.catalogue.vectors_by_id(involved)  # one decode per chunk
    raw = dict(zip(found.tolist(), vectors, strict=True))
    close: dict[int, list[tuple[int, float]]] = {}
    for image_id, others in candidates.items():
        if image_id not in raw:  # removed meanwhile (another process)
            continue
        # A word candidate is verified whatever its cosine: a turned copy's can be low.
        row = [(o, float(raw[image_id] @ raw[o])) for o in others if o in raw]
        row = [(o, c) for o, c in row if c >= params.min_cosine or o in by_words.get(image_id, ())]
        if row:
            close[image_id] = row
    # Features are read for the pairs to verify only, not for every neighbour.
    verified = sorted(set(close) | {o for row in close.values() for o, _ in row})
    load = folder.feature_loader(verified)
    verifier, frames = folder.verifier, Frames(folder, verified)
    fitted: list[tuple[int, int, float, Fit]] = []
    for image_id, row in close.items():
        feats = verifier.features_of(image_id, load)
        if feats is None:  # no stored features and no readable file: nothing to verify
            continue
        fits = verifier.fits(feats, [o for o, _ in row], load)
        fitted += [(image_id, other, cosine, found) for (other, cosine), found in zip(row, fits, strict=True)]
    # The pixel checks (and mirrored fits) of the chunk's pairs, on the verifier's threads.
    measured = verifier.map(lambda pair: measure(folder, frames, *pair, load), fitted)
    return [(min(i, other), max(i, other), cosine, count, moved)
            for (i, other, cosine, _), (count, moved) in zip(fitted, measured, strict=True)]


def measure(folder: IndexFolder, frames: Frames, image_id: int, other: int, cosine: float,
            found: Fit, load) -> tuple[int, float | None]:
    """The inliers of a pair and, when it verifies as a copy, the share of cells that moved
    once aligned. A close pair is also fitted mirrored when it does not verify, or when
    something moved: a symmetric subject verifies in part against its mirror image."""
    params = folder.settings.dupes
    moved = frames.moved(image_id, other, found, False, params.copy_inliers)
    if cosine < params.mirror_cosine or (found.inliers >= params.copy_inliers and not moved):
        return found.inliers, moved
    flipped = mirrored_fit(folder, frames, image_id, other, load)
    again = frames.moved(image_id, other, flipped, True, params.copy_inliers)
    if found.inliers < params.copy_inliers:
        better = flipped.inliers > found.inliers
    else:  # it verified both ways: the way in which less moved
        better = again is not None and again < moved
    return (flipped.inliers, again) if better else (found.inliers, moved)


class Frames:
    """The grey frames (:func:`lookalike.verify.grey`, as mirrored when a fit was) of the
    pictures of a chunk's pairs that verified, for the aligned-pixel check
    (:mod:`lookalike.dupes.pixels`): each decoded once per chunk (at most: two threads may
    both decode one), and only the small frame kept. An image without a readable file has
    none. The files of ``ids`` are looked up at once, so frames load on any thread."""

    def __init__(self, folder: IndexFolder, ids: list[int]):
        self.folder = folder
        self.pictures = folder.picture_loader(ids, folder.settings.verify.size)
        self.cache: dict[tuple[int, bool], np.ndarray | None] = {}

    def frame(self, image_id: int, mirrored: bool) -> np.ndarray | None:
        key = (image_id, mirrored)
        if key not in self.cache:
            picture = self.pictures(image_id)  # (not kept: only its frame)
            if picture is not None and mirrored:
                picture = ImageOps.mirror(picture)
            self.cache[key] = None if picture is None else grey(picture, self.folder.settings.verify.size)
        return self.cache[key]

    def moved(self, first: int, second: int, found: Fit, mirrored: bool, inliers: int) -> float | None:
        """:func:`moved_share` of a pair whose fit ``found`` has at least ``inliers``
        (``first`` mirrored when the fit was); None for other pairs, and when either picture
        cannot be read: the features' verdict stands."""
        if found.inliers < inliers or found.model is None:
            return None
        a = self.frame(first, mirrored)
        b = self.frame(second, False) if a is not None else None
        if a is None or b is None:
            return None
        return moved_share(a, b, found.model, self.folder.settings.dupes.pixels)


def mirrored_fit(folder: IndexFolder, frames: Frames, image_id: int, other: int, load) -> Fit:
    """The fit of ``other``'s features against ``image_id``'s picture mirrored: local
    features do not match a mirror image, the global descriptor barely tells it apart. Only
    for close pairs that did not verify, or in which something moved. The features come
    from the mirrored frame, which the pixel check of the mirrored fit then reuses."""
    verify = folder.settings.verify
    feats = folder.verifier.features_of(other, load)
    frame = frames.frame(image_id, True) if feats is not None else None
    if frame is None:
        return Fit()
    return fit(extract_grey(frame, verify), feats, verify)
