"""Processes, crashes and concurrency: real ``lookalike`` processes on real Caltech photos.

* One writer at a time: a second ``lookalike index`` on an index being written fails at once
  with ``--no-wait``, else waits and then finds nothing to do; a search meanwhile answers.
* Crash safety: an indexing run killed (SIGKILL) at 20 points over its course, then
  interrupted (SIGINT) at 5, each time resumed by the next run, ends with exactly the
  collection on disk: every file once, nothing missing, nothing extra, derived files level.

Paths and names users get wrong are in test_fuzz.py (hostile and broken input).

Every subprocess runs with a timeout. The figures the crash test asserts are quoted in
docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, suppress
from pathlib import Path

import pytest

from conftest import REPO, copy_subset
from lookalike import Index
from lookalike.errors import IndexBusyError, LookalikeError
from lookalike.index.catalogue import Catalogue
from lookalike.index.graph import KnnGraph
from lookalike.index.lock import deferring_interrupts, is_locked, writer_lock
from lookalike.index.transform import Transform
from lookalike.index.vectors import FlatStore
from lookalike.indexing import hash_bytes

TIMEOUT = 180  # seconds any one subprocess may take before the test fails
PATH = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
ENV = {**os.environ, "PYTHONPATH": PATH}  # this checkout's lookalike


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "lookalike.cli", *map(str, args)]


def run(*args: object, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), env=ENV, capture_output=True, text=True, timeout=timeout)


def start(argv: list[str], out: Path, **kw) -> subprocess.Popen:
    """A process whose stdout and stderr go to ``out``.stdout/.stderr (no pipe to fill)."""
    return subprocess.Popen(
        argv, env=ENV, stdout=open(out.with_suffix(".stdout"), "w"),  # noqa: SIM115
        stderr=open(out.with_suffix(".stderr"), "w"), text=True, **kw,  # noqa: SIM115
    )


def output(out: Path) -> tuple[str, str]:
    return out.with_suffix(".stdout").read_text(), out.with_suffix(".stderr").read_text()


def stop(*procs: subprocess.Popen) -> None:
    """Make sure no process outlives its test (stopped ones are woken to die)."""
    for proc in procs:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait(timeout=30)


def wait_until(condition, timeout: float, what: str, interval: float = 0.01) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def catalogued(db: Path) -> list[tuple[str, int, int]]:
    """``(location, size, mtime_ns)`` of the committed files, as another process reads them."""
    if not (db / "catalogue.sqlite").exists():
        return []
    try:
        with closing(sqlite3.connect(db / "catalogue.sqlite", timeout=10)) as con:
            return con.execute("SELECT location, size, mtime_ns FROM files").fetchall()
    except sqlite3.OperationalError:  # created, but its tables not yet
        return []


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr


# --- one writer at a time -----------------------------------------------------------------
def test_second_writer_fails_with_no_wait_or_waits_and_finds_nothing_to_do(tmp_path):
    photos = copy_subset(tmp_path / "photos", ("airplanes", "Motorbikes", "Faces_easy", "watch"), 50)
    db = tmp_path / "db"
    # The first run is niced so that the processes started against it get the CPU first.
    first = start(cli("index", photos, "--db", db, "--json"), tmp_path / "first",
                  preexec_fn=lambda: os.nice(10))
    procs = [first]
    try:
        wait_until(lambda: catalogued(db) or first.poll() is not None, TIMEOUT,
                   "the first run's first batch")
        # Freeze the writer in the middle of its run (it keeps its lock), so that what
        # follows cannot race its end however fast the machine is.
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None and is_locked(db)

        # A search while the first run is writing: it answers from what is committed.
        query = sorted(photos.rglob("*.jpg"))[0]  # discovered first, so in the first batch
        search = run("search", query, "--db", db, "--top", "3", "--json")
        assert search.returncode == 0, search.stderr
        matches = json.loads(search.stdout)[0]["matches"]
        assert matches[0]["path"] == str(query) and matches[0]["score"] > 0.99
        assert all(Path(m["path"]).is_relative_to(photos) for m in matches)
        busy = run("index", photos, "--db", db, "--no-wait", timeout=60)  # it would wait for ever
        assert_one_line_error(busy, f"another lookalike run is writing to {db}")
        assert_one_line_error(run("remove", photos / "watch", "--db", db, "--no-wait", timeout=60),
                              "another lookalike run is writing")
        adding = run("search", query, "--db", db, "--add", "--no-wait", "--json", timeout=60)
        assert json.loads(adding.stdout)[0]["matches"]  # the search is done, then the add fails
        assert_one_line_error(adding, "another lookalike run is writing")

        second = start(cli("index", photos, "--db", db, "--json"), tmp_path / "second")
        procs.append(second)
        wait_until(lambda: "waiting" in output(tmp_path / "second")[1], TIMEOUT,
                   "the second run to say it waits", interval=0.05)
        assert second.poll() is None  # waiting, not failed
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=TIMEOUT) == 0 and second.wait(timeout=TIMEOUT) == 0
    finally:
        stop(*procs)
    first_report = json.loads(output(tmp_path / "first")[0])
    second_out, second_err = output(tmp_path / "second")
    second_report = json.loads(second_out)
    assert first_report["embedded"] == 200 and first_report["failed"] == []
    assert second_report["embedded"] == 0 and second_report["unchanged"] == 200
    waiting = [line for line in second_err.splitlines() if "waiting" in line]
    assert waiting == [f"another lookalike run is writing to {db}; waiting (Ctrl-C to stop)"]


def test_api_add_and_remove_wait_or_raise(tmp_path):
    photos = copy_subset(tmp_path / "photos", ("watch",), 3)
    db = tmp_path / "db"
    with Index.open(db) as index:
        with writer_lock(db):  # another writer (a lock is per open file, even in one process)
            with pytest.raises(IndexBusyError, match="another lookalike run is writing"):
                index.add([photos], wait=False)
            with pytest.raises(LookalikeError, match="another lookalike run is writing"):
                index.remove([photos], wait=False)
        assert len(index) == 0

        other, calls = writer_lock(db), []
        other.__enter__()  # another writer holds the lock, and lets it go when told we wait
        report = index.add([photos], on_wait=lambda: (calls.append(1), other.__exit__(None, None, None)))
        assert calls == [1] and report.embedded == 3
        assert not is_locked(db)  # released when the call returned


def test_ctrl_c_waits_until_a_write_is_whole():
    done = []

    @deferring_interrupts
    def write() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between BEGIN and COMMIT, say
        time.sleep(0.1)  # a handler would have raised by now
        done.append("committed")

    with pytest.raises(KeyboardInterrupt):
        write()
    assert done == ["committed"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_long_lived_index_sees_what_another_writer_added(tmp_path):
    """``search --add`` or a long-lived Index: its store in memory must not be saved over
    images another process added meanwhile."""
    first = copy_subset(tmp_path / "first", ("watch",), 3)
    second = copy_subset(tmp_path / "second", ("Leopards",), 3)
    db = tmp_path / "db"
    with Index.open(db) as old:
        old.add([first])
        old.search(first / "watch" / "image_0001.jpg", k=1)  # its store is now loaded
        with Index.open(db) as other:
            other.add([second])
        old.add([tmp_path / "first"])  # nothing new here, but it writes and saves the store
        assert len(old.store) == len(old) == 6
    with Index.open(db) as fresh:
        top = fresh.search(second / "Leopards" / "image_0002.jpg", k=1).matches[0]
        assert top.path == str(second / "Leopards" / "image_0002.jpg")


# --- crash safety --------------------------------------------------------------------------
CRASH_CLASSES = ("airplanes", "Motorbikes", "Faces_easy", "watch")
CRASH_PER_CLASS = 50  # 200 photos
TIME_POINTS = 16  # kills by time, spread from the start of a run to its last commit
END_POINTS = 4  # kills in the end stages: prune, store save, transform refit, graph linking
SIGINT_POINTS = 5
# `lookalike index` itself, with one change: the neighbour graph is linked at the end of
# every run, as it is from RerankParams.min_images (500) images, so that this small
# collection goes through every end stage too.
DRIVER = "\n".join([
    "import sys", "from lookalike import api", "from lookalike.cli import main",
    "api.Index.rerank_method = lambda self, options=None: 'diffusion'", "sys.exit(main(sys.argv[1:]))",
])


class Collection:
    """The photo folder, the index, and what is committed, read as another process would."""

    def __init__(self, root: Path):
        self.photos = copy_subset(root / "photos", CRASH_CLASSES, CRASH_PER_CLASS)
        self.db = root / "db"
        self.logs = root / "logs"
        self.logs.mkdir()
        self.stash = root / "stash"  # files hidden from the folder (it shrinks, then grows)
        self.procs: list[subprocess.Popen] = []

    def on_disk(self) -> dict[str, tuple[int, int]]:
        return {
            str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in self.photos.rglob("*.jpg")
        }

    def committed(self, disk: dict[str, tuple[int, int]] | None = None) -> set[str]:
        """Files whose catalogue row matches the file on disk (``disk``: as it is now)."""
        disk = disk or self.on_disk()
        return {loc for loc, size, mtime in catalogued(self.db) if disk.get(loc) == (size, mtime)}

    def until_committed(self, proc: subprocess.Popen, count: int | None = None) -> None:
        """Wait until ``count`` files (default: all) are committed, or the run ended. The
        files do not change during a run, so they are looked at once: polls cost little."""
        disk = self.on_disk()
        count = len(disk) if count is None else count
        wait_until(lambda: len(self.committed(disk)) >= count or proc.poll() is not None,
                   TIMEOUT, f"{count} files committed")

    def rewrite_committed(self) -> None:
        """Give the next run every file to do: the committed ones get a byte more after the
        JPEG's end (the same picture, new content); the others are still to be resumed."""
        for location in self.committed():
            with open(location, "ab") as f:
                f.write(b"\0")

    def hide(self, names: list[str]) -> None:
        """Move files out of the folder (``hide([])`` moves them back)."""
        for name in names or [str(p.relative_to(self.stash)) for p in self.stash.rglob("*.jpg")]:
            source, target = (self.photos, self.stash) if names else (self.stash, self.photos)
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source / name, target / name)

    def start(self) -> tuple[subprocess.Popen, Path, float]:
        out = self.logs / f"run{len(self.procs) + 1:02d}"
        argv = [sys.executable, "-c", DRIVER, "index", self.photos, "--db", self.db, "--json",
                "--batch-size", "8"]  # small batches: commits all along the run
        self.procs.append(start([str(a) for a in argv], out))
        return self.procs[-1], out, time.monotonic()


