"""One settings object for everything tunable; every default lives here and nowhere else.

Settings are passed explicitly (``Index.open(path, settings=...)``); nothing reads globals.
The knobs of each part are grouped in a small frozen object nested in :class:`Settings`
(``Settings().verify.min_inliers``), so every knob exists once, under one name. Help texts
and docs read these defaults instead of restating them. Settings that change what a vector
*means* (model, pooling) are stored in the index when it is created and win over whatever
is passed when it is opened again. Measured effects of the defaults: docs/descriptor.md and
docs/benchmarks.md.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

# The query pipeline: the stages of lookalike.query.spec, in order.
DEFAULT_PIPELINE = "cosine,auto,verify:20,words:10,regions:10"


def default_cache_dir() -> Path:
    """Where built ONNX models are cached: ``$LOOKALIKE_CACHE`` or ``~/.cache/lookalike``."""
    env = os.environ.get("LOOKALIKE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lookalike"


@dataclass(frozen=True)
class TransformParams:
    """The learned descriptor transform (:mod:`lookalike.index.transform`)."""

    whiten: bool = True  # whiten as well as centre (never on the approximate store)
    whiten_min_images: int = 1000  # below this a whitening overfits its few pairs
    min_images: int = 100  # images before a mean is learned at all
    refit_ratio: float = 1.5  # re-learn when the collection grew or shrank by this factor
    sample: int = 10_000  # images the whitening is learned from (fixed-seed sample)
    neighbours: int = 5  # mutual nearest neighbours that make a pair
    shrink: float = 2.0  # covariance shrinkage: shrink * dims / pairs x the mean eigenvalue


@dataclass(frozen=True)
class AnnParams:
    """The approximate store (:mod:`lookalike.index.ann`) for large collections."""

    threshold: int = 50_000  # collections this large use it instead of the exact matrix
    dims: int = 256  # principal axes kept in the int8 codes
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 256  # beam width of a search: recall vs latency
    rescore: int = 200  # graph candidates re-scored exactly per query (at least k)
    rough_rescore: int = 20  # the same for rough (candidate-generating) searches
    scan_max: int = 20_000  # larger filters search the graph, smaller ones scan codes
    calibrate_at: int = 4096  # vectors that fit the codec; until then all are exact


@dataclass(frozen=True)
class MilvusParams:
    """The Milvus store (:mod:`lookalike.index.milvus_store`): collections beyond one machine."""

    index_type: str = "HNSW"  # HNSW, DISKANN (larger than RAM), IVF_PQ (small memory), FLAT (exact)
    hnsw_m: int = 16  # HNSW links per node
    hnsw_ef_construction: int = 200
    hnsw_ef: int = 128  # HNSW search beam (raised to k when k is larger)
    hnsw_filter_ef: int = 2048  # the most a filter widens that beam to (by 1 / the share it keeps)
    ivf_nlist: int = 1024  # IVF_PQ clusters (per sealed segment; the server caps it at rows/39)
    pq_m: int = 160  # IVF_PQ sub-quantisers: must divide the dimensions (1280: 8-d sub-vectors)
    # IVF_PQ bits per code: 2**nbits centres per sub-quantiser. Milvus trains the codebooks
    # on every sealed segment; 8 bits (256 centres) makes that k-means 16x longer, minutes per
    # segment (docs/benchmarks.md, "Scale-out").
    pq_nbits: int = 4
    ivf_nprobe: int = 32  # IVF_PQ clusters searched (a filter widens it by 1 / the share it keeps)
    # IVF_PQ: candidates per query re-scored with their exact descriptors from the catalogue
    # (at least k; 0: the codes' own scores). 4-bit codes alone rank poorly (docs/scale.md).
    pq_rescore: int = 200
    diskann_search_list: int = 100  # DISKANN search list (raised to k when k is larger)
    timeout: float = 60.0  # seconds any one call to the server may take
    insert_batch: int = 1000  # vectors per insert call
    consistency: str = "Strong"  # reads that synchronise the store see every write before them
    search_consistency: str = "Session"  # searches: this process' writes (Strong: up to a time tick more)


@dataclass(frozen=True)
class RerankParams:
    """Query expansion and diffusion (:mod:`lookalike.query.rerank`, :mod:`lookalike.index.graph`)."""

    qe_n: int = 3  # matches added to the query
    qe_alpha: float = 3.0  # their weight is similarity**alpha
    graph_k: int = 50  # links per image that diffusion walks (chosen from the pool)
    graph_pool: int = 100  # neighbours stored per image in the graph file
    hub_k: int = 10  # neighbours whose mean similarity is an image's hubness (0: off)
    depth: int = 3000  # first matches that diffusion re-orders
    diffusion_alpha: float = 0.8
    diffusion_seeds: int = 5  # first matches that start the diffusion
    gamma: float = 3.0  # similarity**gamma as edge and seed weights
    iterations: int = 20
    min_images: int = 500  # ``auto`` diffuses from this many images (else query expansion)
    max_images: int = 50_000  # ... up to this many (the graph grows quadratically)


@dataclass(frozen=True)
class VerifyParams:
    """Spatial verification with local features (:mod:`lookalike.verify`)."""

    size: int = 320  # pictures are resized so that their longer side is this
    features: int = 400  # ORB keypoints per picture
    ratio: float = 0.8  # Lowe's ratio test on the two nearest descriptors
    min_inliers: int = 15  # distinct homography inliers of a verified match (a copy)
    min_share: float = 0.85  # ... at least this share of the matches where the pictures overlap
    cell: float = 3.0  # pixels (at ``size``): inliers closer than this are one point
    sure_inliers: int = 60  # a weaker best match may be only a collage's background
    reprojection: float = 8.0  # RANSAC inlier threshold in pixels (at ``size``)
    workers: int = 2  # threads verifying candidates in parallel
    cache: int = 512  # candidates' features kept in memory
    margin: float = 0.0  # widen a query region by this fraction when verifying it
    min_side: int = 8  # pixels: a narrower query picture is not verified (empty regions)


@dataclass(frozen=True)
class RegionParams:
    """The regional search (:mod:`lookalike.query.regions`) for photos pasted into others."""

    size: int = 512  # input side of the query's regional pass
    size_approximate: int = 384  # the same on the approximate store (latency budget)
    levels: tuple[int, ...] = (1, 2, 3, 4)  # R-MAC grid: 1 + 4 + 9 + 16 windows
    per_region: int = 3  # nearest images per window
    contrast_rank: int = 10  # a window's match scores minus its contrast_rank-th score
    verify_regions: int = 1  # each candidate is verified against its closest window(s)


@dataclass(frozen=True)
class WordParams:
    """The visual-word index (:mod:`lookalike.index.words`)."""

    max_images: int = 250_000  # larger collections skip word candidates (memory)
    rebuild_fraction: float = 0.2  # changes merged at query time until this share


@dataclass(frozen=True)
class UrlParams:
    """Images indexed by URL (:mod:`lookalike.sources`)."""

    workers: int = 16  # downloads in flight at once: a long list is not bound by latency
    timeout: float = 20.0  # seconds one download may take
    max_bytes: int = 50 * 1024 * 1024  # larger responses are refused
    allow_private: bool = False  # fetch from loopback and private networks too
    chunk: int = 256  # URLs downloaded ahead of the batch being embedded


@dataclass(frozen=True)
class WatchParams:
    """Keeping an index in sync with watched folders (:mod:`lookalike.watching`)."""

    quiet: float = 1.0  # seconds without a new event before a burst is indexed as one run
    max_wait: float = 10.0  # ... but a steady stream of events is indexed this often
    settle: float = 1.0  # a file changed this recently may be half-written: it waits


# The tiers of duplicate finding (lookalike.dupes), from the strictest.
DUPE_LEVELS = ("exact", "copies", "similar")
DEFAULT_DUPE_LEVEL = "copies"


@dataclass(frozen=True)
class PixelCheckParams:
    """The aligned-pixel check of verified pairs (:mod:`lookalike.dupes.pixels`): a burst
    shot verifies like a copy, but once the two pictures are aligned part of it has moved."""

    max_moved: float = 0.03  # share of grid cells that moved, above which a verified pair is a similar shot
    cell: int = 16  # grid cell side, in pixels of the verification frame (VerifyParams.size)
    shift: int = 5  # pixels a cell's content is searched around its aligned place
    residual: float = 0.25  # mean difference of normalised pixels from which a cell disagrees
    explained: float = 0.7  # ... and has moved when a shift cuts that difference to this share
    texture: float = 0.25  # ... and both pictures have detail there (mean normalised pixel)
    blur: float = 1.5  # pixels of Gaussian blur first (re-encoding, resampling noise)
    sigma: float = 5.0  # pixels of the local mean and contrast each picture is normalised by
    refine: int = 20  # iterations refining the alignment on the pixels (ECC)
    refine_max: float = 6.0  # pixels a refinement may move a corner (more: the features' fit stays)


@dataclass(frozen=True)
class DupesParams:
    """Duplicate finding (:mod:`lookalike.dupes`): which neighbours are checked, what a copy is."""

    neighbours: int = 10  # nearest images (the store's kNN search) checked per image
    min_cosine: float = 0.5  # descriptor similarity below which a neighbour is not verified
    words: int = 2  # images sharing the most visual words, also verified (turned copies)
    words_max_images: int = 20_000  # larger collections skip word candidates (time)
    copy_inliers: int = 40  # homography inliers of stored local features that make a copy
    mirror_cosine: float = 0.8  # unverified pairs this close are also verified mirrored
    similar_cosine: float = 0.85  # near-identical shots: pairs at least this close ...
    similar_inliers: int = 15  # ... with this many inliers (fewer than a copy)
    chunk: int = 256  # images whose neighbourhoods are checked and saved per transaction
    min_group: int = 2  # groups of fewer files are not listed
    page_size: int = 50  # groups per page of the REST API
    read_check_max: int = 2000  # new images a read-only answer (GET) checks in memory; more wait for a stored check
    pixels: PixelCheckParams = field(default_factory=PixelCheckParams)  # a copy's pixels agree once aligned


@dataclass(frozen=True)
class GateParams:
    """When a query runs its verification stages (:mod:`lookalike.query.verification`).

    Verification, word candidates and the regional stage change a ranking only when the
    collection holds a copy of the query. Two cheap signals, read before any of them runs,
    say whether it may: the first cosine score and the best visual-word score of the query
    (:meth:`lookalike.index.words.InvertedFile.search`). Below both thresholds the stages are
    skipped; 0 and 0 run them for every query.
    """

    cosine: float = 0.0  # first cosine score (in the store's space) from which they run
    words: float = 0.0  # best visual-word score from which they run


@dataclass(frozen=True)
class RuntimeParams:
    """Memory of the model runtime while indexing (:mod:`lookalike.embed`, :mod:`lookalike.indexing`).

    An indexing thread's peak memory is the model's activations for one ONNX Runtime call,
    which grow with the images in it while the time per image hardly changes: a batch of
    ``Settings.batch_size`` is committed together but run through the model in smaller calls.
    """

    inference_batch: int = 4  # images per ONNX Runtime call on an indexing thread
    arena: bool = True  # ONNX Runtime's CPU memory arena (off: less memory held, more page faults)


@dataclass(frozen=True)
class Settings:
    """Tunable behaviour of indexing and search.

    Attributes:
        model: Registered model name (``lookalike.embed.registry``): ``lite0-int8``
            (EfficientNet-Lite0 quantised to 8 bits), ``lite0``, ``lite1``, ``lite2``.
        gem_p: Generalised-mean pooling exponent of the global descriptor (1: average).
        batch_size: Images embedded and committed together while indexing (the model
            runs them in calls of ``runtime.inference_batch``).
        threads: ONNX Runtime intra-op threads; 0 means all cores.
        decode_workers: Threads decoding images in parallel with inference; 0: cores.
        max_pixels: Refuse images larger than this (decompression-bomb guard).
        max_file_bytes: Refuse files larger than this many bytes.
        top_labels: ImageNet labels (with probabilities) stored per image.
        cache_dir: Where built ONNX models are cached (keyed by the weights' hash).
        device: ``auto`` runs the model on an NVIDIA GPU when onnxruntime-gpu provides
            CUDA, else on the CPU; ``cpu`` never uses a GPU.
        local_features: Store each image's local features while indexing, so verifying a
            query's candidates reads none of their files (and works when they are offline).
        pipeline: The query's ranking stages (:mod:`lookalike.query.spec`).
        transform, ann, rerank, verify, regions, words, urls, watch, dupes, milvus, gate,
            runtime: each part's own knobs.
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
    local_features: bool = True
    pipeline: str = DEFAULT_PIPELINE
    transform: TransformParams = field(default_factory=TransformParams)
    ann: AnnParams = field(default_factory=AnnParams)
    rerank: RerankParams = field(default_factory=RerankParams)
    verify: VerifyParams = field(default_factory=VerifyParams)
    regions: RegionParams = field(default_factory=RegionParams)
    words: WordParams = field(default_factory=WordParams)
    urls: UrlParams = field(default_factory=UrlParams)
    watch: WatchParams = field(default_factory=WatchParams)
    dupes: DupesParams = field(default_factory=DupesParams)
    milvus: MilvusParams = field(default_factory=MilvusParams)
    gate: GateParams = field(default_factory=GateParams)
    runtime: RuntimeParams = field(default_factory=RuntimeParams)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (nested groups are replaced whole)."""
        return replace(self, **changes)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["cache_dir"] = str(self.cache_dir)
        return d

    def cpu_count(self) -> int:
        return os.cpu_count() or 1
