"""Talking to a Milvus server: its address, one client call with a timeout, the collection.

Kept apart from the store (:mod:`lookalike.index.milvus_store`) so that the store reads as
"what a vector store does" and this module as "what the server needs": every call passes
``MilvusParams.timeout`` (an index build the server cannot do would otherwise wait forever),
and every failure becomes one :class:`~lookalike.errors.StoreError` line. Nothing here
assumes a standalone server: the same calls serve a Milvus cluster's proxy.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from ..errors import StoreError
from ..settings import MilvusParams

SCHEME = "milvus"
INDEX_TYPES = ("HNSW", "DISKANN", "IVF_PQ", "FLAT")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
PROBED = ("DISKANN",)  # index types whose build is proven when a collection is made
PROBE_ROWS = 1_100  # above the 1,024 rows from which a sealed segment gets its index
T = TypeVar("T")


@dataclass(frozen=True)
class MilvusAddress:
    """``milvus://HOST:PORT/COLLECTION``: a server (standalone or a cluster's proxy) and one
    collection in it, which belongs to the index that records it."""

    host: str
    port: int
    collection: str

    @classmethod
    def parse(cls, uri: str) -> MilvusAddress:
        usage = "expected milvus://HOST:PORT/COLLECTION"
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError as exc:
            raise StoreError(f"bad store address '{uri}': {exc}; {usage}") from None
        if parts.scheme != SCHEME:
            raise StoreError(f"unknown store '{uri}'; {usage}")
        collection = parts.path.strip("/")
        if not parts.hostname or port is None or not NAME.match(collection):
            raise StoreError(
                f"bad store address '{uri}'; {usage} (a collection name is letters, digits "
                "and underscores)"
            )
        return cls(parts.hostname, port, collection)

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __str__(self) -> str:
        return f"{SCHEME}://{self.endpoint.removeprefix('http://')}/{self.collection}"


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:300]


def widened(width: int, kept: float, most: int) -> int:
    """A search width (beam, lists) for a filter keeping the share ``kept``: ``width / kept``,
    capped at ``most`` (never below ``width``)."""
    if kept >= 1:
        return width
    return int(min(max(width, most), width / max(kept, 1e-9)))


class MilvusServer:
    """A connected client and the collection of one address; every call bounded in time."""

    def __init__(self, address: MilvusAddress, params: MilvusParams):
        if params.index_type not in INDEX_TYPES:
            raise StoreError(
                f"unknown Milvus index type '{params.index_type}'; use one of {', '.join(INDEX_TYPES)}"
            )
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise StoreError(
                "the Milvus store needs pymilvus: pip install 'lookalike[milvus]'"
            ) from None
        # pymilvus (configuring its logger on import) warns on stderr about trouble it
        # recovers from; what it cannot recover from reaches the user as one error line
        logging.getLogger("pymilvus").setLevel(logging.ERROR)
        self.address, self.params, self.name = address, params, address.collection
        self.client = self.call(
            "connect", lambda: MilvusClient(uri=address.endpoint, timeout=params.timeout)
        )

    def call(self, what: str, action: Callable[[], T]) -> T:
        """Run one client call; any failure (server down, timeout, refusal) -> StoreError."""
        try:
            return action()
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - grpc, pymilvus and socket errors alike
            raise StoreError(
                f"Milvus at {self.address.host}:{self.address.port} failed to {what} "
                f"(collection {self.name}): {_one_line(exc)}"
            ) from None

    def kw(self) -> dict[str, Any]:
        return {"timeout": self.params.timeout}

    # --- the collection ------------------------------------------------------------------
    def dims(self) -> int | None:
        """The vector size of the existing collection, or None when there is none."""
        if not self.call("list collections", lambda: self.client.has_collection(self.name, **self.kw())):
            return None
        description = self.call(
            "describe the collection", lambda: self.client.describe_collection(self.name, **self.kw())
        )
        fields = {f["name"]: f for f in description["fields"]}
        if "id" not in fields or "vector" not in fields:
            raise StoreError(
                f"the Milvus collection {self.name} was not made by lookalike (no id and vector "
                "fields); choose another collection name"
            )
        return int(fields["vector"]["params"]["dim"])

    def label_fields(self) -> list[str]:
        description = self.call(
            "describe the collection", lambda: self.client.describe_collection(self.name, **self.kw())
        )
        return sorted(f["name"] for f in description["fields"] if f["name"].startswith("label"))

    def ensure(self, dims: int, labels: int) -> None:
        """The collection exists with ``dims``-d vectors, an index and loaded; one made here
        is dropped again if its index cannot be built (nothing half-built is left)."""
        found = self.dims()
        if found is not None and found != dims:
            raise StoreError(
                f"the Milvus collection {self.name} holds {found}-d vectors, this index "
                f"{dims}-d ones; choose another collection name"
            )
        created = found is None
        if created:
            self._create(dims, labels)
        try:
            if not self.call("list indexes", lambda: self.client.list_indexes(self.name, "vector")):
                self._create_index()
            self.call("load the collection", lambda: self.client.load_collection(self.name, **self.kw()))
            if created and self.params.index_type in PROBED:
                self._prove_build(dims, labels)
        except StoreError:
            if created:
                self.drop()
            raise

    def _create(self, dims: int, labels: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dims)
        for i in range(labels):  # top ImageNet labels, most probable first (-1: none)
            schema.add_field(f"label{i}", DataType.INT64)
        self.call("create the collection", lambda: self.client.create_collection(
            self.name, schema=schema, consistency_level=self.params.consistency, **self.kw()))

    def _create_index(self) -> None:
        p = self.params
        build = {
            "HNSW": {"M": p.hnsw_m, "efConstruction": p.hnsw_ef_construction},
            "IVF_PQ": {"nlist": p.ivf_nlist, "m": p.pq_m, "nbits": p.pq_nbits},
        }.get(p.index_type, {})
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type=p.index_type, metric_type="IP", params=build)
        try:
            self.call(f"build a {p.index_type} index",
                      lambda: self.client.create_index(self.name, index, **self.kw()))
        except StoreError:
            try:  # best effort: the build error is the one to report
                self.call("drop the unfinished index", lambda: self.client.drop_index(
                    self.name, "vector", **self.kw()))
            except StoreError:
                pass
            raise

    def _prove_build(self, dims: int, labels: int) -> None:
        """Make the server build its index over one sealed segment of throw-away vectors
        (negative ids) and wait for it: a server that cannot build this index type accepts
        it, then retries the build forever; this turns that into an error within the
        timeout, before any image is written."""
        vectors = np.random.default_rng(0).standard_normal((PROBE_ROWS, dims)).astype(np.float32)
        rows = [{"id": -1 - i, "vector": v.tolist(), **{f"label{j}": -1 for j in range(labels)}}
                for i, v in enumerate(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))]
        self.call("write probe vectors", lambda: self.client.insert(self.name, rows, **self.kw()))
        self.call("flush", lambda: self.client.flush(self.name, **self.kw()))
        deadline = time.monotonic() + self.params.timeout
        kind = self.params.index_type
        while True:
            state = self.call("describe the index", lambda: self.client.describe_index(
                self.name, "vector", **self.kw()))
            if state.get("state") == "Failed":
                raise StoreError(f"Milvus at {self.address.host}:{self.address.port} cannot build "
                                 f"a {kind} index: {state.get('fail_reason', 'no reason given')}")
            if state.get("indexed_rows", 0) >= PROBE_ROWS:
                break
            if time.monotonic() > deadline:
                raise StoreError(
                    f"Milvus at {self.address.host}:{self.address.port} did not build a {kind} "
                    f"index over {PROBE_ROWS} vectors in {self.params.timeout:g} s: this server "
                    f"cannot build {kind} (see docs/scale.md); choose another index type"
                )
            time.sleep(0.5)
        self.call("delete probe vectors", lambda: self.client.delete(
            self.name, filter="id < 0", **self.kw()))

    def search_params(self, k: int, kept: float = 1.0) -> dict:
        """What a search of ``k`` matches passes the index; ``kept``: the share of the
        collection a filter lets through. HNSW walks the whole graph and IVF scans its nearest
        lists, and both drop what the filter refuses, so HNSW's beam and IVF's lists searched
        are widened by 1 / ``kept`` (up to ``hnsw_filter_ef``, and every list) to find as
        many allowed neighbours as an unfiltered search."""
        p = self.params
        inner = {
            "HNSW": {"ef": widened(max(p.hnsw_ef, k), kept, p.hnsw_filter_ef)},
            "IVF_PQ": {"nprobe": widened(p.ivf_nprobe, kept, p.ivf_nlist)},
            "DISKANN": {"search_list": max(p.diskann_search_list, k)},
        }.get(p.index_type, {})
        return {"metric_type": "IP", "params": inner}

    def count(self) -> int:
        """Rows in the collection (probe rows excluded)."""
        rows = self.call("count", lambda: self.client.query(
            self.name, filter="id >= 0", output_fields=["count(*)"], **self.kw()))
        return int(rows[0]["count(*)"])

    def drop(self) -> None:
        self.call("drop the collection", lambda: self.client.drop_collection(self.name, **self.kw()))

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001,S110 - closing a dead channel
            pass
