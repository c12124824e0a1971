"""The command line as a user runs it: real processes, exit codes, output formats."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lookalike
from conftest import PER_CLASS, SUBSET_CLASSES, caltech_image, copy_subset, edited
from lookalike import cli
from lookalike.index.catalogue import Catalogue

TOTAL = len(SUBSET_CLASSES) * PER_CLASS


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "lookalike", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def assert_clean_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    photos = copy_subset(root / "photos")
    proc = run("index", photos, "--db", root / "db", "--json")
    report = json.loads(proc.stdout)
    assert report["embedded"] == TOTAL and report["failed"] == []
    return root / "db", photos


def test_search_json_schema(cli_index):
    db, photos = cli_index
    query = photos / "Leopards" / "image_0002.jpg"
    out = json.loads(run("search", query, photos / "airplanes", "--db", db, "--top", "3", "--json").stdout)
    assert isinstance(out, list) and len(out) == 1 + PER_CLASS  # a folder expands to its images
    first = out[0]
    assert set(first) == {"query", "matches"} and first["query"] == str(query)
    assert [m["rank"] for m in first["matches"]] == [1, 2, 3]
    for m in first["matches"]:
        assert set(m) == {"rank", "path", "score", "labels", "kind", "inliers", "why"}
        assert os.path.isabs(m["path"]) and isinstance(m["score"], float)
        assert isinstance(m["labels"], list) and all(isinstance(x, str) for x in m["labels"])
    assert first["matches"][0]["path"] == str(query)
    # The query's own file is verified as the same picture; the others are only similar.
    assert first["matches"][0]["kind"] == "copy" and first["matches"][0]["inliers"] >= 15
    assert first["matches"][0]["why"] == f"same picture, {first['matches'][0]['inliers']} matching points"
    assert all(m["kind"] == "similar" and m["why"].startswith("similar") for m in first["matches"][1:])
    # The ranking options reach the search: with no verification, no word candidates either.
    plain = json.loads(run("search", query, "--db", db, "--top", "3", "--json", "--verify", "0",
                           "--words", "0", "--regions", "0", "--rerank", "none").stdout)
    assert plain[0]["matches"][0]["path"] == str(query)
    assert run("search", query, "--db", db, "--words", "-1", check=False).returncode == 2  # usage


def test_search_pipeline(cli_index, tmp_path):
    db, photos = cli_index
    # An edited copy: the plain cosine ranking misses its original, verification finds it.
    query = tmp_path / "edited.jpg"
    edited("Motorbikes", 5).save(query)
    out = json.loads(run("search", query, "--db", db, "-k", "5", "--json", "--pipeline", "cosine").stdout)
    with lookalike.Index.open(db, create=False) as index:
        spelled = [m.path for m in index.search(query, 5, pipeline="cosine").matches]
        default = [m.path for m in index.search(query, 5).matches]
    assert [m["path"] for m in out[0]["matches"]] == spelled
    assert default[0] == str(photos / "Motorbikes" / "image_0005.jpg") != spelled[0]


def test_search_text_and_plot(cli_index, tmp_path):
    db, photos = cli_index
    plot = tmp_path / "result.png"
    proc = run("search", photos / "watch" / "image_0001.jpg", "--db", db, "-k", "4", "--plot", plot)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("query ")
    # The query's own file comes first, marked as the same picture; then the similar ones.
    assert lines[1].startswith("  same picture") and lines[3] == "  similar:"
    assert len(lines) == 7 and lines[2].split()[0] == "1" and "matching points)" in lines[2]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(plot).size[0] > 500


def test_info(cli_index):
    db, _ = cli_index
    info = json.loads(run("info", "--db", db, "--json").stdout)
    assert info["images"] == TOTAL and info["model"] == "lite0-int8" and info["format_version"] == Catalogue.VERSION
    assert info["images_with_local_features"] == TOTAL
    assert info["top_labels"] and info["bytes_on_disk"] > 0
    # 40 images: exact store, and too few for a meaningful diffusion graph.
    assert info["store"] == "flat" and info["rerank"] == "qe"
    assert info["pipeline"] == "cosine,auto,verify:20,words:10,regions:10"
    assert info["transform"] == "none (too few images to learn from)"  # centring needs 100
    assert "images" in run("info", "--db", db).stdout


def test_search_add_puts_the_query_into_the_index(cli_index, tmp_path):
    db, photos = cli_index
    query = tmp_path / "new-leopard.jpg"
    query.write_bytes(caltech_image("Leopards", 30).read_bytes())
    run("search", query, "--db", db, "--add")
    out = json.loads(run("search", query, "--db", db, "-k", "1", "--json").stdout)
    assert out[0]["matches"][0]["path"] == str(query)
    run("remove", query, "--db", db)
    assert json.loads(run("info", "--db", db, "--json").stdout)["images"] == TOTAL


def test_user_errors_are_one_line(cli_index, tmp_path):
    db, photos = cli_index
    assert_clean_error(run("search", tmp_path / "missing.jpg", "--db", db, check=False), "no such query image")
    assert_clean_error(run("search", photos / "watch" / "image_0001.jpg", "--db", tmp_path / "nodb", check=False), "no index")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert_clean_error(run("search", bad, "--db", db, check=False), "bad.png")
    assert_clean_error(run("search", bad, "--db", db, "--label", "unicorn", check=False), "")
    assert_clean_error(run("index", tmp_path / "nowhere", "--db", db, check=False), "no such file or folder")
    assert_clean_error(run("index", photos, "--db", db, "--model", "lite2", check=False), "built with model")
    # A bad pipeline spec fails before anything is embedded, in search and in eval.
    query = photos / "watch" / "image_0001.jpg"
    assert_clean_error(run("search", query, "--db", db, "--pipeline", "cosine,magic", check=False),
                       "unknown stage 'magic' in pipeline 'cosine,magic'")
    assert run("search", "--db", db, check=False).returncode == 2  # argparse usage error


def test_eval_refuses_a_bad_pipeline_in_one_line(cli_index, capsys):
    # In process (eval --pipeline itself runs for real in test_evaluate.py).
    from lookalike import cli

    db, _ = cli_index
    assert cli.main(["eval", "--db", str(db), "--pipeline", "qe"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: pipeline 'qe' must start with 'cosine'"]


def _catalogue_count(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db / 'catalogue.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM images").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _start_index(photos: Path, db: Path) -> subprocess.Popen:
    # A shell without job control starts background jobs with SIGINT ignored, and children
    # inherit that; the child gets the default disposition back, as a terminal would give.
    return subprocess.Popen(
        [sys.executable, "-m", "lookalike", "index", str(photos), "--db", str(db), "--batch-size", "2", "--threads", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_progress(proc: subprocess.Popen, db: Path, at_least: int) -> None:
    deadline = time.time() + 120
    while _catalogue_count(db) < at_least:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "indexing made no progress"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_interrupted_index_resumes(tmp_path, sig):
    # 150 photos, so that the run is surely still going when the signal comes (the int8
    # model indexes the 40-photo subset in under a second).
    photos = copy_subset(tmp_path / "photos", per_class=30)
    total = len(SUBSET_CLASSES) * 30
    db = tmp_path / "db"
    proc = _start_index(photos, db)
    _wait_for_progress(proc, db, at_least=4)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    kept = _catalogue_count(db)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr and "resume" in stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    assert 4 <= kept < total
    report = json.loads(run("index", photos, "--db", db, "--json").stdout)
    assert report["embedded"] == total - kept and report["unchanged"] == kept
    out = json.loads(run("search", photos / "sunflower" / "image_0008.jpg", "--db", db, "-k", "1", "--json").stdout)
    assert out[0]["matches"][0]["score"] > 0.99


def test_eval_with_folders_and_csv(cli_index, tmp_path):
    db, photos = cli_index
    metrics = json.loads(run("eval", "--db", db, "--json").stdout)
    assert metrics["queries"] == TOTAL
    # Five visually distinct classes: same-class neighbours come first almost always.
    assert metrics["P@1"] >= 0.9 and metrics["mAP"] >= 0.7
    assert 0 <= metrics["recall@10"] <= 1
    truth = tmp_path / "truth.csv"
    leopards = [f"{photos}/Leopards/image_{n:04d}.jpg" for n in range(1, PER_CLASS + 1)]
    truth.write_text("query,relevant\n" + f"{leopards[0]},{';'.join(leopards[1:])}\n")
    single = json.loads(run("eval", "--db", db, "--truth", truth, "--json").stdout)
    assert single["queries"] == 1 and single["P@1"] == 1.0
    assert_clean_error(run("eval", "--db", db, "--truth", tmp_path / "none.csv", check=False), "cannot read ground truth")


def test_ctrl_c_while_a_native_library_loads_is_an_interruption(monkeypatch, capsys):
    """Python turns a Ctrl-C during an extension's import into ImportError (from the
    KeyboardInterrupt): still exit 130 with one line, not a traceback."""

    def loading(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise ImportError("initialization failed") from interrupt

    monkeypatch.setitem(cli.COMMANDS, "info", loading)
    assert cli.main(["info", "--db", "anywhere"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
