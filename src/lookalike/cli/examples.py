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
        ("keep entries of files deleted from the card", "lookalike index /mnt/camera --db photos --no-prune"),
    ),
    "remove": (
        ("forget a folder", "lookalike remove ~/Pictures/old --db photos"),
        ("forget one file", "lookalike remove ~/Pictures/blurry.jpg --db photos"),
    ),
    "search": (
        ("the 5 closest photos", "lookalike search holiday.jpg --db photos --top 5"),
        ("only dogs, as a picture", "lookalike search dog.jpg --db photos --label 'golden retriever' --plot out.png"),
        ("a whole folder of queries, as JSON", "lookalike search queries/ --db photos --json"),
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
