"""The bindings do not leak Python objects: every call into the core, successful or raising,
repeated thousands of times, leaves the Python heap where it was. (The sanitizer suite checks
the C++ side with LeakSanitizer; see .ci/sanitize.sh.)"""

from __future__ import annotations

import gc
import os
import tracemalloc
import warnings
from collections.abc import Callable

import pytest
from test_engine_file import fake_plan, sample_info

import trtfast
from trtfast import _core, engine_file

native = _core.engine_file
PLAN = fake_plan(os.urandom(4096))
ENGINE = engine_file.encode(sample_info(), PLAN)
CORRUPT = ENGINE[:100] + bytes([ENGINE[100] ^ 1]) + ENGINE[101:]


class Growth(int):
    """Bytes the Python heap grew by; its repr names where."""

    where: str = ""

    def __repr__(self) -> str:
        return f"{int(self)} bytes, from:\n{self.where}"


def growth(call: Callable[[], object], repeats: int = 1000) -> Growth:
    """Bytes the Python heap grew by over `repeats` calls, after a warm-up."""
    for _ in range(200):
        call()
    gc.collect()
    tracemalloc.start(8)
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(repeats):
            call()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        # Hypothesis times garbage collections through gc.callbacks once one of its tests ran.
        tracemalloc.Filter(False, "*/hypothesis/*", all_frames=True),
    ]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "traceback")
    result = Growth(sum(stat.size_diff for stat in stats))
    result.where = "\n".join(
        f"{stat.size_diff:+} B: " + " < ".join(str(frame) for frame in stat.traceback)
        for stat in stats[:3]
    )
    return result


def raises(call: Callable[[], object], error: type[BaseException]) -> Callable[[], None]:
    def attempt() -> None:
        with pytest.raises(error):
            call()

    return attempt


def read_file(path: str) -> Callable[[], object]:
    def read() -> object:
        with open(path, "rb") as file:
            return native.read(file.fileno(), path)

    return read


CALLS = {
    "parse": lambda: native.parse(ENGINE, "engine", True),
    "parse a corrupt engine": raises(
        lambda: native.parse(CORRUPT, "engine", True), trtfast.EngineFormatError
    ),
    "parse a foreign file": raises(
        lambda: native.parse(b"PK\x03\x04" + bytes(60), "x", True), trtfast.EngineFormatError
    ),
    "encode_header": lambda: engine_file.encode(sample_info(), PLAN),
    "encode_header refusing a field": raises(
        lambda: engine_file.encode(sample_info(model_sha256="no"), PLAN), ValueError
    ),
    "crc32": lambda: native.crc32(ENGINE),
    "sha256": lambda: native.sha256(ENGINE),
    "read_info": lambda: engine_file.read_info(ENGINE, check_plan=True),
    "a CUDA error": raises(lambda: _core.cuda.DeviceBuffer(16, device=99), trtfast.CudaError),
    "a host buffer": lambda: _core.cuda.HostBuffer(4096),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_calls_leave_the_python_heap_where_it_was(name: str) -> None:
    with warnings.catch_warnings():
        # Without a GPU host buffers are pageable and say so each time.
        warnings.simplefilter("ignore", trtfast.PerformanceWarning)
        # One leaked object per call, even a small int, is 1000 objects: over 30 KiB.
        assert growth(CALLS[name]) < 16 * 1024


def test_reading_files_leaves_the_python_heap_where_it_was(tmp_path) -> None:
    path = tmp_path / "model.engine"
    path.write_bytes(ENGINE)
    truncated = tmp_path / "truncated.engine"
    truncated.write_bytes(ENGINE[:-1])
    assert growth(read_file(str(path))) < 16 * 1024
    assert growth(raises(read_file(str(truncated)), trtfast.EngineFormatError)) < 16 * 1024
