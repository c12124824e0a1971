"""Ranking quality features on real photos: re-ranking, spatial verification, eval --ann-recall.

Uses the shared Caltech-101 subset (5 classes x 8 photos). No timing assertions.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike
from conftest import PER_CLASS, SUBSET_CLASSES, caltech_image, copy_subset
from lookalike.evaluate import evaluate_index
from lookalike.index.vectors import save_with_meta
from lookalike.progress import Progress
from lookalike.rerank import KnnGraph, RerankParams, pin_first


@pytest.fixture(scope="module")
def index(built_index):
    db, photos = built_index
    with lookalike.Index.open(db) as ix:
        yield ix, photos


def _classes(ix) -> dict[int, str]:
    ids, _ = ix.catalogue.all_vectors()
    return {i: Path(locs[0]).parent.name for i, locs in ix.catalogue.locations_for(ids.tolist()).items()}


@pytest.mark.parametrize("method", ["qe", "diffusion"])
def test_reranking_keeps_the_image_first_and_class_precision(index, method):
    ix, _ = index
    classes = _classes(ix)
    precision = {}
    for name in ("none", method):
        p = []
        for image_id, label in classes.items():
            result = ix.search_by_id(image_id, PER_CLASS, rerank=name, verify=0)
            assert result.matches[0].image_id == image_id  # an indexed image finds itself first
            assert [m.rank for m in result.matches] == list(range(1, PER_CLASS + 1))
            p.append(np.mean([classes[m.image_id] == label for m in result.matches[1:]]))
        precision[name] = float(np.mean(p))
    assert precision[method] >= precision["none"] - 1e-9, precision


def test_reranking_reports_cosine_scores(index):
    ix, photos = index
    query = photos / "watch" / "image_0003.jpg"
    plain = {m.image_id: m.score for m in ix.search(query, 20, rerank="none", verify=0).matches}
    for m in ix.search(query, 10, rerank="qe", verify=0).matches:
        assert m.score == pytest.approx(plain[m.image_id], abs=1e-4)
    with pytest.raises(lookalike.LookalikeError, match="unknown re-ranking"):
        ix.search(query, 5, rerank="magic")


def _edited(label: str, number: int) -> Image.Image:
    """A crop of ~50 % of the area, turned a quarter: global descriptors find it hard."""
    im = Image.open(caltech_image(label, number)).convert("RGB")
    w, h = im.size
    return im.crop((int(w * 0.1), int(h * 0.15), int(w * 0.8), int(h * 0.85))).rotate(90, expand=True)


def test_verification_promotes_the_original_of_an_edited_copy(index):
    ix, photos = index
    original = str(photos / "Motorbikes" / "image_0005.jpg")
    query = _edited("Motorbikes", 5)
    plain = [m.path for m in ix.search(query, 10, rerank="none", verify=0).matches]
    assert plain[0] != original and original in plain  # the global ranking misses it...
    verified = ix.search(query, 10, rerank="none", verify=10).matches
    assert verified[0].path == original  # ...spatial verification puts it first
    assert verified[0].inliers >= 15
    assert all(m.inliers is not None for m in verified)


def test_verification_leaves_class_level_results_alone(index):
    ix, _ = index
    # A different sunflower photo (not in the index): similar pictures, nothing identical.
    query = caltech_image("sunflower", 20)
    plain = ix.search(query, 10, rerank="none", verify=0).matches
    checked = ix.search(query, 10, rerank="none", verify=10).matches
    assert [m.image_id for m in checked] == [m.image_id for m in plain]
    assert all(m.inliers is not None and m.inliers < 15 for m in checked)
    assert set(checked[0].as_dict()) == set(plain[0].as_dict())  # the JSON schema is stable


def test_verification_by_id_and_missing_files(tmp_path):
    photos = copy_subset(tmp_path / "photos", classes=SUBSET_CLASSES[:2])
    without = lookalike.Settings(local_features=False)
    with lookalike.Index.open(tmp_path / "index") as ix, \
            lookalike.Index.open(tmp_path / "plain", settings=without) as plain:
        ix.add([photos])
        plain.add([photos])
        stored = ix.catalogue.local_features_for([1, 2])
        assert len(stored) == 2 and all(len(p) == len(d) > 100 for p, d in stored.values())
        assert not plain.catalogue.local_features_for([1, 2])
        (photos / "airplanes" / "image_0002.jpg").unlink()
        # Features stored at index time still verify a match whose file has gone...
        result = ix.search(caltech_image("airplanes", 2), 5, verify=5)
        gone = [m for m in result.matches if m.path.endswith("airplanes/image_0002.jpg")]
        assert gone and gone[0].rank == 1 and gone[0].inliers >= 15
        # ...without them, such a match (its features not cached) cannot be verified.
        result = plain.search(caltech_image("airplanes", 2), 5, verify=5)
        gone = [m for m in result.matches if m.path.endswith("airplanes/image_0002.jpg")]
        assert gone and gone[0].inliers == 0
        # "More like this" reads the indexed image's own file as the query picture.
        image_id = ix.catalogue.image_for_location(str(photos / "airplanes" / "image_0001.jpg"))
        first = ix.search_by_id(image_id, 3, verify=5).matches[0]
        assert first.image_id == image_id and first.inliers >= 15
        # Forgetting images forgets their features in the same transaction.
        ix.remove([photos / "Leopards"])
        count = ix.catalogue.db.execute
        assert count("SELECT count(*) FROM local_features").fetchone() == count(
            "SELECT count(*) FROM images").fetchone() == (PER_CLASS,)


def test_neighbour_graph_follows_adds_and_removes(tmp_path):
    photos = copy_subset(tmp_path / "photos", classes=SUBSET_CLASSES[:3])
    with lookalike.Index.open(tmp_path / "index") as ix:
        ix.add([photos / "airplanes", photos / "Leopards"])
        graph = ix._knn_graph()
        assert sorted(graph.ids) == sorted(ix.catalogue.all_vectors()[0])
        ix.add([photos / "Motorbikes"])
        ix.remove([photos / "airplanes"])
        graph = ix._knn_graph()
        ids = set(ix.catalogue.all_vectors()[0].tolist())
        assert set(graph.ids.tolist()) == ids
        linked = graph.neighbours[graph.neighbours >= 0]
        assert set(linked.tolist()) <= ids  # no edge to a removed image
        assert (tmp_path / "index" / KnnGraph.FILE).exists()
        # Reopened: the saved graph is loaded, not rebuilt.
    with lookalike.Index.open(tmp_path / "index") as ix:
        assert set(ix._knn_graph().ids.tolist()) == ids
        assert ix.search(photos / "Leopards" / "image_0001.jpg", 3, rerank="diffusion").matches


def test_auto_reranking_diffuses_within_its_size_range(tmp_path):
    photos = copy_subset(tmp_path / "photos", classes=SUBSET_CLASSES[:3])
    query = caltech_image("Leopards", 20)  # not indexed
    settings = lookalike.Settings(diffusion_min_images=10)
    with lookalike.Index.open(tmp_path / "index", settings=settings) as ix:
        log = io.StringIO()
        ix.add([photos], progress=Progress(stream=log, interval=0))
        assert (tmp_path / "index" / KnnGraph.FILE).exists()  # built by add, not by a query
        lines = log.getvalue().splitlines()  # files, then the graph as a stage of its own
        assert lines[0].startswith("indexing:") and lines[-1].startswith("linking neighbours: 24/24 images")
        assert ix._rerank_method() == "diffusion" and ix._rerank_method("qe") == "qe"
        default = [m.image_id for m in ix.search(query, 10, verify=0).matches]
        diffused = [m.image_id for m in ix.search(query, 10, rerank="diffusion", verify=0).matches]
        assert default == diffused
        ix.remove([photos / "airplanes"])  # the graph follows removals at once
        graph, _ = KnnGraph.load(tmp_path / "index", ix._graph.fingerprint)
        assert set(graph.ids.tolist()) == set(ix.catalogue.all_vectors()[0].tolist())
    for limits in ({"diffusion_max_images": 10}, {}):  # too many / too few images: qe
        folder = tmp_path / f"qe{len(limits)}"
        with lookalike.Index.open(folder, settings=lookalike.Settings(**limits)) as ix:
            ix.add([photos])
            assert ix._rerank_method() == "qe" and not (folder / KnnGraph.FILE).exists()
            default = [m.image_id for m in ix.search(query, 10, verify=0).matches]
            assert default == [m.image_id for m in ix.search(query, 10, rerank="qe", verify=0).matches]


def test_diffusion_reorders_by_graph():
    # Two clusters; the query's first match is an outlier linked to cluster B, but most of
    # its top matches are in cluster A, so diffusion ranks cluster A first.
    ids = np.arange(6)
    nbrs = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]])
    sims = np.full((6, 2), 0.9, dtype=np.float32)
    graph = KnnGraph(ids, nbrs, sims)
    first = np.array([3, 0, 1, 2, 4, 5])
    scores = np.array([0.9, 0.85, 0.84, 0.83, 0.2, 0.2], dtype=np.float32)
    order = graph.diffuse(first, scores, RerankParams(diffusion_seeds=4))
    assert set(order[:3].tolist()) == {0, 1, 2}
    # The product keeps the cosine top-1 first (a copy of the query may stand alone).
    pinned = pin_first(order, first)
    assert pinned[0] == 3 and set(pinned[1:4].tolist()) == {0, 1, 2} and len(pinned) == len(order)
    assert pin_first(order, first, exclude=3)[0] == 0


def test_eval_ann_recall_and_rerank(built_index):
    db, _ = built_index

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "lookalike", *map(str, args)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    metrics = run("eval", "--db", db, "--json", "--ann-recall")  # the index's default search
    assert metrics["ann_recall@10"] == 1.0 and metrics["store"] == "flat"
    plain = run("eval", "--db", db, "--json", "--rerank", "none", "--verify", "0")
    qe = run("eval", "--db", db, "--json", "--rerank", "qe", "--verify", "0")
    assert qe["queries"] == plain["queries"] == metrics["queries"] and qe["P@1"] >= 0.9
    assert metrics["mAP"] != plain["mAP"]  # the defaults re-rank: not the plain ranking
    with lookalike.Index.open(db) as ix:  # the same numbers through the Python API
        api = evaluate_index(ix)
        assert api.as_dict()["mAP"] == metrics["mAP"]
    sample = run("eval", "--db", db, "--json", "--queries", "7")
    assert sample["queries"] == 7


def _pasted(label: str, number: int, background: int, area: float = 0.2) -> Image.Image:
    """A photo shrunk to ``area`` of an unrelated (unindexed) photo and pasted onto it."""
    back = Image.open(caltech_image("BACKGROUND_Google", background)).convert("RGB").resize((480, 360))
    photo = Image.open(caltech_image(label, number)).convert("RGB")
    scale = (area * back.width * back.height / (photo.width * photo.height)) ** 0.5
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)))
    back.paste(photo, (back.width - photo.width - 20, 30))
    return back


def _collage(background: tuple[str, int], label: str, number: int, area: float = 0.2) -> Image.Image:
    """A photo shrunk to ``area`` of an *indexed* photo and pasted onto it."""
    back = Image.open(caltech_image(*background)).convert("RGB").resize((480, 360))
    photo = Image.open(caltech_image(label, number)).convert("RGB")
    scale = (area * back.width * back.height / (photo.width * photo.height)) ** 0.5
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)))
    back.paste(photo, (back.width - photo.width - 20, 30))
    return back


def test_regional_stage_runs_unless_a_match_is_sure(index):
    """A collage of two indexed photos: a weak verified match (< VerifyParams.sure_inliers)
    may explain only part of the query, so the regions are still searched and the pasted
    photo is checked against its own region; a sure match ends the query as before."""
    from lookalike.verify import VerifyParams

    ix, photos = index
    sure = VerifyParams().sure_inliers
    watch = str(photos / "watch" / "image_0006.jpg")

    def inliers_of(matches) -> int:
        return next((m.inliers or 0 for m in matches if m.path == watch), 0)

    weak = _collage(("sunflower", 5), "watch", 6)
    plain = ix.search(weak, 5, rerank="none", verify=5, regions=0).matches
    assert 15 <= max(m.inliers or 0 for m in plain) < sure  # verified, but weakly
    found = ix.search(weak, 5, rerank="none", verify=5, regions=5).matches
    assert found[0].path == watch and inliers_of(found) >= sure > inliers_of(plain)
    strong = _collage(("Leopards", 3), "watch", 6)
    plain = ix.search(strong, 5, rerank="none", verify=5, regions=0).matches
    assert max(m.inliers or 0 for m in plain) >= sure  # the background photo, surely
    assert inliers_of(ix.search(strong, 5, rerank="none", verify=5, regions=5).matches) == inliers_of(plain)


def test_region_grid_covers_the_map():
    from lookalike.embed.pooling import region_grid

    windows = region_grid(14, 14, (1, 2, 3))
    assert len(windows) == 1 + 4 + 9
    assert windows[0] == (0, 0, 14)
    assert {s for _, _, s in windows[1:5]} == {9} and {s for _, _, s in windows[5:]} == {7}
    assert all(t + s <= 14 and le + s <= 14 for t, le, s in windows)
    assert max(t for t, _, _ in windows[5:]) == 7  # the last row of windows reaches the edge


def test_regional_search_finds_a_photo_pasted_into_another(index):
    ix, photos = index
    original = str(photos / "watch" / "image_0006.jpg")
    query = _pasted("watch", 6, background=3)
    # Against the whole collage, local features do not confirm the original (too few of
    # the query's keypoints fall on it), wherever the global search ranks it...
    plain = ix.search(query, 5, rerank="none", verify=5, regions=0).matches
    assert not any(m.path == original and m.inliers >= 15 for m in plain)
    # ...the regional search finds it from the region it fills and verifies it against
    # that region, so it comes first.
    found = ix.search(query, 5, rerank="none", verify=5, regions=5).matches
    assert found[0].path == original and found[0].inliers >= 15
    # A query with no copy in the index is left in its cosine order.
    other = caltech_image("sunflower", 20)
    assert [m.image_id for m in ix.search(other, 10, rerank="none", regions=5).matches] == [
        m.image_id for m in ix.search(other, 10, rerank="none", verify=0).matches
    ]
    with pytest.raises(lookalike.LookalikeError, match="regions must be"):
        ix.search(query, 5, regions=-1)


def test_hubness_corrected_links():
    # H is a hub: as close to A, B, C, D (0.70) as they are to their own partners (0.68),
    # and very close to G. Raw similarity links A to H; CSLS, which discounts images that
    # are close to their whole neighbourhood, links A to its partner B.
    names = ["A", "B", "C", "D", "H", "G"]
    sims = {("A", "B"): 0.68, ("C", "D"): 0.68, ("H", "G"): 0.95}
    sims.update({(x, "H"): 0.70 for x in "ABCD"})
    sims.update({(x, "G"): 0.40 for x in "ABCD"})
    sims.update({("A", "C"): 0.2, ("A", "D"): 0.2, ("B", "C"): 0.2, ("B", "D"): 0.2})
    full = np.eye(6)
    for (x, y), v in sims.items():
        full[names.index(x), names.index(y)] = full[names.index(y), names.index(x)] = v
    np.fill_diagonal(full, -np.inf)
    nbrs = np.argsort(-full, axis=1)[:, :5]
    graph = KnnGraph(np.arange(6), nbrs, np.take_along_axis(full, nbrs, axis=1))
    assert names[nbrs[0, 0]] == "H"  # raw: A's best neighbour is the hub
    linked, weights = graph.links(keep=1, hub_k=2)
    assert [names[i] for i in linked[:4, 0]] == ["B", "A", "D", "C"]
    r = -np.sort(-full, axis=1)[:, :2].mean(axis=1)  # mean of the 2 best similarities
    # (abs 1e-3: the graph keeps similarities at float16 precision, as its file does)
    assert weights[0, 0] == pytest.approx(0.68 - (r[0] + r[1]) / 2 + r.mean(), abs=1e-3)
    assert graph.links(keep=1, hub_k=2) is graph.links(keep=1, hub_k=2)  # computed once
    sparse = KnnGraph(np.arange(6) * 10_000, nbrs * 10_000, graph.sims)  # ids far apart
    assert np.array_equal(sparse.links(keep=1, hub_k=2)[0], linked * 10_000)


def test_neighbour_graph_stores_the_pool_and_diffusion_uses_links(index):
    ix, _ = index
    graph = ix._knn_graph()
    params = RerankParams()
    assert graph.k == params.graph_pool
    linked, weights = graph.links(params.graph_k, params.hub_k)
    assert linked.shape == (len(graph), min(params.graph_k, graph.k))
    real = linked >= 0
    assert np.all(linked[real] != np.repeat(graph.ids, linked.shape[1]).reshape(linked.shape)[real])
    assert np.all(np.isfinite(weights[real])) and np.all(np.isneginf(weights[~real]))


def test_saved_graph_carries_its_mutual_links(index, built_index):
    """The graph file holds the default mutual links, so a new process (a CLI search) reads
    them instead of working them out; a search on an up-to-date index does not rewrite it."""
    ix, photos = index
    db, _ = built_index
    graph = ix._knn_graph()
    params = RerankParams()
    key = ("mutual", params.graph_k, params.hub_k)
    loaded, generation = KnnGraph.load(db, graph.fingerprint)
    assert generation == ix.catalogue.generation and key in loaded._links
    fresh = KnnGraph(loaded.ids, loaded.neighbours, loaded.sims)._mutual_links(params.graph_k, params.hub_k)
    rows, weights = loaded._links[key]
    assert np.array_equal(rows, fresh[0]) and np.array_equal(weights, fresh[1])
    kept = rows >= 0
    assert kept.sum() > 5 * len(loaded)  # many mutual links
    back = [r in rows[rows[r, c]] for r, c in zip(*np.nonzero(kept), strict=True)]
    assert all(back)  # each kept link is held by both ends
    stamp = (db / KnnGraph.FILE).stat().st_mtime_ns
    with lookalike.Index.open(db) as again:
        again.search(photos / "watch" / "image_0001.jpg", 5, rerank="diffusion", verify=0)
    assert (db / KnnGraph.FILE).stat().st_mtime_ns == stamp
    # A file written before the links were saved gets them on its first use.
    save_with_meta(db / KnnGraph.FILE, {"generation": generation, "fingerprint": graph.fingerprint},
                   ids=loaded.ids, neighbours=loaded.neighbours, sims=loaded.sims.astype(np.float16))
    assert not KnnGraph.load(db, graph.fingerprint)[0].links_saved
    with lookalike.Index.open(db) as again:
        again.search(photos / "watch" / "image_0001.jpg", 5, rerank="diffusion", verify=0)
    assert KnnGraph.load(db, graph.fingerprint)[0].links_saved

def test_sparse_diffusion_matches_the_dense_formula(index):
    """Diffusion walks only the mutual links among its candidates (sparse, so ``depth`` can
    be large); its ranking must be the textbook one: f = seeds + alpha * D^-1/2 A D^-1/2 f,
    A = min(L, L^T) of the links' weights**gamma, over the real test index's graph."""
    ix, _ = index
    graph = ix._knn_graph()
    params = RerankParams(depth=len(graph) - 1)
    ids, vectors = graph.ids, ix._vectors_of(graph.ids)
    first = ids[np.argsort(-(vectors @ vectors[3]))][1:]  # image 3's ranking, itself left out
    scores = np.sort(-(vectors @ vectors[3]))[1:] * -1
    linked, weights = graph.links(params.graph_k, params.hub_k)
    place = {int(i): p for p, i in enumerate(first)}
    dense = np.zeros((len(first), len(first)))
    for row, image_id in enumerate(ids):
        for other, w in zip(linked[row], weights[row], strict=True):
            if int(image_id) in place and int(other) in place and np.isfinite(w):
                dense[place[int(image_id)], place[int(other)]] = max(w, 0) ** params.gamma
    dense = np.minimum(dense, dense.T)
    assert (dense > 0).sum() > 5 * len(first)  # a real graph, many mutual links
    inv = np.where(dense.sum(1) > 0, 1 / np.sqrt(np.maximum(dense.sum(1), 1e-12)), 0)
    seeds = np.zeros(len(first))
    seeds[: params.diffusion_seeds] = np.maximum(scores[: params.diffusion_seeds], 0) ** params.gamma
    f = seeds.copy()
    for _ in range(params.iterations):
        f = params.diffusion_alpha * (inv[:, None] * dense * inv[None, :]) @ f + seeds
    expected = first[np.argsort(-f, kind="stable")]
    got = graph.diffuse(first, scores, params)
    assert np.array_equal(got[:20], expected[:20])
    assert sorted(got.tolist()) == sorted(first.tolist())
