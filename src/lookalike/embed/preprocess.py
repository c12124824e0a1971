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


def to_tensor(
    image: Image.Image, config: PreprocessConfig, *, size: int | None = None
) -> np.ndarray:
    """Resize an RGB image to a square and normalise it: float32 ``(3, size, size)``.

    ``size`` overrides the config's size (multi-scale descriptors). Pillow's resize filters
    are anti-aliased when shrinking, so large photos do not alias.
    """
    pixels = resize_square(image, config, size=size)
    return normalise(pixels[None], config)[0]


def resize_square(
    image: Image.Image, config: PreprocessConfig, *, size: int | None = None
) -> np.ndarray:
    """The resized picture as uint8 ``(size, size, 3)``: a quarter of the float tensor's bytes,
    which is how decoded images wait in the indexing pipeline."""
    side = size or config.size
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (side, side):
        image = image.resize((side, side), _RESAMPLE[config.resample], reducing_gap=3.0)
    return np.asarray(image)


def normalise(
    pixels: np.ndarray, config: PreprocessConfig, out: np.ndarray | None = None
) -> np.ndarray:
    """uint8 ``(N, S, S, 3)`` to the network's float32 ``(N, 3, S, S)``, written into ``out``
    (e.g. a reused batch buffer) in two passes, without per-image temporaries."""
    pixels = np.asarray(pixels)
    chw = pixels.transpose(0, 3, 1, 2)
    if out is None:
        out = np.empty(chw.shape, dtype=np.float32)
    np.subtract(chw, np.float32(config.mean), out=out, dtype=np.float32)
    out *= np.float32(1.0 / config.std)
    return out


def stack(tensors: list[np.ndarray]) -> np.ndarray:
    """Stack per-image tensors into one contiguous batch."""
    return np.stack(tensors, axis=0)
