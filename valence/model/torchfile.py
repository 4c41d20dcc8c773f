"""Read a file written by torch.save into numpy arrays and plain values, without importing torch.

A serving worker loads its bundles with this reader: importing torch would take most of its
2 s start-up budget. The file is torch's zip format (data.pkl, and data/<key> per storage);
like torch.load(weights_only=True), the unpickler builds nothing but plain values, ordered
dicts and tensors (as numpy arrays), and refuses every other global before anything runs.
"""
import pickle
import zipfile
from collections import OrderedDict

import numpy as np

# torch.save names each storage by its legacy typed class; numpy has no bfloat16.
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafeGlobal(pickle.UnpicklingError):
    """The pickle names a global that a model file never holds; `name` is its dotted name."""

    def __init__(self, name):
        super().__init__(f"Unsupported global: {name}")
        self.name = name


class _Storage:
    """A storage's dtype, as a persistent id names it."""

    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """torch._utils._rebuild_tensor_v2 for numpy: a view of the storage's elements, copied out."""
    itemsize = storage.dtype.itemsize
    if any(s < 0 for s in (*size, *stride)) or offset < 0:
        raise pickle.UnpicklingError("a tensor with a negative size or stride")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= len(storage):
        raise pickle.UnpicklingError("a tensor reaches beyond its storage")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride), writeable=False)
    return np.array(view)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _Storage(np.dtype(STORAGE_DTYPES[name]))
        raise UnsafeGlobal(f"{module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise pickle.UnpicklingError(f"an unknown persistent id {str(pid)[:80]}")
        _, storage, key, _location, numel = pid
        data = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        if len(data) != numel * storage.dtype.itemsize:
            raise pickle.UnpicklingError(f"storage {key} holds {len(data)} bytes, expected {numel} elements")
        return np.frombuffer(data, dtype=storage.dtype)


def load(path):
    """Return the object a torch.save zip file holds, tensors as numpy arrays.

    Raises zipfile.BadZipFile for a file that is not a zip, pickle.UnpicklingError (UnsafeGlobal for
    a forbidden global) for a pickle this reader refuses, EOFError, KeyError or ValueError when damaged.
    """
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise pickle.UnpicklingError("no data.pkl in the archive: not a file written by torch.save")
        prefix = pickles[0][:-len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder") != b"little":
            raise pickle.UnpicklingError("a big-endian file")
        with archive.open(pickles[0]) as file:
            return _Unpickler(file, archive, prefix).load()
