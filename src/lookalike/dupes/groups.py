"""From checked pairs to groups a person can clean up: union-find over the pairs of one
tier, the files of each group with what tells them apart, and a suggested file to keep.

Tiers never mix: ``copies`` joins only verified pairs whose aligned pixels agree (the same
picture, edited; :mod:`lookalike.dupes.pixels`);
``similar`` reports the groups that near-identical shots join *across* copy groups;
``exact`` is one content (hash) at several file locations. Pairs marked "not a duplicate"
join nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from PIL import Image

from ..errors import ImageError
from ..images import image_header
from ..index.catalogue import Catalogue
from ..index.catalogue_dupes import FileRow, PairRow
from ..query.results import path_fields
from ..settings import DUPE_LEVELS, DupesParams

LEVELS = DUPE_LEVELS


def tier(pair: PairRow, params: DupesParams) -> str | None:
    """``copies`` (spatially verified, and nothing moved once aligned), ``similar`` (verified
    but part of the picture moved: a burst; or close and partly verified) or None. A pair
    whose pixels were not compared (a file could not be read) keeps its features' verdict."""
    _, _, cosine, count, moved = pair
    if count >= params.copy_inliers:
        return "copies" if moved is None or moved <= params.pixels.max_moved else "similar"
    if count >= params.similar_inliers and cosine >= params.similar_cosine:
        return "similar"
    return None


class UnionFind:
    """Disjoint sets of image ids (path halving, union by size)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.size: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        parent.setdefault(x, x)
        self.size.setdefault(x, 1)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if self.size[ra] < self.size[rb]:
                ra, rb = rb, ra
            self.parent[rb] = ra
            self.size[ra] += self.size[rb]

    def sets(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return [sorted(members) for members in out.values()]


@dataclass
class DupeFile:
    """One file of a group: what a person compares before deciding what to keep."""

    image_id: int
    path: str
    size: int
    mtime_ns: int
    width: int
    height: int
    keep: bool = False
    format: str = ""

    def read_header(self) -> None:
        """Pixel size (as displayed) and format from the file's header: this file's own, where
        the catalogue's size is its image's first file's, or unknown (0 x 0: indexed before
        catalogue format 7). A file that cannot be read keeps the catalogue's size and the
        format its name says."""
        try:
            (self.width, self.height), self.format = image_header(self.path)
        except ImageError:
            self.format = Image.registered_extensions().get(os.path.splitext(self.path)[1].lower(), "")

    def as_dict(self) -> dict:
        modified = datetime.fromtimestamp(self.mtime_ns / 1e9, UTC)
        return {"image_id": self.image_id, **path_fields(self.path), "size": self.size,
                "width": self.width, "height": self.height,
                "modified": modified.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "format": self.format, "keep": self.keep}


@dataclass
class Group:
    """Files that hold the same picture (or, at ``similar``, the same moment). Their headers
    are read, and the file to keep chosen, when first asked for (a page of groups reads only
    its own files)."""

    level: str
    files: list[DupeFile]
    pairs: list[PairRow] = field(default_factory=list)
    _reason: str = field(default="", repr=False)

    def resolve(self) -> Group:
        if not self._reason:
            for f in self.files:
                f.read_header()
            self._reason = suggest_keep(self.files)
        return self

    @property
    def reason(self) -> str:
        """Why the suggested file is the one to keep."""
        return self.resolve()._reason

    @property
    def image_ids(self) -> list[int]:
        return sorted({f.image_id for f in self.files})

    @property
    def keep(self) -> DupeFile:
        return next(f for f in self.resolve().files if f.keep)

    def as_dict(self) -> dict:
        self.resolve()
        return {
            "level": self.level, "image_ids": self.image_ids,
            "files": [f.as_dict() for f in self.files],
            "keep": self.keep.path, "reason": self.reason,
            "pairs": [{"a": a, "b": b, "cosine": round(c, 4), "inliers": n,
                       "moved": None if m is None else round(m, 4)} for a, b, c, n, m in self.pairs],
        }


def suggest_keep(files: list[DupeFile]) -> str:
    """Mark the file to keep, best first: the largest pixel size, then the largest file,
    then the oldest; returns why, in words."""
    def rank(f: DupeFile) -> tuple:
        return (f.width * f.height, f.size, -f.mtime_ns, f.path)

    files.sort(key=rank, reverse=True)
    best, runner = files[0], files[1] if len(files) > 1 else None
    best.keep = True
    if runner is None or best.width * best.height > runner.width * runner.height:
        return f"largest pixel size ({best.width}x{best.height})"
    if best.size > runner.size:
        return f"largest file ({best.size} bytes) of the largest pixel size"
    if best.mtime_ns < runner.mtime_ns:
        return "oldest of the files with the largest pixel size and file size"
    return "first by name of identical files"


def image_sets(catalogue: Catalogue, pairs: Iterable[PairRow], level: str,
               params: DupesParams) -> list[tuple[list[int], list[PairRow]]]:
    """The images of each group of ``level`` with the pairs that join them."""
    if level == "exact":
        return [([i], []) for i in catalogue.images_with_several_files()]
    rejected = catalogue.not_duplicate_pairs()
    by_tier: dict[str, list[PairRow]] = {"copies": [], "similar": []}
    for pair in pairs:
        kind = tier(pair, params)
        if kind is not None and (pair[0], pair[1]) not in rejected:
            by_tier[kind].append(pair)
    copies = UnionFind()
    for a, b, *_ in by_tier["copies"]:
        copies.union(a, b)
    if level == "copies":
        return _with_pairs(copies, by_tier["copies"])
    joined = UnionFind()  # similar shots join copy groups; a group needs two of them
    for a, b, *_ in by_tier["similar"]:
        if copies.find(a) != copies.find(b):
            joined.union(a, b)
    for a, b, *_ in by_tier["copies"]:
        if a in joined.parent or b in joined.parent:
            joined.union(a, b)
    return _with_pairs(joined, [*by_tier["similar"], *by_tier["copies"]])


def _with_pairs(sets: UnionFind, pairs: Sequence[PairRow]) -> list[tuple[list[int], list[PairRow]]]:
    members = {root: (ids, []) for ids in sets.sets() for root in [sets.find(ids[0])]}
    for pair in pairs:
        if pair[0] in sets.parent:
            members[sets.find(pair[0])][1].append(pair)
    return [(ids, sorted(found)) for ids, found in members.values()]


def build_groups(catalogue: Catalogue, pairs: Iterable[PairRow], level: str,
                 params: DupesParams, min_group: int) -> list[Group]:
    """The groups of ``level`` with at least ``min_group`` files, most files first."""
    sets = image_sets(catalogue, pairs, level, params)
    rows: dict[int, list[FileRow]] = {}
    for row in catalogue.file_rows([i for ids, _ in sets for i in ids]):
        rows.setdefault(row[0], []).append(row)
    groups = []
    for ids, joined in sets:
        files = [DupeFile(*row) for i in ids for row in rows.get(i, [])]
        if len(files) >= max(2, min_group):
            groups.append(Group(level, files, joined))
    groups.sort(key=lambda g: (-len(g.files), min(f.path for f in g.files)))
    return groups
