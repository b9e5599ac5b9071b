"""A stand-in for an engine, computed with numpy: called like trtfast.Engine, with its inputs and
outputs specs. Serving tests run on it where no GPU is."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from trtfast import InputError, TensorSpec


class AffineStandIn:
    """x [-1, features] float32 (and optionally a static `scale` [features]) -> y = 2 x + 1
    (times scale), rows [-1] int64 = the row's index within the batch. `delay` seconds per call
    stand for the kernel; with a `gate`, every call also waits until the gate is set. Records the
    rows of every call it runs."""

    def __init__(
        self,
        features: int = 4,
        max_rows: int = 64,
        delay: float = 0.0,
        with_scale: bool = False,
        gate: threading.Event | None = None,
    ) -> None:
        self.features = features
        self.delay = delay
        self.gate = gate
        self.with_scale = with_scale
        self.inputs = (
            TensorSpec(
                "x",
                "float32",
                (-1, features),
                True,
                (((1, features), (min(8, max_rows), features), (max_rows, features)),),
            ),
        ) + ((TensorSpec("scale", "float32", (features,), True),) if with_scale else ())
        self.outputs = (
            TensorSpec("y", "float32", (-1, features), False),
            TensorSpec("index", "int64", (-1,), False),
        )
        self.max_rows = max_rows
        self.calls: list[int] = []
        self.fail_next = False
        self._lock = threading.Lock()

    def __call__(self, inputs: Mapping[str, Any] | None = None, /, **named: Any) -> dict[str, Any]:
        values = {**(inputs or {}), **named}
        x = np.asarray(values["x"])
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != self.features:
            raise InputError(
                f"input 'x' must be float32 [-1, {self.features}], got {x.dtype} {x.shape}"
            )
        if not 1 <= x.shape[0] <= self.max_rows:
            raise InputError(
                f"input 'x' has {x.shape[0]} rows; the profile allows 1 to {self.max_rows}"
            )
        with self._lock:
            self.calls.append(x.shape[0])
            fail, self.fail_next = self.fail_next, False
        if self.delay:
            time.sleep(self.delay)
        if self.gate is not None:
            self.gate.wait()
        if fail:
            raise RuntimeError("the stand-in failed this call on purpose")
        y = x * np.float32(2) + np.float32(1)
        if self.with_scale:
            y = y * np.asarray(values["scale"], dtype=np.float32)
        return {"y": y, "index": np.arange(x.shape[0], dtype=np.int64)}


def expected(x: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    y = x * np.float32(2) + np.float32(1)
    return y if scale is None else y * scale
