"""Running engines: ``Engine`` (a loaded engine) and ``Session`` (one execution context with its
stream, device buffers, pinned staging and CUDA graphs).

Host arrays (numpy) go through pinned staging and come back as numpy arrays. Device arrays
(torch and cupy tensors, anything with ``__cuda_array_interface__`` or ``__dlpack__``) are bound by
pointer, with no copy, and results come back as :class:`DeviceArray` (``torch.from_dlpack`` and
``cupy.asarray`` take it without a copy; ``np.asarray`` copies it to the host). When any input is
a torch tensor, results come back as torch tensors sharing the result's memory (CUDA tensors for
CUDA inputs, CPU tensors for CPU inputs), unless the session was made with
``torch_results=False``. Device inputs must be ready on the stream the session
orders itself after: the caller's ``stream`` when one is given, else the default stream, where
torch and cupy work unless told otherwise.
"""

from __future__ import annotations

import asyncio
import os
import platform
import threading
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import _awaitable, _core
from ._library import tensorrt_library
from .errors import EngineCompatibilityError, EngineCompatibilityWarning

if TYPE_CHECKING:
    from .engine_file import EngineInfo, TensorSpec
    from .prepare import ModelSource

SyncMode = Literal["spin", "blocking"]

# Pooled execution contexts per Engine: enough for a few threads to overlap host and GPU work,
# few enough that each context's device buffers (sized for the largest profile) stay affordable.
DEFAULT_MAX_SESSIONS = 4

DeviceArray = _core.DeviceArray

_runtimes: dict[tuple[str, int], Any] = {}
_runtimes_lock = threading.Lock()


