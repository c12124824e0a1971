"""One settings object for everything tunable, with every default documented.

Settings are passed explicitly (``Index.open(path, settings=...)``); nothing reads globals.
Settings that change what a vector *means* (model, pooling, input size) are stored in the
index when it is created and win over whatever is passed when it is opened again.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path


def default_cache_dir() -> Path:
    """Where built ONNX models are cached: ``$LOOKALIKE_CACHE`` or ``~/.cache/lookalike``."""
    env = os.environ.get("LOOKALIKE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lookalike"


@dataclass(frozen=True)
class Settings:
    """Tunable behaviour of indexing and search.

    Attributes:
        model: Registered model name: ``lite0-int8`` (default), ``lite0``, ``lite1``,
            ``lite2``. ``lite0-int8`` is EfficientNet-Lite0 quantised to 8 bits: 1.4x the
            float model's speed on a CPU for a Caltech-101 mAP change of -0.002
            (docs/benchmarks.md). Lite1/Lite2 are larger and slower.
        gem_p: Generalised-mean pooling exponent for the global descriptor. 1.0 is average
            pooling; 3.0 is the usual choice for retrieval (see docs/descriptor.md).
        batch_size: Images per ONNX Runtime call while indexing.
        threads: ONNX Runtime intra-op threads; 0 means all cores.
        decode_workers: Threads decoding images in parallel with inference; 0 means cores.
        max_pixels: Refuse images larger than this (decompression-bomb guard).
        max_file_bytes: Refuse files larger than this many bytes.
        top_labels: How many ImageNet labels (with probabilities) to store per image.
        cache_dir: Where built ONNX models are cached (keyed by the weights' hash).
        device: ``auto`` runs the model on an NVIDIA GPU when onnxruntime-gpu provides CUDA,
            else on the CPU; ``cpu`` never uses a GPU.
        whiten: Whiten the (centred) descriptors with a transform learned from the collection's
            own mutual-nearest-neighbour pairs (:mod:`lookalike.index.transform`): it scales
            down the directions in which two views of one thing differ. Cosine mAP +0.02 on
            each dev set (class level, groups of views, edited copies; docs/descriptor.md).
            Learned from a sample of up to 10,000 images when the collection reaches
            ``whiten_min_images`` and re-learned, like the mean, when it has grown or shrunk
            by half (the store and the neighbour graph are then rebuilt). It is stored in
            the catalogue (3.3 MB) and costs one 1,280 x 1,280 product per query. Not used
            with the approximate store (``ann_threshold``), which re-scores candidates from
            the catalogue's raw descriptors: whitening each of them would cost as much as
            the rest of the query.
        whiten_min_images: Smaller collections are only centred: learned from fewer than
            ~1,000 photos, the whitening overfits the few pairs it finds (docs/descriptor.md).
        ann_threshold: Collections of at least this many images search an approximate
            (HNSW, int8 codes) index instead of the exact float32 matrix. Below it exact search
            costs a few milliseconds; at 50,000 the matrix is 256 MB and a query ~15 ms, and
            beyond it memory and latency grow linearly (docs/benchmarks.md).
        ann_dims: Principal axes kept in the approximate index's int8 codes.
        ann_expansion_search: Beam width of the approximate search (recall vs. latency).
        ann_rerank: Approximate candidates re-scored exactly per query.
        rerank: Query-time re-ranking of the cosine ranking (:mod:`lookalike.rerank`):
            ``auto`` (default: ``diffusion`` for collections of ``diffusion_min_images`` to
            ``diffusion_max_images`` images, ``qe`` otherwise), ``diffusion`` (kNN-graph
            diffusion: +0.05-0.07 class-level mAP, needs a neighbour graph kept in the index
            folder), ``qe`` (alpha query expansion with the 3 best matches, one more
            search) or ``none``.
        diffusion_min_images: Below this many images ``auto`` uses query expansion: a
            50-neighbour graph of a few hundred photos links unrelated ones.
        diffusion_max_images: Above this many images ``auto`` uses query expansion. The
            graph costs one 100-neighbour search per indexed image at the end of
            ``Index.add`` (about 2 s for 8,677 images, as with 50 neighbours; quadratic in the collection size with
            the exact store, so ~50 s for a full rebuild at 50,000 by extrapolation), and a diffusion query
            ~8 ms more than query expansion. Default 50,000, the exact store's limit
            (``ann_threshold``).
        verify_top: Spatial verification (:mod:`lookalike.verify`) of this many first
            matches with local features; verified copies of the query move to the top.
            0 turns it off. Default 20: with stored local features a candidate costs about
            2 ms, and 20 find 1.7 points more copies than 10 (docs/benchmarks.md, "Quality").
        local_features: Compute the local features that spatial verification compares
            (400 ORB keypoints at 320 px) while indexing and store them in the catalogue,
            about 14 KB per image, so that verifying a query's candidates reads none of
            their files: faster (verifying 10 candidates: ~33 instead of ~84 ms), and it keeps
            working when the photos are offline or remote. Off: candidates' files are read
            at query time. Costs about 3 ms of CPU per indexed image.
        regions: When none of the first ``verify_top`` matches verifies surely (with 60
            inliers or more: a weaker match may be only the background of a collage), the
            query is searched again with 30 regional descriptors (one more inference at
            512 px, pooled over an R-MAC grid of 1 + 4 + 9 + 16 windows); the images that
            stand out most among the windows' matches are candidates, and this many of them
            are verified, each against the window closest to it: this finds the original of
            a photo pasted into a larger picture, or of a small crop. 0 turns it off; it
            needs ``verify_top`` > 0. Default 10 (docs/benchmarks.md, "Quality").
        word_candidates: Also verify this many candidates found by a bag-of-visual-words
            search over the stored local features (:mod:`lookalike.index.words`), with the
            first ``verify_top`` matches: finds the originals of thumbnails, small crops and
            blurred copies whose global descriptor has changed too much. 0 turns it off; it
            needs ``verify_top`` > 0 and stored local features. The word index is built on
            the first query and saved in the index folder (about 1.3 KB per image, in
            memory while searching); later changes are merged in by id until they exceed
            20 % of it, when it is rebuilt. Default 10
            (docs/benchmarks.md, "Quality").
        word_index_max_images: Collections larger than this skip the word candidates: the
            in-memory word index would take over ~330 MB (~1.3 GB at a million images, and
            about twice that while it is built). Raise it on a machine with the memory.
    """

    model: str = "lite0-int8"
    gem_p: float = 3.0
    batch_size: int = 32
    threads: int = 0
    decode_workers: int = 0
    max_pixels: int = 200_000_000
    max_file_bytes: int = 200 * 1024 * 1024
    top_labels: int = 5
    cache_dir: Path = field(default_factory=default_cache_dir)
    device: str = "auto"
    whiten: bool = True
    whiten_min_images: int = 1000
    ann_threshold: int = 50_000
    ann_dims: int = 256
    ann_expansion_search: int = 256
    ann_rerank: int = 200
    rerank: str = "auto"
    diffusion_min_images: int = 500
    diffusion_max_images: int = 50_000
    verify_top: int = 20
    local_features: bool = True
    regions: int = 10
    word_candidates: int = 10
    word_index_max_images: int = 250_000

    def with_(self, **changes) -> Settings:
        """Return a copy with some fields changed."""
        return replace(self, **changes)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["cache_dir"] = str(self.cache_dir)
        return d

    def cpu_count(self) -> int:
        return os.cpu_count() or 1
