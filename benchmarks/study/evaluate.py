"""Evaluate global-descriptor pipelines on cached features (see docs/descriptor.md).

Class level (Caltech-101 without BACKGROUND_Google, 8,677 images): every image queries all
the others (itself excluded), relevant = same label, mAP over the full ranking and P@1.
Instance level: 300 fixed-seed transformed queries (made by ``extract.py --instance``) are
searched against the whole 8,677-image database; recall@1 = the original is ranked first.

A pipeline is a dict of steps, applied in this order::

    pool     gap | gem2 | gem3 | gem4 | max        (global pooling of the feature map)
    flip     average with the mirrored image's descriptor (before L2)
    ms       extra tag(s) whose descriptors are averaged in (multi-scale)
    center   subtract the collection mean, then L2
    pw       PCA-whitening learned on the collection: x -> V^T (x - m) * (lam + a*mean(lam))^-pw,
             then L2 (pw = 0.5 is full whitening; ``shrink`` = a)
    dim      keep the first ``dim`` principal components (with pw, or pw=0 for plain PCA)
    logits   concatenate w * L2(softmax(logits)) (Caltech-specific!), then L2
    dba      (k, alpha): database-side augmentation, x_i -> L2(sum_{j in kNN(i), j incl. i} s_ij^alpha x_j)
    qe       (n, alpha): alpha query expansion, q -> L2(q + sum_{top n} s^alpha x)

With ``dba`` the class-level figure is given both ways: ``q=db`` (the query is a collection
item and uses its augmented vector, as in the reference numbers) and ``q=raw`` (the query
is an outside image: raw descriptor against the augmented database).

    python benchmarks/study/evaluate.py --suite lite0           # the Lite0 study table
    python benchmarks/study/evaluate.py --suite lite2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path("/tmp/lookalike-study")
_CACHE: dict[str, dict] = {}


def load(tag: str) -> dict:
    if tag not in _CACHE:
        with np.load(OUT / f"{tag}.npz") as z:
            _CACHE[tag] = {k: z[k] for k in z.files}
    return _CACHE[tag]


def l2(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- descriptors
def raw_descriptor(tag: str, cfg: dict, instance: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(pooled L2 descriptor, logits) for the database or the instance queries."""
    tags = [tag] + list(cfg.get("ms", []))
    acc, logits = 0, None
    for t in tags:
        t = ("inst-" + t) if instance else t
        d = load(t)
        x = d[cfg.get("pool", "gem3")].astype(np.float32)
        lg = d["logits"].astype(np.float32)
        if cfg.get("flip"):
            f = load(t + "-flip")
            x = x + f[cfg.get("pool", "gem3")].astype(np.float32)
            lg = lg + f["logits"].astype(np.float32)
        acc = acc + l2(x)
        logits = lg if logits is None else logits + lg
    return l2(acc), logits


class Post:
    """Collection-learned post-processing (centring, PCA/whitening, logits concat)."""

    def __init__(self, cfg: dict, db: np.ndarray):
        self.cfg = cfg
        self.mean = db.mean(axis=0) if (cfg.get("center") or "pw" in cfg or "dim" in cfg) else None
        self.proj = None
        if "pw" in cfg or "dim" in cfg:
            xc = db - self.mean
            cov = xc.T @ xc / len(xc)
            lam, vec = np.linalg.eigh(cov.astype(np.float64))
            order = np.argsort(-lam)
            lam, vec = np.maximum(lam[order], 1e-12), vec[:, order]
            dim = cfg.get("dim", len(lam))
            lam = lam + cfg.get("shrink", 0.0) * lam.mean()
            scale = lam[:dim] ** -cfg.get("pw", 0.0)
            self.proj = (vec[:, :dim] * scale).astype(np.float32)

    def __call__(self, x: np.ndarray, logits: np.ndarray) -> np.ndarray:
        if self.mean is not None:
            x = x - self.mean
        if self.proj is not None:
            x = x @ self.proj
        x = l2(x)
        w = self.cfg.get("logits")
        if w:
            x = l2(np.concatenate([x, w * l2(softmax(logits))], axis=1))
        return x


def knn(q: np.ndarray, db: np.ndarray, k: int, exclude_self: bool, chunk: int = 1024):
    """Top-k (similarities, indices) of each q row in db, best first."""
    sims = np.empty((len(q), k), np.float32)
    ids = np.empty((len(q), k), np.int64)
    for s in range(0, len(q), chunk):
        S = q[s:s + chunk] @ db.T
        if exclude_self:
            r = np.arange(s, min(len(q), s + chunk))
            S[r - s, r] = -np.inf
        part = np.argpartition(-S, k, axis=1)[:, :k]
        ps = np.take_along_axis(S, part, axis=1)
        o = np.argsort(-ps, axis=1)
        ids[s:s + chunk] = np.take_along_axis(part, o, axis=1)
        sims[s:s + chunk] = np.take_along_axis(ps, o, axis=1)
    return sims, ids


