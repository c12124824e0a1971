"""Distributed indexing with Ray Data: ``lookalike index DIR --ray [ADDRESS]``.

The driver does what needs the catalogue: discovery, the size-and-mtime skip, reading and
hashing each changed file (content already indexed is only linked, never decoded), and the
commits. Decoding, local features and embedding (what costs CPU) run as a Ray Data
``map_batches`` over an actor pool; each actor holds one single-threaded ONNX Runtime session
(:meth:`Embedder.for_parallel_batches`), so a node runs one actor per core. Results come back
in submission order (``preserve_order``) and are committed batch by batch through the same
path as a single-process run (:class:`~lookalike.indexing.Indexer`), so the catalogue rows
are the same and an interrupted run (Ctrl-C) keeps every committed batch and resumes.

Workers read the files by path: on a cluster the photos must be mounted at the same path on
every node, and lookalike installed there (docs/scale.md). Ray's usage statistics are
switched off (nothing in lookalike talks to the network). Without an address
(``"local"``) a local Ray is started for the run, on ``Settings.threads`` (or all) cores.
"""

from __future__ import annotations

import os
import pickle
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import numpy as np

from .embed.embedder import Embedder, Embeddings
from .errors import LookalikeError
from .index.formats import FileStat
from .indexing import Indexer, IndexReport, Prepared, embed_pictures
from .settings import Settings

LOCAL = "local"


class _AnyHash(set):
    """Every hash counts as known: :meth:`Indexer.prepare` then reads and hashes a file and
    stops before decoding it (what the driver does)."""

    def __contains__(self, item: object) -> bool:
        return True


class EmbedActor:
    """One Ray actor: decodes, extracts local features and embeds batches of files."""

    def __init__(self, settings: Settings):
        self.indexer = Indexer(None, Embedder(settings), None, settings)  # type: ignore[arg-type]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [
            self.indexer.prepare(FileStat(str(loc), int(size), int(mtime)), set())
            for loc, size, mtime in zip(batch["location"], batch["size"], batch["mtime_ns"], strict=True)
        ]
        good = [item for item in items if item.error is None]
        embedded = embed_pictures(self.indexer.embedder, [item.pixels for item in good],
                                  self.indexer.settings.runtime.inference_batch) if good else None
        rows, j = [], 0
        for item in items:
            vector = None
            if item.error is None:
                vector = (embedded.vectors[j], embedded.label_ids[j], embedded.label_probs[j])
                j += 1
            rows.append(pickle.dumps((item.stat.location, (item.hash, item.width, item.height,
                                                           item.features, item.error, vector))))
        return {"result": np.array(rows, dtype=object)}


class RayIndexer(Indexer):
    """An :class:`~lookalike.indexing.Indexer` whose decoding and embedding run on Ray."""

    def __init__(self, *args, address: str = LOCAL, **kwargs):
        super().__init__(*args, **kwargs)
        self.address = address

    def _process(self, todo: list[FileStat], report: IndexReport) -> None:
        if not todo:
            return
        ray = _import_ray()
        known = self.catalogue.known_hashes()
        self._known_hashes = known
        self.progress(0, len(todo))
        workers = self.settings.decode_workers or self.settings.cpu_count()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
            hashed = list(pool.map(lambda stat: self.prepare(stat, _AnyHash()), todo))
        new = [item for item in hashed if item.error is None and item.hash not in known]
        started = _connect(ray, self.address, self.settings)
        results = self._embedded(ray, new)
        try:
            self._commit_in_order(hashed, known, results, report)
        finally:
            results.close()
            if started:
                ray.shutdown()

    def _embedded(self, ray, new: list[Prepared]):
        """``(location, result)`` of each new file from the actor pool (in order, normally)."""
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        rows = [{"location": i.stat.location, "size": i.stat.size, "mtime_ns": i.stat.mtime_ns}
                for i in new]
        batches = -(-len(new) // self.settings.batch_size)
        actors = max(1, min(batches, _cluster_cpus(ray)))
        # One block per batch: Ray's default splits a small input into hundreds of blocks.
        dataset = ray.data.from_items(rows, override_num_blocks=batches).map_batches(
            EmbedActor, fn_constructor_kwargs={"settings": self.settings},
            batch_size=self.settings.batch_size, num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=actors),
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            yield from (pickle.loads(r) for r in batch["result"])

    def _commit_in_order(self, hashed, known, results, report: IndexReport) -> None:
        """Take the files in their discovery order, as :meth:`Indexer._process` does: a
        failure is recorded, known content linked, new content committed with its vector."""
        batch: list[Prepared] = []
        reused: list[Prepared] = []
        arrived: dict[str, tuple] = {}  # results ahead of the file being committed
        done = 0
        for item in hashed:
            if item.error is None and item.hash not in known:
                while item.stat.location not in arrived:
                    location, result = next(results)
                    arrived[location] = result
                (item.hash, item.width, item.height, item.features, item.error,
                 item.embedding) = arrived.pop(item.stat.location)
                item.pixels = np.zeros(0, np.uint8) if item.error is None else None
            done = self._drain_one(deque([_done(item)]), batch, reused, report, done, len(hashed))
            if len(batch) >= self.settings.batch_size:
                self._commit(batch.copy(), reused.copy(), _done(_stacked(batch)), report)
                batch.clear()
                reused.clear()
        self._commit(batch, reused, _done(_stacked(batch)) if batch else None, report)


def indexer_type(address: str | None) -> Callable[..., Indexer]:
    """The indexer for a run: on Ray at ``address`` (``"local"``: a local Ray), or without
    Ray when it is None."""
    return partial(RayIndexer, address=address) if address else Indexer


def _stacked(batch: list[Prepared]) -> Embeddings:
    vectors, label_ids, label_probs = zip(*(item.embedding for item in batch), strict=True)
    return Embeddings(np.stack(vectors), np.stack(label_ids), np.stack(label_probs))


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def _import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data
    except ImportError:
        raise LookalikeError("--ray needs Ray: pip install 'lookalike[distributed]'") from None
    return ray


def _connect(ray, address: str, settings: Settings) -> bool:
    """Join the cluster at ``address`` or start a local one; True if started here (the
    caller shuts it down). An already connected driver is used as it is."""
    if ray.is_initialized():
        return False
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {"RAY_USAGE_STATS_ENABLED": "0"}
    try:
        if address == LOCAL:
            path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
            ray.init(num_cpus=settings.threads or settings.cpu_count(), include_dashboard=False,
                     log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1",
                     runtime_env={"env_vars": {**env, "PYTHONPATH": path}})
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": env})
    except Exception as exc:  # noqa: BLE001 - connection errors of every kind
        raise LookalikeError(f"cannot start or reach Ray at {address}: {exc}") from None
    return True


def _cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
