"""Load check for ``lookalike serve`` (not a test): queries/s and latency under concurrency.

Starts the real server as a subprocess on 127.0.0.1 over a Caltech-101 index (built in a
temporary folder unless ``--db`` is given), then runs ``--clients`` concurrent httpx clients
per scenario until ``--requests`` requests or ``--seconds`` have passed, whichever is first:

* ``upload``: ``POST /api/search`` with a JPEG that is *not* in the index (decode + embed);
* ``by-id``:  ``GET /api/images/{id}/similar`` (stored descriptor: no decode, no embedding).

Writes ``benchmarks/results/load.json`` (or ``--out``). It only ever talks to 127.0.0.1.

``--base REV`` compares the server of commit ``REV`` (checked out in a temporary worktree,
as benchmarks/ab.py does) with this checkout's, on the same index, in ``--rounds``
alternating rounds (A B, then B A, ...): each figure is a median over rounds, with the
ratio of the medians.

    python benchmarks/load.py --clients 4 --requests 400 --seconds 20
    python benchmarks/load.py --per-class 4 --clients 2 --requests 20 --seconds 10 --out /tmp/load.json
    python benchmarks/load.py --db INDEX --base REV --rounds 3 --requests 200 --out benchmarks/results/load-ab.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import caltech  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASET = caltech.DATA / "images"
RESULTS = ROOT / "benchmarks" / "results" / "load.json"
HOST = "127.0.0.1"  # never anything else: this tool must not load-test other machines
CLASSES = (
    "accordion",
    "airplanes",
    "Leopards",
    "Motorbikes",
    "Faces_easy",
    "ant",
    "bonsai",
    "chair",
)


@dataclass
class Scenario:
    """Latencies of one kind of request, and its failures."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def summary(self) -> dict:
        ms = np.asarray(self.latencies) * 1000
        done = len(self.latencies)
        return {
            "requests": done,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "queries_per_second": round(done / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if done else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if done else None,
            "mean_ms": round(float(ms.mean()), 1) if done else None,
        }


def dataset_images(per_class: int, skip: int = 0) -> list[Path]:
    """The first images of each benchmark class, in a fixed order."""
    out: list[Path] = []
    for name in CLASSES:
        out += sorted((DATASET / name).glob("*.jpg"))[skip : skip + per_class]
    return out


def build_index(folder: Path, per_class: int) -> Path:
    """Copy ``per_class`` images of each class under ``folder`` and index them."""
    photos = folder / "photos"
    for path in dataset_images(per_class):
        dest = photos / path.parent.name / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    db = folder / "index"
    command = [sys.executable, "-m", "lookalike", "index", str(photos), "--db", str(db)]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"indexing failed: {done.stderr[-2000:]}")
    return db


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(db: Path, log: Path, src: Path = ROOT / "src") -> Iterator[str]:
    """``lookalike serve`` from the sources in ``src``, in its own process (so the clients do
    not share its GIL); its output goes to a file, as an unread pipe could fill up and stall it."""
    port = free_port()
    command = [sys.executable, "-m", "lookalike", "serve", "--db", str(db), "--host", HOST]
    env = {**os.environ, "PYTHONPATH": str(src)}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)], stdout=output, stderr=subprocess.STDOUT, env=env
        )
    base = f"http://{HOST}:{port}"
    try:
        wait_until_up(base, process, log)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def wait_until_up(base: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{base}/api/info", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("server did not start in time")


Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


async def run_scenario(
    base: str, name: str, request: Request, clients: int, limit: int, seconds: float
) -> Scenario:
    """``clients`` workers share a request counter; each records its own latencies."""
    scenario = Scenario(name)
    counter = iter(range(limit))
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        for number in counter:
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            response = await request(client, number)
            if response.status_code == 200:
                scenario.latencies.append(time.perf_counter() - started)
            else:
                scenario.errors += 1

    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for number in range(clients):  # warm-up, untimed
            await request(client, number)
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        scenario.seconds = time.perf_counter() - started
    return scenario


def indexed_ids(base: str, query: bytes) -> list[int]:
    """Ids to search by: the whole (small) collection, ranked for one query."""
    files = {"file": ("q.jpg", query)}
    found = httpx.post(f"{base}/api/search", params={"k": 500}, files=files, timeout=60)
    return [m["id"] for m in found.json()["matches"]]


async def measure(base: str, args: argparse.Namespace, queries: list[bytes], ids: list[int]):
    """Run the upload scenario, then the by-id one, with the same clients and limits."""
    params = {"k": args.k}

    def upload(client: httpx.AsyncClient, n: int) -> Awaitable[httpx.Response]:
        files = {"file": (f"q{n}.jpg", queries[n % len(queries)], "image/jpeg")}
        return client.post("/api/search", params=params, files=files)

    def by_id(client: httpx.AsyncClient, n: int) -> Awaitable[httpx.Response]:
        return client.get(f"/api/images/{ids[n % len(ids)]}/similar", params=params)

    out = []
    for name, request in (("upload", upload), ("by-id", by_id)):
        out.append(
            await run_scenario(base, name, request, args.clients, args.requests, args.seconds)
        )
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, help="an existing index (default: build one)")
    parser.add_argument("--per-class", type=int, default=12, help="images per class to index")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=400, help="requests per scenario")
    parser.add_argument("--seconds", type=float, default=20.0, help="time cap per scenario")
    parser.add_argument("-k", type=int, default=10, help="matches per search")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--base", help="also run the server of this commit, alternating (A/B)")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (with --base)")
    return parser.parse_args()


