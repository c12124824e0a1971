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
    return np.power(np.power(x, p).mean(axis=2), 1.0 / p)


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scale each row to unit length, so inner product is cosine similarity."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
