"""Spatial verification: do the top matches show the *same* picture as the query?

A global descriptor says "similar"; it cannot tell the original of an edited copy from another
photo of the same kind of thing. Spatial verification can: local features (OpenCV ORB) of the
query and of each of the first ``top`` matches are matched, and a homography is fitted with
RANSAC. A match is *verified* (the same picture) when the homography explains at least
``min_inliers`` matching points at distinct positions and nearly all of the descriptor
matches where the two pictures overlap (``min_share``): photos of one spotted coat, printed
dial or tiled roof agree in a few places by chance, a copy agrees almost everywhere (docs/benchmarks.md, "Spatial
verification"). Verified matches move to the top (most matching points first), and everything
else keeps its order.
Class-level results, where nothing verifies, are therefore left exactly as they were.

Candidates' local features are computed while indexing and stored in the catalogue
(``Settings.local_features``), so a query reads no candidate files; images indexed without
them are read from their files at a reduced size, and such files that have gone or cannot be
decoded are not verified. Features are kept in a small in-memory cache, so a server
answering related queries reads each once. The query stages that use this module are in
:mod:`lookalike.query.verification`.

OpenCV (``opencv-python-headless``) is imported on first use.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .errors import LookalikeError
from .settings import VerifyParams


@dataclass
class Features:
    points: np.ndarray  # (N, 2) float32 pixel coordinates
    descriptors: np.ndarray | None  # (N, 32) uint8 ORB descriptors

    def descriptor_array(self) -> np.ndarray:
        """The descriptors, ``(0, 32)`` when the picture had no keypoints (for storing)."""
        return self.descriptors if self.descriptors is not None else np.zeros((0, 32), np.uint8)


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - a core dependency, but be helpful
        raise LookalikeError(
            "spatial verification needs OpenCV: pip install opencv-python-headless "
            "(or search with verify=0 / --verify 0)"
        ) from exc
    return cv2


def grey(image: Image.Image, size: int) -> np.ndarray:
    """8-bit grey pixels, resized so the longer side is ``size`` (small images are enlarged).

    OpenCV resizes (bilinear up, area down): about a third of Pillow's time on the
    ~300 px photos that indexing extracts features from for every image.
    """
    pixels = np.asarray(image.convert("L"))
    h, w = pixels.shape
    scale = size / max(h, w)
    if abs(scale - 1) <= 0.05:
        return pixels
    cv2 = _cv2()
    shape = (max(8, round(w * scale)), max(8, round(h * scale)))
    interpolation = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
    return cv2.resize(pixels, shape, interpolation=interpolation)


# (left, top, right, bottom) as fractions of a picture's width and height.
Box = tuple[float, float, float, float]


def crop(image: Image.Image, box: Box, margin: float = 0.0) -> Image.Image:
    """The part of ``image`` inside ``box`` widened by ``margin`` (fractions) on every side."""
    left, top, right, bottom = (
        max(0.0, box[0] - margin), max(0.0, box[1] - margin),
        min(1.0, box[2] + margin), min(1.0, box[3] + margin),
    )
    w, h = image.size
    return image.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))


def extract(image: Image.Image, params: VerifyParams) -> Features:
    """The ORB features of ``image`` at the verification size (:func:`grey`)."""
    return extract_grey(grey(image, params.size), params)


def extract_grey(pixels: np.ndarray, params: VerifyParams) -> Features:
    """The ORB features of grey pixels already at the verification size (:func:`grey`'s
    output, e.g. a frame kept for another comparison of the same picture)."""
    cv2 = _cv2()
    orb = cv2.ORB_create(nfeatures=params.features)
    keypoints, descriptors = orb.detectAndCompute(pixels, None)
    points = np.asarray(cv2.KeyPoint_convert(keypoints), dtype=np.float32).reshape(-1, 2)
    return Features(points, descriptors)


@dataclass(frozen=True)
class Fit:
    """How well a homography explains the matches between two pictures' features.

    ``matches``: descriptor pairs that pass Lowe's ratio test; ``overlapping``: those of them
    inside the part the two pictures share under the homography (a crop's or a pasted
    photo's surroundings have nothing to match); ``inliers``: those the homography explains;
    ``distinct``: inliers at distinct positions in *both* pictures (ORB finds one corner at
    several scales, and a repetitive texture maps many query points onto one spot);
    ``model``: the homography from the query's feature frame (its picture resized by
    :func:`grey`) to the candidate's, None without one.
    """

    matches: int = 0
    overlapping: int = 0
    inliers: int = 0
    distinct: int = 0
    model: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def share(self) -> float:
        """The share of the overlapping matches the homography explains (0 without any)."""
        return self.inliers / self.overlapping if self.overlapping else 0.0

    def counted(self, params: VerifyParams) -> int:
        """The matching points this fit counts for: its inliers when it shows the same
        picture, else 0. The same picture takes ``VerifyParams.min_inliers`` distinct inliers
        that are most of the matches where the pictures overlap (``min_share``): a copy's
        matches there nearly all agree, while two photos of one spotted coat or printed
        pattern agree in a few places by chance, among many matches that do not."""
        ok = self.distinct >= params.min_inliers and self.share >= params.min_share
        return self.inliers if ok else 0


def _distinct(points: np.ndarray, cell: float) -> int:
    """Points at distinct positions (one per ``cell``-pixel square)."""
    return len(np.unique(np.floor(points / cell).astype(np.int64), axis=0)) if len(points) else 0


def _within(points: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Which ``points`` lie inside the box around ``frame`` (a picture's keypoints)."""
    low, high = frame.min(axis=0) - 1, frame.max(axis=0) + 1
    return ((points >= low) & (points <= high)).all(axis=1)


