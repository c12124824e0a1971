"""The same store tests on the embedded store and on a real Milvus server (standalone, from
the PyPI ``milvus`` package, in a private network: conftest ``milvus_server``)."""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.request

import numpy as np
import pytest

import lookalike
from conftest import augment, caltech_image, catalogue_with, copy_subset
from lookalike import cli
from lookalike.errors import StoreError
from lookalike.index.milvus_store import MilvusStore, label_filter
from lookalike.index.vectors import FlatStore
from lookalike.settings import MilvusParams, Settings

CLASSES = ("airplanes", "Leopards", "watch")
PER_CLASS = 4


def collection_name(request) -> str:
    return re.sub(r"\W", "_", request.node.name)[:60] + f"_{os.getpid()}"


@pytest.fixture(params=["embedded", "milvus"])
def store_uri(request):
    """None (the embedded store) or the address of a fresh collection on the test server."""
    if request.param == "embedded":
        yield None
        return
    host, port = request.getfixturevalue("milvus")
    yield f"milvus://{host}:{port}/{collection_name(request)}"


def held(index) -> np.ndarray:
    """The ids the index's vector store holds, ascending."""
    inner = index.folder.store.inner
    return inner.stored_ids() if isinstance(inner, MilvusStore) else np.sort(inner.ids)


def mutations(server, collection: str) -> int:
    """Write requests (insert, upsert, delete) the Milvus proxy has served for a collection."""
    url = f"http://127.0.0.1:{server.webservice_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    pattern = rf'milvus_proxy_collection_mutation_latency_count\{{collection_name="{collection}",[^}}]*\}} (\d+)'
    return sum(int(n) for n in re.findall(pattern, text))


def test_incremental_changes_reach_the_store(store_uri, tmp_path, request, capsys):
    photos = copy_subset(tmp_path / "photos", CLASSES, PER_CLASS)
    with lookalike.Index.open(tmp_path / "index", store=store_uri) as index:
        assert index.add([photos], prune=True).embedded == len(CLASSES) * PER_CLASS
        assert np.array_equal(held(index), index.catalogue.image_ids())
        assert ("milvus" in index.info()["store"]) == (store_uri is not None)

        writes = mutations(request.getfixturevalue("milvus_server"), store_uri.rsplit("/", 1)[1]) if store_uri else 0
        again = index.add([photos], prune=True)
        assert (again.embedded, again.unchanged) == (0, len(CLASSES) * PER_CLASS)
        if store_uri:  # a run that finds nothing new sends the server no write
            assert mutations(request.getfixturevalue("milvus_server"), store_uri.rsplit("/", 1)[1]) == writes

        changed = photos / "watch" / "image_0001.jpg"
        old_id = index.catalogue.image_for_location(str(changed))
        shutil.copyfile(caltech_image("sunflower", 9), changed)
        os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
        assert index.add([photos], prune=True).embedded == 1
        new_id = index.catalogue.image_for_location(str(changed))
        assert old_id not in held(index) and new_id in held(index)
        best = index.search(caltech_image("sunflower", 9), k=1, pipeline="cosine").matches[0]
        assert best.image_id == new_id and best.score > 0.99

        moved = photos / "Leopards" / "image_0002.jpg"
        moved_id = index.catalogue.image_for_location(str(moved))
        before = held(index)
        moved.rename(photos / "moved.jpg")
        report = index.add([photos], prune=True)
        assert (report.embedded, report.reused) == (0, 1)
        assert np.array_equal(held(index), before)
        assert index.catalogue.image_for_location(str(photos / "moved.jpg")) == moved_id

        gone = photos / "airplanes" / "image_0003.jpg"
        gone_id = index.catalogue.image_for_location(str(gone))
        gone.unlink()
        assert index.add([photos], prune=True).removed == 1
        assert gone_id not in held(index)
        assert np.array_equal(held(index), index.catalogue.image_ids())
    with lookalike.Index.open(tmp_path / "index", create=False) as reopened:  # recorded
        assert np.array_equal(held(reopened), reopened.catalogue.image_ids())
        assert ("milvus" in reopened.info()["store"]) == (store_uri is not None)
        assert cli.main(["check", "--db", str(tmp_path / "index")]) == 0
        if store_uri:  # rows lost on the server: check says so, --repair reloads them
            reopened.folder.store.inner.remove(reopened.catalogue.image_ids()[:2])
            assert cli.main(["check", "--db", str(tmp_path / "index")]) == 1
            assert "2 catalogue images missing" in capsys.readouterr().out
            assert cli.main(["check", "--db", str(tmp_path / "index"), "--repair"]) == 0
    with lookalike.Index.open(tmp_path / "index", create=False) as repaired:
        assert np.array_equal(held(repaired), repaired.catalogue.image_ids())


