"""Reading a `torch.save` checkpoint without running its pickle: tensors and plain containers only.

The official prompt learners save Dassl checkpoints (`model.pth.tar-N`): `torch.save` of `{"state_dict", "epoch",
"optimizer", "scheduler", "val_result"}` (Dassl's `save_model`,
https://github.com/KaiyangZhou/Dassl.pytorch/blob/c61a1b570ac6333bd50fb5ae06aea59002fb20bb/dassl/engine/trainer.py#L118-L145).
The scheduler entry is `state_dict()` of Dassl's warm-up scheduler, whose `__dict__` holds its successor, a whole
`torch.optim.lr_scheduler` object with the optimizer inside
(https://github.com/KaiyangZhou/Dassl.pytorch/blob/c61a1b570ac6333bd50fb5ae06aea59002fb20bb/dassl/optim/lr_scheduler.py#L10-L20),
so `torch.load(..., weights_only=True)` refuses these files and a plain `torch.load` would run whatever the pickle
names. A downloaded file must never get that far.

**How it is read.** A `torch.save` file (torch >= 1.6) is a zip archive: `<prefix>/data.pkl` (the pickled object
graph) and `<prefix>/data/<key>` (the raw bytes of each storage). We read the zip with `zipfile` and unpickle
`data.pkl` with `RestrictedUnpickler`, a `pickle.Unpickler` whose `find_class` never imports anything:

- the few globals a state dict needs map to this module's own code or to plain builtins: tensor rebuilds
  (`torch._utils._rebuild_tensor_v2`, `_rebuild_tensor`, `_rebuild_parameter[_with_state]`) → `_rebuild_tensor`
  here, which records a `TensorRef` (dtype, shape, strides, offset into a storage) and reads no bytes;
  `torch.<X>Storage` → a dtype marker; `collections.OrderedDict`, `dict`, `list`, `set`, `frozenset`, `tuple`
  → themselves; `collections.defaultdict` → a plain `dict` (its factory is dropped, never called); `torch.Size` →
  `tuple`; `torch.<dtype>` → the dtype value;
- every other global (the scheduler's and optimizer's classes, `os.system`, `builtins.eval`, numpy scalars, ...)
  becomes a `Stub` subclass named after it. The named module is never imported and the named callable never
  called; REDUCE / NEWOBJ / BUILD on a stub only store their arguments in the stub instance.

Storages are `persistent_load`-ed as `_StorageRef`s (zip entry, dtype, element count); a tensor's bytes are read only
when `TensorRef.materialize()` is called, after its shape has been checked, so a whole-model checkpoint costs only
the prompt tensors it gives.

**Why not `torch.load(..., pickle_module=<restricted>, weights_only=False)`.** torch's loader subclasses the given
module's `Unpickler`, adds its own `find_class` special cases and rebuilds storages and tensors through torch
internals that change between releases; proving that no unknown callable is ever reached would mean re-auditing
torch's loader for every version. Reading the zip here keeps the whole trust boundary in this file: the only
callables a pickle can reach are the ones listed above.

Limits: the legacy (torch < 1.6, non-zip) format and big-endian files are refused with a message.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import re
import zipfile
from typing import Any

import torch

__all__ = ["CheckpointError", "RestrictedUnpickler", "Stub", "TensorRef", "read_torch_checkpoint"]

# `torch.<X>Storage` → element dtype (the typed storages `torch.save` names in its persistent ids).
_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}
_DTYPE_NAMES = {
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "double", "float", "half", "long", "int", "short",
}  # fmt: skip
_BUILTINS: dict[str, Any] = {"dict": dict, "list": list, "set": set, "frozenset": frozenset, "tuple": tuple}
_MAX_PICKLE_BYTES = 64 << 20  # data.pkl holds names and tensor records only (the data lies in other entries)
_STORAGE_KEY = re.compile(r"^[0-9A-Za-z_]{1,64}$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely or does not hold what is expected; the message names the file."""


