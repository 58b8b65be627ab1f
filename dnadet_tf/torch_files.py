"""Reading `torch.save` files without PyTorch, and without running what they hold.

A `torch.save` file (PyTorch >= 1.6) is a zip archive: `PREFIX/data.pkl`, a pickle of the
saved object in which every tensor is a call of `torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, ...)` and every storage a persistent id `('storage', torch.FloatStorage,
KEY, device, numel)`, plus `PREFIX/data/KEY`, each storage's raw bytes, and `PREFIX/byteorder`.

`read_torch_file` unpickles `data.pkl` with an unpickler that knows only what a state dict
needs: `collections.OrderedDict`, the tensor and parameter rebuild functions, and the storage
types. Any other global (a model class, `argparse.Namespace`, `os.system`) is refused with a
`CheckpointError` naming it, before anything is called. Tensors come back as NumPy arrays.
"""
import collections
import io
import os
import pickle
import zipfile

import numpy as np

from dnadet_tf.errors import CheckpointError

# Storage type -> NumPy type (little-endian); bfloat16 is read as uint16 and widened.
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "u2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}
_TENSOR_REBUILDERS = ("_rebuild_tensor", "_rebuild_tensor_v2")
_PARAMETER_REBUILDERS = ("_rebuild_parameter", "_rebuild_parameter_with_state")


class _StorageType:
    """What `torch.FloatStorage` & co. unpickle to: a name, not callable."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


class _Tensor:
    """A rebuilt tensor while unpickling; refuses pickle's BUILD (no state may be set on it)."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    def __setstate__(self, state):
        raise CheckpointError("a tensor with extra pickled state (a tensor subclass); expected plain tensors.")


def _ints(value, what):
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise CheckpointError(f"a tensor's {what} is {value!r}; expected a tuple of non-negative integers.")
    return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """`torch._utils._rebuild_tensor_v2` in NumPy: a copy of `size` elements of the 1-D `storage`
    array, from `storage_offset`, `stride` elements apart; bounds checked against the storage."""
    if not isinstance(storage, np.ndarray) or not isinstance(storage_offset, int) or storage_offset < 0:
        raise CheckpointError("a tensor that does not rebuild from a storage and an offset; not a torch.save file?")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise CheckpointError(f"a tensor of size {size} with strides {stride}; expected one stride per dimension.")
    if 0 in size:
        return _Tensor(np.zeros(size, storage.dtype))
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= len(storage):
        raise CheckpointError(f"a tensor of size {size} reaches element {last} of a storage of {len(storage)}.")
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=size,
                                           strides=[s * storage.itemsize for s in stride], writeable=False)
    return _Tensor(np.array(view))


def _rebuild_parameter(data, *unused):
    if not isinstance(data, _Tensor):
        raise CheckpointError("a parameter that holds no tensor; not a torch.save file?")
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a state dict's `data.pkl`; storages are read from `archive` under `prefix`."""

    def __init__(self, file, archive, prefix, byteorder):
        super().__init__(file)
        self._archive, self._prefix, self._byteorder = archive, prefix, byteorder
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in _TENSOR_REBUILDERS:
            return _rebuild_tensor
        if module == "torch._utils" and name in _PARAMETER_REBUILDERS:
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(
            f"holds a pickled {module}.{name}, which this reader refuses (it rebuilds only tensors, "
            f"dicts and lists); expected a state dict saved with torch.save(model.state_dict(), PATH).")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)):
            raise CheckpointError(f"a persistent id {pid!r:.80}; expected ('storage', type, key, device, numel).")
        storage_type, key = pid[1], pid[2]
        if key not in self._storages:
            name = f"{self._prefix}data/{key}"
            try:
                raw = self._archive.read(name)
            except KeyError:
                raise CheckpointError(f"the storage record {name} is missing from the archive.") from None
            dtype = np.dtype(STORAGE_DTYPES[storage_type.name]).newbyteorder(
                "<" if self._byteorder == "little" else ">")
            if len(raw) % dtype.itemsize:
                raise CheckpointError(f"the storage record {name} holds {len(raw)} bytes, not a whole number of "
                                      f"{storage_type.name} elements.")
            array = np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="))
            if storage_type.name == "BFloat16Storage":
                array = (array.astype(np.uint32) << 16).view(np.float32)
            self._storages[key] = array
        return self._storages[key]


def _arrays(value):
    """The unpickled object with every `_Tensor` replaced by its NumPy array."""
    if isinstance(value, _Tensor):
        return value.array
    if isinstance(value, dict):
        converted = type(value)((k, _arrays(v)) for k, v in value.items())
        return converted
    if isinstance(value, (list, tuple)):
        return type(value)(_arrays(v) for v in value)
    return value


def _pickle_record(archive, path):
    names = archive.namelist()
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise CheckpointError(f"{path}: a TorchScript archive (torch.jit.save); expected a state dict saved with "
                              f"torch.save(model.state_dict(), PATH).")
    records = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
    if len(records) != 1:
        raise CheckpointError(f"{path}: a zip archive with {len(records)} data.pkl records; expected one "
                              f"(a torch.save file).")
    return records[0]


def read_torch_file(path):
    """The object saved in a `torch.save` file at `path`, with tensors as NumPy arrays.

    Raises CheckpointError (one line naming `path`) for a missing file, a file that is not a
    zip-format `torch.save` archive (PyTorch < 1.6 wrote another format; TorchScript archives
    are refused too), and for any pickled object other than tensors, storages, dicts, lists,
    tuples, numbers and strings.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: a folder; expected the checkpoint file written by torch.save (a .pth file).")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file; expected a checkpoint written by torch.save.")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if not head:
            raise CheckpointError(f"{path}: the file is empty (0 bytes); expected a checkpoint written by torch.save "
                                  f"(an interrupted download?).")
        if head.startswith(b"PK"):
            raise CheckpointError(f"{path}: a damaged or cut-off zip archive; expected a whole torch.save file (an "
                                  f"interrupted download? compare its size with the source's).")
        if head[:1] == b"\x80":  # a pickle: the format torch.save wrote before PyTorch 1.6
            raise CheckpointError(
                f"{path}: not a zip-format torch.save file (PyTorch >= 1.6 writes one); a file from an older PyTorch "
                f"can be re-saved with torch.save(torch.load(OLD), NEW).")
        raise CheckpointError(f"{path}: not a torch.save file (it starts with the bytes {head!r}); expected a "
                              f"checkpoint written by torch.save.")
    try:
        with zipfile.ZipFile(path) as archive:
            record = _pickle_record(archive, path)
            prefix = record[: -len("data.pkl")]
            byteorder = "little"
            if f"{prefix}byteorder" in archive.namelist():
                byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
                if byteorder not in ("little", "big"):
                    raise CheckpointError(f"byte order {byteorder!r}; expected 'little' or 'big'.")
            unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(record)), archive, prefix, byteorder)
            return _arrays(unpickler.load())
    except CheckpointError as error:
        message = str(error)
        raise CheckpointError(message if message.startswith(f"{path}:") else f"{path}: {message}") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, TypeError, ValueError, AttributeError,
            IndexError) as error:
        raise CheckpointError(f"{path}: cannot be read as a torch.save file ({type(error).__name__}: "
                              f"{' '.join(str(error).split())[:200]}).") from None
