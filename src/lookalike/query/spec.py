"""Query pipelines written as short spec strings, like faiss' ``index_factory``.

``"cosine,auto,verify:20,words:10,regions:10"`` (``Settings.pipeline``'s default) reads:
rank by cosine similarity, re-rank (``auto``: diffusion or query expansion by collection
size), spatially verify the first 20 matches, also verify 10 visual-word candidates, and
10 regional candidates when no match is a sure copy. Stages, in the order they run:

======================  ================================================================
``cosine``              the first ranking: cosine similarity in the store (required, first)
``auto``                diffusion for collections within ``RerankParams``' size range,
                        else query expansion
``diffusion[:DEPTH]``   diffusion over the first DEPTH matches (default ``RerankParams.depth``)
``qe[:N]``              alpha query expansion with the N best matches (``RerankParams.qe_n``)
``verify:N``            verify the first N cosine matches
``words:N``             verify N visual-word candidates
``regions:N``           verify N regional candidates when no match is sure
======================  ================================================================

At most one re-ranking stage; verification stages follow it. The CLI's ``--rerank``,
``--verify``, ``--words`` and ``--regions`` (and the same :class:`SearchOptions` fields) are
shorthands that edit a spec (:func:`with_shorthands`).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import LookalikeError
from .cascade import Cascade, Cosine
from .rerank import Auto, Diffusion, QueryExpansion
from .stages import Stage
from .verification import Regions, Verify, Words

# name -> (factory from the optional number, whether the number is required)
_STAGES: dict[str, tuple[Callable[[int | None], Stage], bool]] = {
    "cosine": (lambda n: Cosine(), False),
    "auto": (lambda n: Auto(), False),
    "diffusion": (lambda n: Diffusion(n), False),
    "qe": (lambda n: QueryExpansion(n), False),
    "verify": (lambda n: Verify(n), True),
    "words": (lambda n: Words(n), True),
    "regions": (lambda n: Regions(n), True),
}
_ORDER = {"first": 0, "rerank": 1, "verify": 2}


def _stage(token: str, spec: str) -> Stage:
    name, _, number = token.strip().partition(":")
    if name not in _STAGES:
        raise LookalikeError(
            f"unknown stage '{name}' in pipeline '{spec}'; stages are: {', '.join(_STAGES)}"
        )
    factory, required = _STAGES[name]
    if number:
        if name in ("cosine", "auto"):
            raise LookalikeError(f"bad stage '{token}' in pipeline '{spec}': {name} takes no value")
        if not number.isdigit():
            raise LookalikeError(f"bad stage '{token}' in pipeline '{spec}': write {name}:NUMBER")
        return factory(int(number))
    if required:
        raise LookalikeError(f"stage '{name}' in pipeline '{spec}' needs a number, e.g. {name}:10")
    return factory(None)


def parse(spec: str) -> Cascade:
    """The :class:`Cascade` a spec string describes (one actionable error if it is wrong)."""
    tokens = [t for t in spec.replace(" ", "").split(",") if t]
    stages = [_stage(t, spec) for t in tokens]
    if not stages or stages[0].kind != "first":
        raise LookalikeError(f"pipeline '{spec}' must start with 'cosine'")
    kinds = [_ORDER[s.kind] for s in stages]
    if kinds != sorted(kinds) or sum(s.kind == "first" for s in stages) != 1:
        raise LookalikeError(
            f"pipeline '{spec}': write the stages in order: cosine, then at most one of "
            "auto/diffusion/qe, then verify/words/regions"
        )
    if sum(s.kind == "rerank" for s in stages) > 1:
        raise LookalikeError(f"pipeline '{spec}' has more than one re-ranking stage")
    names = [s.spec.partition(":")[0] for s in stages]
    if len(set(names)) != len(names):
        raise LookalikeError(f"pipeline '{spec}' names a stage twice")
    return Cascade(stages)


def with_shorthands(
    spec: str,
    *,
    rerank: str | None = None,
    verify: int | None = None,
    words: int | None = None,
    regions: int | None = None,
) -> str:
    """``spec`` edited by the shorthand options (None leaves a stage as it is).

    ``rerank`` replaces the re-ranking stage (``none`` removes it); ``verify=0`` turns
    verification off with its word and region candidates; ``words=0`` / ``regions=0``
    remove those stages; a positive number sets a stage's value, adding it if missing.
    """
    if rerank is None and verify is None and words is None and regions is None:
        return spec
    stages = {s.spec.partition(":")[0]: s.spec for s in parse(spec).stages}
    rerank_names = ("auto", "diffusion", "qe")
    if rerank is not None:
        for name in rerank_names:
            stages.pop(name, None)
        if rerank != "none":
            stages[rerank] = rerank
    if verify == 0:
        for name in ("verify", "words", "regions"):
            stages.pop(name, None)
    for name, value in (("verify", verify), ("words", words), ("regions", regions)):
        if value is not None and not (verify == 0 and name != "verify"):
            stages.pop(name, None)
            if value > 0:
                stages[name] = f"{name}:{value}"
    order = ["cosine", *rerank_names, "verify", "words", "regions"]
    return ",".join(stages[name] for name in order if name in stages)
