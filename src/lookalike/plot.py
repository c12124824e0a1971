"""The result picture: the query and its matches in a grid, scores and labels as titles.

Uses matplotlib's Agg backend (no display needed); imported only when a plot is asked for,
so plain searches do not pay matplotlib's start-up time.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from .errors import ImageError, LookalikeError
from .images import is_url, load_image
from .query.results import SearchResult, shown_path

_THUMB = 256


def _thumbnail(location: str):
    if is_url(location):  # an image indexed by reference: named, never downloaded here
        return None
    try:
        image = load_image(location, target_size=_THUMB)
        image.thumbnail((_THUMB, _THUMB))
        return image
    except ImageError:
        return None


def plot_result(result: SearchResult, out: str | Path, *, columns: int = 6) -> Path:
    """Write a PNG grid for one search result and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(result.query, "query", result.query_labels[:2])] + [
        (m.path, f"#{m.rank}  {m.score:.3f}", m.shown_labels(2)) for m in result.matches
    ]
    cols = min(columns, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (location, heading, labels) in zip(axes.flat, panels, strict=False):
        image = _thumbnail(location)
        if image is not None:
            ax.imshow(image)
        label = textwrap.shorten(", ".join(labels), width=40, placeholder="…")
        name = _name(location)
        ax.set_title(f"{heading}\n{label}\n{name}", fontsize=8, color="#b00020" if heading == "query" else "black")
    fig.tight_layout()
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise LookalikeError(f"cannot write plot {out}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
    return out


def _name(location: str) -> str:
    """A panel's caption: the file name, or the end of a URL."""
    if is_url(location):
        return location if len(location) <= 30 else "…" + location[-29:]
    return textwrap.shorten(shown_path(Path(location).name), width=30, placeholder="…")
