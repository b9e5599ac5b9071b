"""Dynamic batching: many small concurrent requests run as engine-sized batches.

A :class:`Batcher` takes requests of 1..n rows, concatenates those that can share a batch along
the first dimension of the inputs whose first dimension is dynamic, runs the batch with one call,
and splits the outputs back by rows. A batch leaves as soon as ``max_batch`` rows are queued, or
when its oldest request has waited ``max_delay_us`` (as Triton's dynamic batcher does).
"""

from __future__ import annotations

import asyncio
import bisect
import ctypes
import functools
import importlib
import itertools
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
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


@functools.cache
def _library_kind(module: str) -> _Kind | None:
    """The kind of a device library's arrays, made once per library."""
    if module == "torch":
        torch = importlib.import_module("torch")
        return _Kind("torch", torch.cat, torch.from_dlpack)
    if module == "cupy":
        cupy = importlib.import_module("cupy")
        return _Kind("cupy", cupy.concatenate, cupy.from_dlpack)
    return None


def _kind_of(value: Any) -> _Kind:
    if isinstance(value, np.ndarray):
        return _NUMPY
    kind = _library_kind(type(value).__module__.split(".")[0])
    if kind is not None:
        return kind
    raise InputError(
        f"the batcher takes numpy arrays, torch tensors or cupy arrays, not {type(value).__name__}"
    )


class _Request:
    """One queued request. Its caller waits on `waiter` (a thread) or on `future` of `loop`."""

    __slots__ = ("arrived", "deadline", "future", "inputs", "key", "kind", "loop", "rows", "waiter")

    def __init__(
        self,
        inputs: dict[str, Any],
        rows: int,
        key: tuple[Any, ...],
        kind: _Kind,
        arrived: float,
        deadline: float | None,
    ) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.kind = kind
        self.arrived = arrived
        self.deadline = deadline
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[dict[str, Any]] | None = None
        self.waiter: _ThreadWaiter | None = None


class _ThreadWaiter:
    """A thread's wait for one answer: a lock held until the answer is in (lighter than a
    concurrent.futures.Future, whose condition and callbacks a request never needs)."""

    __slots__ = ("_done", "error", "result")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def settle(self, result: dict[str, Any] | None, error: BaseException | None) -> None:
        self.result = result
        self.error = error
        self._done.release()

    def wait(self, timeout: float | None) -> bool:
        return self._done.acquire(timeout=-1 if timeout is None else timeout)