def dba(db: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """Database-side augmentation; the k neighbours include the item itself."""
    sims, ids = knn(db, db, k, exclude_self=False)
    w = np.maximum(sims, 0) ** alpha
    return l2(np.einsum("nk,nkd->nd", w, db[ids]))


def qe(q: np.ndarray, db: np.ndarray, n: int, alpha: float, exclude_self: bool) -> np.ndarray:
    """Alpha query expansion (the query keeps weight 1)."""
    sims, ids = knn(q, db, n, exclude_self=exclude_self)
    w = np.maximum(sims, 0) ** alpha
    return l2(q + np.einsum("nk,nkd->nd", w, db[ids]))


# ----------------------------------------------------------------------------- metrics
def class_map(q: np.ndarray, db: np.ndarray, labels: np.ndarray, chunk: int = 512):
    """mAP and P@1, each query (a db row) excluded from its own ranking."""
    n = len(db)
    aps = np.empty(n)
    p1 = np.empty(n)
    ranks = np.arange(1, n, dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        S = q[s:e] @ db.T
        S[np.arange(e - s), np.arange(s, e)] = -np.inf
        order = np.argsort(-S, axis=1)[:, : n - 1]  # self sorts last, drop it
        rel = labels[order] == labels[s:e, None]
        cum = np.cumsum(rel, axis=1, dtype=np.float32)
        aps[s:e] = (cum / ranks * rel).sum(axis=1) / rel.sum(axis=1)
        p1[s:e] = rel[:, 0]
    return float(aps.mean()), float(p1.mean()), aps


def instance_recall(q: np.ndarray, db: np.ndarray, ids: np.ndarray) -> tuple[float, float]:
    S = q @ db.T
    target = S[np.arange(len(q)), ids]
    rank = (S > target[:, None]).sum(axis=1)
    return float((rank == 0).mean()), float((rank < 5).mean())


# ----------------------------------------------------------------------------- pipeline
def evaluate(tag: str, cfg: dict, instance: bool = True) -> dict:
    t0 = time.time()
    x, lg = raw_descriptor(tag, cfg)
    labels = load(tag)["labels"]
    post = Post(cfg, x)
    db = post(x, lg)
    res = {"tag": tag, "cfg": cfg, "dim": db.shape[1]}
    dbq = db
    if "dba" in cfg:
        k, a = cfg["dba"]
        dbq = dba(db, k, a)
    if "qe" in cfg:
        n, a = cfg["qe"]
        q = qe(dbq, dbq, n, a, exclude_self=True)
    else:
        q = dbq
    res["map"], res["p1"], aps = class_map(q, dbq, labels)
    if "dba" in cfg:  # outside query: raw descriptor vs augmented database
        qr = qe(db, dbq, *cfg["qe"], exclude_self=True) if "qe" in cfg else db
        res["map_rawq"], res["p1_rawq"], _ = class_map(qr, dbq, labels)
    inst_file = OUT / f"inst-{tag}.npz"
    if instance and inst_file.exists() and all(
        (OUT / f"inst-{t}{'-flip' if cfg.get('flip') else ''}.npz").exists()
        for t in [tag] + list(cfg.get("ms", []))
    ):
        xi, lgi = raw_descriptor(tag, cfg, instance=True)
        qi = post(xi, lgi)
        if "qe" in cfg:
            qi = qe(qi, dbq, *cfg["qe"], exclude_self=False)
        res["r1"], res["r5"] = instance_recall(qi, dbq, load("inst-" + tag)["instance_ids"])
    res["secs"] = time.time() - t0
    return res


def fmt(res: dict) -> str:
    cfg = dict(res["cfg"])
    name = cfg.pop("name", None) or " ".join(f"{k}={v}" for k, v in cfg.items())
    raw = (f"{res['map_rawq']:.3f}" if "map_rawq" in res else "")
    r1 = f"{res['r1']:.3f}" if "r1" in res else "-"
    return (f"| {res['tag']} | {name} | {res['dim']} | {res['map']:.3f} | {res['p1']:.3f} | "
            f"{raw} | {r1} |")


HEADER = ("| features | pipeline | dim | mAP | P@1 | mAP (raw query vs aug. db) | inst R@1 |\n"
          "|---|---|---|---|---|---|---|")


def suite_lite0(t="lite0-squash224") -> list[tuple[str, dict]]:
    s = []
    for p in ("gap", "gem2", "gem3", "gem4", "max"):
        s.append((t, {"pool": p}))
    for p in ("gap", "gem3"):
        s.append((t, {"pool": p, "flip": True}))
        s.append((t, {"pool": p, "center": True}))
        s.append((t, {"pool": p, "flip": True, "center": True}))
    for pw in (0.05, 0.1, 0.25, 0.5):
        s.append((t, {"pool": "gem3", "pw": pw}))
    for a in (0.1, 0.5, 1.0):
        s.append((t, {"pool": "gem3", "pw": 0.5, "shrink": a}))
    for d in (512, 256, 128):
        s.append((t, {"pool": "gem3", "pw": 0.0, "dim": d}))
        s.append((t, {"pool": "gem3", "pw": 0.1, "dim": d}))
    for n in (2, 3, 5, 10):
        s.append((t, {"pool": "gem3", "center": True, "qe": (n, 3)}))
    for k in (3, 5, 7, 10):
        s.append((t, {"pool": "gem3", "center": True, "dba": (k, 3)}))
    s.append((t, {"pool": "gem3", "center": True, "dba": (5, 1)}))
    s.append((t, {"pool": "gem3", "center": True, "dba": (5, 3), "qe": (3, 3)}))
    for w in (0.5, 1.0):
        s.append((t, {"pool": "gem3", "center": True, "logits": w}))
    return s


def suite_sizes() -> list[tuple[str, dict]]:
    s = []
    for t in ("lite0-squash256", "lite0-squash288", "lite0-aspect224"):
        for cfg in ({"pool": "gap"}, {"pool": "gem3"}, {"pool": "gem3", "center": True},
                    {"pool": "gem3", "center": True, "dba": (5, 3)}):
            s.append((t, cfg))
    s.append(("lite0-squash224", {"pool": "gem3", "center": True, "ms": ["lite0-squash288"]}))
    return s


def suite_combos(t="lite0-squash224") -> list[tuple[str, dict]]:
    s = []
    for cfg in (
        {"pool": "gem3", "flip": True, "center": True, "dba": (5, 3)},
        {"pool": "gem3", "pw": 0.1, "dba": (5, 3)},
        {"pool": "gem3", "flip": True, "pw": 0.1, "dba": (5, 3)},
        {"pool": "gem3", "center": True, "dba": (7, 3)},
        {"pool": "gem3", "center": True, "dba": (5, 3), "qe": (2, 3)},
        {"pool": "gem3", "flip": True, "center": True, "dba": (5, 3), "qe": (2, 3)},
        {"pool": "gem3", "pw": 0.1, "dim": 512, "dba": (5, 3)},
        {"pool": "gem3", "pw": 0.1, "dim": 256, "dba": (5, 3)},
        {"pool": "gem2", "center": True},
        {"pool": "gem2", "center": True, "qe": (3, 3)},
        {"pool": "gem3", "flip": True, "center": True, "qe": (3, 3)},
        {"pool": "gem3", "pw": 0.05, "qe": (3, 3)},
        {"pool": "gem3", "pw": 0.25, "qe": (3, 3)},
        {"pool": "gem3", "center": True, "qe": (3, 1)},
        {"pool": "gem3", "center": True, "dba": (3, 1)},
    ):
        s.append((t, cfg))
    return s


def suite_lite2(t="lite2-squash260") -> list[tuple[str, dict]]:
    s = []
    for cfg in (
        {"pool": "gap"}, {"pool": "gem3"}, {"pool": "gem3", "center": True},
        {"pool": "gem3", "pw": 0.1},
        {"pool": "gem3", "center": True, "qe": (3, 3)},
        {"pool": "gem3", "center": True, "dba": (5, 3)},
        {"pool": "gem3", "pw": 0.1, "dba": (5, 3)},
        {"pool": "gem3", "pw": 0.25},
        {"pool": "gem2", "center": True},
    ):
        s.append((t, cfg))
    return s


SUITES = {"lite0": suite_lite0, "sizes": suite_sizes, "combos": suite_combos,
          "lite2": suite_lite2}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", choices=sorted(SUITES))
    ap.add_argument("--tag", default="lite0-squash224", help="features file for --cfg")
    ap.add_argument("--cfg", action="append", default=[], help="pipeline as JSON (repeatable)")
    ap.add_argument("--json", type=Path, default=OUT / "results.jsonl")
    args = ap.parse_args(argv)
    runs = SUITES[args.suite]() if args.suite else []
    for c in args.cfg:
        c = json.loads(c)
        for k in ("qe", "dba"):
            if k in c:
                c[k] = tuple(c[k])
        runs.append((args.tag, c))
    print(HEADER, flush=True)
    with open(args.json, "a") as f:
        for tag, cfg in runs:
            if not (OUT / f"{tag}.npz").exists():
                print(f"| {tag} | (features not extracted, skipped) |", flush=True)
                continue
            res = evaluate(tag, cfg)
            print(fmt(res), flush=True)
            f.write(json.dumps({k: v for k, v in res.items()}, default=list) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
