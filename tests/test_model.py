"""The network is right (lookalike.embed): weights read without torch, sensible ImageNet
predictions, and an int8 model that agrees with the float one."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from conftest import SUBSET_CLASSES, caltech_image
from lookalike.embed import registry
from lookalike.embed.efficientnet import block_specs, build_onnx
from lookalike.embed.embedder import Embedder
from lookalike.embed.labels import imagenet_labels, label_ids
from lookalike.embed.quantize import calibration_images, load_ranges, measure_ranges
from lookalike.embed.registry import available_models, get_model
from lookalike.errors import ModelError
from lookalike.images import load_image
from lookalike.settings import Settings


def _top5(model: str, image: np.ndarray) -> list[str]:
    embedder = Embedder(Settings(model=model))
    result = embedder.embed_images([Image.fromarray(image)])
    names = imagenet_labels()
    return [names[i] for i in result.label_ids[0]]


@pytest.mark.parametrize("model", ["lite0", "lite2"])
def test_cat_photo_is_a_cat(model):
    top5 = _top5(model, data.chelsea())
    cats = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
    assert top5[0] in cats, top5


@pytest.mark.parametrize("model", ["lite0", "lite2"])
def test_coffee_photo_is_espresso(model):
    assert "espresso" in _top5(model, data.coffee())


def test_descriptor_is_unit_length_and_probabilities_sorted():
    embedder = Embedder(Settings())
    out = embedder.embed_images([Image.fromarray(data.astronaut()), Image.fromarray(data.coffee())])
    assert out.vectors.shape == (2, 1280)
    np.testing.assert_allclose(np.linalg.norm(out.vectors, axis=1), 1.0, atol=1e-5)
    assert np.all(np.diff(out.label_probs, axis=1) <= 0)
    assert out.label_ids.shape == (2, 5)


def test_structure_read_from_weights():
    state = get_model("lite0").loader(get_model("lite0").weights_path())
    specs = block_specs(state)
    assert len(specs) == 16
    assert [s.kernel for s in specs] == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    assert sum(s.stride == 2 for s in specs) == 4
    model = build_onnx(state)
    assert {o.name for o in model.graph.output} == {"logits", "feature_map"}


def test_model_cache_is_reused(tmp_path):
    embedder = Embedder(Settings(cache_dir=tmp_path))
    path = embedder.onnx_path()
    mtime = path.stat().st_mtime_ns
    assert Embedder(Settings(cache_dir=tmp_path)).onnx_path().stat().st_mtime_ns == mtime


def test_weights_hash_is_remembered_in_the_cache(tmp_path, monkeypatch):
    spec = get_model("lite0")
    digest = spec.weights_hash(tmp_path)
    assert (tmp_path / registry.HASHES_FILE).exists()
    monkeypatch.setattr(registry, "_file_sha256", lambda *a: pytest.fail("weights read again"))
    assert spec.weights_hash(tmp_path) == digest  # a fresh process reads the cache instead
    (tmp_path / registry.HASHES_FILE).write_text("{damaged")
    monkeypatch.undo()
    assert spec.weights_hash(tmp_path) == digest  # a damaged cache is only a re-read


def test_registry_and_labels():
    assert {"lite0", "lite1", "lite2"} <= set(available_models())
    with pytest.raises(ModelError, match="choose one of"):
        get_model("resnet")
    names = imagenet_labels()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert label_ids()["espresso"] == 967


def test_int8_model_agrees_with_float():
    images = [
        load_image(caltech_image(label, n), target_size=224)
        for label in SUBSET_CLASSES
        for n in (1, 2)
    ]
    float_embedder = Embedder(Settings(model="lite0"))
    fp32 = float_embedder.embed_images(images)
    int8_embedder = Embedder(Settings(model="lite0-int8"))
    assert int8_embedder.model_id != float_embedder.model_id  # never mixed in one index
    int8 = int8_embedder.embed_images(images)
    agree = np.mean(fp32.label_ids[:, 0] == int8.label_ids[:, 0])
    assert agree >= 0.8
    cosine = (fp32.vectors * int8.vectors).sum(axis=1)
    assert cosine.mean() >= 0.97


def test_shipped_int8_ranges_are_the_measured_ones():
    """The package's int8 ranges are what measuring the sample photos gives (reproducible)."""
    spec = get_model("lite0")
    measured = measure_ranges(
        spec.builder(spec.loader(spec.weights_path())), spec.preprocess, calibration_images()
    )
    shipped = load_ranges("lite0")
    assert measured.keys() == shipped.keys() and len(shipped) > 50
    np.testing.assert_allclose(
        np.array([measured[k] for k in shipped]), np.array(list(shipped.values())), rtol=1e-4, atol=1e-4
    )
