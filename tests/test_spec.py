"""Query pipelines as spec strings (lookalike.query.spec): parse() and with_shorthands()."""

from __future__ import annotations

import pytest

from lookalike.errors import LookalikeError
from lookalike.query.cascade import Cascade, Cosine
from lookalike.query.rerank import Auto, Diffusion, QueryExpansion
from lookalike.query.spec import parse, with_shorthands
from lookalike.query.verification import Regions, Verify, Words
from lookalike.settings import DEFAULT_PIPELINE


def test_the_default_pipeline():
    cascade = parse(DEFAULT_PIPELINE)
    assert isinstance(cascade, Cascade)
    assert cascade.stages == [Cosine(), Auto(), Verify(20), Words(10), Regions(10)]
    assert cascade.spec == DEFAULT_PIPELINE
    assert repr(cascade) == f"Cascade({DEFAULT_PIPELINE!r})"
    assert [s.kind for s in cascade.stages] == ["first", "rerank", "verify", "verify", "verify"]


@pytest.mark.parametrize(
    ("spec", "stage", "written"),
    [
        ("cosine,auto", Auto(), "auto"),
        ("cosine,qe", QueryExpansion(), "qe"),
        ("cosine,qe:5", QueryExpansion(5), "qe:5"),
        ("cosine,diffusion", Diffusion(), "diffusion"),
        ("cosine,diffusion:1000", Diffusion(1000), "diffusion:1000"),
        ("cosine,verify:7", Verify(7), "verify:7"),
        ("cosine,verify:0", Verify(0), "verify:0"),
        ("cosine,words:4", Words(4), "words:4"),
        ("cosine,regions:3", Regions(3), "regions:3"),
    ],
)
def test_each_stage(spec, stage, written):
    cascade = parse(spec)
    assert cascade.stages == [Cosine(), stage]
    assert stage.spec == written and cascade.spec == spec


def test_cosine_alone_spaces_and_empty_items():
    assert parse("cosine").stages == [Cosine()]
    assert parse(" cosine , qe:2 ,, verify:3 ").spec == "cosine,qe:2,verify:3"
    # Verification stages may follow a re-ranking or stand alone, in any mix.
    assert parse("cosine,words:2,regions:1,verify:4").spec == "cosine,words:2,regions:1,verify:4"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cosine,magic", "unknown stage 'magic' in pipeline 'cosine,magic'; stages are: cosine, auto"),
        ("cosine,verify", "stage 'verify' in pipeline 'cosine,verify' needs a number, e.g. verify:10"),
        ("cosine,words", "stage 'words' in pipeline 'cosine,words' needs a number"),
        ("cosine,regions", "needs a number, e.g. regions:10"),
        ("cosine,verify:x", "bad stage 'verify:x' in pipeline 'cosine,verify:x': write verify:NUMBER"),
        ("cosine,qe:-1", "write qe:NUMBER"),
        ("cosine:3", "bad stage 'cosine:3' in pipeline 'cosine:3': cosine takes no value"),
        ("cosine,auto:2", "auto takes no value"),
        ("cosine,verify:5,qe", "pipeline 'cosine,verify:5,qe': write the stages in order"),
        ("cosine,qe,cosine", "write the stages in order"),
        ("cosine,qe,diffusion", "pipeline 'cosine,qe,diffusion' has more than one re-ranking stage"),
        ("cosine,verify:5,verify:3", "pipeline 'cosine,verify:5,verify:3' names a stage twice"),
        ("qe,cosine", "pipeline 'qe,cosine' must start with 'cosine'"),
        ("verify:5", "must start with 'cosine'"),
        ("", "pipeline '' must start with 'cosine'"),
    ],
)
def test_errors_are_one_actionable_line(spec, message):
    with pytest.raises(LookalikeError) as caught:
        parse(spec)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_no_shorthand_leaves_the_spec_as_written():
    spec = "cosine , qe:2"
    assert with_shorthands(spec) is spec
    assert with_shorthands(DEFAULT_PIPELINE, rerank=None, verify=None) == DEFAULT_PIPELINE


def test_rerank_replaces_or_removes_the_rerank_stage():
    assert with_shorthands(DEFAULT_PIPELINE, rerank="qe") == "cosine,qe,verify:20,words:10,regions:10"
    assert with_shorthands(DEFAULT_PIPELINE, rerank="diffusion").startswith("cosine,diffusion,verify:20")
    assert with_shorthands(DEFAULT_PIPELINE, rerank="none") == "cosine,verify:20,words:10,regions:10"
    assert with_shorthands("cosine,qe:5,verify:3", rerank="auto") == "cosine,auto,verify:3"
    assert with_shorthands("cosine,verify:3", rerank="qe") == "cosine,qe,verify:3"  # added
    assert with_shorthands("cosine", rerank="none") == "cosine"


def test_verify_zero_drops_words_and_regions():
    assert with_shorthands(DEFAULT_PIPELINE, verify=0) == "cosine,auto"
    # ... whatever else is asked for them: no verification at all.
    assert with_shorthands(DEFAULT_PIPELINE, verify=0, words=5, regions=5) == "cosine,auto"
    assert with_shorthands(DEFAULT_PIPELINE, rerank="none", verify=0) == "cosine"
    assert with_shorthands(DEFAULT_PIPELINE, verify=5) == "cosine,auto,verify:5,words:10,regions:10"
    assert with_shorthands("cosine,qe", verify=5) == "cosine,qe,verify:5"


def test_words_and_regions_are_set_or_removed():
    assert with_shorthands(DEFAULT_PIPELINE, words=0) == "cosine,auto,verify:20,regions:10"
    assert with_shorthands(DEFAULT_PIPELINE, regions=0) == "cosine,auto,verify:20,words:10"
    assert with_shorthands(DEFAULT_PIPELINE, words=3, regions=2) == "cosine,auto,verify:20,words:3,regions:2"
    assert with_shorthands("cosine,verify:5", words=4) == "cosine,verify:5,words:4"
    assert with_shorthands("cosine", regions=6) == "cosine,regions:6"
    assert with_shorthands("cosine,verify:5", words=0, regions=0) == "cosine,verify:5"
    # Stages come out in their canonical order, so the result always parses.
    edited = with_shorthands("cosine,regions:2,words:1", verify=9)
    assert edited == "cosine,verify:9,words:1,regions:2" and parse(edited).spec == edited


def test_a_bad_spec_is_refused_before_editing():
    with pytest.raises(LookalikeError, match="unknown stage 'magic'"):
        with_shorthands("cosine,magic", verify=0)
