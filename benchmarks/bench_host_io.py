"""Host (numpy) arrays against the PCIe link: trtfast beside torch, cupy and a Python flow.

One process, one GPU, the affine engine of trtfast._testing (y = 2x + 1, 1024 float32 features a
row), the same bytes each way at each size from 8 KB to 64 MB. Each size runs every case in ten
short rounds, in a new random order each round; a case's p50 is the median of its rounds' p50s,
and each goal's ratio is the median over rounds of the ratio of two cases within one round.

Cases:
- trtfast, pageable: ``session(x=x)`` with an ordinary numpy array. Large inputs are staged in
  chunks by several threads while the link sends the previous chunk; results of 64 KB or more
  land by DMA in pooled page-locked arrays.
- trtfast, pageable, out=: the same into an ordinary numpy array given as ``out=``.
- trtfast, pinned: input and ``out=`` from ``trtfast.empty``: no staging at all.
- trtfast, before: the same call with one-thread staging of everything and fresh numpy results,
  as trtfast did before (``_core.set_host_copy_tuning``), on pageable and on pinned arrays.
- torch pinned: ``.to("cuda", non_blocking=True)``, ``x * 2 + 1``, ``copy_`` into a pinned tensor,
  synchronize (about the DMA limit); torch pageable: ``.to("cuda")``, ``x * 2 + 1``, ``.cpu()``.
- cupy: ``cupy.asarray``, ``x * 2 + 1``, ``.get()``.
- Python flow: what a user would write with cuda-python: a copy into pinned staging,
  ``cudaMemcpyAsync`` both ways around a cupy kernel, ``cudaStreamSynchronize``, a copy out.

Goals (checked at the end):
- pinned caller arrays: p50 within 1.2x of torch pinned from 256 KB up, and no slower than before
  below that (5% allowed for noise);
- pageable arrays at 16 MB and 64 MB: at least 2x faster than torch pageable and at least 3x
  faster than before;
- at every size, the pageable call beats the Python flow.

Also prints what asking whether an array is page-locked costs, and with ``--sweep`` the p50 of
large pageable calls over staging threads and chunk sizes, tensors larger than a chunk
pipelined (how the defaults were chosen).

    python benchmarks/bench_host_io.py [--sizes 8K,64K,...] [--sweep] [--plot host_io.png]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import functools
import gc
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import trtfast
from trtfast import Engine, _core
from trtfast.bench import test_executor

FEATURES = 1024  # float32: 4 KB a row
SIZES = ("8K", "64K", "256K", "1M", "4M", "16M", "64M")
GOAL_PINNED_RATIO = 1.2
GOAL_PAGEABLE_VS_TORCH = 2.0
GOAL_PAGEABLE_VS_BEFORE = 3.0
NOISE = 1.05
# The link and the GPU run at one of two speeds for seconds at a time (benchmarks/README.md), so
# many short rounds, and goals from ratios taken within a round.
ROUNDS = 10


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def label(nbytes: int) -> str:
    return f"{nbytes >> 20} MB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KB"


def timed(call: Callable[[], object], budget_s: float = 0.1) -> np.ndarray[Any, Any]:
    """Microseconds of each call, as many as fit the budget (10 to 2000), after a warm-up."""
    for _ in range(3):
        call()
    start = time.perf_counter()
    call()
    estimate = max(time.perf_counter() - start, 1e-6)
    iterations = int(min(2000, max(10, budget_s / estimate)))
    samples = np.empty(iterations)
    gc.disable()
    try:
        for i in range(iterations):
            t0 = time.perf_counter_ns()
            call()
            samples[i] = (time.perf_counter_ns() - t0) / 1000
    finally:
        gc.enable()
    return samples


BEFORE = {
    "threads": 1,
    "pipeline_min_bytes": 1 << 62,
    "zero_copy": False,
    "pooled_outputs": False,
    "streaming_min_bytes": 1 << 62,
}


class Tuned:
    """Runs a call under other host-copy settings, restoring the defaults after."""

    def __init__(self, call: Callable[[], object], **settings: Any) -> None:
        self.call = call
        self.settings = settings

    def __call__(self) -> object:
        return self.call()

    def __enter__(self) -> Tuned:
        self.saved = _core.host_copy_tuning()
        _core.set_host_copy_tuning(**self.settings)
        return self

    def __exit__(self, *exc: object) -> None:
        _core.set_host_copy_tuning(**self.saved)


def python_flow(nbytes: int, x: np.ndarray[Any, Any]) -> Callable[[], object] | None:
    try:
        import cupy
        from cuda.bindings import runtime as rt
    except ImportError:
        return None

    def ok(result: Any) -> Any:
        assert result[0] == rt.cudaError_t.cudaSuccess, result
        return result[1] if len(result) > 1 else None

    def pinned() -> tuple[int, np.ndarray[Any, Any]]:
        pointer = ok(rt.cudaMallocHost(nbytes))
        view = np.frombuffer((ctypes.c_char * nbytes).from_address(pointer), dtype=np.float32)
        return pointer, view

    stream = ok(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
    kernel = cupy.ElementwiseKernel(
        "float32 x", "float32 y", "y = __fadd_rn(__fmul_rn(2.0f, x), 1.0f)", "affine"
    )
    on_stream = cupy.cuda.ExternalStream(int(stream))
    count = nbytes // 4
    dx, dy = cupy.empty(count, cupy.float32), cupy.empty(count, cupy.float32)
    hx, px = pinned()
    hy, py = pinned()
    flat = x.reshape(-1)
    y = np.empty_like(flat)
    h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost

    def call() -> object:
        np.copyto(px, flat)
        rt.cudaMemcpyAsync(dx.data.ptr, hx, nbytes, h2d, stream)
        with on_stream:
            kernel(dx, dy)
        rt.cudaMemcpyAsync(hy, dy.data.ptr, nbytes, d2h, stream)
        rt.cudaStreamSynchronize(stream)
        np.copyto(y, py)
        return y

    return call


def cases_for(session: Any, nbytes: int) -> dict[str, Callable[[], object]]:
    rows = nbytes // (4 * FEATURES)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, FEATURES), dtype=np.float32)
    y = np.empty_like(x)
    x_pinned, y_pinned = trtfast.empty(x.shape), trtfast.empty(x.shape)
    x_pinned[...] = x
    expected = x * np.float32(2) + np.float32(1)

    def check(result: Any) -> None:
        np.testing.assert_array_equal(result, expected)

    check(session(x=x)["y"])
    session(x=x_pinned, out={"y": y_pinned})
    check(y_pinned)

    cases: dict[str, Callable[[], object]] = {
        "trtfast, pageable": lambda: session(x=x),
        "trtfast, pageable, out=": lambda: session(x=x, out={"y": y}),
        "trtfast, pinned": lambda: session(x=x_pinned, out={"y": y_pinned}),
        "trtfast before, pageable": Tuned(lambda: session(x=x), **BEFORE),
        "trtfast before, pinned": Tuned(lambda: session(x=x_pinned, out={"y": y_pinned}), **BEFORE),
    }
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        tx = torch.from_numpy(x)
        tx_pinned, ty_pinned = tx.pin_memory(), torch.empty_like(tx).pin_memory()
        current = torch.cuda.current_stream

        def torch_pinned() -> object:
            device = tx_pinned.to("cuda", non_blocking=True)
            ty_pinned.copy_(device * 2 + 1, non_blocking=True)
            current().synchronize()
            return ty_pinned

        cases["torch pinned"] = torch_pinned
        cases["torch pageable"] = lambda: (tx.to("cuda") * 2 + 1).cpu()
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        cases["cupy"] = lambda: (cupy.asarray(x) * 2 + 1).get()
    flow = python_flow(nbytes, x)
    if flow is not None:
        check(flow().reshape(x.shape))
        cases["Python flow"] = flow
    return cases


def paired_ratio(rounds: dict[str, list[float]], case: str, baseline: str) -> float:
    """Median over rounds of case / baseline, both measured in the same round."""
    return float(np.median(np.divide(rounds[case], rounds[baseline])))


def run_case(call: Callable[[], object]) -> float:
    if isinstance(call, Tuned):
        with call:
            return float(np.median(timed(call)))
    return float(np.median(timed(call)))


def pinned_check_cost() -> list[str]:
    lines = []
    for kind, array in (
        ("pageable", np.ones(1 << 18, np.float32)),
        ("pinned (cudaHostAlloc, not pooled)", None),
        ("pooled (trtfast.empty)", trtfast.empty(1 << 18)),
    ):
        if array is None:
            try:
                import torch

                array = torch.ones(1 << 18).pin_memory().numpy()
            except Exception:
                continue
        samples = timed(lambda a=array: _core.is_pinned_host(a), budget_s=0.05)
        answer = _core.is_pinned_host(array)
        lines.append(f"- {kind}: {np.median(samples):.2f} us per check (answer {answer})")
    return lines


def sweep(session: Any, sizes: list[int]) -> list[str]:
    lines = ["| size | case | threads | chunk | p50 (us) |", "|---|---|---:|---:|---:|"]
    for nbytes in sizes:
        rows = nbytes // (4 * FEATURES)
        x = np.random.default_rng(1).standard_normal((rows, FEATURES), dtype=np.float32)
        y = np.empty_like(x)
        for threads in (1, 2, 4, 8):
            for chunk in (1 << 20, 2 << 20, 4 << 20, 8 << 20):
                for name, call in (
                    ("pageable", lambda x=x: session(x=x)),
                    ("pageable, out=", lambda x=x, y=y: session(x=x, out={"y": y})),
                ):
                    settings = {
                        "threads": threads,
                        "chunk_bytes": chunk,
                        "pipeline_min_bytes": chunk + 1,
                    }
                    p50 = run_case(Tuned(call, **settings))
                    lines.append(
                        f"| {label(nbytes)} | {name} | {threads} | {label(chunk)} | {p50:.0f} |"
                    )
    return lines


def plot(results: dict[int, dict[str, float]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [n for n in next(iter(results.values())) if "before" not in n] + [
        "trtfast before, pageable"
    ]
    for name in names:
        p50 = [results[s].get(name, np.nan) for s in sizes]
        style = "-" if name.startswith("trtfast") else "--"
        axes[0].plot(sizes, p50, style, marker="o", label=name)
        axes[1].plot(
            sizes, [2 * s / p / 1e3 for s, p in zip(sizes, p50, strict=True)], style, marker="o"
        )
    for axis, ylabel in zip(axes, ("p50 per call (us)", "effective GB/s (both ways)"), strict=True):
        axis.set_xscale("log", base=2)
        axis.set_xticks(sizes, [label(s) for s in sizes])
        axis.set_xlabel("bytes each way")
        axis.set_ylabel(ylabel)
        axis.grid(True, alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    figure.suptitle("Host arrays through y = 2x + 1 on one GPU")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    _testing = test_executor()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    max_rows = max(sizes) // (4 * FEATURES)
    engine = Engine(
        _testing.affine(features=FEATURES, profiles=[(1, 1, max_rows)], device=args.device)
    )
    name = _core.cuda.devices()[args.device]["name"]
    print(f"{datetime.date.today()}, {name}, Python {sys.version.split()[0]}")
    print(f"host copy settings: {_core.host_copy_tuning()}\n")

    results: dict[int, dict[str, float]] = {}
    per_round: dict[int, dict[str, list[float]]] = {}
    with engine.session(torch_results=False) as session:
        for nbytes in sizes:
            cases = cases_for(session, nbytes)
            rounds: dict[str, list[float]] = {n: [] for n in cases}
            for _ in range(ROUNDS):
                order = list(cases)
                random.shuffle(order)
                for case in order:
                    rounds[case].append(run_case(cases[case]))
            results[nbytes] = {n: float(np.median(v)) for n, v in rounds.items()}
            per_round[nbytes] = rounds
            print(f"{label(nbytes)} done: stats {session.stats}", file=sys.stderr)
        names = list(next(iter(results.values())))
        print("p50 per call in us (effective GB/s, both ways):\n")
        print("| each way | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for nbytes, row in results.items():
            cells = [f"{row[n]:,.1f} ({2 * nbytes / row[n] / 1e3:.1f})" for n in names]
            print(f"| {label(nbytes)} | " + " | ".join(cells) + " |")

        print("\nWhat asking whether a 1 MB array is page-locked costs:")
        print("\n".join(pinned_check_cost()))
        print(f"\npinned pool: {_core.pinned_pool_stats()}")
        if args.sweep:
            print("\nStaging threads and chunk sizes (pageable arrays):\n")
            print("\n".join(sweep(session, [s for s in sizes if s >= 4 << 20])))

    goals: list[tuple[bool, str]] = []
    for nbytes, row in results.items():
        ratio = functools.partial(paired_ratio, per_round[nbytes])
        pinned, pageable = "trtfast, pinned", "trtfast, pageable"
        if "torch pinned" in row and nbytes >= 256 << 10:
            slower = ratio(pinned, "torch pinned")
            goals.append(
                (slower <= GOAL_PINNED_RATIO, f"{label(nbytes)} pinned: {slower:.2f}x torch pinned")
            )
        elif nbytes < 256 << 10:
            slower = ratio(pinned, "trtfast before, pinned")
            goals.append((slower <= NOISE, f"{label(nbytes)} pinned: {slower:.2f}x before"))
        if nbytes >= 16 << 20:
            before = 1 / ratio(pageable, "trtfast before, pageable")
            goals.append(
                (
                    before >= GOAL_PAGEABLE_VS_BEFORE,
                    f"{label(nbytes)} pageable: {before:.1f}x faster than before",
                )
            )
            if "torch pageable" in row:
                torch_gain = 1 / ratio(pageable, "torch pageable")
                goals.append(
                    (
                        torch_gain >= GOAL_PAGEABLE_VS_TORCH,
                        f"{label(nbytes)} pageable: {torch_gain:.1f}x faster than torch pageable",
                    )
                )
        if "Python flow" in row:
            gain = 1 / ratio(pageable, "Python flow")
            goals.append(
                (gain > 1.0, f"{label(nbytes)} pageable: {gain:.2f}x faster than the Python flow")
            )
    print("\nGoals:")
    for met, text in goals:
        print(f"- [{'x' if met else ' '}] {text}")
    print(f"\n{sum(m for m, _ in goals)} of {len(goals)} goals met")
    if args.plot:
        plot(results, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
