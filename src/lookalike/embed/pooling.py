"""Global descriptors from a convolutional feature map."""

from __future__ import annotations

import numpy as np


def gem(feature_map: np.ndarray, p: float = 3.0, eps: float = 1e-6) -> np.ndarray:
    """Generalised-mean pooling over the spatial axes of ``(N, C, h, w)``.

    ``p = 1`` is average pooling; larger ``p`` moves towards max pooling, which favours the
    strongest local responses (the object) over the background.
    """
    x = feature_map.reshape(feature_map.shape[0], feature_map.shape[1], -1)
    if p == 1.0:
        return x.mean(axis=2)
    x = np.maximum(x, eps)
    if p == 3.0:  # the default: multiplications and a cube root are 3x faster than power()
        return np.cbrt((x * x * x).mean(axis=2))
    return np.power(np.power(x, p).mean(axis=2), 1.0 / p)


def region_grid(h: int, w: int, levels: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Square windows ``(top, left, side)`` of an ``h`` x ``w`` feature map, R-MAC style.

    Level ``l`` tiles the map with ``l`` x ``l`` overlapping windows of side
    ``2 * min(h, w) / (l + 1)``: level 1 is the whole (square) map, level 2 four windows of
    about two thirds of its side, level 3 nine of about half.
    """
    windows = []
    for level in levels:
        side = max(1, min(h, w, round(2 * min(h, w) / (level + 1))))
        tops = np.linspace(0, h - side, level).round().astype(int) if level > 1 else [(h - side) // 2]
        lefts = np.linspace(0, w - side, level).round().astype(int) if level > 1 else [(w - side) // 2]
        windows += [(int(t), int(le), side) for t in tops for le in lefts]
    return windows


def regional_gem(feature_map: np.ndarray, windows, p: float = 3.0, eps: float = 1e-6) -> np.ndarray:
    """GeM descriptor of each window of one ``(C, h, w)`` feature map: ``(len(windows), C)``.

    The same numbers as :func:`gem` over each window, but the map is raised to the power
    ``p`` once: the R-MAC windows overlap, covering each cell several times.
    """
    channels = feature_map.shape[0]
    if p == 1.0:
        powered = feature_map
    else:
        x = np.maximum(feature_map, eps)
        powered = x * x * x if p == 3.0 else np.power(x, p)
    means = np.stack([powered[:, t : t + s, le : le + s].reshape(channels, -1).mean(axis=1) for t, le, s in windows])
    if p == 1.0:
        return means
    return np.cbrt(means) if p == 3.0 else np.power(means, 1.0 / p)


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scale each row to unit length, so inner product is cosine similarity."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
