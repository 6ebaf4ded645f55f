"""A stand-in for cuda-python's ``cuda.bindings.runtime``: every call returns (error, *values) as
the real bindings do. "Device" memory is host memory from ctypes, so copies are real memmoves."""

from __future__ import annotations

import ctypes
import enum
from types import SimpleNamespace

_allocations: dict[int, ctypes.Array] = {}


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidValue = 1


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


def cudaGetDeviceProperties(device: int):
    return cudaError_t.cudaSuccess, SimpleNamespace(name=b"Orin (fake)")


def cudaMalloc(size: int):
    buf = ctypes.create_string_buffer(size)
    _allocations[ctypes.addressof(buf)] = buf
    return cudaError_t.cudaSuccess, ctypes.addressof(buf)


def cudaFree(ptr: int):
    return (cudaError_t.cudaSuccess,) if _allocations.pop(ptr, None) is not None else (cudaError_t.cudaErrorInvalidValue,)


def cudaStreamCreate():
    return cudaError_t.cudaSuccess, 1


def cudaStreamDestroy(stream: int):
    return (cudaError_t.cudaSuccess,)


def cudaMemcpyAsync(dst: int, src: int, size: int, kind: cudaMemcpyKind, stream: int):
    ctypes.memmove(dst, src, size)
    return (cudaError_t.cudaSuccess,)


def cudaStreamSynchronize(stream: int):
    return (cudaError_t.cudaSuccess,)


def live_allocations() -> int:
    return len(_allocations)


def allocation_size(ptr: int) -> int | None:
    """Bytes allocated at ``ptr`` by cudaMalloc, None if it is not an allocation (for the fake tensorrt)."""
    buf = _allocations.get(ptr)
    return None if buf is None else len(buf)
