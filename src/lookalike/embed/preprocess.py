"""Turn decoded images into the network's input tensor, following a :class:`PreprocessConfig`."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .registry import PreprocessConfig

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def to_tensor(image: Image.Image, config: PreprocessConfig, *, size: int | None = None) -> np.ndarray:
    """Resize an RGB image to a square and normalise it: float32 ``(3, size, size)``.

    ``size`` overrides the config's size (multi-scale descriptors). Pillow's resize filters
    are anti-aliased when shrinking, so large photos do not alias.
    """
    side = size or config.size
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (side, side):
        image = image.resize((side, side), _RESAMPLE[config.resample], reducing_gap=3.0)
    pixels = np.asarray(image, dtype=np.float32)
    pixels = (pixels - config.mean) * (1.0 / config.std)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def stack(tensors: list[np.ndarray]) -> np.ndarray:
    """Stack per-image tensors into one contiguous batch."""
    return np.stack(tensors, axis=0)