def test_default_query_and_label_filter_equal_across_stores(milvus, tmp_path):
    """The whole default query (and diffusion over the neighbour graph) ranks the same on
    Milvus as on the embedded store; a label filter keeps only images with that label."""
    photos = copy_subset(tmp_path / "photos", CLASSES, PER_CLASS)
    uri = f"milvus://{milvus[0]}:{milvus[1]}/default_query_{os.getpid()}"
    with (lookalike.Index.open(tmp_path / "embedded") as embedded,
          lookalike.Index.open(tmp_path / "remote", store=uri) as remote):
        embedded.add([photos])
        remote.add([photos])
        assert isinstance(remote.folder.store.inner, MilvusStore)
        label = embedded.search(caltech_image("Leopards", 1), k=1).matches[0].labels[0]
        for query in (caltech_image("Leopards", 1), caltech_image("watch", 7)):
            for changes in ({}, {"pipeline": "cosine,diffusion,verify:20,words:10,regions:10"},
                            {"label": label}):
                a = embedded.search(query, k=8, **changes).matches
                b = remote.search(query, k=8, **changes).matches
                assert [m.path for m in a] == [m.path for m in b], changes
                assert np.allclose([m.score for m in a], [m.score for m in b], atol=1e-3)
                if "label" in changes:
                    assert a and all(label in m.labels for m in b)


def test_flat_top_k_equals_the_exact_store(milvus, real_vectors, tmp_path):
    vectors = augment(real_vectors, 3000, seed=1)
    catalogue = catalogue_with(tmp_path / "catalogue.sqlite", vectors)
    uri = f"milvus://{milvus[0]}:{milvus[1]}/flat_{os.getpid()}"
    store = MilvusStore.open(tmp_path, catalogue, uri, MilvusParams(index_type="FLAT"))
    exact = FlatStore(*catalogue.all_vectors())
    assert len(store) == len(exact) == 3000
    queries = augment(real_vectors, 20, seed=2)
    allowed = np.arange(1, 3001, 7)
    for candidates in (None, allowed):
        s1, i1 = exact.search(queries, 10, candidates)
        s2, i2 = store.search(queries, 10, candidates)
        assert np.array_equal(i1, i2)
        assert np.allclose(s1, s2, atol=1e-4)
    assert np.allclose(store.vectors(np.array([9, 2])), exact.vectors(np.array([9, 2])), atol=1e-6)


@pytest.mark.parametrize("stored", [5, 7])
def test_a_label_filter_goes_to_the_server_as_labels_when_they_are_all_there(stored, milvus, real_vectors, tmp_path):
    """A label filter is sent as ``label0 in [..] or ...`` when every image's labels fit the
    collection's 5 label fields, else as the ids: either way the results are the exact store's."""
    def labels(i):
        return [10 + i % 7, 20 + i % 5, 30, 40 + i % 3, 50 + i % 2, 60 + i % 4, 70][:stored]

    catalogue = catalogue_with(tmp_path / "catalogue.sqlite", augment(real_vectors, 300, seed=3), labels)
    uri = f"milvus://{milvus[0]}:{milvus[1]}/labels_{stored}_{os.getpid()}"
    store = MilvusStore.open(tmp_path, catalogue, uri, MilvusParams(index_type="FLAT"))
    assert store.labels == 5 and store.labels_complete == (stored <= 5)
    exact = FlatStore(*catalogue.all_vectors())
    queries = augment(real_vectors, 5, seed=4)
    for classes in ([12], [23, 41], [51], [62, 63]):  # [62, 63]: only the 6th labels hold them
        allowed = catalogue.image_ids_with_labels(classes)
        assert allowed.classes == tuple(classes)
        assert (len(allowed) == 0) == (stored == 5 and classes == [62, 63])
        s1, i1 = exact.search(queries, 10, np.asarray(allowed))
        s2, i2 = store.search(queries, 10, allowed)
        assert np.array_equal(i1, i2) and np.allclose(s1, s2, atol=1e-4), classes
        if stored == 5:  # what the server selects by labels is the catalogue's label filter
            rows = store.server.client.query(store.server.name, filter=label_filter(classes, 5),
                                             output_fields=["id"])
            assert sorted(r["id"] for r in rows) == list(allowed)


