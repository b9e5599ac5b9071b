"""``trtfast demo``: build a bundled model with the best path this machine has, check that
trtfast's C++ core and TensorRT's Python API agree on it, and measure both.

The build goes through the C++ core when ``trtfast doctor`` finds TensorRT usable, else through
TensorRT's Python API (the reference path) when it is installed and a GPU is present, else
through TensorRT-RTX, which builds without a GPU. The demo does as much of its work as the
machine allows, and its exit status says whether it did all of it.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _core, models
from ._library import tensorrt_library
from .errors import TensorRTUnavailableError, TrtfastError

Builder = Callable[..., Any]

# Exit status: every step done; an error, or the two paths disagree; stopped early because this
# machine cannot build or run engines (the output says what is missing).
DONE, FAILED, STOPPED_EARLY = 0, 1, 3


@dataclass(frozen=True)
class Choice:
    label: str
    build: Builder
    # False for an engine trtfast's runtime cannot run here (TensorRT-RTX's edition).
    runs_here: bool


def choose_builder() -> Choice | None:
    """The best way to build here, or None when no TensorRT edition can build on this
    machine."""
    from . import doctor

    if doctor.examine().ok and tensorrt_library().kind == "full":
        from .build import build

        return Choice("trtfast (C++ core)", build, runs_here=True)
    from . import reference

    if reference.unavailable_reason("standard") is None and _core.cuda.device_count() > 0:
        return Choice("TensorRT Python API (reference)", reference.build, runs_here=True)
    if reference.unavailable_reason("rtx") is None:
        rtx_build = functools.partial(reference.build, edition="rtx")
        return Choice("TensorRT-RTX Python API (no GPU needed)", rtx_build, runs_here=False)
    return None


def main(
    model: str, precision: str, device: int, batch: int | None = None, iterations: int = 1000
) -> int:
    chosen = choose_builder()
    if chosen is None:
        from . import doctor

        print(
            "trtfast demo: building the bundled model needs the full TensorRT library and a GPU, "
            "or TensorRT-RTX (pip install tensorrt-rtx-cu13); `trtfast doctor` says:",
            file=sys.stderr,
        )
        print(doctor.examine().render(), file=sys.stderr)
        return STOPPED_EARLY
    try:
        source = models.path(model)
        output = models.cache_dir() / "engines" / f"{model}-{precision}.engine"
        output.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        info = chosen.build(
            source,
            output=output,
            cache_dir=models.cache_dir() / "engines" / "cache",
            shapes=models.shapes(model),
            precision=precision,
            device=device,
            progress=False,
        )
    except (TrtfastError, ImportError, OSError) as error:
        print(f"trtfast demo: error: {error}", file=sys.stderr)
        return FAILED
    seconds = time.perf_counter() - started
    print(f"model     {model}: {models.describe(model)}")
    product = "TensorRT-RTX" if info.edition == "rtx" else "TensorRT"
    print(
        f"built by  {chosen.label}, {product} {info.tensorrt_version}, {precision}, {seconds:.1f} s"
    )
    if not chosen.runs_here:
        return _show(output)
    print(f"engine    {output} ({info.plan_size / 2**20:.1f} MiB, for {info.gpu_name})")
    return _check_and_measure(output, device, batch, iterations)


def _show(engine: Path) -> int:
    """The engine as ``trtfast inspect`` shows it, then what running it needs."""
    from . import engine_file

    print()
    print(engine_file.summary(engine_file.read_info(engine, check_plan=True), str(engine)))
    print()
    print(
        "not run: running this engine needs a GPU and TensorRT-RTX's runtime; trtfast's own "
        "runtime runs standard TensorRT engines, which `trtfast demo` builds and measures on a "
        "machine with a GPU and TensorRT (pip install tensorrt-cu13)"
    )
    return STOPPED_EARLY


def _check_and_measure(engine: Path, device: int, batch: int | None, iterations: int) -> int:
    """Parity of the two paths (where the reference path runs), then the benchmark table."""
    from . import doctor, reference
    from .bench import benchmark
    from .parity import compare

    reason = doctor.unavailable_reason()
    if reason is not None:
        print(
            "trtfast demo: parity and the benchmark need trtfast's C++ core, which cannot run "
            f"engines here: {reason}",
            file=sys.stderr,
        )
        return STOPPED_EARLY
    print()
    agree = True
    unavailable = reference.unavailable_reason("standard")
    try:
        if unavailable is None:
            try:
                result = compare(engine, batch=batch, device=device)
            except (TensorRTUnavailableError, ImportError) as error:
                unavailable = str(error)
            else:
                print(result.summary())
                agree = result.passed
        if unavailable is not None:
            print(f"parity: not checked, the reference path cannot run here: {unavailable}")
        print()
        measured = benchmark(
            engine,
            batch=batch,
            iterations=iterations,
            warmup=max(iterations // 10, 10),
            device=device,
            reference=unavailable is None,
        )
    except (TrtfastError, ImportError, OSError, ValueError) as error:
        print(f"trtfast demo: error: {error}", file=sys.stderr)
        return FAILED
    print(measured.markdown())
    return DONE if agree else FAILED
