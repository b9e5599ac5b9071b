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


def growth(call: Callable[[], object], repeats: int = 1000) -> int:
    """Bytes the Python heap grew by over `repeats` calls, after a warm-up."""
    for _ in range(200):
        call()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(repeats):
            call()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


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


def pageable_buffer() -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", trtfast.PerformanceWarning)
        return _core.cuda.HostBuffer(4096)


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
    call = CALLS[name]
    if name == "a host buffer" and _core.cuda.device_count() == 0:
        call = pageable_buffer
    # One leaked object per call, even a small int, is 1000 objects: over 30 KiB.
    assert growth(call) < 8 * 1024


def test_reading_files_leaves_the_python_heap_where_it_was(tmp_path) -> None:
    path = tmp_path / "model.engine"
    path.write_bytes(ENGINE)
    truncated = tmp_path / "truncated.engine"
    truncated.write_bytes(ENGINE[:-1])
    assert growth(read_file(str(path))) < 8 * 1024
    assert growth(raises(read_file(str(truncated)), trtfast.EngineFormatError)) < 8 * 1024
