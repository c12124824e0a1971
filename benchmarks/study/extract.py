"""Extract pooled global descriptors for the descriptor study (see docs/descriptor.md).

Decodes every Caltech-101 image once (PIL, RGB, a thread pool), then for each requested
(input size, resize mode) runs the model and saves, per image, the pooled descriptors
GAP (GeM p=1), GeM p=2/3/4, max pooling and the raw logits -- for the image and, with
``--flip``, for its horizontal mirror. Results go to an ``.npz`` under
``/tmp/lookalike-study/`` (never into the repository), one file per combination::

    python benchmarks/study/extract.py --model lite0 --size 224 256 288 --resize squash --flip
    python benchmarks/study/extract.py --model lite0 --size 224 --resize aspect --flip
    python benchmarks/study/extract.py --model lite0 --size 224 --instance   # instance check

``--instance`` instead builds the fixed-seed instance-level query set: 300 database images,
each transformed once (random crop 50-80% of the area, rotation +-15 degrees,
brightness/contrast/colour jitter, downscale, JPEG quality 40) and extracts the
transformed queries with the same pipeline.

Resize modes: ``squash`` resizes the full image to S x S (the product's current
preprocessing); ``aspect`` resizes the full image so its shorter side is S and keeps the
aspect ratio (no crop; the network sees dynamic H, W; images are batched by shape).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from lookalike.embed.embedder import Embedder
from lookalike.embed.preprocess import to_tensor
from lookalike.settings import Settings

DATA = Path("/work/shared/datasets/caltech101")
OUT = Path("/tmp/lookalike-study")
POOLINGS = ("gap", "gem2", "gem3", "gem4", "max")
SEED = 1234
N_INSTANCE = 300


def load_manifest() -> tuple[list[str], np.ndarray, list[str]]:
    with open(DATA / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] != "BACKGROUND_Google"]
    paths = [r["path"] for r in rows]
    names = sorted({r["label"] for r in rows})
    idx = {n: i for i, n in enumerate(names)}
    labels = np.array([idx[r["label"]] for r in rows], dtype=np.int32)
    return paths, labels, names


def decode(path: str) -> Image.Image:
    with Image.open(DATA / path) as im:
        im.draft("RGB", (1024, 1024))
        return im.convert("RGB")


def instance_queries(images: list[Image.Image]) -> tuple[np.ndarray, list[Image.Image]]:
    """The fixed-seed instance-level query set: (database indices, transformed images)."""
    rng = np.random.default_rng(SEED)
    ids = np.sort(rng.choice(len(images), size=N_INSTANCE, replace=False))
    out = []
    for i in ids:
        im = images[i]
        w, h = im.size
        # random crop, 50-80% of the area, aspect 3/4..4/3
        area = rng.uniform(0.5, 0.8) * w * h
        ar = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw = int(round(min(w, np.sqrt(area * ar))))
        ch = int(round(min(h, area / max(cw, 1))))
        x0 = int(rng.integers(0, w - cw + 1))
        y0 = int(rng.integers(0, h - ch + 1))
        im = im.crop((x0, y0, x0 + cw, y0 + ch))
        # rotation +-15 degrees (same canvas, black corners)
        im = im.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
        # photometric jitter
        im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.7, 1.3)))
        im = ImageEnhance.Contrast(im).enhance(float(rng.uniform(0.7, 1.3)))
        im = ImageEnhance.Color(im).enhance(float(rng.uniform(0.6, 1.4)))
        # downscale to 50-80% of the side
        s = rng.uniform(0.5, 0.8)
        im = im.resize((max(16, int(im.width * s)), max(16, int(im.height * s))),
                       Image.Resampling.BILINEAR)
        # JPEG quality 40
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=40)
        buf.seek(0)
        out.append(Image.open(buf).convert("RGB"))
    return ids, out


def pool(fm: np.ndarray) -> dict[str, np.ndarray]:
    x = fm.reshape(fm.shape[0], fm.shape[1], -1).astype(np.float32)
    xc = np.maximum(x, 1e-6)
    res = {"gap": x.mean(axis=2), "max": x.max(axis=2)}
    for p in (2, 3, 4):
        res[f"gem{p}"] = np.power(np.power(xc, p).mean(axis=2), 1.0 / p)
    return res


def tensor(im: Image.Image, spec, size: int, mode: str, flip: bool) -> np.ndarray:
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if mode == "squash":
        return to_tensor(im, spec.preprocess, size=size)
    w, h = im.size
    s = size / min(w, h)
    nw, nh = max(size, int(round(w * s))), max(size, int(round(h * s)))
    # cap very elongated images at 2:1 worth of pixels along the long side
    nw, nh = min(nw, 2 * size), min(nh, 2 * size)
    im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
    px = (np.asarray(im, dtype=np.float32) - spec.preprocess.mean) / spec.preprocess.std
    return np.ascontiguousarray(px.transpose(2, 0, 1))


def run(emb: Embedder, images, size: int, mode: str, flip: bool, pool_ex, batch=32):
    n = len(images)
    out = {k: None for k in POOLINGS + ("logits",)}
    spec = emb.spec
    sess = emb.session

    def store(idx, fm, logits):
        pooled = pool(fm)
        pooled["logits"] = logits
        for k, v in pooled.items():
            if out[k] is None:
                out[k] = np.zeros((n, v.shape[1]), np.float32)
            out[k][idx] = v

    if mode == "squash":
        for s in range(0, n, batch):
            idx = np.arange(s, min(n, s + batch))
            ts = list(pool_ex.map(lambda i: tensor(images[i], spec, size, mode, flip), idx))
            logits, fm = sess.run(["logits", "feature_map"], {"image": np.stack(ts)})
            store(idx, fm, logits)
    else:
        ts = list(pool_ex.map(lambda im: tensor(im, spec, size, mode, flip), images))
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(ts):
            groups.setdefault(t.shape, []).append(i)
        for _shape, members in groups.items():
            for s in range(0, len(members), batch):
                idx = np.array(members[s:s + batch])
                logits, fm = sess.run(["logits", "feature_map"],
                                      {"image": np.stack([ts[i] for i in idx])})
                store(idx, fm, logits)
    return {k: v.astype(np.float16) for k, v in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="lite0", choices=["lite0", "lite1", "lite2"])
    ap.add_argument("--size", type=int, nargs="+", default=[224])
    ap.add_argument("--resize", nargs="+", default=["squash"], choices=["squash", "aspect"])
    ap.add_argument("--flip", action="store_true", help="also extract mirrored images")
    ap.add_argument("--instance", action="store_true",
                    help="extract the transformed instance-level queries instead")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    emb = Embedder(Settings(model=args.model, cache_dir=OUT / "onnx", threads=args.threads))
    paths, labels, names = load_manifest()
    t0 = time.time()
    with ThreadPoolExecutor(args.threads) as ex:
        images = list(ex.map(decode, paths))
        print(f"decoded {len(images)} images in {time.time() - t0:.1f}s", flush=True)
        inst_ids = None
        if args.instance:
            inst_ids, images = instance_queries(images)
            print(f"built {len(images)} instance queries", flush=True)
        for mode in args.resize:
            for size in args.size:
                for flip in ([False, True] if args.flip else [False]):
                    t1 = time.time()
                    feats = run(emb, images, size, mode, flip, ex)
                    dt = time.time() - t1
                    tag = f"{args.model}-{mode}{size}" + ("-flip" if flip else "")
                    if args.instance:
                        tag = "inst-" + tag
                    fn = OUT / f"{tag}.npz"
                    extra = {"instance_ids": inst_ids} if args.instance else {}
                    np.savez(fn, labels=labels, seconds=np.float64(dt), **feats, **extra)
                    print(f"{tag}: {dt:.1f}s ({len(images) / dt:.1f} img/s) -> {fn}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
