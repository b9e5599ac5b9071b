"""
trtfast's C++ core. Use the trtfast package, not this module.
"""
from __future__ import annotations
import collections.abc
import numpy
import typing
import typing_extensions
from . import cuda
from . import engine_file
__all__: list[str] = ['CompletionQueue', 'DeserializedEngine', 'DeviceArray', 'Engine', 'Runtime', 'Session', 'Signature', 'TensorRTLibrary', 'build_info', 'build_plan', 'combine_timing_caches', 'compiled_tensorrt_adapters', 'cuda', 'empty_pinned', 'engine_file', 'find_tensorrt_library', 'host_copy', 'host_copy_tuning', 'is_pinned_host', 'open_tensorrt_library', 'pinned_pool_stats', 'set_host_copy_tuning', 'set_tensorrt_log_sink', 'tensorrt_adapter', 'tensorrt_adapter_available', 'time_engine', 'trim_pinned_pool']
class CompletionQueue:
    """
    Finished awaitable calls of one event loop: `fd` becomes readable when a call's work is done; take() returns the tokens of the calls that finished.
    """
    def __init__(self) -> None:
        ...
    def push(self, token: typing.SupportsInt | typing.SupportsIndex) -> None:
        """
        Reports `token` finished, as a call thread does (for tests of the loop's side).
        """
    def ready(self) -> bool:
        """
        True when take() has tokens to give (no system call: for a loop that polls).
        """
    def take(self) -> list[int]:
        ...
    @property
    def fd(self) -> int:
        ...
class DeviceArray:
    """
    CUDA device memory holding a result. torch.from_dlpack(a), cupy.asarray(a) and cupy.from_dlpack(a) take it without a copy; a.numpy() copies it to the host. A pooled result returns to its session's pool with its last reference; a DLPack consumer's reference waits for the work queued on the stream it named. Work reading it on another stream must finish before the last reference goes.
    """
    def __array__(self, dtype: typing.Any = None, *, copy: typing.Any = None) -> typing.Any:
        """
        np.asarray(a): a host copy, as a.numpy() makes.
        """
    def __dlpack__(self, *, stream: typing.Any = None, max_version: typing.Any = None, dl_device: typing.Any = None, copy: typing.Any = None) -> typing.Any:
        ...
    def __dlpack_device__(self) -> tuple[int, int]:
        ...
    def __len__(self) -> int:
        ...
    def __repr__(self) -> str:
        ...
    def numpy(self) -> numpy.ndarray:
        """
        A host copy as a numpy array.
        """
    @property
    def __cuda_array_interface__(self) -> dict:
        ...
    @property
    def device(self) -> int:
        ...
    @property
    def dtype(self) -> str:
        """
        numpy's name for the element type.
        """
    @property
    def nbytes(self) -> int:
        ...
    @property
    def ndim(self) -> int:
        ...
    @property
    def ptr(self) -> int:
        ...
    @property
    def shape(self) -> tuple:
        ...
    @property
    def size(self) -> int:
        ...
