"""Duplicate finding: files that hold the same picture, grouped so a person can clean up.

Three tiers, never mixed (:mod:`lookalike.dupes.groups`):

* ``exact``: one content (the same content hash) at several file locations;
* ``copies``: the same picture after editing (re-encoded, resized, cropped, rotated,
  mirrored, colour-adjusted, overlaid, framed), found among each image's nearest neighbours
  and confirmed by spatial verification of the stored local features
  (:mod:`lookalike.dupes.pairs`), not by a similarity threshold alone, and by their pixels
  once aligned (:mod:`lookalike.dupes.pixels`: nothing in the picture moved);
* ``similar``: near-identical shots of one moment (bursts, a slight change of framing),
  including those that verify like copies but in which the subject moved.

Each group suggests a file to keep, with the reason; nothing is ever deleted. Pairs a person
marks "not a duplicate" stay apart, also after re-indexing. Only the neighbourhoods of images
added since the last run are checked.
"""

from __future__ import annotations

from ..errors import LookalikeError
from ..index.folder import IndexFolder
from ..settings import DEFAULT_DUPE_LEVEL
from .groups import LEVELS, DupeFile, Group, build_groups
from .pairs import Progress, checks_in_memory, pending, update_pairs

__all__ = ["LEVELS", "DupeFile", "Group", "checks_in_memory", "find_duplicates", "pending"]


def find_duplicates(folder: IndexFolder, level: str = DEFAULT_DUPE_LEVEL, min_group: int | None = None,
                    progress: Progress | None = None, save: bool = True) -> list[Group]:
    """The duplicate groups of ``level`` in the index at ``folder`` (see the module), of at
    least ``min_group`` files (default ``Settings.dupes.min_group``). ``save`` False checks
    the images added since the last saved check without storing anything (a read-only
    answer, such as the REST API's GET), if they are few (:func:`update_pairs`)."""
    if level not in LEVELS:
        raise LookalikeError(f"unknown duplicate level {level!r}: use one of {', '.join(LEVELS)}")
    pairs = [] if level == "exact" else update_pairs(folder, progress, save)
    params = folder.settings.dupes
    return build_groups(folder.catalogue, pairs, level, params, min_group or params.min_group)
