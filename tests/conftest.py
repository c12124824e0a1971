"""Shared fixtures: real Caltech-101 photos from ../shared and a small real index."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CALTECH = REPO.parent / "shared" / "datasets" / "caltech101"
# A small deterministic subset: the first 8 photos of 5 visually distinct classes.
SUBSET_CLASSES = ("airplanes", "Leopards", "Motorbikes", "watch", "sunflower")
PER_CLASS = 8

# Build the ONNX model once for the whole run, in the repo's cache (gitignored).
os.environ.setdefault("LOOKALIKE_CACHE", str(REPO / ".cache" / "lookalike"))


def caltech_image(label: str, number: int) -> Path:
    path = CALTECH / "images" / label / f"image_{number:04d}.jpg"
    assert path.is_file(), f"missing dataset file {path}: is ../shared/datasets present?"
    return path


def copy_subset(dest: Path, classes=SUBSET_CLASSES, per_class: int = PER_CLASS) -> Path:
    """Copy the subset into ``dest/<class>/`` and return ``dest``."""
    for label in classes:
        (dest / label).mkdir(parents=True, exist_ok=True)
        for n in range(1, per_class + 1):
            shutil.copy2(caltech_image(label, n), dest / label / f"image_{n:04d}.jpg")
    return dest


@pytest.fixture(scope="session")
def built_index(tmp_path_factory):
    """A read-mostly index of the subset, built once: ``(index_path, images_dir)``."""
    import lookalike

    root = tmp_path_factory.mktemp("built")
    images = copy_subset(root / "photos")
    with lookalike.Index.open(root / "index") as index:
        report = index.add([images])
    assert report.embedded == len(SUBSET_CLASSES) * PER_CLASS
    return root / "index", images


@pytest.fixture
def photos(tmp_path) -> Path:
    """A fresh, writable copy of the subset."""
    return copy_subset(tmp_path / "photos")