class Signature:
    """
    An engine's inputs and outputs: names, dtypes, shapes (-1 dynamic) and per-profile (min, opt, max) ranges.
    """
    def __init__(self, inputs: list, outputs: list, num_profiles: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        """
        inputs: [(name, dtype, shape, [(min, opt, max), ...])], outputs: [(name, dtype, shape)]; static inputs may leave out their ranges.
        """
    def check(self, inputs: typing.Any, device: typing.SupportsInt | typing.SupportsIndex = 0, current: typing.SupportsInt | typing.SupportsIndex = -1) -> int:
        """
        Checks a call's inputs as a session would; returns the profile that accepts them or raises InputError. Like a session, keeps `current` (the profile in use, -1 for none) while it accepts the shapes, else takes the first that does.
        """
    @property
    def inputs(self) -> list:
        ...
    @property
    def num_profiles(self) -> int:
        ...
    @property
    def outputs(self) -> list:
        ...
class Engine:
    """
    Something sessions run: one executor each.
    """
    @property
    def device(self) -> int:
        ...
    @property
    def signature(self) -> Signature:
        ...
class TensorRTLibrary:
    """
    A loaded TensorRT library: where it is, its version and kind.
    """
    def __repr__(self) -> str:
        ...
    @property
    def kind(self) -> str:
        """
        'full' (builds and runs engines) or 'lean' (runs them only).
        """
    @property
    def major(self) -> int:
        ...
    @property
    def origin(self) -> str:
        """
        Where the search found it.
        """
    @property
    def path(self) -> str:
        ...
    @property
    def version(self) -> str:
        """
        major.minor.patch, as the library reports it.
        """
class DeserializedEngine(Engine):
    """
    A TensorRT engine deserialized from a plan.
    """
    @property
    def num_io_tensors(self) -> int:
        ...
class Runtime:
    """
    A TensorRT runtime bound to one device.
    """
    def __init__(self, library: TensorRTLibrary, device: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        ...
    def deserialize(self, plan: bytes, allow_host_code: bool = False, plugins: collections.abc.Sequence[str] = []) -> DeserializedEngine:
        """
        Deserializes a plan; one that embeds host code is refused unless allow_host_code. plugins: canonical paths of the plugin libraries the engine was built with.
        """
    @property
    def device(self) -> int:
        ...
class Session:
    """
    One execution context with its stream, buffers and CUDA graphs. One thread at a time. Ctrl-C interrupts a call's wait for the GPU within about 20 ms with sync='spin'; with sync='blocking' it takes effect when the GPU work ends.
    """
    def __call__(self, *args, **kwargs):
        """
        Call self as a function.
        """
    def __init__(self, engine: Engine, cuda_graph: bool = True, sync: str = 'spin', stream: typing.Any = None, graph_cache_size: typing.SupportsInt | typing.SupportsIndex = 16, torch_results: bool = True, outputs: typing.Any = None) -> None:
        ...
    def _finish_async(self) -> typing.Any:
        ...
    def _submit_async(self, queue: CompletionQueue, token: typing.SupportsInt | typing.SupportsIndex, *args, **kwargs) -> None:
        """
        Starts an awaitable call (trtfast.Session.run_async): `token` reaches `queue` when its work is done; then _finish_async() returns its outputs or raises its error.
        """
    def bind(self, inputs: typing.Any, outputs: typing.Any = None) -> dict:
        ...
    def close(self) -> None:
        ...
    def run(self, *args, **kwargs) -> typing.Any:
        """
        run(inputs=None, /, *, out=None, outputs=None, **named) -> dict. outputs: the names of the outputs to return (the others are not copied to the host). Without inputs after bind(): replays the bound call. session(...) is the same call.
        """
    def unbind(self) -> None:
        ...
    @property
    def bound(self) -> bool:
        ...
    @property
    def closed(self) -> bool:
        ...
    @property
    def device(self) -> int:
        ...
    @property
    def stats(self) -> dict:
        ...
    @property
    def stream(self) -> int:
        ...
def build_info() -> dict[str, typing.Any]:
    """
    What this build of trtfast was compiled with.
    """
def build_plan(library: TensorRTLibrary, onnx: typing_extensions.Buffer, options: dict[str, typing.Any], progress: collections.abc.Callable[[str, str, int, int], typing.Any] | None = None) -> dict[str, typing.Any]:
    """
    Build a serialized TensorRT plan from ONNX bytes.
    
    library: a full TensorRTLibrary (the lean runtime cannot build).
    options: {"precision": "fp32"|"fp16"|"bf16"|"int8"|"fp8", "strongly_typed": bool,
        "profiles": [{input_name: [min_shape, opt_shape, max_shape] or
        {"values": [min, opt, max]} for a shape-tensor input}, ...], "workspace": int|None,
        "timing_cache": bytes|None, "optimization_level": int|None, "version_compatible": bool,
        "exclude_lean_runtime": bool, "hardware_compatibility": None|"ampere_plus"|
        "same_compute_capability", "plugins": [path, ...], "device": int, "model_dir": str|None}.
        Missing keys take their defaults; unknown keys are refused.
    progress: progress(event, phase, step, total) with event "start", "step" or "end"; step counts
        the phase's completed steps. Returning False cancels the build (BuildError); an exception
        raised in it (KeyboardInterrupt included: Ctrl-C is checked at every step) cancels the build
        and is raised again once TensorRT returns. The GIL is released during the build.
    
    Returns {"plan": bytes, "timing_cache": bytes, "tensorrt_version": str,
    "inputs": [{"name", "dtype", "shape", "is_input"}], "outputs": [...]}. The timing cache is the
    one given (or a new one) after the build, to pass to the next build.
    """
def combine_timing_caches(library: TensorRTLibrary, caches: collections.abc.Sequence[bytes], device: typing.SupportsInt | typing.SupportsIndex = 0) -> bytes:
    """
    One serialized timing cache holding the entries of all `caches`; caches made by another TensorRT version or GPU are left out with a warning.
    """
def compiled_tensorrt_adapters() -> dict[int, str]:
    """
    TensorRT major -> version of the headers its adapter was compiled with.
    """
def empty_pinned(dtype: numpy.dtype[typing.Any], shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> tuple[typing.Any, str]:
    """
    (array, why_not): a C-contiguous array in pooled page-locked memory, or a plain one with the reason pinning failed.
    """
def find_tensorrt_library(package_folders: collections.abc.Sequence[tuple[str, str, str]]) -> TensorRTLibrary:
    """
    Search TRTFAST_TENSORRT_LIBRARY, then (package, folder, kind) triples (folder '' when the package is not installed), then the system loader path.
    """
def host_copy(destination: numpy.ndarray, source: numpy.ndarray) -> None:
    """
    Copies bytes as sessions stage pageable arrays for the GPU: by several threads when large, with streaming stores from streaming_min_bytes.
    """
def host_copy_tuning() -> dict[str, typing.Any]:
    """
    How host arrays are copied (see set_host_copy_tuning).
    """
def is_pinned_host(array: numpy.ndarray) -> bool:
    """
    True when the array's memory is page-locked (copied by DMA).
    """
def open_tensorrt_library(path: str, origin: str = 'explicit path') -> TensorRTLibrary:
    ...
def pinned_pool_stats() -> dict[str, int]:
    """
    The page-locked pool: bytes in use and idle, acquires served, pinned anew and refused.
    """
def set_host_copy_tuning(**kwargs) -> None:
    """
    Changes how host arrays are copied, for benchmarks comparing settings in one process. Not safe while calls run.
    """
def set_tensorrt_log_sink(sink: collections.abc.Callable[[int, str], None]) -> None:
    """
    sink(severity: int, message: str), severity 0 (internal error)..4.
    """
def tensorrt_adapter(library: TensorRTLibrary) -> str:
    """
    The file of the adapter for the library's major, loaded; raises TensorRTUnavailableError saying how to get one when this build has none.
    """
def tensorrt_adapter_available() -> bool:
    """
    True when this build has an adapter for at least one TensorRT major.
    """
def time_engine(engine: Engine, inputs: typing.Any, iterations: typing.SupportsInt | typing.SupportsIndex, warmup: typing.SupportsInt | typing.SupportsIndex = 10) -> dict:
    """
    Times `engine` on an execution context of its own with `inputs` (a dict, as a session takes them): {'gpu_us': device time per run (events around runs queued behind a gate), 'gpu_from_graph', 'gated', 'enqueue_us': host time per plain enqueue, 'graph_launch_us': host time per graph launch ([] when capture failed), 'graph_failure'}.
    """
def trim_pinned_pool() -> None:
    """
    Frees the pool's idle page-locked blocks.
    """
