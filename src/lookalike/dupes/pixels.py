"""Has part of the picture moved? The aligned-pixel check of a pair that verified.

Spatial verification cannot tell an edited copy from a burst shot: two shots taken a moment
apart from one spot match almost everywhere, with as many inliers as a copy. Their pixels
tell them apart. The first picture is warped onto the second by the fitted homography
(refined on the pixels themselves, ECC, when anything seems to have moved), both are
blurred a little (re-encoding and
resampling noise) and normalised by their local mean and contrast (colour, contrast and
grey edits), and compared cell by cell on a grid. In a copy every cell agrees, except where
something was drawn over it (text, a logo): new content, which no small shift explains. In a
burst the subject has moved against the background: some cells disagree *and* agree again
once their content is shifted by a few pixels. :func:`moved_share` is the share of such
cells; :mod:`lookalike.dupes.groups` calls a verified pair with more of them than
:attr:`PixelCheckParams.max_moved` a similar shot, not a copy.

Pictures are compared in the frames their local features were extracted in (the longer
side :attr:`VerifyParams.size`, :func:`lookalike.verify.grey`), where the homography lives.
"""

from __future__ import annotations

import numpy as np

from ..settings import PixelCheckParams


def moved_share(first: np.ndarray, second: np.ndarray, model: np.ndarray,
                params: PixelCheckParams) -> float | None:
    """The share of the grid cells of ``second`` (grey pixels) whose content ``first`` shows
    moved, once ``first`` is aligned by ``model`` (a homography from its frame to
    ``second``'s); None when the pictures overlap in no whole cell."""
    import cv2  # a core dependency, imported on first use like lookalike.verify's

    a, b = first.astype(np.float32), second.astype(np.float32)
    back = np.linalg.inv(model)  # second's frame -> first's
    share = _share(cv2, a, b, back, params)
    if share:  # something moved, or only seems to: the features' fit can be a few pixels off
        refined = _refined(cv2, a, b, back, params)
        if refined is not back:
            share = _share(cv2, a, b, refined, params)
    return share


def _share(cv2, a: np.ndarray, b: np.ndarray, back: np.ndarray, params: PixelCheckParams) -> float | None:
    """:func:`moved_share` with ``a`` aligned by ``back`` (``b``'s frame to ``a``'s)."""
    h, w = b.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    aligned = cv2.warpPerspective(a, back, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpPerspective(np.ones_like(a), back, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    edge = params.shift + 2  # shifted cells never reach past the overlap
    inside = cv2.erode(inside, np.ones((2 * edge + 1, 2 * edge + 1), np.uint8))
    inside[:edge], inside[-edge:], inside[:, :edge], inside[:, -edge:] = 0, 0, 0, 0
    x, y = (_normalised(cv2, p, params) for p in (aligned, b))
    cell, rows, cols = params.cell, h // params.cell, w // params.cell
    if not rows or not cols:
        return None

    def per_cell(values: np.ndarray) -> np.ndarray:  # block means (exact for whole blocks)
        return cv2.resize(values[: rows * cell, : cols * cell], (cols, rows), interpolation=cv2.INTER_AREA)

    whole = per_cell(inside) > 0.999
    if not whole.any():
        return None
    r = params.shift
    padded = cv2.copyMakeBorder(y, r, r, r, r, cv2.BORDER_REPLICATE)
    near, best = np.full((rows, cols), np.inf, np.float32), np.full((rows, cols), np.inf, np.float32)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            error = per_cell(cv2.absdiff(x, padded[r + dy : r + dy + h, r + dx : r + dx + w]))
            np.minimum(best, error, out=best)
            if max(abs(dy), abs(dx)) <= 1:  # the alignment's own slack
                np.minimum(near, error, out=near)
    # Content can only move where both pictures have some: a logo drawn on a plain sky
    # leaves a cell when shifted away, which would look like movement.
    textured = (per_cell(np.abs(x)) > params.texture) & (per_cell(np.abs(y)) > params.texture)
    moved = (near > params.residual) & (best < params.explained * near) & textured
    return float(moved[whole].mean())


def _normalised(cv2, pixels: np.ndarray, params: PixelCheckParams) -> np.ndarray:
    """Pixels less their local mean, over their local contrast (clipped): what is left after
    colour, contrast and grey edits."""
    smooth = cv2.GaussianBlur(pixels, (0, 0), params.blur)
    detail = smooth - cv2.GaussianBlur(smooth, (0, 0), params.sigma)
    contrast = np.sqrt(cv2.GaussianBlur(detail * detail, (0, 0), params.sigma))
    return np.clip(detail / (contrast + 4.0), -3.0, 3.0)


def _refined(cv2, a: np.ndarray, b: np.ndarray, back: np.ndarray, params: PixelCheckParams) -> np.ndarray:
    """``back`` (``b``'s frame to ``a``'s) refined so the pixels agree best (ECC). A
    refinement that does not converge, or moves a corner more than ``refine_max`` (a burst's
    subject pulls it away from the background), is not used: ``back`` itself is returned."""
    if params.refine <= 0:
        return back
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, params.refine, 1e-4)
    try:
        _, refined = cv2.findTransformECC(b, a, back.astype(np.float32), cv2.MOTION_HOMOGRAPHY, criteria, None, 5)
    except cv2.error:
        return back
    h, w = b.shape
    corners = np.array([[[0, 0], [w, 0], [0, h], [w, h]]], np.float64)
    refined = refined.astype(np.float64)
    shift = cv2.perspectiveTransform(corners, refined) - cv2.perspectiveTransform(corners, back)
    return refined if np.abs(shift).max() <= params.refine_max else back
