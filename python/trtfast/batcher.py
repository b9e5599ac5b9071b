"""Dynamic batching: many small concurrent requests run as engine-sized batches.

A :class:`Batcher` takes requests of 1..n rows, concatenates those that can share a batch along
the first dimension of the inputs whose first dimension is dynamic, runs the batch with one call,
and splits the outputs back by rows. A batch leaves as soon as ``max_batch`` rows are queued, or
when its oldest request has waited ``max_delay_us`` (as Triton's dynamic batcher does).
"""

from __future__ import annotations

import asyncio
import bisect
import importlib
import itertools
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .errors import InputError, OverloadedError


class Spec(Protocol):
    """What the batcher reads of an engine's input and output specs (:class:`TensorSpec`)."""

    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def profiles(self) -> Sequence[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]: ...


class Runnable(Protocol):
    """Anything called like an engine: ``runnable(inputs_dict) -> outputs_dict``, with specs."""

    @property
    def inputs(self) -> Sequence[Spec]: ...
    @property
    def outputs(self) -> Sequence[Spec]: ...
    def __call__(self, inputs: Mapping[str, Any], /) -> Mapping[str, Any]: ...


# Sizes of the batch-size histogram's buckets are the sizes themselves; times go in these
# buckets (seconds), as Prometheus histograms do.
TIME_BUCKETS = (
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0,
)  # fmt: skip


class _Kind:
    """How to concatenate and slice one kind of array: numpy, or a device library's own."""

    def __init__(self, name: str, concatenate: Any, wrap: Any) -> None:
        self.name = name
        self.concatenate = concatenate
        self.wrap = wrap  # an engine's output (DeviceArray or numpy) as this kind, no copy


_NUMPY = _Kind("numpy", np.concatenate, np.asarray)


def _kind_of(value: Any) -> _Kind:
    if isinstance(value, np.ndarray):
        return _NUMPY
    module = type(value).__module__.split(".")[0]
    if module == "torch":
        torch = importlib.import_module("torch")
        return _Kind("torch", torch.cat, torch.from_dlpack)
    if module == "cupy":
        cupy = importlib.import_module("cupy")
        return _Kind("cupy", cupy.concatenate, cupy.from_dlpack)
    raise InputError(
        f"the batcher takes numpy arrays, torch tensors or cupy arrays, not {type(value).__name__}"
    )


@dataclass(eq=False)  # a request is itself: the queue removes it by identity
class _Request:
    inputs: dict[str, Any]
    rows: int
    key: tuple[Any, ...]
    kind: _Kind
    deliver: Any  # callable(result: dict | None, error: BaseException | None), thread-safe
    arrived: float
    deadline: float | None
    started: float = 0.0


