"""The aligned-pixel check of duplicate finding (lookalike.dupes.pixels) on real photos: burst
shots of one person verify like copies, but their subject moved; edited copies do not move."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

import lookalike
from conftest import caltech_image
from lookalike.dupes.pixels import moved_share
from lookalike.settings import PixelCheckParams
from lookalike.verify import grey

BURST = [("Faces", n) for n in (159, 160, 161)]  # one person, consecutive shots, one spot
MAX_MOVED = PixelCheckParams().max_moved


def frame(image: Image.Image) -> np.ndarray:
    return grey(image, 320)


def overlaid(image: Image.Image) -> Image.Image:
    image = ImageEnhance.Contrast(image).enhance(1.3)
    draw = ImageDraw.Draw(image)
    draw.rectangle((image.width * 0.7, 5, image.width * 0.95, image.height * 0.12), fill=(200, 30, 30))
    draw.text((image.width * 0.05, image.height * 0.85), "(c) holiday 2026", fill=(255, 255, 255))
    return image


@pytest.mark.parametrize("label,number", [("Leopards", 3), ("sunflower", 2), ("Faces", 159)])
def test_moved_content_counts_drawn_over_content_does_not(label, number):
    """The same photo aligned with itself moved nothing; a block of it shifted by 4 pixels
    (a subject that moved) shows; text and a logo drawn over it (new content) do not."""
    photo = Image.open(caltech_image(label, number)).convert("RGB")
    pixels = frame(photo)
    same, params = np.eye(3), PixelCheckParams()
    assert moved_share(pixels, pixels, same, params) == 0.0
    shifted = pixels.copy()
    h, w = pixels.shape
    top, left, side = h // 3, w // 3, min(h, w) // 3
    shifted[top:top + side, left + 4:left + side + 4] = pixels[top:top + side, left:left + side]
    assert moved_share(pixels, shifted, same, params) > MAX_MOVED
    assert moved_share(pixels, frame(overlaid(photo)), same, params) <= MAX_MOVED / 2


def test_burst_shots_leave_copies_for_similar(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for label, n in [*BURST, ("Leopards", 3), ("watch", 2)]:
        shutil.copy2(caltech_image(label, n), photos / f"{label}_{n}.jpg")
    leopard = Image.open(caltech_image("Leopards", 3)).convert("RGB")
    overlaid(leopard).save(photos / "leopard_overlay.jpg", quality=60)
    leopard.rotate(6, resample=Image.BICUBIC).save(photos / "leopard_turned.jpg")
    with lookalike.Index.open(tmp_path / "index") as index:
        index.add([photos])
        copies = [{Path(f.path).name for f in g.files} for g in index.duplicates("copies")]
        similar = [{Path(f.path).name for f in g.files} for g in index.duplicates("similar")]
        pairs = index.catalogue.dupe_pairs()
        ids = sorted({i for pair in pairs for i in pair[:2]})
        names = {i: Path(where[0]).name for i, where in index.catalogue.locations_for(ids).items()}
    assert copies == [{"Leopards_3.jpg", "leopard_overlay.jpg", "leopard_turned.jpg"}]
    shots = {f"{label}_{n}.jpg" for label, n in BURST}
    assert shots in similar
    burst = [p for p in pairs if {names[p[0]], names[p[1]]} <= shots]
    assert len(burst) >= 2 and all(n >= index.settings.dupes.copy_inliers for _, _, _, n, _ in burst)
    assert all(moved > MAX_MOVED for *_, moved in burst)  # they verify; their pixels tell
