"""Shared fixtures: real Caltech-101 photos from ../shared and a small real index."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CALTECH = REPO.parent / "shared" / "datasets" / "caltech101"
# A small deterministic subset: the first 8 photos of 5 visually distinct classes.
SUBSET_CLASSES = ("airplanes", "Leopards", "Motorbikes", "watch", "sunflower")
PER_CLASS = 8

# Build the ONNX model once for the whole run, in the repo's cache (gitignored).
os.environ.setdefault("LOOKALIKE_CACHE", str(REPO / ".cache" / "lookalike"))


def caltech_image(label: str, number: int) -> Path:
    path = CALTECH / "images" / label / f"image_{number:04d}.jpg"
    assert path.is_file(), f"missing dataset file {path}: is ../shared/datasets present?"
    return path


def copy_subset(dest: Path, classes=SUBSET_CLASSES, per_class: int = PER_CLASS) -> Path:
    """Copy the subset into ``dest/<class>/`` and return ``dest``."""
    for label in classes:
        (dest / label).mkdir(parents=True, exist_ok=True)
        for n in range(1, per_class + 1):
            shutil.copy2(caltech_image(label, n), dest / label / f"image_{n:04d}.jpg")
    return dest


def class_of(path: str) -> str:
    """A photo's class: the name of its folder."""
    return Path(path).parent.name


def edited(label: str, number: int) -> Image.Image:
    """A crop of ~50 % of the area, turned a quarter: global descriptors find it hard."""
    im = Image.open(caltech_image(label, number)).convert("RGB")
    w, h = im.size
    return im.crop((int(w * 0.1), int(h * 0.15), int(w * 0.8), int(h * 0.85))).rotate(90, expand=True)


def augment(base: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` unit vectors near the real ones: convex mixes of two, times log-normal noise
    (i.i.d. random vectors have no neighbourhood structure and would test nothing)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(base), n), rng.integers(0, len(base), n)
    mix = rng.uniform(0.6, 1.0, (n, 1)).astype(np.float32)
    noise = np.exp(0.3 * rng.standard_normal((n, base.shape[1]))).astype(np.float32)
    v = (mix * base[a] + (1 - mix) * base[b]) * noise
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def catalogue_with(path: Path, vectors: np.ndarray, labels=lambda i: [1, 2]):
    """A catalogue holding ``vectors`` as images ``1..N`` at ``/photos/<i>.jpg``, with
    ``labels(i)`` (class ids, most probable first) as the labels of the i-th."""
    from lookalike.index.catalogue import Catalogue
    from lookalike.index.formats import FileStat, NewImage

    catalogue = Catalogue(path)
    with catalogue.transaction() as db:
        for i, vector in enumerate(vectors):
            classes = labels(i)
            image_id = Catalogue.insert_image(
                db, NewImage(f"hash{i}", 1, 1, vector, classes, [0.5 ** (r + 1) for r in range(len(classes))])
            )
            Catalogue.upsert_file(db, FileStat(f"/photos/{i}.jpg", 1, 1), image_id)
    return catalogue


@pytest.fixture(scope="session")
def built_index(tmp_path_factory):
    """A read-mostly index of the subset, built once: ``(index_path, images_dir)``."""
    import lookalike

    root = tmp_path_factory.mktemp("built")
    images = copy_subset(root / "photos")
    with lookalike.Index.open(root / "index") as index:
        report = index.add([images])
    assert report.embedded == len(SUBSET_CLASSES) * PER_CLASS
    return root / "index", images


@pytest.fixture(scope="session")
def index(built_index):
    """The built index, open for the whole run; tests only search it."""
    import lookalike

    with lookalike.Index.open(built_index[0], create=False) as opened:
        yield opened


@pytest.fixture
def photos(tmp_path) -> Path:
    """A fresh, writable copy of the subset."""
    return copy_subset(tmp_path / "photos")


@pytest.fixture(scope="session")
def real_vectors() -> np.ndarray:
    """Descriptors of 8 photos from each of 5 classes (the subset), embedded once."""
    from lookalike.embed.embedder import Embedder
    from lookalike.images import load_image
    from lookalike.settings import Settings

    embedder = Embedder(Settings())
    images = [
        load_image(caltech_image(label, n), target_size=embedder.input_size)
        for label in SUBSET_CLASSES
        for n in range(1, PER_CLASS + 1)
    ]
    return embedder.embed_images(images).vectors


@pytest.fixture(scope="session")
def private_network():
    """A network namespace with only loopback, for servers that bind every interface."""
    from netns import PrivateNetwork

    net = PrivateNetwork()
    yield net
    net.close()


@pytest.fixture(scope="session")
def milvus_server(private_network, tmp_path_factory):
    """Milvus standalone (the PyPI ``milvus`` package) in the private network, with a
    temporary data folder; started once, healthy when yielded, stopped at the end."""
    from milvus import MilvusServer

    server = MilvusServer()
    server.set_base_dir(str(tmp_path_factory.mktemp("milvus")))
    with private_network.inside():
        server.start()  # waits until /healthz answers
    process = server.server_proc
    yield server
    server.stop()  # SIGTERM, then SIGKILL after a second
    assert process.poll() is not None, "the Milvus server is still running"


@pytest.fixture
def milvus(milvus_server, private_network):
    """Inside the private network for one test: ``(host, port)`` of the Milvus server."""
    with private_network.inside():
        yield "127.0.0.1", milvus_server.listen_port