def serve_and_measure(db: Path, tmp: Path, args: argparse.Namespace, src: Path) -> tuple[int, dict]:
    """One server from ``src`` under both scenarios: (indexed images, summaries by scenario)."""
    with running_server(db, tmp / "server.log", src) as base:
        images = httpx.get(f"{base}/api/info").json()["images"]
        queries = [p.read_bytes() for p in dataset_images(4, skip=args.per_class)]
        ids = indexed_ids(base, queries[0])
        scenarios = asyncio.run(measure(base, args, queries, ids))
    return images, {s.name: s.summary() for s in scenarios}


def compare(db: Path, tmp: Path, args: argparse.Namespace) -> dict:
    """``--base``: alternating rounds of the base commit's server and this checkout's."""
    import ab

    trees = {"base": ab.checkout(args.base), "head": ROOT}
    rounds: dict[str, list[dict]] = {"base": [], "head": []}
    for number in range(args.rounds):
        for side in (("base", "head") if number % 2 == 0 else ("head", "base")):
            rounds[side].append(serve_and_measure(db, tmp, args, trees[side] / "src")[1])
            print(side, json.dumps(rounds[side][-1]), flush=True)
    keys = ("queries_per_second", "p50_ms", "p99_ms")
    medians = {side: {name: {key: statistics.median(r[name][key] for r in runs) for key in keys}
                      for name in runs[0]} for side, runs in rounds.items()}
    ratios = {name: {key: round(medians["head"][name][key] / medians["base"][name][key], 3)
                     for key in keys} for name in medians["head"]}
    return {"base": args.base, "rounds": rounds, "medians": medians, "head_over_base": ratios}


def main() -> None:
    args = parse_args()
    info = caltech.run_info()  # the load at the start
    with tempfile.TemporaryDirectory(prefix="lookalike-load-") as tmp:
        db = args.db or build_index(Path(tmp), args.per_class)
        images, scenarios = serve_and_measure(db, Path(tmp), args, ROOT / "src")
        ab_result = compare(db, Path(tmp), args) if args.base else None
    report = {
        **info,
        "indexed_images": images,
        "clients": args.clients,
        "k": args.k,
        "scenarios": scenarios,
        **({"ab": ab_result} if ab_result else {}),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'scenario':<8} {'req':>5} {'err':>4} {'q/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for name, row in report["scenarios"].items():
        print(
            f"{name:<8} {row['requests']:>5} {row['errors']:>4} {row['queries_per_second']:>7}"
            f" {row['p50_ms']:>8} {row['p99_ms']:>8}"
        )
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
