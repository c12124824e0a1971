"""Settings (lookalike.settings): every knob once, grouped by the part it tunes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lookalike import Settings
from lookalike.query.spec import parse
from lookalike.settings import (
    DEFAULT_PIPELINE,
    AnnParams,
    DupesParams,
    RegionParams,
    RerankParams,
    TransformParams,
    UrlParams,
    VerifyParams,
    WatchParams,
    WordParams,
    default_cache_dir,
)

GROUPS = {
    "transform": TransformParams,
    "ann": AnnParams,
    "rerank": RerankParams,
    "verify": VerifyParams,
    "regions": RegionParams,
    "words": WordParams,
    "urls": UrlParams,
    "watch": WatchParams,
    "dupes": DupesParams,
}


def test_defaults_and_nested_groups():
    settings = Settings()
    assert settings.model == "lite0-int8" and settings.local_features is True
    assert settings.pipeline == DEFAULT_PIPELINE == "cosine,auto,verify:20,words:10,regions:10"
    assert parse(settings.pipeline).spec == settings.pipeline  # the default is a valid spec
    for name, group in GROUPS.items():
        assert getattr(settings, name) == group()
    assert settings.words == WordParams(max_images=250_000, rebuild_fraction=0.2)
    assert (settings.rerank.min_images, settings.rerank.max_images) == (500, 50_000)
    assert (settings.ann.threshold, settings.ann.rescore) == (50_000, 200)
    assert (settings.transform.whiten, settings.transform.whiten_min_images) == (True, 1000)
    assert settings.verify.min_inliers < settings.verify.sure_inliers


def test_every_knob_exists_once():
    top = {f.name for f in dataclasses.fields(Settings)}
    assert set(GROUPS) <= top
    # A group's knob is never also a top-level setting (one name, one place).
    assert not (top - set(GROUPS)) & {f.name for g in GROUPS.values() for f in dataclasses.fields(g)}


@pytest.mark.parametrize(
    "old",
    ["verify_top", "word_candidates", "diffusion_min_images",
     "diffusion_max_images", "ann_threshold", "ann_dims", "ann_expansion_search", "ann_rerank",
     "whiten", "whiten_min_images", "word_index_max_images"],
)
def test_removed_flat_fields_are_refused(old):
    with pytest.raises(TypeError):
        Settings(**{old: 1})


def test_with_replaces_a_group_whole_and_settings_are_frozen():
    settings = Settings(ann=AnnParams(threshold=100))
    assert settings.ann.threshold == 100 and settings.ann.dims == AnnParams().dims
    changed = settings.with_(transform=TransformParams(whiten=False), pipeline="cosine,auto")
    assert changed.transform == TransformParams(whiten=False)
    assert changed.ann.threshold == 100 and changed.pipeline == "cosine,auto"
    assert settings.transform.whiten is True  # a copy
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.model = "lite2"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.ann.threshold = 5  # type: ignore[misc]


def test_as_dict_is_json():
    data = Settings(cache_dir=Path("/tmp/models")).as_dict()
    assert data["cache_dir"] == "/tmp/models"
    assert data["rerank"]["min_images"] == RerankParams().min_images
    assert data["regions"]["levels"] == RegionParams().levels
    json.dumps(data)


def test_cache_dir_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    assert Settings().cache_dir == tmp_path / "here"
    monkeypatch.delenv("LOOKALIKE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "lookalike"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "lookalike"
