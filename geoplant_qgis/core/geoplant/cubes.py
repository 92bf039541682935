"""GeoPlant time-series cubes (``*_cube.pt``) read without torch and without running code.

A cube is a ``torch.save`` archive: a zip holding ``<name>/data.pkl`` (a pickle that
rebuilds one tensor), ``<name>/data/<key>`` (the raw storage), ``<name>/byteorder`` and
``<name>/version``. The pickle is parsed by a restricted unpickler that resolves only the
tensor-rebuild records (``torch._utils._rebuild_tensor_v2``, ``torch.<Type>Storage``,
``collections.OrderedDict``) to harmless local stand-ins; any other global (``os.system``,
``builtins.eval`` ...) stops the read with :class:`InputDataError` before it is called.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import posixpath
import zipfile

import numpy as np

from ..errors import InputDataError

#: torch storage class name -> numpy dtype (little-endian by default)
STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
#: refuse storages larger than this (a cube is a few kB; protects against zip bombs)
MAX_STORAGE_BYTES = 1 << 30


class _StorageType:
    """Stand-in for ``torch.<Type>Storage``: only remembers the element type."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _Storage:
    def __init__(self, key: str, dtype: str, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *rest
):
    if not isinstance(storage, _Storage):
        raise InputDataError("The cube's tensor does not refer to a storage of the archive.")
    ints = (storage_offset, *size, *stride)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints) or len(size) != len(stride):
        raise InputDataError("The cube's tensor has a malformed shape or strides.")
    return _Tensor(storage, storage_offset, tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a saved tensor needs, to local stand-ins."""

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise InputDataError(
            f"Refused to read the cube: its pickle asks for {module}.{name}, which is not part of a "
            "saved tensor (the file may be malicious). Nothing was executed."
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise InputDataError(f"Refused to read the cube: unexpected persistent record {pid!r:.80}.")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise InputDataError("Refused to read the cube: malformed storage record.")
        if not isinstance(numel, int) or numel < 0:
            raise InputDataError("Refused to read the cube: malformed storage size.")
        return _Storage(key, storage_type.dtype, numel)


def _archive_parts(archive: zipfile.ZipFile, name: str):
    pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise InputDataError(
            f"{name} is not a torch-saved tensor: expected one data.pkl, found {len(pickles)}."
        )
    prefix = posixpath.dirname(pickles[0])
    return pickles[0], prefix


def read_cube(path) -> np.ndarray:
    """The float32 array of a GeoPlant ``.pt`` cube (Landsat [6,4,21], climate [4,19,12]).

    Raises :class:`InputDataError` for anything that is not a single saved tensor, and
    for any pickle that asks for code (nothing is executed).
    """
    name = os.path.basename(os.fspath(path))
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise InputDataError(f"Cube file not found: {path}") from None
    except (zipfile.BadZipFile, IsADirectoryError, OSError):
        raise InputDataError(
            f"{name} is not a torch zip archive (old torch formats and other files are not supported)."
        ) from None
    with archive:
        pkl_name, prefix = _archive_parts(archive, name)
        byteorder = "little"
        order_name = posixpath.join(prefix, "byteorder")
        if order_name in archive.namelist():
            byteorder = archive.read(order_name).decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise InputDataError(f"{name}: unknown byte order {byteorder!r}.")
        try:
            result = _RestrictedUnpickler(io.BytesIO(archive.read(pkl_name))).load()
        except InputDataError:
            raise
        except Exception as error:  # truncated or corrupt pickle
            raise InputDataError(f"{name}: the tensor description cannot be read ({error}).") from None
        if not isinstance(result, _Tensor):
            raise InputDataError(f"{name} does not hold a single tensor (found {type(result).__name__}).")
        storage = result.storage
        info_name = posixpath.join(prefix, "data", storage.key)
        try:
            info = archive.getinfo(info_name)
        except KeyError:
            raise InputDataError(
                f"{name}: the storage data/{storage.key} is missing from the archive."
            ) from None
        dtype = np.dtype(storage.dtype).newbyteorder("<" if byteorder == "little" else ">")
        expected = storage.numel * dtype.itemsize
        if info.file_size != expected or expected > MAX_STORAGE_BYTES:
            raise InputDataError(
                f"{name}: the storage holds {info.file_size} bytes, the tensor description says {expected}."
            )
        try:
            raw = archive.read(info_name)
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise InputDataError(f"{name}: the storage cannot be read ({error}).") from None
    flat = np.frombuffer(raw, dtype=dtype, count=storage.numel)
    size, stride, offset = result.size, result.stride, result.offset
    if any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
        raise InputDataError(f"{name}: negative shape, stride or offset in the tensor description.")
    if 0 not in size:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.numel:
            raise InputDataError(f"{name}: the tensor reaches past the end of its storage.")
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(s * dtype.itemsize for s in stride), writeable=False
        )
    else:
        view = np.zeros(size, dtype=dtype)
    return np.ascontiguousarray(view, dtype=np.float32)
