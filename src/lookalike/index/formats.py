"""What the catalogue stores: how arrays are encoded in its blobs, and its row records.

One small module that the catalogue (which writes and reads the blobs) and the modules
computing them (visual words, approximate search, indexing) all import, so none of them
depends on another. Changing a dtype here changes the stored format: bump
``schema.VERSION`` with a migration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VECTOR_DTYPE = np.float16  # global descriptors: half the size of float32, ranks alike
FEATURE_POINT_DTYPE = np.float16  # keypoint coordinates, pixels at verification size (<= 2048)
DESCRIPTOR_BYTES = 32  # one ORB descriptor: 256 binary tests
WORD_DTYPE = np.uint16  # visual words: a vocabulary of up to 65,536 (32,768 shipped)


@dataclass(frozen=True)
class FileRecord:
    """A known location and the stat fields that tell whether it changed."""

    id: int
    location: str
    image_id: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class NewImage:
    """An embedded image ready to be written."""

    hash: str
    width: int
    height: int
    vector: np.ndarray
    label_ids: Sequence[int]
    label_probs: Sequence[float]


@dataclass(frozen=True)
class FileStat:
    """A location as found on disk: what indexing compares with its :class:`FileRecord`."""

    location: str
    size: int
    mtime_ns: int