def _settle_futures(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """On an event loop's thread: settles the futures of one batch's requests of this loop."""
    for future, result, error in answers:
        if future.done():
            continue  # cancelled
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _answer(
    requests: Sequence[_Request], results: Sequence[Any], error: BaseException | None
) -> None:
    """Hands each request its result (or `error`): threads are woken one by one, and each event
    loop once for all of its requests."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for request, result in zip(requests, results, strict=True):
        if request.waiter is not None:
            request.waiter.settle(result, error)
        else:
            assert request.loop is not None
            by_loop.setdefault(request.loop, []).append((request.future, result, error))
    for loop, answers in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_futures, answers)
        except RuntimeError:
            pass  # the loop is closed: nobody awaits these any more


class _Group:
    """Queued requests that may share a batch (one key), in arrival order, and their rows."""

    __slots__ = ("requests", "rows")

    def __init__(self) -> None:
        self.requests: deque[_Request] = deque()
        self.rows = 0


@dataclass
class _Samples:
    """Count, sum and bucket counts of observed values."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    count: int = 0
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float, times: int = 1) -> None:
        self.count += times
        self.total += value * times
        self.counts[bisect.bisect_left(self.buckets, value)] += times

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

        self._lock = threading.Lock()  # guards the queue and the counts
        self._wake = threading.Condition(self._lock)  # workers wait on it for a batch
        self._groups: dict[tuple[Any, ...], _Group] = {}  # by key; none is empty
        self._depth = 0  # queued requests
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
        request = self._read_request(inputs, named, timeout)
        waiter = request.waiter = _ThreadWaiter()
        self._enqueue(request)
        if request.deadline is None:
            waiter.wait(None)
        elif not waiter.wait(max(request.deadline - time.monotonic(), 0.0)):
            if self._withdraw(request):
                raise self._timeout_error(request)
            waiter.wait(None)  # its batch started: it ends
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

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
        request = self._read_request(inputs, named, timeout)
        request.loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = request.loop.create_future()
        request.future = future
        self._enqueue(request)
        # A timer on the loop, not asyncio.wait: that would cost a task's worth of futures and
        # callbacks per request.
        expiry = None
        if request.deadline is not None:
            remaining = max(request.deadline - time.monotonic(), 0.0)
            expiry = request.loop.call_later(remaining, self._expire, request)
        try:
            return await future
        except asyncio.CancelledError:
            self._withdraw(request, timed_out=False)
            raise
        finally:
            if expiry is not None:
                expiry.cancel()

    def _expire(self, request: _Request) -> None:
        """On the loop, at a request's deadline: fails it if its batch has not taken it."""
        assert request.future is not None
        if self._withdraw(request) and not request.future.done():
            request.future.set_exception(self._timeout_error(request))

    # --- state -----------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stops taking requests, runs every queued one (none is lost), and ends the workers."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
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
                "queue_depth": self._depth,
                "queued_rows": sum(group.rows for group in self._groups.values()),
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

    def _read_request(
        self, inputs: Mapping[str, Any] | None, named: Mapping[str, Any], timeout: float | None
    ) -> _Request:
        values = self._read(inputs, named)
        rows, key, kind = self._classify(values)
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, not {timeout}")
        now = time.monotonic()
        return _Request(values, rows, key, kind, now, None if timeout is None else now + timeout)

    def _enqueue(self, request: _Request) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the batcher {self.name!r} is closed")
            if self._depth >= self.max_queue:
                self._overloaded += 1
                raise OverloadedError(
                    f"the batcher {self.name!r} has {self._depth} requests queued, its "
                    f"max_queue; retry later or add capacity"
                )
            group = self._groups.get(request.key)
            if group is None:
                group = self._groups[request.key] = _Group()
            group.requests.append(request)
            group.rows += request.rows
            self._depth += 1
            self._requests += 1
            # A waiting worker needs to hear only of a first request (it then waits for that
            # one's delay) and of a full batch; waking it for every request would make it take
            # the GIL once per request.
            if self._depth == 1 or group.rows - request.rows < self.max_batch <= group.rows:
                self._wake.notify()

    def _withdraw(self, request: _Request, *, timed_out: bool = True) -> bool:
        """Takes a request out of the queue; False when its batch already took it."""
        with self._lock:
            group = self._groups.get(request.key)
            if group is None:
                return False
            try:
                group.requests.remove(request)
            except ValueError:
                return False
            group.rows -= request.rows
            self._depth -= 1
            if not group.requests:
                del self._groups[request.key]
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
        if values.keys() != self._input_names:
            unknown = sorted(set(values) - self._input_names)
            if unknown:
                raise InputError(
                    f"unknown input(s) {unknown}; the engine takes {sorted(self._input_names)}"
                )
            raise InputError(f"missing input(s) {sorted(self._input_names - set(values))}")
        return values

    def _classify(self, values: dict[str, Any]) -> tuple[int, tuple[Any, ...], _Kind]:
        """Rows of a request, the key of the requests it may share a batch with, its kind."""
        rows = None
        kind = None
        key: list[Any] = []
        for name in self._batched:
            value = values[name]
            value_kind = _NUMPY if type(value) is np.ndarray else _kind_of(value)
            if kind is None:
                kind = value_kind
            elif value_kind.name != kind.name:
                raise InputError(
                    f"input {name!r} is a {value_kind.name} array and the others are "
                    f"{kind.name}; give one kind of array per request"
                )
            shape = value.shape
            if not shape:
                raise InputError(f"input {name!r} needs a first dimension of rows, got a scalar")
            if rows is None:
                rows = shape[0]
            elif shape[0] != rows:
                raise InputError(
                    f"input {name!r} has {shape[0]} rows and {self._batched[0]!r} has {rows}; "
                    "batched inputs of one request have the same rows"
                )
            device = None if value_kind is _NUMPY else _device_of(value)
            # The dtype object itself, not its name: str(dtype) costs microseconds.
            key.append((name, value.dtype, tuple(shape[1:]), device))
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
        _precise_timers()
        while True:
            with self._lock:
                batch = self._next_batch()
                if batch is None:
                    return
            if batch:  # empty when every request taken had passed its deadline
                self._run(batch)
            del batch  # its requests' inputs are let go of while the worker waits for the next

    def _next_batch(self) -> list[_Request] | None:
        """Waits (holding the lock) until a batch may leave; None once closed and drained."""
        while True:
            if not self._groups:
                if self._closed:
                    return None
                self._wake.wait()
                continue
            oldest, first = None, float("inf")  # the key whose first request came first
            for key, group in self._groups.items():
                if group.rows >= self.max_batch:
                    return self._take(key)
                if group.requests[0].arrived < first:
                    oldest, first = key, group.requests[0].arrived
            assert oldest is not None
            due = first + self.max_delay
            now = time.monotonic()
            if now >= due or self._closed:
                return self._take(oldest)
            self._wake.wait(due - now)

    def _take(self, key: tuple[Any, ...]) -> list[_Request]:
        """The oldest requests of `key` that fit in max_batch rows, out of the queue. Requests
        past their deadline are answered TimeoutError instead (their callers may not have woken
        yet)."""
        batch: list[_Request] = []
        rows = 0
        taken = 0
        now = time.monotonic()
        group = self._groups[key]
        queued = group.requests
        while queued and rows + queued[0].rows <= self.max_batch:
            request = queued.popleft()
            taken += 1
            if request.deadline is not None and request.deadline <= now:
                group.rows -= request.rows
                self._timed_out += 1
                _answer([request], [None], self._timeout_error(request))
                continue
            batch.append(request)
            rows += request.rows
        group.rows -= rows
        self._depth -= taken
        if not queued:
            del self._groups[key]
        if self._groups:
            self._wake.notify()  # another worker may form the next batch meanwhile
        observe = self._queue_time.observe
        for request in batch:
            observe(now - request.arrived)
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
        started = time.monotonic()
        rows = sum(r.rows for r in batch)
        size = self._padded(rows)
        kind = batch[0].kind
        inputs: dict[str, Any] = {}
        try:
            for name in self._batched:
                parts = [r.inputs[name] for r in batch]
                if size > rows:
                    parts.extend([parts[-1][-1:]] * (size - rows))
                inputs[name] = parts[0] if len(parts) == 1 else kind.concatenate(parts)
            for name in self._static:
                inputs[name] = batch[0].inputs[name]
            outputs = self.engine(inputs)
            results = self._split(outputs, batch, size, kind)
        except Exception as error:
            self._finish(batch, rows, size, started, failed=True)
            _answer(batch, [None] * len(batch), error)
            return
        self._finish(batch, rows, size, started, failed=False)
        _answer(batch, results, None)

    def _split(
        self, outputs: Mapping[str, Any], batch: list[_Request], size: int, kind: _Kind
    ) -> list[dict[str, Any]]:
        counts = [request.rows for request in batch]
        rows = sum(counts)
        # Requests of equal rows (one row each, most often) come out of one reshape, a view per
        # request made in C, rather than of a slice each.
        equal = counts[0] if counts.count(counts[0]) == len(counts) else None
        columns: dict[str, list[Any]] = {}
        for name, value in outputs.items():
            if name not in self._split_outputs:
                columns[name] = [value] * len(batch)
                continue
            array = kind.wrap(value)
            if array.shape[0] != size:
                raise RuntimeError(
                    f"output {name!r} has {array.shape[0]} rows for a batch of {size}; the "
                    "batcher splits outputs whose first dimension is dynamic by rows"
                )
            if equal is not None:
                shape = (len(batch), equal, *array.shape[1:])
                columns[name] = list(array[:rows].reshape(shape))
            else:
                ends = itertools.accumulate(counts)
                columns[name] = [array[end - n : end] for end, n in zip(ends, counts, strict=True)]
        results: list[dict[str, Any]] = [{} for _ in batch]
        for name, values in columns.items():
            for result, value in zip(results, values, strict=True):
                result[name] = value
        return results

    def _finish(
        self, batch: list[_Request], rows: int, size: int, started: float, *, failed: bool
    ) -> None:
        ran = time.monotonic() - started
        with self._lock:
            self._batches += 1
            self._rows += rows
            self._padded_rows += size - rows
            self._batch_sizes[rows] = self._batch_sizes.get(rows, 0) + 1
            if failed:
                self._failed += len(batch)
            self._run_time.observe(ran, len(batch))


PR_SET_TIMERSLACK = 29


def _precise_timers() -> None:
    """Asks Linux to end the calling thread's timed waits within 1 us of their time. By default
    they may overrun by the thread's timer slack, 50 us: a tenth of a typical max_delay_us, added
    to every batch that leaves on its delay."""
    if sys.platform != "linux":
        return
    try:
        ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)  # nanoseconds
    except (OSError, AttributeError):
        pass  # no prctl to call: the default slack stays


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
