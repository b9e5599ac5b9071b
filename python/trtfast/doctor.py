"""``trtfast doctor``: what this machine has, and whether it can build or run engines."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field

from . import _core
from ._library import tensorrt_library
from .errors import TrtfastError


@dataclass
class Report:
    lines: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    capability: str = ""

    def add(self, label: str, value: str) -> None:
        self.lines.append((label, value))

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        width = max(len(label) for label, _ in self.lines)
        text = [f"{label:<{width}}  {value}" for label, value in self.lines]
        text.append(f"ready: {self.capability}" if self.ok else f"not ready: {self.problems[0]}")
        return "\n".join(text)


def _cuda_version(value: int) -> str:
    return f"{value // 1000}.{(value % 1000) // 10}"


def examine() -> Report:
    report = Report()
    info = _core.build_info()
    report.add("trtfast", str(info["version"]))
    report.add("python", f"{platform.python_version()} ({sys.executable})")

    adapters: dict[str, str] = info["tensorrt_adapters"]
    if not adapters:
        report.add("tensorrt adapters", "none: built without TensorRT headers")
        report.problems.append(
            "this trtfast was built without TensorRT headers; rebuild it with TensorRT10_ROOT "
            "and/or TensorRT11_ROOT (or TensorRT_ROOT) set, or install the release wheel"
        )
    else:
        compiled = (f"TensorRT {major} ({headers} headers)" for major, headers in adapters.items())
        report.add("tensorrt adapters", ", ".join(compiled))

    report.add("cuda runtime", f"{info['cuda_runtime']} (linked statically)")
    driver = _core.cuda.driver_version()
    report.add("cuda driver", _cuda_version(driver) if driver else "none")

    gpus = _core.cuda.devices() if _core.cuda.device_count() > 0 else []
    if not gpus:
        reason = _core.cuda.unavailable_reason()
        report.add("gpu", f"no GPU ({reason})")
        report.problems.append(f"no usable NVIDIA GPU: {reason}")
    for gpu in gpus:
        major, minor = gpu["compute_capability"]
        memory_gib = gpu["total_memory"] / 2**30
        report.add(
            f"gpu {gpu['index']}",
            f"{gpu['name']}, compute capability {major}.{minor}, {memory_gib:.1f} GiB",
        )

    try:
        library = tensorrt_library()
    except TrtfastError as error:
        first, _, rest = str(error).partition("\n")
        report.add("tensorrt library", first)
        for line in rest.splitlines():
            report.add("", line)
        report.problems.append(
            "no usable TensorRT library: `pip install tensorrt-cu13` (or tensorrt-cu12)"
        )
        return report
    report.add(
        "tensorrt library",
        f"{library.path} (TensorRT {library.version}, {library.kind}, from {library.origin})",
    )
    report.capability = (
        "can build and run engines" if library.kind == "full" else "can run engines (lean runtime)"
    )
    if adapters:
        try:
            adapter = _core.tensorrt_adapter(library)
            headers = adapters[str(library.major)]
            report.add("tensorrt adapter", f"{adapter} (TensorRT {headers} headers)")
        except TrtfastError as error:
            report.add("tensorrt adapter", f"none for TensorRT {library.major}: {error}")
            report.problems.append(str(error))
    if report.ok:
        try:
            _core.Runtime(library, 0)
            report.add("tensorrt runtime", "created on GPU 0")
        except TrtfastError as error:
            report.add("tensorrt runtime", f"failed: {error}")
            report.problems.append(f"TensorRT could not create a runtime: {error}")
    return report


def unavailable_reason() -> str | None:
    """Why trtfast cannot run engines on this machine, in one line (the doctor's first
    problem); None when it can."""
    report = examine()
    return None if report.ok else report.problems[0]


def main() -> int:
    report = examine()
    print(report.render())
    return 0 if report.ok else 1
