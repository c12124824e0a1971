"""Words that name ImageNet classes, through WordNet 3.0: the vocabulary of tag search and
of the label filter.

This is not CLIP: no model reads the words. A word names the ImageNet classes whose WordNet
synsets it is a synonym of or lies above ("dog": every dog breed, "vehicle": cars, boats,
planes...), or, for a common kind just below one ("puppy"), the classes of that broader word.
Regular plurals ("cars", "Leopards") and WordNet's irregular ones ("mice") are reduced to the
singular here. The data come from ``wordnet-tags.json`` (package data, built once from
WordNet by ``scripts/build_tags.py``; licence in ``WORDNET-LICENSE`` beside it).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..errors import LookalikeError
from .labels import imagenet_labels

# Words in a text query that name no class: skipped unless part of a longer known phrase.
STOPWORDS = frozenset(
    "a an the on in of with and or at by for to from near under over beside behind into onto "
    "some two three several many my our its their this that these those photo photos picture "
    "pictures image images".split()
)
LONGEST_PHRASE = 5  # words in the longest vocabulary entry tried when reading a text query
HINT = "`lookalike tags PREFIX` lists the known words"


@dataclass(frozen=True)
class Tag:
    """One word of a query and what it names: ``meaning`` is the vocabulary entry it was
    read as (the singular, or the broader word of a kind), ``classes`` the ImageNet ids."""

    word: str
    meaning: str
    classes: frozenset[int]

    @property
    def shown(self) -> str:
        """The word, and its meaning when that differs: ``puppies (dog)``."""
        return self.word if self.word == self.meaning else f"{self.word} ({self.meaning})"


@dataclass(frozen=True)
class Vocabulary:
    """Lower-case word -> (vocabulary entry, class ids); irregular plural -> singular."""

    words: dict[str, tuple[str, frozenset[int]]]
    plurals: dict[str, str]


@lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    """Read the package data once: every synset's classes are the classes at or below it."""
    text = resources.files(__package__).joinpath("wordnet-tags.json").read_text("utf-8")
    data = json.loads(text)
    synsets = data["synsets"]
    below: dict[str, set[int]] = {wnid: set() for wnid in synsets}
    for class_id, wnid in enumerate(data["classes"]):
        todo = [wnid]
        while todo:
            node = todo.pop()
            if class_id not in below[node]:
                below[node].add(class_id)
                todo.extend(synsets[node]["hypernyms"])
    words: dict[str, tuple[str, set[int]]] = {}
    for wnid, synset in synsets.items():
        for word in synset["words"]:
            words.setdefault(word.lower(), (word, set()))[1].update(below[wnid])
    kinds: dict[str, tuple[str, set[int]]] = {}
    for wnid, kind_words in data["kinds"].items():  # a kind lends the classes of the word above
        for word in kind_words:
            if word.lower() not in words:
                kinds.setdefault(word.lower(), (synsets[wnid]["words"][0], set()))[1].update(below[wnid])
    words.update(kinds)
    for class_id, name in enumerate(imagenet_labels()):  # a class name names that class only
        words[name.lower()] = (name, {class_id})
    frozen = {key: (meaning, frozenset(ids)) for key, (meaning, ids) in words.items()}
    return Vocabulary(frozen, data["plurals"])


def _normal(word: str) -> str:
    return " ".join(word.lower().replace("_", " ").split())


def singulars(word: str) -> list[str]:
    """Possible singular forms of an English plural (of the last word of a phrase)."""
    head, _, last = word.rpartition(" ")
    forms = []
    if last.endswith("ies"):
        forms.append(last[:-3] + "y")
    if last.endswith("ves"):
        forms += [last[:-3] + "f", last[:-3] + "fe"]
    if last.endswith("es"):
        forms.append(last[:-2])
    if last.endswith("s") and not last.endswith("ss"):
        forms.append(last[:-1])
    return [f"{head} {form}" if head else form for form in forms]


def lookup(word: str) -> Tag | None:
    """The tag a word (or phrase) names, or None; plurals are read as their singular, and a
    singular of a plural-only word as that word ("binocular": binoculars)."""
    key = _normal(word)
    vocab = vocabulary()
    plural_only = [f"{key}s"] if len(key) >= 4 else []  # not "bu" -> "bus"
    for form in [key, vocab.plurals.get(key, ""), *singulars(key), *plural_only]:
        if form in vocab.words:
            meaning, classes = vocab.words[form]
            return Tag(key, meaning, classes)
    return None


def resolve(word: str, what: str = "word") -> Tag:
    """The tag a word names, or a :class:`LookalikeError` that lists the closest words."""
    tag = lookup(word)
    if tag is None:
        raise unknown(word, what)
    return tag


def unknown(word: str, what: str = "word") -> LookalikeError:
    """'unknown word' with the closest known words, or where to find the known ones."""
    close = closest(_normal(word))
    hint = f"did you mean: {', '.join(close)}? " if close else ""
    return LookalikeError(f"unknown {what} '{word.strip()}': {hint}({HINT})")


def closest(key: str, n: int = 5) -> list[str]:
    """The known words spelled most like ``key`` (typos; swapped letters first), else
    those containing it."""
    words = vocabulary().words
    close = difflib.get_close_matches(key, words, n=4 * n, cutoff=0.6)
    close = sorted(close, key=lambda w: sorted(w) != sorted(key))[:n]
    if not close:
        close = sorted((w for w in words if key and key in w), key=lambda w: (len(w), w))[:n]
    return close


def parse_text(text: str) -> list[Tag]:
    """The tags a text query names, longest known phrases first ("hot dog" is one word,
    "dog on a sofa" is "dog" and "sofa"); small words are skipped; an unknown word raises."""
    tokens = re.findall(r"[\w][\w'.\-]*", text.lower())
    tags: list[Tag] = []
    i = 0
    while i < len(tokens):
        for n in range(min(LONGEST_PHRASE, len(tokens) - i), 0, -1):
            if n == 1 and tokens[i] in STOPWORDS:
                break
            tag = lookup(" ".join(tokens[i : i + n]))
            if tag is not None:
                if all(tag.classes != t.classes for t in tags):
                    tags.append(tag)
                break
        else:
            raise unknown(tokens[i])
        i += n
    if not tags:
        raise LookalikeError(f"no word in '{text.strip()}' names a tag ({HINT})")
    return tags


def words_starting(prefix: str) -> list[str]:
    """Known words that start with ``prefix`` (any case), shortest first; kinds ("puppy")
    are left out: they are read as a broader word, which is the one to suggest."""
    key = _normal(prefix)
    words = vocabulary().words
    found = (w for w, (meaning, _) in words.items() if w.startswith(key) and meaning.lower() == w)
    return sorted(found, key=lambda w: (len(w), w))
