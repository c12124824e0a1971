"""Time the post-processing steps of the descriptor study on the cached Lite0 features.

    python benchmarks/study/costs.py

Prints: extraction throughput recorded by extract.py, the cost of fitting centring and PCA on
the collection, of a brute-force search for one query, of query expansion (a second
search), and of database-side augmentation (a kNN over the whole collection at index time).
Timings are wall-clock on whatever machine runs it (the study ran on 2 shared cores).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from evaluate import OUT, Post, dba, knn, l2, load, qe  # noqa: E402


def best(f, reps=3):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> int:
    for f in sorted(OUT.glob("*.npz")):
        d = load(f.stem)
        n = len(d["gem3"])
        print(f"extract {f.stem:32s} {float(d['seconds']):7.1f}s  {n / float(d['seconds']):6.1f} img/s")
    x = l2(load("lite0-squash224")["gem3"].astype(np.float32))
    n = len(x)
    print(f"centre (mean of {n})         {best(lambda: x.mean(axis=0)) * 1e3:8.2f} ms")
    print(f"PCA fit (1280x1280 eigh)     {best(lambda: Post({'pw': 0.1}, x), 1):8.2f} s")
    db = Post({"center": True}, x)(x, None)
    q = db[:1]
    print(f"search 1 query x {n}        {best(lambda: knn(q, db, 100, False)) * 1e3:8.2f} ms")
    print(f"QE n=3 for 1 query (extra)   {best(lambda: qe(q, db, 3, 3, False)) * 1e3:8.2f} ms")
    print(f"DBA k=5 over {n} (build)    {best(lambda: dba(db, 5, 3), 1):8.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
