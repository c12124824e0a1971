"""Indexing on Ray (``--ray``) gives the same catalogue as a single-process run: a local Ray
on 2 CPUs, usage statistics off, inside the tests' private network (conftest)."""

from __future__ import annotations

import shutil

import numpy as np

import lookalike
from conftest import caltech_image, copy_subset
from lookalike import cli
from lookalike.settings import Settings


def rows(index) -> dict[str, tuple]:
    """Per file location: its image's hash-free content (size, labels, descriptor, local
    features), so two catalogues compare whatever order their ids were given in."""
    catalogue = index.catalogue
    files = catalogue.files_by_location()
    ids = sorted({f.image_id for f in files.values()})
    vectors = dict(zip(ids, catalogue.vectors_for(ids), strict=True))
    labels = catalogue.labels_for(ids)
    features = catalogue.local_features_for(ids)
    return {loc: (f.image_id, labels[f.image_id], vectors[f.image_id], features.get(f.image_id))
            for loc, f in files.items()}


def test_ray_indexing_equals_the_single_process_run(private_network, tmp_path, capsys):
    import ray

    photos = copy_subset(tmp_path / "photos", ("airplanes", "Leopards", "watch"), 3)
    shutil.copyfile(caltech_image("watch", 1), photos / "copy.jpg")  # the same content twice
    (photos / "broken.jpg").write_bytes(b"not a picture")
    settings = Settings(batch_size=4, threads=2)
    with lookalike.Index.open(tmp_path / "single", settings=settings) as single:
        expected = single.add([photos])
        want = rows(single)
    with private_network.inside(), lookalike.Index.open(tmp_path / "ray", settings=settings) as index:
        report = index.add([photos], ray="local")
        assert not ray.is_initialized()  # the local Ray started for the run is shut down
        got = rows(index)
        assert (report.embedded, report.reused, len(report.failed)) == (
            expected.embedded, expected.reused, len(expected.failed)) == (9, 1, 1)
        assert got.keys() == want.keys()
        for location, (image_id, labels, vector, features) in got.items():
            w_id, w_labels, w_vector, w_features = want[location]
            assert image_id == w_id and [c for c, _ in labels] == [c for c, _ in w_labels]
            assert np.allclose(vector, w_vector, atol=2e-3)
            assert np.array_equal(features[0], w_features[0])
            assert np.array_equal(features[1], w_features[1])
        assert index.search(caltech_image("Leopards", 2), k=1).matches[0].path.endswith(
            "Leopards/image_0002.jpg")
    with private_network.inside():  # the CLI option; nothing new: no Ray is started
        assert cli.main(["index", str(photos), "--db", str(tmp_path / "ray"), "--ray"]) == 0
        assert "0 embedded" in capsys.readouterr().out
        assert not ray.is_initialized()
