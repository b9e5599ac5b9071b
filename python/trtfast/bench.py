"""Latency of one engine on every path, against this machine's floor for the same I/O.

:func:`benchmark` measures, for one engine and one set of inputs:

- trtfast's C++ session: numpy in and out (pinned staging), device arrays bound by pointer
  (torch, else cupy, else a device buffer exposing ``__cuda_array_interface__``), and a bound
  call replayed with ``run()``; each with CUDA graphs on and off, and spin and blocking sync;
- the reference path: the same engine file through TensorRT's Python API and cuda-python;
- the floor: the same I/O from plain C++ with no engine at all (``trtfast._testing``): each
  input copied pageable -> pinned -> device, each output back, synchronize; for device arrays
  an event recorded and synchronized;
- the engine's GPU time (CUDA events around runs queued behind a gate, so no launch gap is
  counted) and the host time of an enqueue: TensorRT's enqueueV3 and a CUDA graph launch from
  C++, ``execute_async_v3`` from Python.

Each row gives the host round-trip latency (p50/p90/p99, microseconds) and throughput, and
how far its p50 lies above floor + GPU time: what the path itself costs.
``trtfast bench ENGINE`` prints the table; ``--json`` the :class:`BenchResult`.
"""

from __future__ import annotations

import gc
import importlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core
from .errors import InputError, TensorRTUnavailableError, TrtfastError
from .parity import _check_int, call_inputs, check_call_inputs

if TYPE_CHECKING:
    from .engine import Engine, SyncMode

SYNC_MODES: tuple[SyncMode, ...] = ("spin", "blocking")

#: Names of the enqueue measurements in :attr:`BenchResult.enqueue`.
CPP_ENQUEUE = "enqueue from C++"
CPP_GRAPH_LAUNCH = "graph launch from C++"
PYTHON_ENQUEUE = "execute_async_v3 from Python"