def signal_at(proc: subprocess.Popen, when: float, sig: int) -> None:
    """Send ``sig`` at ``when`` (monotonic) unless the run ended; its exit code tells."""
    while time.monotonic() < when and proc.poll() is None:
        time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(sig)


def test_indexing_killed_or_interrupted_anywhere_resumes_to_the_exact_collection(tmp_path):
    c = Collection(tmp_path)
    total = len(c.on_disk())
    try:
        # 1. A first, complete run; then a second one, measured, with the whole collection to
        #    do again like every later run: when it locks, last commits and ends.
        proc, out, began = c.start()
        assert proc.wait(timeout=TIMEOUT) == 0, output(out)[1]
        assert json.loads(output(out)[0])["embedded"] == total
        c.rewrite_committed()
        proc, out, began = c.start()
        wait_until(lambda: is_locked(c.db) or proc.poll() is not None, TIMEOUT, "the lock")
        locked = time.monotonic() - began  # seconds into the run
        c.until_committed(proc)
        last_commit = time.monotonic() - began
        assert proc.wait(timeout=TIMEOUT) == 0, output(out)[1]
        ended = time.monotonic() - began
        assert json.loads(output(out)[0])["embedded"] == total
        print(f"measured: lock {locked:.2f} s, last commit {last_commit:.2f} s, end {ended:.2f} s")

        # 2. SIGKILL, one per run, each run resuming what the last kill left: 16 by time up to
        #    the measured last commit, 4 in the end stages (by fractions of the measured ones),
        #    where the folder loses, then regains 80 photos: prune and transform refit too.
        hidden = [str(Path(p).relative_to(c.photos)) for p in sorted(c.on_disk())[-80:]]
        kills = []
        for point in range(TIME_POINTS + END_POINTS):
            c.rewrite_committed()
            if point >= TIME_POINTS:
                c.hide(hidden if (point - TIME_POINTS) % 2 == 0 else [])
            proc, out, began = c.start()
            if point < TIME_POINTS:
                when = began + (point + 0.5) / TIME_POINTS * 0.9 * last_commit  # runs vary
                stage = "by time"
            else:
                c.until_committed(proc)
                fraction = (point - TIME_POINTS) / (END_POINTS + 1)  # margin: runs vary
                when = time.monotonic() + fraction * (ended - last_commit)
                stage = "end stages"
            signal_at(proc, when, signal.SIGKILL)
            code = proc.wait(timeout=TIMEOUT)
            assert code in (-signal.SIGKILL, 0), output(out)[1]  # killed, or ended before
            killed = code == -signal.SIGKILL
            done = len(c.committed())
            landed = ("finished" if not killed else "before the first commit" if done == 0
                      else "between commits" if done < len(c.on_disk()) else "after the last commit")
            kills.append((stage, landed))
            print(f"kill {point}: {stage} at {when - began:.2f} s: {landed} ({done} committed)")
        assert c.stash.exists() and not any(c.stash.rglob("*.jpg"))  # all regained

        # A run may be faster than the measured one, and an end stage is over in a fraction
        # of a second: at least 16 of 20 kills must hit a running process, in every part.
        by_time = [landed for stage, landed in kills if stage == "by time"]
        at_end = [landed for stage, landed in kills if stage == "end stages"]
        assert {"before the first commit", "between commits"} <= set(by_time), kills
        assert at_end.count("after the last commit") >= 2, kills
        assert sum(landed != "finished" for _, landed in kills) >= 16, kills

        # 3. SIGINT: exit 130, "interrupted", and the next run skips what was committed. Once
        #    a run holds the lock (the CLI runs): at once, after half its commits (3 times),
        #    after its last commit (given the whole collection to do again first).
        c.rewrite_committed()
        interrupted = 0
        for point in range(SIGINT_POINTS):
            last = point == SIGINT_POINTS - 1
            if last:
                c.rewrite_committed()
            before = c.committed()
            pending = total - len(before)
            proc, out, began = c.start()
            wait_until(lambda p=proc: is_locked(c.db) or p.poll() is not None, TIMEOUT, "lock")
            if last:
                c.until_committed(proc)
            elif point:
                c.until_committed(proc, len(before) + pending // 2)
            signal_at(proc, time.monotonic(), signal.SIGINT)
            code = proc.wait(timeout=TIMEOUT)
            sent = code == 130
            stdout, stderr = output(out)
            assert "Traceback" not in stderr, stderr
            assert code in (130, 0), (code, stderr)  # interrupted, or ended before
            if sent:
                interrupted += 1
                assert stderr.strip().splitlines()[-1].startswith("interrupted"), stderr
            if stdout.strip():  # the report (absent when Ctrl-C came before or after it)
                report = json.loads(stdout)
                assert report["unchanged"] == len(before), (report, len(before))
                assert report["embedded"] <= pending
            print(f"SIGINT {point}: {'interrupted' if sent else 'finished'}, "
                  f"{len(c.committed())} of {total} committed")
        assert interrupted >= SIGINT_POINTS - 1

        # 4. A last run completes, and embeds only what no earlier run committed.
        before = c.committed()
        proc, out, began = c.start()
        assert proc.wait(timeout=TIMEOUT) == 0, output(out)[1]
        report = json.loads(output(out)[0])
        assert report["embedded"] == total - len(before) and report["failed"] == []
    finally:
        stop(*c.procs)

    # Exactly the collection: every file once, its current content, nothing missing or
    # extra, and the derived files level with the catalogue (saved by the last run).
    disk = c.on_disk()
    with Index.open(c.db, create=False) as index:
        catalogue = index.catalogue
        # The derived files as the last run saved them, before this process touches them.
        fingerprint = Transform.from_json(catalogue.get_meta("transform")).fingerprint
        saved_store = FlatStore.load(c.db, catalogue.generation)
        saved_graph, graph_generation = KnnGraph.load(c.db, fingerprint)
        assert saved_store is not None and saved_graph is not None
        assert graph_generation == catalogue.generation
        files = catalogue.files_by_location()
        assert set(files) == set(disk) and len(files) == total
        assert catalogue.count_images() == total and not catalogue.failures()
        for location, record in files.items():
            assert (record.size, record.mtime_ns) == disk[location]
            content = hash_bytes(Path(location).read_bytes())
            assert Catalogue.image_id_for_hash(catalogue.db, content) == record.image_id
        ids = {record.image_id for record in files.values()}
        assert len(ids) == total
        assert set(saved_store.ids.tolist()) == set(saved_graph.ids.tolist()) == ids
        assert len(index.store) == total and set(index.graph().ids.tolist()) == ids
        for location in sorted(disk)[:: total // 5]:
            assert index.search(location, k=1).matches[0].path == location
    print(f"SIGKILL points: {kills}; SIGINT points interrupted: {interrupted}/{SIGINT_POINTS}")

