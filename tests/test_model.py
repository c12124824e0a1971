"""The network is right: weights read without torch, sensible ImageNet predictions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from lookalike.embed.efficientnet import block_specs, build_onnx
from lookalike.embed.embedder import Embedder
from lookalike.embed.labels import imagenet_labels, label_ids
from lookalike.embed.registry import available_models, get_model
from lookalike.errors import ModelError
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


def test_registry_and_labels():
    assert {"lite0", "lite1", "lite2"} <= set(available_models())
    with pytest.raises(ModelError, match="choose one of"):
        get_model("resnet")
    names = imagenet_labels()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert label_ids()["espresso"] == 967