class Stub:
    """Stands for a global the pickle named but this reader does not allow. Never calls or imports the original:
    construction, `__setstate__`, item and append calls only record their arguments."""

    stub_of: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        obj = super().__new__(cls)
        obj.__dict__["_stub"] = {"args": args, "kwargs": kwargs, "state": None, "items": [], "appended": []}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_stub"]["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["_stub"]["items"].append((key, value))

    def append(self, value: Any) -> None:
        self.__dict__["_stub"]["appended"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["_stub"]["appended"].extend(values)

    def __repr__(self) -> str:
        return f"<stub of {self.stub_of}>"


class _NoState:
    """Objects of this reader that a pickle must not modify: BUILD on them is an error."""

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"the pickle tries to set the state of a {type(self).__name__}")


@dataclasses.dataclass(frozen=True)
class _StorageRef(_NoState):
    entry: str  # zip member holding the bytes
    dtype: torch.dtype
    numel: int


@dataclasses.dataclass(frozen=True)
class _StorageType(_NoState):
    dtype: torch.dtype


@dataclasses.dataclass(eq=False)  # hashed by identity: a pickled optimizer keys its state by parameter
class TensorRef(_NoState):
    """A tensor of the checkpoint, described but not yet read: dtype, shape and its view of a storage."""

    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    _reader: CheckpointReader = dataclasses.field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @property
    def dtype(self) -> torch.dtype:
        return self.storage.dtype

    def materialize(self) -> torch.Tensor:
        """The tensor (its own memory, on CPU), read from the archive now."""
        return self._reader.tensor(self)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any, **__: Any) -> TensorRef:
    """Stands in for torch's tensor rebuilds: checks the view against its storage and records it; reads nothing."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError(f"tensor over {type(storage).__name__}, not a storage of the archive")
    if isinstance(size, torch.Size):
        size = tuple(size)
    ints = (isinstance(v, int) and not isinstance(v, bool) for v in (offset, *size, *stride))
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) and all(ints)):
        raise pickle.UnpicklingError(f"tensor with an invalid layout: size {size!r}, stride {stride!r}")
    if offset < 0 or any(d < 0 for d in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"tensor with negative offset, size or stride: {offset}, {size}, {stride}")
    if all(d > 0 for d in size):
        last = offset + sum((d - 1) * s for d, s in zip(size, stride))
        if last >= storage.numel:
            raise pickle.UnpicklingError(
                f"tensor of size {size} at offset {offset} reads past its storage of {storage.numel} elements"
            )
    return TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_: Any, **__: Any) -> Any:
    return data  # a Parameter's data; requires_grad and hooks do not matter here


def _plain_dict(*_: Any, **__: Any) -> dict:
    return {}  # a defaultdict's factory is dropped: it would be a callable named by the file


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): _plain_dict,
    ("torch", "Size"): tuple,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a `torch.save` object graph into containers, `TensorRef`s and `Stub`s (see the module docstring).

    Args:
        file: the pickle stream (`data.pkl`).
        storages: `(key, dtype, numel) → _StorageRef` for the archive's storages (`persistent_load`).
    """

    def __init__(self, file: io.BufferedIOBase, storage: Any) -> None:
        super().__init__(file)
        self._storage = storage
        self.stubbed: set[str] = set()
        self._stubs: dict[str, type[Stub]] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "builtins" and name in _BUILTINS:
            return _BUILTINS[name]
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _DTYPE_NAMES:
            return getattr(torch, name)  # a dtype value (pickled by name), not a callable
        qualified = f"{module}.{name}"
        if qualified not in self._stubs:
            self.stubbed.add(qualified)
            label = name if name.isidentifier() else "Stub"
            self._stubs[qualified] = type(label, (Stub,), {"stub_of": qualified, "__module__": __name__})
        return self._stubs[qualified]

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"storage of unsupported type {storage_type!r:.80}")
        if not isinstance(key, str) or not _STORAGE_KEY.match(key) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"invalid storage record {pid!r:.120}")
        return self._storage(key, storage_type.dtype, numel)


