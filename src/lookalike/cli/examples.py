"""Examples that end every command's ``--help``, kept in one place: :func:`add_examples`
puts them under each parser that :func:`~lookalike.cli.build_parser` registered."""

from __future__ import annotations

import argparse

EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "lookalike": (
        ("index a folder of photos", "lookalike index ~/Pictures --db photos"),
        ("search it with a photo", "lookalike search holiday.jpg --db photos"),
        ("browse and search in the browser", "lookalike serve --db photos"),
    ),
    "index": (
        ("index two folders (again later: only new or changed files)", "lookalike index ~/Pictures /mnt/camera --db photos"),
        ("skip a folder of screenshots", "lookalike index ~/Pictures --db photos --exclude 'Screenshots'"),
        ("images on the web, by reference", "lookalike index --urls links.txt --db photos"),
    ),
    "remove": (
        ("forget a folder", "lookalike remove ~/Pictures/old --db photos"),
        ("forget one file", "lookalike remove ~/Pictures/blurry.jpg --db photos"),
    ),
    "search": (
        ("the 5 closest photos", "lookalike search holiday.jpg --db photos --top 5"),
        ("only dogs, as a picture", "lookalike search dog.jpg --db photos --label dog --plot out.png"),
        ("by words instead of a photo, as JSON", "lookalike search --text 'dog on a sofa' --db photos --json"),
    ),
    "tags": (
        ("the words that name the most photos here", "lookalike tags --db photos"),
        ("words starting with 'do'", "lookalike tags do --db photos --limit 20"),
    ),
    "watch": (
        ("keep the index current while photos arrive (Ctrl-C stops)", "lookalike watch ~/Pictures --db photos"),
        ("wait for 10 quiet seconds before indexing a burst", "lookalike watch /mnt/camera --db photos --quiet 10"),
    ),
    "dupes": (
        ("edited copies of the same picture, grouped, with a file to keep", "lookalike dupes --db photos"),
        ("identical files at several places, as CSV", "lookalike dupes --db photos --level exact --csv > dupes.csv"),
        ("never group images 12 and 40 again", "lookalike dupes --db photos --not-duplicate 12 40"),
    ),
    "info": (
        ("what the index holds", "lookalike info --db photos"),
        ("the same as JSON", "lookalike info --db photos --json"),
    ),
    "eval": (
        ("retrieval quality, same folder = relevant", "lookalike eval --db photos"),
        ("with your own ground truth", "lookalike eval --db photos --truth truth.csv --json"),
    ),
    "check": (
        ("look for damage", "lookalike check --db photos"),
        ("rebuild what can be rebuilt", "lookalike check --db photos --repair"),
    ),
    "serve": (
        ("the page at http://127.0.0.1:8000/ (read-only)", "lookalike serve --db photos"),
        ("let the page add photos", "LOOKALIKE_TOKEN=$(openssl rand -hex 16) lookalike serve --db photos"),
    ),
}


def epilog(command: str) -> str:
    """The examples of ``command`` as help text."""
    lines = ["examples:"]
    for what, line in EXAMPLES[command]:
        lines += [f"  # {what}", f"  {line}"]
    return "\n".join(lines)


def add_examples(parser: argparse.ArgumentParser, commands: dict[str, argparse.ArgumentParser]) -> None:
    """End the main help and each command's help with its examples (newlines kept)."""
    for name, command_parser in [("lookalike", parser), *commands.items()]:
        if name in EXAMPLES:
            command_parser.epilog = epilog(name)
            command_parser.formatter_class = argparse.RawDescriptionHelpFormatter
