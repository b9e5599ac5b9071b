"""The reference path: the same builds and calls through TensorRT's own Python API.

``trtfast.reference.build(...)`` takes ``trtfast.build``'s options (plus ``edition``) and writes
the same engine files; ``trtfast.reference.Engine.load(...)`` is called like
``trtfast.Engine.load`` and raises the same exceptions. What differs is who talks to TensorRT:
TensorRT's Python bindings and cuda-python here, trtfast's C++ core there. The reference serves
parity checks and shows what the C++ core saves per call.

Needs TensorRT's Python package (``tensorrt``, or ``tensorrt_rtx`` for ``edition="rtx"``) and,
to run engines, cuda-python: ``pip install 'trtfast[build,reference]' tensorrt-cu13``.
TensorRT-RTX builds need no GPU.
"""

from __future__ import annotations

from ._tensorrt import EDITIONS, unavailable_reason
from .builder import build
from .runtime import Engine

__all__ = ["EDITIONS", "Engine", "build", "unavailable_reason"]
