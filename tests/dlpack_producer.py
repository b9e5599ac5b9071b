"""A DLPack producer written from the specification with ctypes: versioned or legacy capsules of
any version, flags and memory, and a record of what the consumer asked for. It lets tests give
trtfast tensors no library produces (another major version, read-only device memory)."""

from __future__ import annotations

import ctypes
from typing import Any

KDL_CUDA = 2
FLAG_READ_ONLY = 1


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _Tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _Device),
        ("ndim", ctypes.c_int32),
        ("dtype", _DataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class _ManagedVersioned(ctypes.Structure):
    pass


class _Managed(ctypes.Structure):
    pass


# The deleter's argument is either struct; ctypes needs no more than a pointer.
_Deleter = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_ManagedVersioned._fields_ = [
    ("version", _Version),
    ("manager_ctx", ctypes.c_void_p),
    ("deleter", _Deleter),
    ("flags", ctypes.c_uint64),
    ("dl_tensor", _Tensor),
]
_Managed._fields_ = [
    ("dl_tensor", _Tensor),
    ("manager_ctx", ctypes.c_void_p),
    ("deleter", _Deleter),
]

_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class Producer:
    """float32 CUDA memory at `pointer` with `shape`, exported as a versioned DLPack capsule of
    `version` with `flags` when the consumer asks for one (max_version), else as a legacy capsule
    (which has no flags). `requests` records each __dlpack__ call's keywords; `deleted` counts
    the deleter's calls."""

    def __init__(
        self,
        pointer: int,
        shape: tuple[int, ...],
        *,
        device: int = 0,
        version: tuple[int, int] = (1, 0),
        flags: int = 0,
    ) -> None:
        self.requests: list[dict[str, Any]] = []
        self.deleted = 0
        self._shape = (ctypes.c_int64 * len(shape))(*shape)
        self._managed = _ManagedVersioned()
        self._managed.version = _Version(*version)
        self._managed.flags = flags
        self._managed.deleter = self._deleter = _Deleter(self._delete)
        self._legacy = _Managed()
        self._legacy.deleter = self._deleter
        for tensor in (self._managed.dl_tensor, self._legacy.dl_tensor):
            tensor.data = pointer
            tensor.device = _Device(KDL_CUDA, device)
            tensor.ndim = len(shape)
            tensor.dtype = _DataType(2, 32, 1)  # float32
            tensor.shape = self._shape
        self._device = device

    def _delete(self, _managed: int) -> None:
        self.deleted += 1

    def __dlpack_device__(self) -> tuple[int, int]:
        return (KDL_CUDA, self._device)

    def __dlpack__(self, **keywords: Any) -> Any:
        self.requests.append(keywords)
        max_version = keywords.get("max_version")
        if max_version is not None and max_version[0] >= 1:
            return _capsule_new(ctypes.addressof(self._managed), b"dltensor_versioned", None)
        return _capsule_new(ctypes.addressof(self._legacy), b"dltensor", None)
