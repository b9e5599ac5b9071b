"""Per-call latency of a trtfast session against the raw floor, side by side.

The floor is the same work from plain C++ (trtfast._testing.floor_latencies): for the host path
a copy into pinned memory, host-to-device copy, the affine kernel, device-to-host copy,
synchronize and a copy out; for the device path the kernel and synchronize alone. The session
runs the same kernel through trtfast._testing's affine engine, called from Python. Prints a
Markdown table of p50/p90/p99 in microseconds and each p50 over its floor's p50.

Goals: session p50 within 1.15x of the floor; the Python entry adds at most 2 us.

    python benchmarks/bench_session.py [--batch 8] [--features 256] [--iterations 20000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from trtfast import Engine, _core

GOAL_RATIO = 1.15
GOAL_ENTRY_US = 2.0


class CudaArray:
    """Device memory behind __cuda_array_interface__, for machines without torch."""

    def __init__(self, host: np.ndarray) -> None:
        self.buffer = _core.cuda.DeviceBuffer(host.nbytes)
        self.shape = host.shape
        stream = _core.cuda.Stream()
        _core.cuda.copy_async(self.buffer.ptr, host.ctypes.data, host.nbytes, stream)
        stream.synchronize()

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "typestr": "<f4",
            "data": (self.buffer.ptr, False),
            "strides": None,
            "version": 3,
        }


def device_input(host: np.ndarray) -> tuple[Any, str]:
    try:
        import torch
    except ImportError:
        return CudaArray(host), "__cuda_array_interface__"
    if not torch.cuda.is_available():
        return CudaArray(host), "__cuda_array_interface__"
    return torch.from_numpy(host).cuda(), "torch"


def measure(call: Callable[[], object], iterations: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        call()
    samples = np.empty(iterations)
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(iterations):
            start = clock()
            call()
            samples[i] = clock() - start
    finally:
        gc.enable()
    return samples / 1000.0


def percentiles(samples: np.ndarray) -> tuple[float, float, float]:
    p50, p90, p99 = np.percentile(samples, [50, 90, 99])
    return float(p50), float(p90), float(p99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--device", type=int, default=0)
    args = parser.parse_args()

    if _core.cuda.device_count() == 0:
        print(f"no CUDA device: {_core.cuda.unavailable_reason()}", file=sys.stderr)
        return 1
    try:
        from trtfast import _testing
    except ImportError:
        print("trtfast._testing was not built (it needs nvcc at build time)", file=sys.stderr)
        return 1

    batch, features = args.batch, args.features
    engine = Engine(
        _testing.affine(
            features=features,
            profiles=[(1, batch, max(batch, 64))],
            device=args.device,
        )
    )
    host = np.random.default_rng(0).standard_normal((batch, features), dtype=np.float32)
    device, device_kind = device_input(host)

    rows: list[tuple[str, str, str, tuple[float, float, float], float]] = []
    floors: dict[tuple[str, str], float] = {}
    for path, is_host in (("host", True), ("device", False)):
        for sync in ("spin", "blocking"):
            samples = np.asarray(
                _testing.floor_latencies(
                    is_host,
                    sync == "blocking",
                    batch,
                    features,
                    args.iterations,
                    args.warmup,
                    args.device,
                )
            )
            stats = percentiles(samples)
            floors[(path, sync)] = stats[0]
            rows.append((f"floor, {path} (C++)", "-", sync, stats, stats[0]))

    entry_overheads: list[tuple[str, float]] = []
    for sync in ("spin", "blocking"):
        for graphs in (True, False):
            session = engine.session(cuda_graph=graphs, sync=sync)
            label = "on" if graphs else "off"
            cases: list[tuple[str, str, Callable[[], object]]] = [
                ("session, numpy", "host", lambda s=session: s(x=host)),
                (f"session, {device_kind}", "device", lambda s=session: s(x=device)),
            ]
            bound = engine.session(cuda_graph=graphs, sync=sync)
            bound.bind({"x": device})
            cases.append((f"session, bound {device_kind} run()", "device", bound.run))
            for name, path, call in cases:
                stats = percentiles(measure(call, args.iterations, args.warmup))
                floor = floors[(path, sync)]
                rows.append((name, label, sync, stats, stats[0] / floor))
                if graphs:
                    entry_overheads.append((f"{name}, {sync}", stats[0] - floor))
            session.close()
            bound.close()

    gpu = _core.cuda.devices()[args.device]["name"]
    print(
        f"\nbatch {batch} x {features} float32 on {gpu}; {args.iterations} iterations after "
        f"{args.warmup} warm-up; latency in microseconds\n"
    )
    print("| path | graphs | sync | p50 | p90 | p99 | p50 / floor |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name, graphs_label, sync, (p50, p90, p99), ratio in rows:
        print(
            f"| {name} | {graphs_label} | {sync} | {p50:.2f} | {p90:.2f} | {p99:.2f} "
            f"| {ratio:.3f} |"
        )
    print(
        f"\nGoals: p50 / floor <= {GOAL_RATIO}; "
        f"Python entry (p50 - floor p50) <= {GOAL_ENTRY_US} us"
    )
    for name, extra in entry_overheads:
        verdict = "ok" if extra <= GOAL_ENTRY_US else "over"
        print(f"- {name} (graphs on): +{extra:.2f} us over the floor ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