@dataclass(frozen=True)
class Stats:
    """Summary of samples in microseconds; percentiles interpolate linearly (numpy's default)."""

    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float
    count: int

    @classmethod
    def of(cls, samples: Sequence[float] | np.ndarray[Any, Any]) -> Stats:
        values = np.asarray(samples, dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"statistics need a non-empty 1-D sequence, got shape {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("statistics need finite samples")
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return cls(
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
            mean=float(values.mean()),
            min=float(values.min()),
            max=float(values.max()),
            count=int(values.size),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Stats:
        return cls(**{item.name: data[item.name] for item in fields(cls)})


@dataclass(frozen=True)
class Row:
    """One measured way to run a call."""

    #: "trtfast" (the C++ session), "reference" (TensorRT's Python API) or "floor"
    path: str
    #: what the call was given: "numpy", "torch", "cupy", "__cuda_array_interface__", "bound
    #: torch, run()", ...; for the floor "host" or "device"
    io: str
    #: inputs and outputs in device memory: the device floor applies, not the host one
    device_io: bool
    #: None where the path has no such switch
    cuda_graph: bool | None
    #: "spin" or "blocking"; None for the reference path (cudaStreamSynchronize)
    sync: str | None
    latency: Stats
    calls_per_s: float

    @property
    def label(self) -> str:
        if self.path == "floor":
            return "floor (C++, no engine)"
        if self.path == "reference":
            return "reference (TensorRT Python API)"
        return self.path

    def to_json(self) -> dict[str, Any]:
        result = asdict(self)
        result["latency"] = self.latency.to_json()
        return result

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Row:
        values = {item.name: data[item.name] for item in fields(cls)}
        values["latency"] = Stats.from_json(data["latency"])
        return cls(**values)


@dataclass(frozen=True)
class BenchResult:
    """What :func:`benchmark` measured. ``to_json``/``from_json`` round-trip it."""

    engine: str
    gpu_name: str
    #: input name -> (dtype, shape)
    inputs: dict[str, tuple[str, tuple[int, ...]]]
    iterations: int
    warmup: int
    rows: tuple[Row, ...]
    #: the engine's GPU time per run; None where it could not be measured (see notes)
    gpu: Stats | None = None
    #: how ``gpu`` was measured: "graph replays" or "plain enqueues"
    gpu_method: str = ""
    #: host time of one enqueue, by CPP_ENQUEUE, CPP_GRAPH_LAUNCH and PYTHON_ENQUEUE
    enqueue: dict[str, Stats] = field(default_factory=dict)
    #: what was not measured, and why
    notes: tuple[str, ...] = ()

    def floor(self, device_io: bool, sync: str | None) -> Row | None:
        """The floor row for ``row``-like I/O and sync (the reference path's
        cudaStreamSynchronize spins, as CUDA does by default)."""
        for row in self.rows:
            if row.path == "floor" and row.device_io == device_io and row.sync == (sync or "spin"):
                return row
        return None

    def bound(self, row: Row) -> float | None:
        """floor + GPU time (p50s) for ``row``: the least its p50 can be. None without a floor;
        the floor alone without a GPU time."""
        floor = self.floor(row.device_io, row.sync)
        if floor is None or row.path == "floor":
            return None
        return floor.latency.p50 + (self.gpu.p50 if self.gpu is not None else 0.0)

    def find(
        self,
        path: str,
        *,
        device_io: bool = False,
        cuda_graph: bool | None = True,
        sync: str | None = "spin",
        bound: bool = False,
    ) -> Row | None:
        """The first row of ``path`` with these settings (``bound``: a bound ``run()``)."""
        for row in self.rows:
            if (
                row.path == path
                and row.device_io == device_io
                and (path == "reference" or (row.cuda_graph, row.sync) == (cuda_graph, sync))
                and row.io.startswith("bound") == bound
            ):
                return row
        return None

    def highlights(self) -> list[str]:
        """The headline comparisons: trtfast against the reference and against its bound."""
        lines = []
        numpy_row = self.find("trtfast")
        reference = self.find("reference")
        if numpy_row is not None and reference is not None:
            ratio = reference.latency.p50 / numpy_row.latency.p50
            lines.append(
                f"trtfast (numpy, graphs on, spin) p50 {numpy_row.latency.p50:.1f} us against "
                f"the reference's {reference.latency.p50:.1f} us: {ratio:.2f}x lower"
            )
        for row in (numpy_row, self.find("trtfast", device_io=True, bound=True)):
            bound = self.bound(row) if row is not None else None
            if row is not None and bound:
                what = "floor + GPU time" if self.gpu is not None else "floor"
                lines.append(
                    f"trtfast ({row.io}, graphs on, spin) p50 is {row.latency.p50 / bound:.2f}x "
                    f"{what} ({bound:.1f} us)"
                )
        return lines

    def markdown(self) -> str:
        """The result as Markdown: what was run, a table of rows, highlights and notes."""
        inputs = ", ".join(
            f"`{name}` {dtype} {list(shape)}" for name, (dtype, shape) in self.inputs.items()
        )
        lines = [
            f"`{self.engine}` on {self.gpu_name}; inputs {inputs}; {self.iterations} iterations "
            f"after {self.warmup} warm-up; times in microseconds.",
            "",
        ]
        if self.gpu is not None:
            lines.append(
                f"- GPU time (CUDA events, {self.gpu_method}): p50 {self.gpu.p50:.1f}, "
                f"p90 {self.gpu.p90:.1f}, p99 {self.gpu.p99:.1f}"
            )
        for name, stats in self.enqueue.items():
            lines.append(f"- {name}: p50 {stats.p50:.1f}, p99 {stats.p99:.1f}")
        lines += [
            "",
            "| path | I/O | graphs | sync | p50 | p90 | p99 | calls/s | floor + GPU | above "
            "| ratio |",
            "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in self.rows:
            graphs = "-" if row.cuda_graph is None else ("on" if row.cuda_graph else "off")
            sync = row.sync or "stream sync"
            bound = self.bound(row)
            extra = (
                f"{bound:.1f} | {row.latency.p50 - bound:+.1f} | {row.latency.p50 / bound:.2f}"
                if bound
                else "- | - | -"
            )
            stats = row.latency
            lines.append(
                f"| {row.label} | {row.io} | {graphs} | {sync} | {stats.p50:.1f} | "
                f"{stats.p90:.1f} | {stats.p99:.1f} | {row.calls_per_s:,.0f} | {extra} |"
            )
        highlights = self.highlights()
        if highlights:
            lines += ["", *[f"- {line}" for line in highlights]]
        if self.notes:
            lines += ["", *[f"- note: {note}" for note in self.notes]]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "gpu_name": self.gpu_name,
            "inputs": {
                name: {"dtype": dtype, "shape": list(shape)}
                for name, (dtype, shape) in self.inputs.items()
            },
            "iterations": self.iterations,
            "warmup": self.warmup,
            "rows": [row.to_json() for row in self.rows],
            "gpu": self.gpu.to_json() if self.gpu is not None else None,
            "gpu_method": self.gpu_method,
            "enqueue": {name: stats.to_json() for name, stats in self.enqueue.items()},
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchResult:
        """Reads what :meth:`to_json` wrote; ValueError naming what is missing or malformed."""
        try:
            return cls(
                engine=str(data["engine"]),
                gpu_name=str(data["gpu_name"]),
                inputs={
                    name: (str(entry["dtype"]), tuple(int(dim) for dim in entry["shape"]))
                    for name, entry in data["inputs"].items()
                },
                iterations=int(data["iterations"]),
                warmup=int(data["warmup"]),
                rows=tuple(Row.from_json(row) for row in data["rows"]),
                gpu=Stats.from_json(data["gpu"]) if data.get("gpu") is not None else None,
                gpu_method=str(data.get("gpu_method", "")),
                enqueue={
                    name: Stats.from_json(stats) for name, stats in data.get("enqueue", {}).items()
                },
                notes=tuple(str(note) for note in data.get("notes", ())),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a benchmark result: {type(error).__name__} {error}") from None


# --- measuring ---------------------------------------------------------------------------------


def measure(call: Callable[[], object], iterations: int, warmup: int) -> np.ndarray[Any, Any]:
    """Host time of each of ``iterations`` calls (microseconds), after ``warmup`` untimed ones.
    The garbage collector is paused while timing, so its pauses do not land in the samples."""
    for _ in range(warmup):
        call()
    samples = np.empty(iterations, dtype=np.float64)
    clock = time.perf_counter_ns
    collecting = gc.isenabled()
    gc.disable()
    try:
        for i in range(iterations):
            start = clock()
            call()
            samples[i] = clock() - start
    finally:
        if collecting:
            gc.enable()
    result: np.ndarray[Any, Any] = samples / 1000.0
    return result


def test_executor() -> Any:
    """trtfast._testing for the GPU benchmarks; exits with the reason where it cannot run."""
    if _core.cuda.device_count() == 0:
        raise SystemExit(f"no CUDA device: {_core.cuda.unavailable_reason()}")
    try:
        return importlib.import_module("trtfast._testing")
    except ImportError:
        raise SystemExit("trtfast._testing was not built (it needs nvcc at build time)") from None


def throughput(samples: np.ndarray[Any, Any]) -> float:
    """Calls per second of back-to-back calls that took ``samples`` microseconds each."""
    total = float(np.sum(samples))
    return len(samples) / total * 1e6 if total > 0 else float("inf")


class DeviceCopy:
    """A host array copied into device memory and exposed by ``__cuda_array_interface__``: the
    device input where neither torch nor cupy is installed."""

    def __init__(self, array: np.ndarray[Any, Any], device: int = 0) -> None:
        array = np.ascontiguousarray(array)
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"{array.dtype} has no __cuda_array_interface__ type; install torch for "
                "device inputs of this dtype"
            )
        self._buffer = _core.cuda.DeviceBuffer(max(array.nbytes, 1), device)
        stream = _core.cuda.Stream(device)
        _core.cuda.copy_async(self._buffer.ptr, array.ctypes.data, array.nbytes, stream)
        stream.synchronize()
        self._interface = {
            "shape": array.shape,
            "typestr": array.dtype.str,
            "data": (self._buffer.ptr, False),
            "strides": None,
            "version": 3,
        }

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return self._interface


def device_inputs(
    feeds: Mapping[str, np.ndarray[Any, Any]], device: int = 0
) -> tuple[dict[str, Any], str]:
    """Device copies of ``feeds`` and what they are: torch tensors where torch can use CUDA,
    else cupy arrays, else :class:`DeviceCopy` ("__cuda_array_interface__")."""
    torch = _optional_module("torch")
    if torch is not None and torch.cuda.is_available():
        target = torch.device("cuda", device)
        try:
            return {
                name: torch.from_numpy(np.ascontiguousarray(array)).to(target)
                for name, array in feeds.items()
            }, "torch"
        except TypeError:  # a dtype torch does not take from numpy
            pass
    cupy = _optional_module("cupy")
    if cupy is not None:
        try:
            with cupy.cuda.Device(device):
                return {name: cupy.asarray(array) for name, array in feeds.items()}, "cupy"
        except (TypeError, ValueError):  # a dtype cupy does not take
            pass
    return {
        name: DeviceCopy(array, device) for name, array in feeds.items()
    }, "__cuda_array_interface__"


def _optional_module(name: str) -> Any:
    """The module ``name``, or None where it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def benchmark(
    engine: str | os.PathLike[str] | Engine,
    *,
    inputs: Mapping[str, Any] | None = None,
    batch: int | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    iterations: int = 1000,
    warmup: int = 100,
    device: int = 0,
    reference: bool = True,
    allow_host_code: bool = False,
) -> BenchResult:
    """Measures an engine file (or a loaded :class:`trtfast.Engine`) on every path.

    inputs: numpy arrays by input name; by default random inputs inside the first optimization
        profile (:func:`trtfast.parity.random_inputs` with ``batch``, ``shapes`` and ``seed``).
    iterations, warmup: timed and untimed calls per row.
    reference: also run the reference path (TensorRT's Python API); it needs the engine file,
        so a loaded Engine is measured without it. Where it cannot run, a note says why.

    Raises what ``trtfast.Engine.load`` and a call raise (TensorRTUnavailableError where
    TensorRT cannot run here).
    """
    _check_int("iterations", iterations, minimum=1)
    _check_int("warmup", warmup, minimum=0)
    _check_int("seed", seed, minimum=0)
    check_call_inputs(inputs, batch, shapes)
    from .engine import Engine

    notes: list[str] = []
    if isinstance(engine, Engine):
        cpp, path, label = engine, None, "engine"
        if reference:
            notes.append(
                "reference path not measured: it loads engine files, and an Engine was given"
            )
    else:
        path = os.fspath(engine)
        cpp, label = Engine.load(path, device=device, allow_host_code=allow_host_code), path
    try:
        feeds = call_inputs(cpp.inputs, inputs, batch=batch, shapes=shapes, seed=seed)
        outputs = cpp(feeds)
        input_bytes = [array.nbytes for array in feeds.values()]
        output_bytes = [np.asarray(value).nbytes for value in outputs.values()]
        rows = _floor_rows(input_bytes, output_bytes, iterations, warmup, cpp.device, notes)
        gpu, gpu_method, enqueue = _engine_times(cpp, feeds, iterations, warmup, notes)
        rows += _session_rows(cpp, feeds, iterations, warmup, notes)
        if reference and path is not None:
            found = _reference_row(path, feeds, iterations, warmup, device, allow_host_code, notes)
            if found is not None:
                row, python_enqueue = found
                rows.append(row)
                enqueue[PYTHON_ENQUEUE] = python_enqueue
    finally:
        if path is not None:
            cpp.close()
    return BenchResult(
        engine=label,
        gpu_name=str(_core.cuda.devices()[cpp.device]["name"]),
        inputs={name: (array.dtype.name, tuple(array.shape)) for name, array in feeds.items()},
        iterations=iterations,
        warmup=warmup,
        rows=tuple(rows),
        gpu=gpu,
        gpu_method=gpu_method,
        enqueue=enqueue,
        notes=tuple(notes),
    )


def _row(
    path: str,
    io: str,
    device_io: bool,
    cuda_graph: bool | None,
    sync: str | None,
    samples: np.ndarray[Any, Any],
) -> Row:
    return Row(path, io, device_io, cuda_graph, sync, Stats.of(samples), throughput(samples))


def _floor_rows(
    input_bytes: list[int],
    output_bytes: list[int],
    iterations: int,
    warmup: int,
    device: int,
    notes: list[str],
) -> list[Row]:
    try:
        from . import _testing  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        notes.append(
            "floor not measured: trtfast._testing was not built (it needs nvcc when trtfast is "
            "built)"
        )
        return []
    rows = []
    for device_io in (False, True):
        for sync in SYNC_MODES:
            samples = np.asarray(
                _testing.io_floor_latencies(
                    input_bytes,
                    output_bytes,
                    host=not device_io,
                    blocking_sync=sync == "blocking",
                    iterations=iterations,
                    warmup=warmup,
                    device=device,
                )
            )
            io = "device" if device_io else "host"
            rows.append(_row("floor", io, device_io, None, sync, samples))
    return rows


def _engine_times(
    cpp: Engine,
    feeds: dict[str, np.ndarray[Any, Any]],
    iterations: int,
    warmup: int,
    notes: list[str],
) -> tuple[Stats | None, str, dict[str, Stats]]:
    try:
        timings = _core.time_engine(cpp.core, feeds, iterations, warmup)
    except InputError as error:
        notes.append(f"GPU and enqueue times not measured: {error}")
        return None, "", {}
    enqueue = {CPP_ENQUEUE: Stats.of(timings["enqueue_us"])}
    if timings["graph_launch_us"]:
        enqueue[CPP_GRAPH_LAUNCH] = Stats.of(timings["graph_launch_us"])
    else:
        failure = timings["graph_failure"]
        notes.append(f"the engine could not be captured in a CUDA graph: {failure}")
    if not timings["gated"]:
        notes.append(
            "an enqueue blocked while runs were queued for timing, so GPU times include host time"
        )
    method = "graph replays" if timings["gpu_from_graph"] else "plain enqueues"
    return Stats.of(timings["gpu_us"]), method, enqueue


def _session_rows(
    cpp: Engine,
    feeds: dict[str, np.ndarray[Any, Any]],
    iterations: int,
    warmup: int,
    notes: list[str],
) -> list[Row]:
    try:
        on_device, kind = device_inputs(feeds, cpp.device)
    except ValueError as error:
        notes.append(f"device inputs not measured: {error}")
        on_device, kind = {}, ""
    rows = []
    bindable = True
    # Device rows measure the zero-copy call: DeviceArray results, as cupy and other inputs
    # get. Torch results add torch.from_dlpack per output (about 20 us) to calls not bound.
    for sync in SYNC_MODES:
        for graphs in (True, False):
            with cpp.session(cuda_graph=graphs, sync=sync, torch_results=False) as session:
                samples = measure(partial(session, feeds), iterations, warmup)
                rows.append(_row("trtfast", "numpy", False, graphs, sync, samples))
                if on_device:
                    samples = measure(partial(session, on_device), iterations, warmup)
                    rows.append(_row("trtfast", kind, True, graphs, sync, samples))
            if on_device and bindable:
                with cpp.session(cuda_graph=graphs, sync=sync, torch_results=False) as bound:
                    try:
                        bound.bind(on_device)
                    except InputError as error:  # outputs whose size depends on the data
                        notes.append(f"bound run() not measured: {error}")
                        bindable = False
                        continue
                    samples = measure(bound.run, iterations, warmup)
                    io = f"bound {kind}, run()"
                    rows.append(_row("trtfast", io, True, graphs, sync, samples))
    return rows


def _reference_row(
    path: str,
    feeds: dict[str, np.ndarray[Any, Any]],
    iterations: int,
    warmup: int,
    device: int,
    allow_host_code: bool,
    notes: list[str],
) -> tuple[Row, Stats] | None:
    from . import reference

    try:
        python = reference.Engine.load(path, device=device, allow_host_code=allow_host_code)
    except (TensorRTUnavailableError, ImportError) as error:
        notes.append(f"reference path not measured: {error}")
        return None
    with python:
        samples = measure(lambda: python(feeds), iterations, warmup)
        row = _row("reference", "numpy", False, None, None, samples)
        return row, Stats.of(_python_enqueue_us(python, iterations))


def _python_enqueue_us(python: Any, iterations: int) -> list[float]:
    """Host time of ``execute_async_v3`` alone through TensorRT's Python binding. After a call
    the reference engine's context holds the shapes and addresses, so only the enqueue is left;
    its stream is synchronized between enqueues, untimed."""
    from .reference import _cuda

    context, stream = python._context, python._stream
    clock = time.perf_counter_ns
    samples = []
    with _cuda.on_device(python._cudart, python.device):
        for _ in range(iterations):
            start = clock()
            enqueued = context.execute_async_v3(stream.handle)
            samples.append((clock() - start) / 1000.0)
            stream.synchronize()
            if not enqueued:
                raise TrtfastError("TensorRT execute_async_v3 failed while timing the reference")
    return samples


__all__ = [
    "CPP_ENQUEUE",
    "CPP_GRAPH_LAUNCH",
    "PYTHON_ENQUEUE",
    "SYNC_MODES",
    "BenchResult",
    "DeviceCopy",
    "Row",
    "Stats",
    "benchmark",
    "device_inputs",
    "measure",
    "throughput",
]
