"""Cold start of the command line: ``lookalike --help`` and one ``lookalike search`` on a
10,000-image index, each a fresh process, as a user runs them.

    python benchmarks/cold_start.py [--n 10000] [--runs 7] [--base-src ../other/src]
                                    [--out benchmarks/results/cold_start.json]

The index: the bundled sample photos (``examples/images``) are indexed for real, then
benchmarks/ann.py's generator writes ``--n`` images derived from their descriptors, each with
the real local features and visual words of the photo it was made from (so verification and
the word index work as on real photos). One untimed search builds the store's files and
Python's bytecode cache; then each command runs ``--runs`` times, alternating, and the median
wall and CPU seconds (user + system of the child, from ``wait4``) are reported beside
``python -c pass`` (the interpreter's own start). The query is ``examples/queries/leopard.jpg``.
``stages_cpu_s`` splits one cold search, in a fresh process, into the CPU seconds of its
imports, opening the index, creating the inference session, the first search and a second
(warm) one, and a warm search without the regional pass (``pipeline`` without ``regions``).
``--base-src`` also runs both commands from another checkout's ``src`` (an A/B against the
parent commit), alternating with this one in each round, on the same index.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ann  # noqa: E402

import lookalike  # noqa: E402
from lookalike.embed.labels import imagenet_labels  # noqa: E402
from lookalike.index.words import shipped_vocabulary  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUERY = REPO / "examples" / "queries" / "leopard.jpg"


def sample_base(folder: Path) -> tuple[np.ndarray, list[str], list]:
    """Descriptors, top labels and stored local features (as catalogue blobs) of the sample
    photos, indexed for real into ``folder``."""
    vocabulary = shipped_vocabulary()
    with lookalike.Index.open(folder) as index:
        index.add([REPO / "examples" / "images"])
        ids, vectors = index.catalogue.all_vectors()
        labels = index.catalogue.labels_for(ids.tolist())
        stored = index.catalogue.local_features_for(ids.tolist())
    names = imagenet_labels()
    top = [names[labels[i][0][0]] for i in ids.tolist()]
    features = []
    for image_id in ids.tolist():
        if image_id not in stored:
            features.append(None)
            continue
        points, descriptors = stored[image_id]
        features.append((
            points.astype(np.float16).tobytes(),
            descriptors.tobytes(),
            vocabulary.quantise(descriptors).tobytes(),
        ))
    return vectors, top, features


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``command`` (its output discarded)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}: {process.stderr.read().decode()}")
    process.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime


SPLIT = """
import json, resource, sys
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
out, last = {}, cpu()
def mark(name):
    global last
    now = cpu()
    out[name] = round(now - last, 3)
    last = now
import cv2, onnxruntime, lookalike.paths
from lookalike import Index, SearchOptions
mark("imports")
index = Index.open(sys.argv[1], create=False)
mark("open")
index.embedder.session
mark("session")
index.search(sys.argv[2])
mark("first search")
index.search(sys.argv[2])
mark("warm search")
index.search(sys.argv[2], options=SearchOptions(pipeline="cosine,auto,verify:20,words:10"))
mark("warm search without regions")
print(json.dumps(out))
"""


def stages(folder: Path, env: dict) -> dict:
    """CPU seconds of each step of a cold search, in a fresh process (on one BLAS thread, as
    ``lookalike search`` runs; the steps run one after another here, while a search loads
    the index's files as its query is being embedded)."""
    command = [sys.executable, "-c", SPLIT, str(folder), str(QUERY)]
    env = {"OPENBLAS_NUM_THREADS": "1", **env}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--base-src", type=Path, help="another checkout's src/ to compare")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/cold_start.json")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users' installs have their bytecode cached
    base_env = {**env, "PYTHONPATH": str(args.base_src.resolve())} if args.base_src else None
    lookalike_cli = [sys.executable, "-m", "lookalike"]
    with tempfile.TemporaryDirectory() as scratch:
        base, labels, features = sample_base(Path(scratch) / "sample")
        folder = Path(scratch) / "index"
        ann.write_catalogue(folder, base, labels, args.n, features)
        search = [*lookalike_cli, "search", str(QUERY), "--db", str(folder)]
        commands = {
            "python -c pass": ([sys.executable, "-c", "pass"], env),
            "lookalike --help": ([*lookalike_cli, "--help"], env),
            "lookalike search": (search, env),
        }
        if base_env:
            commands["base: lookalike --help"] = ([*lookalike_cli, "--help"], base_env)
            commands["base: lookalike search"] = (search, base_env)
        for command, command_env in commands.values():  # untimed: store files, bytecode cache
            timed(command, command_env)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (command, command_env) in commands.items():
                samples[name].append(timed(command, command_env))
        split = stages(folder, env)
    result = {
        "n_images": args.n,
        "runs": args.runs,
        "query": str(QUERY.relative_to(REPO)),
        "base_src": str(args.base_src) if args.base_src else None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg()[0],
        "median_s": {
            name: {
                "wall": round(statistics.median(w for w, _ in runs), 3),
                "cpu": round(statistics.median(c for _, c in runs), 3),
                "wall_min": round(min(w for w, _ in runs), 3),
            }
            for name, runs in samples.items()
        },
        "stages_cpu_s": split,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