@pytest.mark.parametrize("case", ["bad address", "server down", "other dimensions"])
def test_store_errors_are_one_line_and_write_nothing(case, milvus, tmp_path, capsys):
    host, port = milvus
    if case == "other dimensions":
        MilvusStore.open(tmp_path / "other", catalogue_with(tmp_path / "other.sqlite", np.eye(8, 16, dtype=np.float32)),
                         f"milvus://{host}:{port}/small_{os.getpid()}", MilvusParams())
    uri = {"bad address": f"milvus://{host}/no_port",
           "server down": f"milvus://{host}:{port + 7}/down",
           "other dimensions": f"milvus://{host}:{port}/small_{os.getpid()}"}[case]
    photos = copy_subset(tmp_path / "photos", CLASSES[:1], 2)
    fragment = {"bad address": "bad store address", "server down": "failed to connect",
                "other dimensions": "holds 16-d vectors"}[case]

    assert cli.main(["index", str(photos), "--db", str(tmp_path / "new"), "--store", uri]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert not (tmp_path / "new").exists()  # nothing created

    assert cli.main(["index", str(photos), "--db", str(tmp_path / "old")]) == 0
    catalogue = tmp_path / "old" / "catalogue.sqlite"
    stamp = catalogue.read_bytes()
    assert cli.main(["index", str(photos), "--db", str(tmp_path / "old"), "--store", uri]) == 1
    assert catalogue.read_bytes() == stamp  # an existing index is left as it was


def test_diskann_fails_within_the_timeout_and_leaves_nothing(milvus, milvus_server, tmp_path):
    from pymilvus import MilvusClient

    name = f"diskann_{os.getpid()}"
    settings = Settings(milvus=MilvusParams(index_type="DISKANN", timeout=15))
    started = time.monotonic()
    with pytest.raises(StoreError, match="DISKANN"):
        lookalike.Index.open(tmp_path / "index", settings=settings,
                             store=f"milvus://{milvus[0]}:{milvus[1]}/{name}")
    assert time.monotonic() - started < 60
    assert not (tmp_path / "index").exists()
    client = MilvusClient(uri=f"http://{milvus[0]}:{milvus[1]}", timeout=15)
    assert not client.has_collection(name)
    client.close()


def test_the_server_is_reachable_from_this_machine_only(milvus, milvus_server, private_network):
    assert private_network.interfaces() == ["lo"]
    assert milvus_server.server_proc.poll() is None
    outside = private_network.listening_outside()
    assert "milvus" not in outside and f":{milvus[1]} " not in outside


def test_a_filtered_search_widens_its_beam_or_lists_by_the_share_it_keeps(milvus):
    from lookalike.index.milvus_server import MilvusAddress, MilvusServer

    params = MilvusParams()
    server = MilvusServer(MilvusAddress(milvus[0], milvus[1], "beam"), params)
    try:
        assert server.search_params(10)["params"] == {"ef": params.hnsw_ef}
        assert server.search_params(10, kept=0.25)["params"] == {"ef": params.hnsw_ef * 4}
        assert server.search_params(10, kept=0.001)["params"] == {"ef": params.hnsw_filter_ef}
        assert server.search_params(500, kept=0.5)["params"] == {"ef": 1000}  # (from k)
    finally:
        server.close()
    params = MilvusParams(index_type="IVF_PQ")
    server = MilvusServer(MilvusAddress(milvus[0], milvus[1], "lists"), params)
    try:
        assert server.search_params(10)["params"] == {"nprobe": params.ivf_nprobe}
        assert server.search_params(10, kept=0.25)["params"] == {"nprobe": params.ivf_nprobe * 4}
        assert server.search_params(10, kept=0.001)["params"] == {"nprobe": params.ivf_nlist}
    finally:
        server.close()


def test_ivf_pq_candidates_are_rescored_exactly_from_the_catalogue(milvus, real_vectors, tmp_path):
    """IVF_PQ ranks by 4-bit codes; its candidates get their exact scores from the catalogue,
    so the top 10 is the exact store's wherever the candidates hold it."""
    from lookalike.index.ann import CatalogueVectors

    catalogue = catalogue_with(tmp_path / "catalogue.sqlite", augment(real_vectors, 3000, seed=5))
    uri = f"milvus://{milvus[0]}:{milvus[1]}/ivfpq_{os.getpid()}"
    params = MilvusParams(index_type="IVF_PQ", ivf_nlist=16, ivf_nprobe=16)
    store = MilvusStore.open(tmp_path, catalogue, uri, params, exact=CatalogueVectors(catalogue))
    server = store.server
    server.client.flush(server.name)
    deadline = time.monotonic() + 120
    while server.client.describe_index(server.name, "vector").get("indexed_rows", 0) < 3000:
        assert time.monotonic() < deadline, "the IVF_PQ index was not built"
        time.sleep(1)
    server.client.release_collection(server.name)  # searched from the sealed, indexed segments
    server.client.load_collection(server.name)
    exact = FlatStore(*catalogue.all_vectors())
    queries = augment(real_vectors, 20, seed=6)
    s1, i1 = exact.search(queries, 10)
    s2, i2 = store.search(queries, 10)
    s3, i3 = MilvusStore(server, catalogue).search(queries, 10)  # the codes' own scores
    rescored, codes = (np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i, i1, strict=True)])
                       for i in (i2, i3))
    assert not np.allclose(s3, s1, atol=1e-3)  # the server did rank by the codes
    rows = exact.vectors(i2.ravel()).reshape(20, 10, -1)
    assert np.allclose(s2, np.einsum("qd,qkd->qk", queries, rows), atol=1e-5)  # exact scores
    assert rescored >= 0.95 and rescored > codes
    allowed = np.arange(1, 3001, 9)  # a filter: its candidates are re-scored the same way
    s1, i1 = exact.search(queries, 10, allowed)
    s2, i2 = store.search(queries, 10, allowed)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i2, i1, strict=True)]) >= 0.95
    assert set(i2.ravel()) <= set(allowed)
