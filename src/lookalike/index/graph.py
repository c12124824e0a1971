"""The collection's k-nearest-neighbour graph, which diffusion re-ranks on.

Index-time data, kept in the index folder (``knn-graph.npz``) with the catalogue generation it
reflects and *synchronised* by id when the collection changes (new images get their
neighbours, removed ones are dropped), so it follows incremental adds and removes without a
rebuild. Each image stores its ``graph_pool`` nearest neighbours; diffusion walks the
``graph_k`` best of them by hubness-corrected similarity, kept only where both ends link
(:meth:`KnnGraph.links`). Diffusion itself (Iscen et al., CVPR 2017) runs on the sparse mutual
links among a query's first matches (:meth:`KnnGraph.diffuse`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..settings import RerankParams
from .files import load_with_meta, save_with_meta

# ids -> their vectors in the store's space, rows in the order asked.
VectorsOf = Callable[[np.ndarray], np.ndarray]
# (queries, k, candidates) -> (scores, ids), as VectorStore.search.
SearchFn = Callable[[np.ndarray, int, "np.ndarray | None"], tuple[np.ndarray, np.ndarray]]
# (images linked so far, images to link), called after each chunk of neighbour searches.
LinkProgress = Callable[[int, int], None]
# Images whose neighbours are searched at once: the scores of a chunk against the whole
# collection (and their top-k positions) are the graph build's largest allocation.
SEARCH_CHUNK = 256


class KnnGraph:
    """Each image's ``k`` nearest neighbours (ids and cosine similarities), by image id.

    Rows are kept sorted by id. Missing neighbours (after removals) are ``-1`` with
    similarity ``-inf``; they are refilled the next time the graph is rebuilt. Diffusion
    does not use these raw lists directly but the hubness-corrected links drawn from them
    (:meth:`links`).
    """

    FILE = "knn-graph.npz"

    def __init__(self, ids: np.ndarray, neighbours: np.ndarray, sims: np.ndarray, fingerprint: str = ""):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.neighbours = np.asarray(neighbours, dtype=np.int64)
        self.sims = _as_saved(sims)
        self.fingerprint = fingerprint
        self._links: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self.links_saved = False  # its file holds the default links (older files do not)
        order = np.argsort(self.ids, kind="stable")
        if len(order) and np.any(order != np.arange(len(order))):
            self.ids, self.neighbours, self.sims = self.ids[order], self.neighbours[order], self.sims[order]

    @property
    def k(self) -> int:
        return self.neighbours.shape[1] if self.neighbours.ndim == 2 else 0

    def __len__(self) -> int:
        return len(self.ids)

    # --- building and keeping current -------------------------------------------------
    @classmethod
    def build(
        cls, ids: np.ndarray, vectors_of: VectorsOf, search: SearchFn, k: int,
        fingerprint: str = "", chunk: int = SEARCH_CHUNK, progress: LinkProgress | None = None,
    ) -> KnnGraph:
        ids = np.sort(np.asarray(ids, dtype=np.int64))
        nbrs = np.full((len(ids), k), -1, dtype=np.int64)
        sims = np.full((len(ids), k), -np.inf, dtype=np.float32)
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            n, s = nearest_neighbours(part, vectors_of(part), search, k)
            nbrs[start : start + len(part)], sims[start : start + len(part)] = n, s
            if progress is not None:
                progress(start + len(part), len(ids))
        return cls(ids, nbrs, sims, fingerprint)

    def sync(
        self, current: np.ndarray, vectors_of: VectorsOf, search: SearchFn,
        progress: LinkProgress | None = None,
    ) -> bool:
        """Follow the collection: drop removed ids, link added ones. True if anything changed."""
        current = np.sort(np.asarray(current, dtype=np.int64))
        gone = ~np.isin(self.ids, current)
        added = current[~np.isin(current, self.ids)]
        if not gone.any() and not len(added):
            return False
        self._links.clear()
        if gone.any():
            dead = self.ids[gone]
            self.ids, self.neighbours, self.sims = self.ids[~gone], self.neighbours[~gone], self.sims[~gone]
            stale = np.isin(self.neighbours, dead)
            self.neighbours[stale], self.sims[stale] = -1, -np.inf
        if len(added):
            k = self.k
            nbrs, sims = [], []
            for start in range(0, len(added), SEARCH_CHUNK):
                part = added[start : start + SEARCH_CHUNK]
                n, s = nearest_neighbours(part, vectors_of(part), search, k)
                nbrs.append(n)
                sims.append(s)
                if progress is not None:
                    progress(start + len(part), len(added))
            new_n, new_s = np.concatenate(nbrs), _as_saved(np.concatenate(sims))
            self.ids = np.concatenate([self.ids, added])
            self.neighbours = np.concatenate([self.neighbours, new_n])
            self.sims = np.concatenate([self.sims, new_s])
            order = np.argsort(self.ids, kind="stable")
            self.ids, self.neighbours, self.sims = self.ids[order], self.neighbours[order], self.sims[order]
            # Reverse links: a new image enters an older image's list if it beats the worst.
            new_set = set(added.tolist())
            for u, row_n, row_s in zip(added, new_n, new_s, strict=True):
                for v, s in zip(row_n, row_s, strict=True):
                    if v < 0 or int(v) in new_set:
                        continue
                    r = int(np.searchsorted(self.ids, v))
                    worst = int(np.argmin(self.sims[r]))
                    if s > self.sims[r, worst] and u not in self.neighbours[r]:
                        self.neighbours[r, worst], self.sims[r, worst] = u, s
        return True

    def nearest(self, ids: np.ndarray, k: int) -> np.ndarray | None:
        """The ``k`` most similar stored neighbours of each of ``ids``, best first (-1 where
        a row holds fewer): what a search for them would find, read instead of searched
        (rows stay in search order; those :meth:`sync` changed are re-sorted). None when an
        id is not in the graph."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self.ids) or k > self.k:
            return None
        rows = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        if np.any(self.ids[rows] != ids):
            return None
        nbrs = self.neighbours[rows]
        sims = np.where(nbrs >= 0, self.sims[rows], -np.inf)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(nbrs, order, axis=1)
        return np.where(np.isfinite(np.take_along_axis(sims, order, axis=1)), best, -1)

    # --- persistence -----------------------------------------------------------------
    def save(self, folder: Path, generation: int, params: RerankParams | None = None) -> None:
        """Write the graph, with its mutual links for ``params`` (the defaults) so that a
        fresh process (a CLI search) reads them instead of working them out."""
        params = params or RerankParams()
        rows, weights = self._mutual_links(params.graph_k, params.hub_k)
        save_with_meta(
            Path(folder) / self.FILE, {"generation": generation, "fingerprint": self.fingerprint},
            ids=self.ids, neighbours=self.neighbours.astype(np.int64), sims=self.sims.astype(np.float16),
            link_params=np.array([params.graph_k, params.hub_k]),
            link_rows=rows.astype(np.int32), link_weights=weights.astype(np.float32),
        )
        self.links_saved = True

    @classmethod
    def load(cls, folder: Path, fingerprint: str) -> tuple[KnnGraph | None, int]:
        """The saved graph and the generation it reflects, or ``(None, -1)``."""
        names = ("ids", "neighbours", "sims")
        saved = load_with_meta(
            Path(folder) / cls.FILE, names, ("link_params", "link_rows", "link_weights"),
            mapped=True, fingerprint=fingerprint,
        )
        if saved is None:
            return None, -1
        arrays, generation = saved
        graph = cls(arrays["ids"], arrays["neighbours"], arrays["sims"], fingerprint)
        if "link_weights" in arrays and len(arrays["link_rows"]) == len(graph):
            keep, hub_k = (int(v) for v in arrays["link_params"])
            graph._links[("mutual", keep, hub_k)] = (
                arrays["link_rows"].astype(np.int64), arrays["link_weights"]
            )
            graph.links_saved = True
        return graph, generation

    # --- hubness-corrected links ---------------------------------------------------
    def links(self, keep: int, hub_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's ``keep`` best neighbours by CSLS similarity, and those similarities.

        In high dimensions some images (hubs) are close to very many others and crowd into
        everyone's neighbour list, while others (anti-hubs) are in nobody's; a graph built
        on raw similarity spreads diffusion through the hubs. Cross-domain similarity local
        scaling (Conneau et al., 2018; the contextual dissimilarity of Jegou et al., 2007)
        corrects each similarity by how close both images are to their own neighbourhoods:
        ``s(x, y) - (r(x) + r(y)) / 2``, with ``r`` the mean similarity of an image to its
        ``hub_k`` nearest neighbours; the mean ``r`` is added back so that weights stay on
        the cosine scale that ``gamma`` expects. The links are the ``keep`` best of each
        stored list under that score (``hub_k`` 0: by raw similarity); what it gains is in
        docs/descriptor.md, "Hubness-corrected links". Computed once per graph state and
        cached (the default links are also saved with the graph, see :meth:`save`).
        """
        key = (keep, hub_k)
        if key not in self._links:
            self._links[key] = self._corrected_links(keep, hub_k)
        return self._links[key]

    def _corrected_links(self, keep: int, hub_k: int) -> tuple[np.ndarray, np.ndarray]:
        n, pool = self.neighbours.shape if self.neighbours.ndim == 2 else (len(self.ids), 0)
        if n == 0 or pool == 0:
            return self.neighbours, self.sims
        rows = self._rows_of(self.neighbours)
        valid = (self.neighbours >= 0) & np.isfinite(self.sims) & (self.ids[rows] == self.neighbours)
        raw = np.where(valid, self.sims, -np.inf)
        corrected = raw
        if hub_k > 0:
            top = -np.partition(-raw, min(hub_k, pool) - 1, axis=1)[:, : min(hub_k, pool)]
            finite = np.isfinite(top)
            hubness = np.where(finite, top, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
            corrected = raw - (hubness[:, None] + hubness[rows]) / 2 + hubness.mean()
        corrected = np.where(valid, corrected, -np.inf).astype(np.float32)
        if keep >= pool:
            return self.neighbours, corrected
        best = np.argpartition(-corrected, keep - 1, axis=1)[:, :keep]
        return (np.take_along_axis(self.neighbours, best, axis=1),
                np.take_along_axis(corrected, best, axis=1))

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The row of each id (any row, clipped, where the id is not in the graph: check it).

        Image ids are SQLite row ids, dense from 1, so a lookup table replaces a binary
        search over the whole graph's lists, many times faster; sparse ids fall back to
        the search.
        """
        n = len(self.ids)
        top = int(self.ids[-1]) if n else -1
        if n == 0 or top >= 4 * n + 1024 or int(self.ids[0]) < 0:
            return np.clip(np.searchsorted(self.ids, ids), 0, max(n - 1, 0))
        table = np.zeros(top + 2, dtype=np.int64)  # ids outside [0, top] read row 0
        table[self.ids] = np.arange(n)
        return table[np.clip(ids, -1, top + 1)]

    # --- diffusion -------------------------------------------------------------------
    def diffuse(
        self, ids: np.ndarray, scores: np.ndarray, params: RerankParams, exclude: int | None = None
    ) -> np.ndarray:
        """Re-order ``ids`` (a first ranking, best first) by diffusion from its top matches.

        The first ``params.depth`` ids are re-ordered; any beyond keep their order after them.
        """
        ids = np.asarray(ids, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        if exclude is not None:
            keep = ids != exclude
            ids, scores = ids[keep], scores[keep]
        head, head_scores, tail = ids[: params.depth], scores[: params.depth], ids[params.depth :]
        n = len(head)
        if n < 2:
            return ids
        src, dst, weight = self._mutual_edges(head, params)
        degree = np.bincount(src, weights=weight, minlength=n).astype(np.float32)
        inv = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0).astype(np.float32)
        weight = weight * inv[src] * inv[dst]
        seeds = np.zeros(n, dtype=np.float32)
        m = min(params.diffusion_seeds, n)
        seeds[:m] = np.maximum(head_scores[:m], 0) ** params.gamma
        # f <- alpha * W f + seeds, W sparse and symmetric. The links come grouped by source
        # (src ascending), so one reduceat per step sums each row (2x faster than bincount).
        starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]]) if len(src) else src
        rows, f = src[starts], seeds.astype(np.float64)
        for _ in range(params.iterations if len(src) else 0):
            step = seeds.astype(np.float64)
            step[rows] += params.diffusion_alpha * np.add.reduceat(weight * f[dst], starts)
            f = step
        new_head = head[np.argsort(-f, kind="stable")]
        return np.concatenate([new_head, tail])

    def _mutual_edges(self, head: np.ndarray, params: RerankParams) -> tuple[np.ndarray, ...]:
        """The mutual links among ``head``, as positions ``src -> dst`` in ``head`` and
        weights ``csls**gamma``: the sparse form of ``min(A, A.T)`` of the links' matrix,
        with ``src`` ascending.

        Kept sparse (at most ``graph_k`` links per image) so that diffusion's cost grows
        with the number of links, not with the square of ``depth``.
        """
        n = len(head)
        if n == 0 or len(self.ids) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        rows = self._rows_of(head)
        known = np.flatnonzero(self.ids[rows] == head)
        link_rows, weights = self._mutual_links(params.graph_k, params.hub_k)
        position = np.full(len(self.ids), -1, dtype=np.int64)  # graph row -> place in head
        position[rows[known]] = known
        dst = position[link_rows[rows[known]]]
        w = weights[rows[known]]
        inside = (dst >= 0) & (w > 0)
        src = np.repeat(known, dst.shape[1]).reshape(dst.shape)[inside]
        return src, dst[inside], w[inside] ** params.gamma

    def _mutual_links(self, keep: int, hub_k: int) -> tuple[np.ndarray, np.ndarray]:
        """The links (:meth:`links`) as graph rows, each weighted by the smaller of its two
        directions and ``-inf`` where the other end does not link back (or is missing).
        Cached with the links: a query then only looks up its candidates' rows."""
        key = ("mutual", keep, hub_k)
        if key not in self._links:
            linked, weights = self.links(keep, hub_k)  # -inf where there is no link
            n = len(self.ids)
            valid = np.isfinite(weights)
            rows = np.where(valid, self._rows_of(linked), -1) if n else linked
            # Find each link's reverse: codes source * (n + 1) + target, sorted once.
            source = np.arange(n)[:, None]
            code = np.where(valid, source * (n + 1) + rows, -1).ravel()
            back = (rows * (n + 1) + source).ravel()
            by_code = np.argsort(code)
            at = by_code[np.clip(np.searchsorted(code[by_code], back), 0, max(code.size - 1, 0))]
            mutual = valid & (code[at] == back).reshape(valid.shape) if code.size else valid
            both = np.minimum(weights, weights.ravel()[at].reshape(valid.shape)) if code.size else weights
            self._links[key] = (np.where(mutual, rows, -1), np.where(mutual, both, -np.inf).astype(np.float32))
        return self._links[key]


def _as_saved(sims: np.ndarray) -> np.ndarray:
    """Similarities at the precision the graph file keeps (float16), as float32: a graph
    built in this process then links and diffuses exactly as the same graph read back."""
    return np.asarray(sims, dtype=np.float16).astype(np.float32)


def nearest_neighbours(
    ids: np.ndarray, vectors: np.ndarray, search: SearchFn, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours of each id (itself excluded), padded with -1 / -inf."""
    scores, found = search(vectors, k + 1, None)
    nbrs = np.full((len(ids), k), -1, dtype=np.int64)
    sims = np.full((len(ids), k), -np.inf, dtype=np.float32)
    for r, image_id in enumerate(ids):
        keep = found[r] != image_id
        row_ids, row_s = found[r][keep][:k], scores[r][keep][:k]
        nbrs[r, : len(row_ids)], sims[r, : len(row_ids)] = row_ids, row_s
    return nbrs, sims