@dataclass
class _Samples:
    """Count, sum and bucket counts of observed values."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    count: int = 0
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.counts[bisect.bisect_left(self.buckets, value)] += 1

    def snapshot(self) -> dict[str, Any]:
        cumulative = list(itertools.accumulate(self.counts))
        return {
            "count": self.count,
            "sum": self.total,
            "buckets": {
                **{bound: cumulative[i] for i, bound in enumerate(self.buckets)},
                float("inf"): cumulative[-1],
            },
        }


_live: weakref.WeakSet[Batcher] = weakref.WeakSet()
_names = itertools.count()


class Batcher:
    """Runs concurrent requests on ``engine`` in batches of rows.

    ``engine`` is anything called like :class:`trtfast.Engine` (``engine(inputs) -> dict``) with
    its ``inputs``/``outputs`` specs. Requests are concatenated along the first dimension of the
    inputs whose first dimension is dynamic; requests whose other dimensions, static inputs,
    dtypes or array kinds differ never share a batch. A batch holds at most ``max_batch`` rows,
    by default the largest the engine's profiles accept.

    ``max_delay_us``: how long the oldest queued request may wait for others. ``max_queue``:
    queued requests beyond which a call raises :class:`trtfast.OverloadedError` at once.
    ``batch_sizes``: pads each batch up to the next listed size, so that a few CUDA graphs cover
    all traffic; padding rows never reach a caller. ``workers``: batches that run at once.

    ``batcher(x=...)`` (from threads) and ``await batcher.run_async(x=...)`` return a dict of
    outputs of the caller's kind; ``timeout`` (seconds) bounds the wait for a batch: a request
    not started by then raises TimeoutError and never runs.
    """

    def __init__(
        self,
        engine: Runnable,
        max_batch: int | None = None,
        max_delay_us: float = 1000.0,
        max_queue: int = 4096,
        batch_sizes: Sequence[int] | None = None,
        *,
        workers: int = 2,
        name: str | None = None,
    ) -> None:
        self.engine = engine
        specs = list(engine.inputs)
        self._batched = [s.name for s in specs if s.shape and s.shape[0] == -1]
        self._static = [s.name for s in specs if not (s.shape and s.shape[0] == -1)]
        self._input_names = {s.name for s in specs}
        if not self._batched:
            raise ValueError(
                "the batcher needs an engine input whose first dimension is dynamic (-1); "
                f"the engine's inputs are {[(s.name, tuple(s.shape)) for s in specs]}"
            )
        self._split_outputs = {s.name for s in engine.outputs if s.shape and s.shape[0] == -1}
        profile_max = _profile_max_rows(specs, self._batched)
        sizes = sorted(set(batch_sizes)) if batch_sizes is not None else None
        if sizes is not None and (not sizes or sizes[0] < 1):
            raise ValueError(f"batch_sizes must be positive sizes, got {batch_sizes!r}")
        limit = profile_max if sizes is None else sizes[-1]
        if sizes is not None and profile_max is not None and sizes[-1] > profile_max:
            raise ValueError(
                f"batch_sizes {tuple(sizes)} exceed the engine's largest batch, {profile_max} rows"
            )
        if max_batch is None:
            if limit is None:
                raise ValueError(
                    "the engine's inputs have no profiles to bound a batch: give max_batch"
                )
            max_batch = limit
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, not {max_batch}")
        if limit is not None and max_batch > limit:
            what = "the largest of batch_sizes" if sizes is not None else "the profile's maximum"
            raise ValueError(f"max_batch {max_batch} exceeds {what}, {limit} rows")
        if max_delay_us < 0:
            raise ValueError(f"max_delay_us must be >= 0, not {max_delay_us}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, not {max_queue}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        self.max_batch = max_batch
        self.max_delay = max_delay_us * 1e-6
        self.max_queue = max_queue
        self.batch_sizes = tuple(sizes) if sizes is not None else None
        self.name = name if name is not None else f"batcher{next(_names)}"

        self._lock = threading.Condition()
        self._queue: deque[_Request] = deque()  # arrival order, all keys
        self._closed = False
        self._requests = 0
        self._batches = 0
        self._rows = 0
        self._padded_rows = 0
        self._overloaded = 0
        self._timed_out = 0
        self._failed = 0
        self._batch_sizes: dict[int, int] = {}
        self._queue_time = _Samples(TIME_BUCKETS)
        self._run_time = _Samples(TIME_BUCKETS)
        self._workers = [
            threading.Thread(target=self._work, name=f"trtfast-{self.name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for worker in self._workers:
            worker.start()
        _live.add(self)
        _export_to_prometheus()

    # --- calls -----------------------------------------------------------------------------------

    def __call__(
        self,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        **named: Any,
    ) -> dict[str, Any]:
        """Queues a request and waits for its outputs."""
        future: Future[dict[str, Any]] = Future()

        def deliver(result: dict[str, Any] | None, error: BaseException | None) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        request = self._submit(inputs, named, timeout, deliver)
        if request.deadline is not None:
            done, _ = wait([future], timeout=max(request.deadline - time.monotonic(), 0.0))
            if not done and self._withdraw(request):
                raise self._timeout_error(request)
        return future.result()  # its batch started: it ends

    def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        **named: Any,
    ) -> dict[str, Any]:
        """The same as calling the batcher."""
        return self(inputs, timeout=timeout, **named)

    async def run_async(
        self,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        **named: Any,
    ) -> dict[str, Any]:
        """Queues a request and awaits its outputs without blocking the event loop. Cancelling the
        awaiting task drops the request if its batch has not started."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()

        def settle(result: dict[str, Any] | None, error: BaseException | None) -> None:
            if future.done():
                return  # cancelled
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def deliver(result: dict[str, Any] | None, error: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:
                pass  # the loop is closed: nobody awaits this any more

        request = self._submit(inputs, named, timeout, deliver)
        try:
            if request.deadline is not None:
                remaining = max(request.deadline - time.monotonic(), 0.0)
                done, _ = await asyncio.wait([future], timeout=remaining)
                if not done and self._withdraw(request):
                    raise self._timeout_error(request)
            return await future
        except asyncio.CancelledError:
            self._withdraw(request, timed_out=False)
            raise

    # --- state -----------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stops taking requests, runs every queued one (none is lost), and ends the workers."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        for worker in self._workers:
            if worker is not threading.current_thread():
                worker.join()
        _live.discard(self)

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def metrics(self) -> dict[str, Any]:
        """A snapshot: ``queue_depth`` (requests) and ``queued_rows``; totals of ``requests``,
        ``batches``, ``rows``, ``padded_rows``, ``overloaded``, ``timed_out``, ``failed``;
        ``batch_sizes`` (rows per batch before padding -> batches); ``queue_time`` and
        ``run_time`` of each request (seconds: count, sum and cumulative buckets)."""
        with self._lock:
            return {
                "queue_depth": len(self._queue),
                "queued_rows": sum(r.rows for r in self._queue),
                "requests": self._requests,
                "batches": self._batches,
                "rows": self._rows,
                "padded_rows": self._padded_rows,
                "overloaded": self._overloaded,
                "timed_out": self._timed_out,
                "failed": self._failed,
                "batch_sizes": dict(sorted(self._batch_sizes.items())),
                "queue_time": self._queue_time.snapshot(),
                "run_time": self._run_time.snapshot(),
            }

    # --- queueing --------------------------------------------------------------------------------

    def _submit(
        self,
        inputs: Mapping[str, Any] | None,
        named: Mapping[str, Any],
        timeout: float | None,
        deliver: Any,
    ) -> _Request:
        values = self._read(inputs, named)
        rows, key, kind = self._classify(values)
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, not {timeout}")
        now = time.monotonic()
        request = _Request(
            inputs=values,
            rows=rows,
            key=key,
            kind=kind,
            deliver=deliver,
            arrived=now,
            deadline=None if timeout is None else now + timeout,
        )
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the batcher {self.name!r} is closed")
            if len(self._queue) >= self.max_queue:
                self._overloaded += 1
                raise OverloadedError(
                    f"the batcher {self.name!r} has {len(self._queue)} requests queued, its "
                    f"max_queue; retry later or add capacity"
                )
            self._queue.append(request)
            self._requests += 1
            self._lock.notify()
        return request

    def _withdraw(self, request: _Request, *, timed_out: bool = True) -> bool:
        """Takes a request out of the queue; False when its batch already took it."""
        with self._lock:
            try:
                self._queue.remove(request)
            except ValueError:
                return False
            self._timed_out += timed_out
            return True

    def _timeout_error(self, request: _Request) -> TimeoutError:
        return TimeoutError(
            f"the request waited {time.monotonic() - request.arrived:.6f} s in the batcher "
            f"{self.name!r} and did not start within its timeout"
        )

    def _read(self, inputs: Mapping[str, Any] | None, named: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(inputs) if inputs is not None else {}
        for name, value in named.items():
            if name in values:
                raise InputError(f"input {name!r} is given twice")
            values[name] = value
        unknown = sorted(set(values) - self._input_names)
        if unknown:
            raise InputError(
                f"unknown input(s) {unknown}; the engine takes {sorted(self._input_names)}"
            )
        missing = sorted(self._input_names - set(values))
        if missing:
            raise InputError(f"missing input(s) {missing}")
        return values

    def _classify(self, values: dict[str, Any]) -> tuple[int, tuple[Any, ...], _Kind]:
        """Rows of a request, the key of the requests it may share a batch with, its kind."""
        rows = None
        kind = None
        key: list[Any] = []
        for name in self._batched:
            value = values[name]
            if kind is None:
                kind = _kind_of(value)
            elif _kind_of(value).name != kind.name:
                raise InputError(
                    f"input {name!r} is a {_kind_of(value).name} array and the others are "
                    f"{kind.name}; give one kind of array per request"
                )
            shape = tuple(value.shape)
            if not shape:
                raise InputError(f"input {name!r} needs a first dimension of rows, got a scalar")
            if rows is None:
                rows = shape[0]
            elif shape[0] != rows:
                raise InputError(
                    f"input {name!r} has {shape[0]} rows and {self._batched[0]!r} has {rows}; "
                    "batched inputs of one request have the same rows"
                )
            key.append((name, str(value.dtype), shape[1:], _device_of(value)))
        assert rows is not None and kind is not None
        if not 1 <= rows <= self.max_batch:
            raise InputError(
                f"a request has {rows} rows; the batcher takes 1 to {self.max_batch} (max_batch)"
            )
        for name in self._static:
            key.append((name, _static_key(values[name])))
        return rows, tuple(key), kind

    # --- batching --------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                batch = self._next_batch()
                if batch is None:
                    return
            self._run(batch)

    def _next_batch(self) -> list[_Request] | None:
        """Waits (holding the lock) until a batch may leave; None once closed and drained."""
        while True:
            now = time.monotonic()
            if not self._queue:
                if self._closed:
                    return None
                self._lock.wait()
                continue
            oldest = self._queue[0]
            rows = sum(r.rows for r in self._queue if r.key == oldest.key)
            due = oldest.arrived + self.max_delay
            if rows >= self.max_batch or now >= due or self._closed:
                return self._take(oldest.key)
            self._lock.wait(due - now)

    def _take(self, key: tuple[Any, ...]) -> list[_Request]:
        """The oldest requests of `key` that fit in max_batch rows, out of the queue. Requests
        past their deadline are answered TimeoutError instead (their callers may not have woken
        yet)."""
        batch: list[_Request] = []
        rows = 0
        now = time.monotonic()
        for request in list(self._queue):
            if request.key != key:
                continue
            if request.deadline is not None and request.deadline <= now:
                self._queue.remove(request)
                self._timed_out += 1
                request.deliver(None, self._timeout_error(request))
                continue
            if rows + request.rows > self.max_batch:
                break
            batch.append(request)
            rows += request.rows
            self._queue.remove(request)
        now = time.monotonic()
        for request in batch:
            request.started = now
            self._queue_time.observe(now - request.arrived)
        return batch

    def _row_buckets(self) -> tuple[int, ...]:
        """Bounds of the batch-size histogram: the padded sizes, else powers of two."""
        if self.batch_sizes is not None:
            return self.batch_sizes
        bounds = [1 << k for k in range(self.max_batch.bit_length()) if 1 << k < self.max_batch]
        return (*bounds, self.max_batch)

    def _padded(self, rows: int) -> int:
        if self.batch_sizes is None:
            return rows
        return self.batch_sizes[bisect.bisect_left(self.batch_sizes, rows)]

    def _run(self, batch: list[_Request]) -> None:
        rows = sum(r.rows for r in batch)
        size = self._padded(rows)
        kind = batch[0].kind
        inputs: dict[str, Any] = {}
        try:
            for name in self._batched:
                parts = [r.inputs[name] for r in batch]
                if size > rows:
                    last = parts[-1][-1:]
                    parts.append(kind.concatenate([last] * (size - rows)))
                inputs[name] = parts[0] if len(parts) == 1 else kind.concatenate(parts)
            for name in self._static:
                inputs[name] = batch[0].inputs[name]
            outputs = self.engine(inputs)
            results = self._split(outputs, batch, size, kind)
        except Exception as error:
            self._finish(batch, rows, size, failed=True)
            for request in batch:
                request.deliver(None, error)
            return
        self._finish(batch, rows, size, failed=False)
        for request, result in zip(batch, results, strict=True):
            request.deliver(result, None)

    def _split(
        self, outputs: Mapping[str, Any], batch: list[_Request], size: int, kind: _Kind
    ) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = [{} for _ in batch]
        for name, value in outputs.items():
            if name not in self._split_outputs:
                for result in results:
                    result[name] = value
                continue
            array = kind.wrap(value)
            if array.shape[0] != size:
                raise RuntimeError(
                    f"output {name!r} has {array.shape[0]} rows for a batch of {size}; the "
                    "batcher splits outputs whose first dimension is dynamic by rows"
                )
            start = 0
            for result, request in zip(results, batch, strict=True):
                result[name] = array[start : start + request.rows]
                start += request.rows
        return results

    def _finish(self, batch: list[_Request], rows: int, size: int, *, failed: bool) -> None:
        now = time.monotonic()
        with self._lock:
            self._batches += 1
            self._rows += rows
            self._padded_rows += size - rows
            self._batch_sizes[rows] = self._batch_sizes.get(rows, 0) + 1
            if failed:
                self._failed += len(batch)
            for request in batch:
                self._run_time.observe(now - request.started)


def _profile_max_rows(specs: Sequence[Spec], batched: Sequence[str]) -> int | None:
    """The most rows every batched input accepts in some profile; None without profiles."""
    limits = []
    for spec in specs:
        if spec.name in batched and spec.profiles:
            limits.append(max(int(p[2][0]) for p in spec.profiles))
    return min(limits) if limits else None


def _device_of(value: Any) -> Any:
    device = getattr(value, "device", None)
    return None if device is None or isinstance(value, np.ndarray) else str(device)


def _static_key(value: Any) -> Any:
    """Requests share a batch only when their static inputs are equal: numpy by value, others
    by identity."""
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (int, float, bool, str)):
        return value
    return ("object", id(value))


def _export_to_prometheus() -> None:
    """Registers, once, a collector of every live batcher's metrics with prometheus_client's
    default registry, when prometheus_client is installed."""
    global _exported
    if _exported:
        return
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return
    REGISTRY.register(_Collector())
    _exported = True


_exported = False


class _Collector:
    """prometheus_client collector: one labelled series per batcher (label ``batcher``)."""

    def describe(self) -> list[Any]:
        return []  # collected lazily: the batchers come and go

    def collect(self) -> Any:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        depth = GaugeMetricFamily(
            "trtfast_batcher_queue_depth", "Requests waiting for a batch", labels=["batcher"]
        )
        counters = {
            key: CounterMetricFamily(f"trtfast_batcher_{key}", text, labels=["batcher"])
            for key, text in (
                ("requests", "Requests queued"),
                ("batches", "Batches run"),
                ("overloaded", "Requests refused because the queue was full"),
                ("timed_out", "Requests that did not start within their timeout"),
                ("failed", "Requests whose batch failed"),
            )
        }
        sizes = HistogramMetricFamily(
            "trtfast_batcher_batch_rows", "Rows per batch, before padding", labels=["batcher"]
        )
        times = {
            key: HistogramMetricFamily(
                f"trtfast_batcher_{key}_seconds", text, labels=["batcher"], unit=""
            )
            for key, text in (
                ("queue_time", "Time a request waited for its batch"),
                ("run_time", "Time a request's batch ran"),
            )
        }
        for batcher in list(_live):
            snapshot = batcher.metrics()
            labels = [batcher.name]
            depth.add_metric(labels, snapshot["queue_depth"])
            for key, family in counters.items():
                family.add_metric(labels, snapshot[key])
            histogram = snapshot["batch_sizes"]
            cumulative = 0
            buckets = []
            previous = 0
            for bound in batcher._row_buckets():
                cumulative += sum(n for rows, n in histogram.items() if previous < rows <= bound)
                buckets.append((str(bound), cumulative))
                previous = bound
            buckets.append(("+Inf", cumulative))
            sizes.add_metric(labels, buckets, sum_value=snapshot["rows"])
            for key, timing in times.items():
                samples = snapshot[key]
                timing.add_metric(
                    labels,
                    [
                        ("+Inf" if bound == float("inf") else repr(bound), count)
                        for bound, count in samples["buckets"].items()
                    ],
                    sum_value=samples["sum"],
                )
        yield depth
        yield from counters.values()
        yield sizes
        yield from times.values()


__all__ = ["Batcher", "Runnable", "Spec"]