class CheckpointReader:
    """An open `torch.save` zip archive: its object graph (`load()`) and the bytes of its storages on request."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile:
            with open(self.path, "rb") as f:
                head = f.read(2)
            legacy = " (it looks like the legacy torch < 1.6 format, which is not read)" if head[:1] == b"\x80" else ""
            raise CheckpointError(f"{self.path}: not a torch.save zip archive{legacy}") from None
        pickles = [n for n in self._zip.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"{self.path}: expected one <prefix>/data.pkl in the archive, found {pickles}")
        self._prefix = pickles[0][: -len("data.pkl")]
        order = self._member(self._prefix + "byteorder", required=False)
        if order is not None and self._zip.read(order).strip() not in (b"little", b""):
            raise CheckpointError(f"{self.path}: big-endian checkpoints are not supported")
        self._bases: dict[str, torch.Tensor] = {}
        self.stubbed: set[str] = set()

    def _member(self, name: str, required: bool = True) -> zipfile.ZipInfo | None:
        try:
            return self._zip.getinfo(name)
        except KeyError:
            if required:
                raise CheckpointError(f"{self.path}: the archive has no {name}") from None
            return None

    def _storage_ref(self, key: str, dtype: torch.dtype, numel: int) -> _StorageRef:
        info = self._member(f"{self._prefix}data/{key}")
        need = numel * torch.empty((), dtype=dtype).element_size()
        if info.file_size < need:
            raise CheckpointError(f"{self.path}: storage {key} holds {info.file_size} bytes, {need} expected")
        return _StorageRef(info.filename, dtype, numel)

    def load(self) -> Any:
        """The unpickled object graph, with `TensorRef` for every tensor and `Stub` for every other object."""
        info = self._member(self._prefix + "data.pkl")
        if info.file_size > _MAX_PICKLE_BYTES:
            raise CheckpointError(f"{self.path}: data.pkl is {info.file_size} bytes (more than {_MAX_PICKLE_BYTES})")
        unpickler = RestrictedUnpickler(io.BytesIO(self._zip.read(info)), self._storage_ref)
        try:
            obj = unpickler.load()
        except CheckpointError:
            raise
        except Exception as err:  # any malformed stream: a clear error naming the file, never a partial result
            raise CheckpointError(
                f"{self.path}: cannot read the pickled checkpoint ({type(err).__name__}: {err})"
            ) from None
        self.stubbed = unpickler.stubbed
        _attach(obj, self)
        return obj

    def tensor(self, ref: TensorRef) -> torch.Tensor:
        base = self._bases.get(ref.storage.entry)
        if base is None:
            n = ref.storage.numel * torch.empty((), dtype=ref.dtype).element_size()
            with self._zip.open(ref.storage.entry) as f:  # only the bytes the storage declares
                data = bytearray(f.read(n))
            if len(data) != n:
                raise CheckpointError(f"{self.path}: {ref.storage.entry} holds {len(data)} bytes, {n} expected")
            base = torch.frombuffer(data, dtype=ref.dtype) if n else torch.empty(0, dtype=ref.dtype)
            self._bases[ref.storage.entry] = base
        return base.as_strided(ref.shape, ref.stride, ref.offset).clone()

    def close(self) -> None:
        self._zip.close()
        self._bases.clear()


def _attach(root: Any, reader: CheckpointReader) -> None:
    """Give every `TensorRef` reachable through containers and stubs its reader (iteratively: a hostile pickle
    may nest deeper than Python's recursion limit)."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, TensorRef):
            obj._reader = reader
        elif isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend(obj)
        elif isinstance(obj, Stub):
            todo.append(obj.__dict__["_stub"])


def read_torch_checkpoint(path: str | os.PathLike) -> tuple[Any, CheckpointReader]:
    """Read a `torch.save` file safely: the object graph (containers, `TensorRef`s, `Stub`s) and its open reader
    (call `reader.close()` when done). Raises `CheckpointError` naming the file for anything unreadable."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{os.fspath(path)}: no such file")
    reader = CheckpointReader(path)
    try:
        return reader.load(), reader
    except BaseException:
        reader.close()
        raise
