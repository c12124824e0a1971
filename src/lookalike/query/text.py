"""Tag search: images ranked by their stored ImageNet label probabilities for the classes
that the words of a text name (:mod:`lookalike.embed.tags`), and the words to suggest as
someone types.

Not CLIP: nothing embeds the text. Each image keeps its top ImageNet labels with their
probabilities (``Settings.top_labels``); a word's score for an image is the summed
probability of its stored labels among the word's classes (at most 1), and an image's score
is the mean over the words, so "dog on a sofa" ranks dogs on sofas above dogs alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..embed.tags import Tag, vocabulary, words_starting
from ..index.catalogue import Catalogue
from .cascade import Ranked
from .options import SUGGESTIONS


def rank_text(
    catalogue: Catalogue, tags: Sequence[Tag], allowed: np.ndarray | None = None
) -> Ranked:
    """Every image holding a label that one of ``tags`` names, best first (ties: by id);
    ``allowed`` limits them (a label filter). The score is the mean word score in 0..1."""
    totals: dict[int, float] = {}
    for tag in tags:
        image_ids, _, probs = catalogue.label_probs(sorted(tag.classes))
        if allowed is not None:
            keep = np.isin(image_ids, allowed)
            image_ids, probs = image_ids[keep], probs[keep]
        ids, inverse = np.unique(image_ids, return_inverse=True)
        word_scores = np.minimum(np.bincount(inverse, weights=probs, minlength=len(ids)), 1.0)
        for image_id, score in zip(ids.tolist(), word_scores.tolist(), strict=True):
            totals[image_id] = totals.get(image_id, 0.0) + score / len(tags)
    order = sorted(totals, key=lambda i: (-totals[i], i))
    return Ranked(
        np.asarray(order, dtype=np.int64), np.asarray([totals[i] for i in order]), route="text"
    )


def suggest(catalogue: Catalogue, prefix: str = "", limit: int = SUGGESTIONS) -> list[dict]:
    """Up to ``limit`` known words starting with ``prefix``, those naming the most images of
    this collection first, the shortest of synonyms only: ``{"word", "classes", "images"}``
    (``images``: what ``--label word`` would keep)."""
    words = vocabulary().words
    per_class = catalogue.images_per_class()

    def reach(word: str) -> int:  # an upper bound of the images, cheap to rank by
        return sum(per_class.get(c, 0) for c in words[word][1])

    chosen: dict[frozenset[int], str] = {}  # one word per meaning: "dog", not "domestic dog" too
    for word in sorted(words_starting(prefix), key=lambda w: -reach(w)):
        chosen.setdefault(words[word][1], word)
        if len(chosen) == limit:
            break
    found = [
        {"word": words[word][0], "classes": len(classes),
         "images": len(catalogue.image_ids_with_labels(sorted(classes)))}
        for classes, word in chosen.items()
    ]
    return sorted(found, key=lambda t: -t["images"])
