"""Plan builders for the build-process tests: each stands for one way a TensorRT build behaves
(returns, fails, crashes, runs long without a callback, logs). They run in the child process,
so they live in a module the child can import."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

from trtfast.errors import BuildError

Progress = Callable[[str, str, int, int], bool]


class PlanBuilder:
    edition = "standard"
    tensorrt_version = "11.4.0"
    strongly_typed = True
    library: ClassVar[dict[str, Any]] = {"parser": 110400, "cuda_major": 13}

    def __init__(self, behaviour: str = "echo") -> None:
        self.behaviour = behaviour

    def target(self, device: int) -> dict[str, Any]:
        """A GPU named after the process that sees it, as CUDA_VISIBLE_DEVICES can make two
        processes see two GPUs under one index."""
        return {
            "name": f"GPU seen by process {os.getpid()}",
            "compute_capability": [9, 0],
            "uuid": f"GPU-{os.getpid()}",
            "multiprocessors": 132,
            "total_memory": 80 * 2**30,
            "platform": "x86_64",
        }

    def combine_timing_caches(self, caches: list[bytes], device: int) -> bytes:
        """The caches joined, then the process that joined them; "crash" crashes here too."""
        if self.behaviour == "crash":
            os.abort()
        return b"".join(caches) + f"|pid {os.getpid()}".encode()

    def build_plan(
        self, onnx: bytes, options: dict[str, Any], progress: Progress
    ) -> dict[str, Any]:
        return getattr(self, self.behaviour)(onnx, options, progress)

    def echo(self, onnx: bytes, options: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """Reports three steps and returns the answers it got, with the input as the plan."""
        answers = [progress("start", "phase", 0, 2)]
        answers.append(progress("step", "phase", 1, 2))
        answers.append(progress("end", "phase", 2, 2))
        return {"plan": onnx, "options": options, "answers": answers, "pid": os.getpid()}

    def engine(self, onnx: bytes, options: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """What a TensorRT build returns, for a model of one float input and one output."""
        return {
            "plan": b"plan:" + onnx[:16],
            "timing_cache": (options.get("timing_cache") or b"") + b"entry\n",
            "tensorrt_version": self.tensorrt_version,
            "inputs": [{"name": "x", "dtype": "float32", "shape": [-1], "is_input": True}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [-1], "is_input": False}],
            "device": self.target(options["device"]),
        }

    def fail(self, onnx: bytes, options: dict[str, Any], progress: Progress) -> dict[str, Any]:
        raise BuildError("parser refused", [{"node_index": 3, "message": "no such op"}])

    def fail_unpicklable(
        self, onnx: bytes, options: dict[str, Any], progress: Progress
    ) -> dict[str, Any]:
        raise _Unpicklable("cannot cross processes")

    def crash(self, onnx: bytes, options: dict[str, Any], progress: Progress) -> dict[str, Any]:
        # As C++ ends a process on an exception nothing catches (std::terminate).
        os.abort()

    def exit_quietly(
        self, onnx: bytes, options: dict[str, Any], progress: Progress
    ) -> dict[str, Any]:
        os._exit(7)

    def long(self, onnx: bytes, options: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """Says where it runs, then works for a minute without calling back, as TensorRT does
        in some phases."""
        progress("start", f"pid {os.getpid()}", 0, 1)
        time.sleep(60)
        return {"plan": b""}

    def log(self, onnx: bytes, options: dict[str, Any], progress: Progress) -> dict[str, Any]:
        logger = logging.getLogger("trtfast.tensorrt")
        logger.debug("detail from the build")
        logger.warning("warning from the build")
        return {"plan": b""}


class _Unpicklable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.handle = lambda: None  # a lambda does not pickle

    def __reduce__(self) -> Any:
        return (_Unpicklable, (str(self),), {"handle": self.handle})