def _stream_handle(stream: object) -> int | None:
    """The CUDA stream handle of ``stream``: None, an int, or a stream object (``__cuda_stream__``,
    torch's ``cuda_stream``, cupy's ``ptr``, trtfast's ``handle``)."""
    if stream is None:
        return None
    if isinstance(stream, int) and not isinstance(stream, bool):
        if stream < 0:
            raise ValueError(f"a CUDA stream handle is not negative, got {stream}")
        return stream
    protocol = getattr(stream, "__cuda_stream__", None)
    if callable(protocol):
        _version, handle = protocol()
        return int(handle)
    for attribute in ("cuda_stream", "ptr", "handle"):
        value = getattr(stream, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    raise TypeError(
        "stream must be None, an integer handle, or a CUDA stream object (torch.cuda.Stream, "
        f"cupy.cuda.Stream, anything with __cuda_stream__), not {type(stream).__name__}"
    )


class Session(_core.Session):  # type: ignore[misc, unused-ignore]
    """One execution context of an engine: a stream, device buffers sized for the largest
    profile shapes, pinned staging and a cache of CUDA graphs. One thread at a time; use
    :meth:`submit` (or :class:`Engine` calls) to run from several threads at once.

    ``session(x=...)``, ``session({"x": ...})``, ``session(x)`` (an engine with one input) and
    ``session.run(...)`` return a dict of outputs; ``outputs=("boxes",)`` (on a call, on
    :meth:`bind`, or on the session for all its calls) returns only those, and the others are
    never copied to the host;
    ``out={"y": buffer}`` writes an output into the caller's buffer instead. After
    ``bind(inputs, outputs)``, ``run()`` with no arguments replays the bound call (the fastest
    call: no argument reading at all) and returns the bound outputs.

    Ctrl-C while a call waits for the GPU: with ``sync="spin"`` the call raises
    KeyboardInterrupt within about 20 ms, and the work it queued runs on; the session's next
    call (or :meth:`close`) waits for that work first, and the session stays usable. With
    ``sync="blocking"`` the thread sleeps in CUDA's wait, which nothing cuts short: Ctrl-C
    takes effect when the GPU work ends. Host arrays staged in pageable memory (where pinned
    memory is unavailable, with a :class:`trtfast.PerformanceWarning`) are copied back
    synchronously, so their wait cannot be cut short either.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        cuda_graph: bool = True,
        sync: SyncMode = "spin",
        stream: object = None,
        graph_cache_size: int = 16,
        workers: int = 2,
        torch_results: bool = True,
        outputs: Sequence[str] | None = None,
    ) -> None:
        if sync not in ("spin", "blocking"):
            raise ValueError(f"sync must be 'spin' or 'blocking', not {sync!r}")
        if graph_cache_size < 0:
            raise ValueError(f"graph_cache_size must be >= 0, not {graph_cache_size}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        super().__init__(
            engine.core,
            cuda_graph,
            sync,
            _stream_handle(stream),
            graph_cache_size,
            torch_results,
            outputs,
        )
        self.engine = engine
        self._stream_object = stream  # the caller's stream must outlive the session
        self._options: dict[str, Any] = {
            "cuda_graph": cuda_graph,
            "sync": sync,
            "stream": stream,
            "graph_cache_size": graph_cache_size,
            "torch_results": torch_results,
            "outputs": outputs,
        }
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._closing = False  # set under _pool_lock: no pool starts once close began
        self._local = threading.local()
        self._worker_sessions: list[Session] = []
        self._async_running: asyncio.Future[dict[str, Any]] | None = None

    if TYPE_CHECKING:
        # The call itself is CPython's call slot of _core.Session (no Python frame in between).
        def __call__(
            self, inputs: Any = None, /, *, out: Any = None, **named: Any
        ) -> dict[str, Any]: ...

    def submit(
        self, inputs: Any = None, /, *, out: Any = None, **named: Any
    ) -> Future[dict[str, Any]]:
        """Runs a call on a pool of worker threads, each with an execution context of its own
        (same options as this session), and returns its Future at once."""
        # Under the lock, so a close() that began cannot miss a pool started here.
        with self._pool_lock:
            if self._closing or self.closed:
                raise RuntimeError("this Session is closed")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._workers, thread_name_prefix="trtfast-session"
                )
            return self._pool.submit(self._run_on_worker, inputs, out, named)

    async def run_async(
        self, inputs: Mapping[str, Any] | None = None, /, *, out: Any = None, **named: Any
    ) -> dict[str, Any]:
        """The same call, awaited without blocking the event loop: its inputs are read here,
        its GPU work is queued and waited for on a C++ thread of the session's own, and the loop
        is woken through a file descriptor it watches. Errors raise in the awaiting task.
        Concurrent awaits on one session run one after another (an Engine runs them at once).
        With ``sync="spin"`` the loop polls for the call's end between its other work instead of
        sleeping, as a plain call's thread spins: tens of microseconds sooner, and its thread
        busy until then, for at most 2 ms after the latest such call began (longer calls wake
        it); ``sync="blocking"`` lets the loop sleep. Cancelling the task leaves the
        queued GPU work to finish: the session holds the call's buffers until then, and stays
        usable."""
        calls = _awaitable.completions()
        # The running call ends only when its work does, whether or not its task was cancelled.
        while (running := self._async_running) is not None and not running.done():
            await asyncio.wait([running])
        done = calls.submit(self, inputs, out, named, None)
        self._async_running = done
        return await _awaitable.wait_for(done)

    def _run_on_worker(
        self, inputs: Mapping[str, Any] | None, out: Any, named: dict[str, Any]
    ) -> dict[str, Any]:
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            session = Session(self.engine, workers=1, **self._options)
            self._local.session = session
            with self._pool_lock:
                self._worker_sessions.append(session)
        result: dict[str, Any] = session.run(inputs, out=out, **named)
        return result

    def close(self) -> None:
        """Waits for submitted calls, then frees the contexts, buffers and graphs."""
        with self._pool_lock:
            self._closing = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)  # runs what was submitted: no worker session starts after
        with self._pool_lock:
            workers, self._worker_sessions = self._worker_sessions, []
        for session in workers:
            session.close()
        super().close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Engine:
    """A loaded engine. ``Engine.load(path)`` reads a trtfast engine file (or a bare TensorRT
    plan); ``Engine.from_onnx(model, cache_dir=...)`` builds one first where the cache has none;
    ``engine(x=...)`` (or ``engine(x)`` for an engine with one input) runs one call on a pooled
    session, safe from many threads; ``engine.session(...)`` makes a session with options of
    your own.

    ``max_sessions`` caps the pool: at most that many calls run at once, each on its own
    execution context (with device buffers for the largest profile shapes); a call beyond it
    waits for a context to come free.
    """

    def __init__(
        self,
        core: _core.Engine,
        *,
        info: EngineInfo | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError(f"max_sessions must be an int >= 1, not {max_sessions!r}")
        self.core = core
        self.info = info
        self.max_sessions = max_sessions
        self._idle: list[Session] = []
        self._free = threading.Semaphore(max_sessions)

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str] | bytes,
        *,
        device: int = 0,
        allow_host_code: bool = False,
        plugins: Sequence[str | os.PathLike[str]] = (),
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> Engine:
        """Loads an engine file (path or bytes) onto CUDA device ``device``.

        ``plugins``: the plugin libraries the engine was built with (``build(plugins=...)``),
        loaded into TensorRT's registry before the plan. TensorRT's standard plugins are
        registered without being named here.

        The file's header is checked against this machine (TensorRT version and edition, GPU
        compute capability) before TensorRT sees the plan: a mismatch raises
        EngineCompatibilityError naming what the engine was built for and what is here. An engine
        built for another GPU model of the same compute capability (another name, number of
        SMs, memory size or host platform) loads with an EngineCompatibilityWarning, as TensorRT
        allows it but may run it slower or fail later; hardware-compatible engines are checked
        only for what their level promises.

        Loading an engine is like running a program from its author: plans can embed host code
        (version-compatible engines carry a runtime; plugins are native code). Such engines are
        refused unless ``allow_host_code=True``, which also sets TensorRT's own switch; pass it
        only for engines from a source you trust.
        """
        from . import engine_file

        plugin_files = _plugin_files(plugins)
        info, plan = engine_file.read(source)
        check_host_code(info, allow_host_code, source)
        library = tensorrt_library()
        count = _core.cuda.device_count()
        if not 0 <= device < count:
            reason = _core.cuda.unavailable_reason()
            raise EngineCompatibilityError(
                f"cannot load the engine on CUDA device {device}: this machine has {count} "
                f"usable device(s)" + (f" ({reason})" if reason else "")
            )
        gpu = describe_gpu(_core.cuda.devices()[device])
        check_compatibility(
            info,
            tensorrt_version=str(library.version),
            library_path=str(library.path),
            gpu_name=gpu["name"],
            compute_capability=tuple(gpu["compute_capability"]),
            gpu=gpu,
            source=source if not isinstance(source, bytes) else None,
        )
        core = _runtime(library, device).deserialize(plan, allow_host_code, plugin_files)
        return cls(core, info=info, max_sessions=max_sessions)

    @classmethod
    def from_onnx(
        cls,
        model: ModelSource,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        device: int = 0,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        edition: str = "standard",
        **build_options: Any,
    ) -> Engine:
        """Loads the engine ``trtfast.build(model, cache_dir=cache_dir, **build_options)``
        makes for this machine: from the engine cache when it holds one, else built first (and
        stored there). Without ``cache_dir`` the engine is built in memory every time.
        ``edition="rtx"`` builds with TensorRT-RTX, as ``trtfast.reference.build`` does.

        A version-compatible build (``version_compatible=True``) embeds TensorRT's lean runtime,
        so asking for one allows host code in the engine built or found for it.
        """
        if "output" in build_options:
            raise TypeError(
                "Engine.from_onnx keeps engines in cache_dir; to write an engine file, call "
                "trtfast.build(model, output=...) and then Engine.load(path)"
            )
        from .build import build
        from .reference import build as build_with_python_api

        def build_for_edition(folder: str | os.PathLike[str] | None) -> EngineInfo | bytes:
            if edition == "standard":
                return build(model, cache_dir=folder, device=device, **build_options)
            return build_with_python_api(
                model, edition=edition, cache_dir=folder, device=device, **build_options
            )

        built = build_for_edition(cache_dir)
        if not isinstance(built, bytes) and built.path is None:
            built = build_for_edition(None)  # the cache could not be written (a CacheWarning said)
        source = built if isinstance(built, bytes) else str(built.path)
        return cls.load(
            source,
            device=device,
            allow_host_code=bool(build_options.get("version_compatible", False)),
            max_sessions=max_sessions,
            plugins=build_options.get("plugins", ()),
        )

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(_spec(entry) for entry in self.core.signature.inputs)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return tuple(_spec(entry) for entry in self.core.signature.outputs)

    @property
    def device(self) -> int:
        return int(self.core.device)

    def session(
        self,
        *,
        cuda_graph: bool = True,
        sync: SyncMode = "spin",
        stream: object = None,
        graph_cache_size: int = 16,
        workers: int = 2,
        torch_results: bool = True,
        outputs: Sequence[str] | None = None,
    ) -> Session:
        """A new session: ``cuda_graph`` replays captured graphs for repeated shapes; ``sync``
        'spin' (lowest latency; Ctrl-C interrupts a wait within about 20 ms) or 'blocking' (no
        CPU burn while waiting; Ctrl-C takes effect when the GPU work ends); ``stream`` joins the
        caller's CUDA stream (each call runs after the work queued there and is done when it
        returns); ``workers`` sizes the pool behind :meth:`Session.submit`; ``torch_results``
        returns torch tensors for torch inputs (False: numpy arrays and DeviceArray);
        ``outputs`` names the outputs every call returns (default: all)."""
        return Session(
            self,
            cuda_graph=cuda_graph,
            sync=sync,
            stream=stream,
            graph_cache_size=graph_cache_size,
            workers=workers,
            torch_results=torch_results,
            outputs=outputs,
        )

    def __call__(self, inputs: Any = None, /, *, out: Any = None, **named: Any) -> dict[str, Any]:
        """One call on an idle pooled session (a new one when all are busy, up to
        ``max_sessions``; beyond it the call waits for one to come free): any number of threads
        may call at once, each on its own execution context."""
        with self._free:
            try:
                session = self._idle.pop()
            except IndexError:
                session = self.session()
            try:
                result: dict[str, Any] = session.run(inputs, out=out, **named)
                return result
            finally:
                self._idle.append(session)

    async def run_async(
        self, inputs: Mapping[str, Any] | None = None, /, *, out: Any = None, **named: Any
    ) -> dict[str, Any]:
        """One awaitable call (see :meth:`Session.run_async`) on an idle pooled session: any
        number of tasks may await at once, each on its own execution context. A session goes
        back to the pool when its work ends, even if the awaiting task was cancelled."""
        try:
            session = self._idle.pop()
        except IndexError:
            session = self.session()
        try:
            done = _awaitable.completions().submit(
                session, inputs, out, named, lambda: self._idle.append(session)
            )
        except BaseException:
            self._idle.append(session)
            raise
        return await _awaitable.wait_for(done)

    def close(self) -> None:
        """Frees the pooled sessions (sessions made with :meth:`session` are the caller's)."""
        while self._idle:
            self._idle.pop().close()


def check_host_code(
    info: EngineInfo, allow_host_code: bool, source: str | os.PathLike[str] | bytes
) -> None:
    """Refuses an engine that embeds host code unless the caller allows it."""
    if info.host_code and not allow_host_code:
        where = f"engine {os.fspath(source)!r}" if not isinstance(source, bytes) else "the engine"
        raise EngineCompatibilityError(
            f"{where} embeds host code (a version-compatible engine or plugins), which would "
            "run native code from the file; load it with allow_host_code=True only if you "
            "trust where it came from"
        )


def check_compatibility(
    info: EngineInfo,
    *,
    tensorrt_version: str,
    library_path: str,
    gpu_name: str,
    compute_capability: tuple[int, ...],
    edition: str = "standard",
    gpu: Mapping[str, Any] | None = None,
    source: str | os.PathLike[str] | None = None,
) -> None:
    """Raises EngineCompatibilityError when the engine described by ``info`` cannot run with this
    TensorRT library and GPU. Unknown fields (a raw plan's) are left to TensorRT. With ``gpu``
    (this device as ``describe_gpu`` says), an engine built without hardware compatibility for
    another GPU model of the same compute capability gives an EngineCompatibilityWarning."""
    problems: list[str] = []
    if info.edition and info.edition != edition:
        problems.append(
            f"it was built for the TensorRT {info.edition} edition, and this machine has the "
            f"{edition} edition"
        )
    if info.tensorrt_version:
        built = _version(info.tensorrt_version)
        here = _version(tensorrt_version)
        if info.build_options.get("version_compatible"):
            if built[0] != here[0] or here < built:
                problems.append(
                    f"it was built with TensorRT {info.tensorrt_version} (version-compatible: "
                    f"runs on {built[0]}.x from that version on), and this machine has TensorRT "
                    f"{tensorrt_version} at {library_path}"
                )
        elif built != here:
            problems.append(
                f"it was built with TensorRT {info.tensorrt_version}, and this machine has "
                f"TensorRT {tensorrt_version} at {library_path}"
            )
    built_cc = tuple(info.compute_capability)
    if built_cc != (0, 0):
        here_cc = tuple(compute_capability)
        if info.build_options.get("hardware_compatibility") == "ampere_plus":
            fits = here_cc >= (8, 0)
            wanted = "compute capability 8.0 or newer (hardware-compatible)"
        else:
            fits = here_cc == built_cc
            wanted = f"compute capability {built_cc[0]}.{built_cc[1]}"
        if not fits:
            problems.append(
                f"it was built for {wanted} on {info.gpu_name or 'an unnamed GPU'}, and this "
                f"device is {gpu_name} with compute capability {here_cc[0]}.{here_cc[1]}"
            )
    where = f"engine {os.fspath(source)!r}" if source is not None else "the engine"
    if problems:
        raise EngineCompatibilityError(
            f"{where} cannot run here: " + "; ".join(problems) + ". Rebuild it on this machine."
        )
    built_on = info.environment.get("gpu")
    if gpu is not None and built_on and info.build_options.get("hardware_compatibility") is None:
        differences = [
            f"{label} {built_on.get(key)!r} (here {gpu.get(key)!r})"
            for key, label in _GPU_MODEL
            if key in built_on and built_on.get(key) != gpu.get(key)
        ]
        if differences:
            warnings.warn(
                f"{where} was built for another GPU model of the same compute capability: "
                + ", ".join(differences)
                + ". TensorRT may run it slower or fail; rebuild it on this GPU, or build it "
                "with hardware_compatibility",
                EngineCompatibilityWarning,
                stacklevel=3,
            )


#: What of a GPU an engine built without hardware compatibility is specific to, beyond the
#: compute capability.
_GPU_MODEL = (
    ("name", "name"),
    ("multiprocessors", "SM count"),
    ("total_memory", "memory"),
    ("platform", "platform"),
)


def describe_gpu(gpu: Mapping[str, Any]) -> dict[str, Any]:
    """A GPU as ``_core.cuda.devices()`` lists it, as engine files record the GPU they were built
    on: name, compute capability, UUID, number of SMs, memory in bytes, and the host's platform
    (aarch64 and x86_64 GPUs of one compute capability take different engines)."""
    major, minor = gpu["compute_capability"]
    return {
        "name": str(gpu["name"]),
        "compute_capability": [int(major), int(minor)],
        "uuid": str(gpu["uuid"]),
        "multiprocessors": int(gpu["multiprocessors"]),
        "total_memory": int(gpu["total_memory"]),
        "platform": platform.machine(),
    }


def _version(text: str) -> tuple[int, int, int]:
    parts = [int(part) for part in text.split(".")[:3] if part.isdigit()]
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def _plugin_files(plugins: Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(plugins, (str, bytes, os.PathLike)):
        raise TypeError(f"plugins must be a list of library paths, not {plugins!r}")
    files = []
    for plugin in plugins:
        path = Path(plugin).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"plugin library {os.fspath(plugin)} does not exist")
        files.append(str(path))
    return list(dict.fromkeys(files))


def _runtime(library: Any, device: int) -> Any:
    key = (str(library.path), device)
    with _runtimes_lock:
        runtime = _runtimes.get(key)
        if runtime is None:
            runtime = _runtimes[key] = _core.Runtime(library, device)
        return runtime


def _spec(entry: dict[str, Any]) -> TensorSpec:
    from .engine_file import TensorSpec

    return TensorSpec(
        name=entry["name"],
        dtype=entry["dtype"],
        shape=tuple(entry["shape"]),
        is_input=entry["is_input"],
        profiles=tuple(entry["profiles"]),
    )


__all__ = [
    "DeviceArray",
    "Engine",
    "Session",
    "SyncMode",
    "check_compatibility",
    "check_host_code",
]
