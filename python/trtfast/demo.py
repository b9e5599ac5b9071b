"""``trtfast demo``: build a bundled model with the best path this machine has, check that
trtfast's C++ core and TensorRT's Python API agree on it, and measure both.

The build goes through the C++ core when ``trtfast doctor`` finds TensorRT usable, else through
TensorRT's Python API (the reference path) when it is installed and a GPU is present; where
TensorRT cannot run, the doctor's report says why.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _core, models
from ._library import tensorrt_library
from .errors import TensorRTUnavailableError, TrtfastError

Builder = Callable[..., Any]


def choose_builder() -> tuple[str, Builder] | None:
    """(name, build function) of the best way to build here, or None when TensorRT cannot run
    on this machine."""
    from . import doctor

    if doctor.examine().ok and tensorrt_library().kind == "full":
        from .build import build

        return "trtfast (C++ core)", build
    from . import reference

    if reference.unavailable_reason("standard") is None and _core.cuda.device_count() > 0:
        return "TensorRT Python API (reference)", reference.build
    return None


def main(
    model: str, precision: str, device: int, batch: int | None = None, iterations: int = 1000
) -> int:
    chosen = choose_builder()
    if chosen is None:
        from . import doctor

        report = doctor.examine()
        print(
            "trtfast demo: building the bundled model needs the full TensorRT library and a GPU; "
            "`trtfast doctor` says:",
            file=sys.stderr,
        )
        print(report.render(), file=sys.stderr)
        if report.ok:  # the lean runtime runs engines but cannot build them
            print(
                "not ready: only the lean TensorRT runtime is installed, which cannot build "
                "engines; install the full library: pip install tensorrt-cu13",
                file=sys.stderr,
            )
        return 1
    label, build = chosen
    try:
        source = models.path(model)
        output = models.cache_dir() / "engines" / f"{model}-{precision}.engine"
        output.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        info = build(
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
        return 1
    seconds = time.perf_counter() - started
    print(f"model     {model}: {models.describe(model)}")
    print(f"built by  {label}, TensorRT {info.tensorrt_version}, {precision}, {seconds:.1f} s")
    print(f"engine    {output} ({info.plan_size / 2**20:.1f} MiB, for {info.gpu_name})")
    return _check_and_measure(output, device, batch, iterations)


def _check_and_measure(engine: Path, device: int, batch: int | None, iterations: int) -> int:
    """Parity of the two paths (where the reference path runs), then the benchmark table; 1
    when the C++ core cannot run engines here, on an error, or when parity fails."""
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
        return 1
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
        return 1
    print(measured.markdown())
    return 0 if agree else 1