def fit(query: Features, candidate: Features, params: VerifyParams) -> Fit:
    """The homography fit between two images' features (an empty :class:`Fit` when there
    is no model)."""
    if query.descriptors is None or candidate.descriptors is None:
        return Fit()
    if len(query.points) < 4 or len(candidate.points) < 4:
        return Fit()
    cv2 = _cv2()
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(query.descriptors, candidate.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < params.ratio * p[1].distance]
    if len(good) < max(4, params.min_inliers):
        return Fit(len(good))
    src = query.points[[m.queryIdx for m in good]]
    dst = candidate.points[[m.trainIdx for m in good]]
    # USAC_FAST (OpenCV >= 4.5): the same decisions as classic RANSAC on the instance
    # benchmark, without running all 2,000 iterations on pairs that do not match.
    model, mask = cv2.findHomography(src, dst, cv2.USAC_FAST, params.reprojection, maxIters=2000, confidence=0.995)
    if model is None or mask is None:
        return Fit(len(good))
    # A homography that collapses the picture (near-singular) is a degenerate fit, not a match.
    det = float(np.linalg.det(model[:2, :2]))
    if not 1e-3 < abs(det) < 1e3 or abs(np.linalg.det(model)) < 1e-9:
        return Fit(len(good))
    keep = mask.ravel().astype(bool)
    # The matches whose points each fall inside the other picture under the homography.
    there = cv2.perspectiveTransform(src[None].astype(np.float64), model)[0]
    back = cv2.perspectiveTransform(dst[None].astype(np.float64), np.linalg.inv(model))[0]
    overlapping = keep | (_within(there, candidate.points) & _within(back, query.points))
    distinct = min(_distinct(src[keep], params.cell), _distinct(dst[keep], params.cell))
    return Fit(len(good), int(overlapping.sum()), int(keep.sum()), distinct, model)


# A candidate's stored features, or its picture to extract them from, or None (unreadable).
Loader = Callable[[int], "Features | Image.Image | None"]


class Verifier:
    """Verifies ranked candidates against a query picture; caches candidates' features.

    ``load(image_id)`` (passed per call, and called from worker threads) returns the
    candidate's picture, or None when it cannot be read. Call :meth:`clear` when image ids
    may have changed meaning (the catalogue changed).
    """

    def __init__(self, params: VerifyParams | None = None):
        self.params = params or VerifyParams()
        self._cache: OrderedDict[int, Features | None] = OrderedDict()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def features_of(self, image_id: int, load: Loader) -> Features | None:
        with self._lock:
            if image_id in self._cache:
                self._cache.move_to_end(image_id)
                return self._cache[image_id]
        loaded = load(image_id)
        if isinstance(loaded, Features):
            feats = loaded if loaded.descriptors is not None and len(loaded.points) else None
        else:
            feats = extract(loaded, self.params) if loaded is not None else None
        with self._lock:
            self._cache[image_id] = feats
            while len(self._cache) > self.params.cache:
                self._cache.popitem(last=False)
        return feats

    def fits(self, query: Features, image_ids: Sequence[int], load: Loader) -> list[Fit]:
        """The homography fit of the query against each candidate (unreadable: empty)."""
        def one(image_id: int) -> Fit:
            feats = self.features_of(int(image_id), load)
            return fit(query, feats, self.params) if feats is not None else Fit()

        return self.map(one, image_ids)

    def count_copies(self, query: Features, image_ids: Sequence[int], load: Loader) -> list[int]:
        """Each candidate's matching points when it shows the same picture, else 0
        (:meth:`Fit.counted`): what query verification ranks by."""
        return [one.counted(self.params) for one in self.fits(query, image_ids, load)]

    def map(self, fn: Callable, items: Sequence) -> list:
        """``[fn(item)]``, on the worker threads when there is more than one item."""
        if self.params.workers > 1 and len(items) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.params.workers, thread_name_prefix="verify")
            return list(self._pool.map(fn, items))
        return [fn(item) for item in items]

    def count_region_inliers(
        self, query_image: Image.Image, query: Features,
        pairs: Sequence[tuple[int, Box | None]], load: Loader,
    ) -> list[int]:
        """Matching points of each ``(image_id, box)`` when it shows the same picture, else 0
        (:meth:`Fit.counted`): the candidate against the part of the query in
        ``box`` (None: all of it), so a photo pasted into a larger picture is matched with
        the full keypoint budget of its own region."""
        parts: dict[Box | None, Features] = {None: query}
        # Candidates often share their closest window: its features are extracted once (a
        # thread that needs a window another is extracting waits for it instead).
        locks = {box: threading.Lock() for _, box in pairs}

        def part(box: Box | None) -> Features:
            with locks[box]:
                if box not in parts:
                    parts[box] = extract(crop(query_image, box, self.params.margin), self.params)
            return parts[box]

        def one(pair: tuple[int, Box | None]) -> int:
            image_id, box = pair
            query_part = part(box)
            feats = self.features_of(image_id, load)
            return fit(query_part, feats, self.params).counted(self.params) if feats is not None else 0

        return self.map(one, pairs)
