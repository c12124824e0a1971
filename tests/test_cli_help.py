"""The command line's help and start-up: every command's ``--help`` ends with examples, the
search help keeps tuning apart, light commands import no heavy library, and results print
readably in Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lookalike import Index
from lookalike.cli import build_parser

SRC = Path(__file__).resolve().parents[1] / "src"


def commands() -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {"lookalike": parser, **sub.choices}


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_help_ends_with_examples(name: str) -> None:
    text = commands()[name].format_help()
    tail = text[text.index("examples:"):].splitlines()
    runs = [line.strip() for line in tail if line.strip().startswith(("lookalike ", "LOOKALIKE_"))]
    assert 2 <= len(runs) <= 3 and text.rstrip().endswith(runs[-1])
    assert all("lookalike " + ("" if name == "lookalike" else name) in run for run in runs)


def test_search_help_keeps_tuning_apart() -> None:
    text = commands()["search"].format_help()
    basics, tuning = text.split("tuning (experts")
    for option in ("--top", "--label", "--plot", "--json"):
        assert option in basics.split("options:")[1]
    for option in ("--route", "--pipeline", "--verify", "--words", "--regions"):
        assert option not in basics.split("options:")[1] and option in tuning
    assert "2019" not in text and "predicted ImageNet categories" in tuning


def imported_after(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.split()
    return {name.split(".")[0] for name in out}


def test_help_and_search_skip_heavy_imports(built_index, tmp_path) -> None:
    """``--help`` loads no NumPy, ONNX Runtime or OpenCV; a search never the ``onnx`` package
    (only building the model needs it)."""
    helped = imported_after(
        "import contextlib, io\nfrom lookalike.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): main(['--help'])"
    )
    assert not helped & {"numpy", "onnxruntime", "onnx", "cv2", "PIL"}, helped
    query = built_index[1] / "Leopards" / "image_0001.jpg"
    searched = imported_after(
        "import contextlib, io\nfrom lookalike.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()): main(['search', {str(query)!r}, '--db', {str(built_index[0])!r}])"
    )
    assert "onnxruntime" in searched and "onnx" not in searched


def test_results_read_well_in_python(index: Index, built_index) -> None:
    result = index.search(built_index[1] / "Leopards" / "image_0001.jpg")
    text = repr(result)
    lines = text.splitlines()
    assert lines[0].startswith("<SearchResult '") and f"{len(result.matches)} matches" in lines[0]
    first = result.matches[0]
    assert lines[1].strip() == repr(first)
    assert repr(first).startswith(f"<Match #1 {first.score:.3f} '{first.path}' [")
    assert len(lines) == 1 + 5 + (len(result.matches) > 5) and text.endswith(">")
    assert repr(index).startswith("<lookalike.Index '")
