"""Made-up engine files and benchmark results, for testing what reads and renders them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trtfast import engine_file
from trtfast.bench import CPP_ENQUEUE, CPP_GRAPH_LAUNCH, PYTHON_ENQUEUE, BenchResult, Row, Stats
from trtfast.engine_file import EngineInfo, TensorSpec


def engine(path: Path, inputs: tuple[TensorSpec, ...]) -> Path:
    """Writes an engine file for an H100 with TensorRT 10.16 whose header records ``inputs``
    and one output; its plan is not a real one."""
    info = EngineInfo(
        format_version=engine_file.FORMAT_VERSION,
        tensorrt_version="10.16.0",
        edition="standard",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability=(9, 0),
        inputs=inputs,
        outputs=(TensorSpec("y", "float32", (-1, 4), is_input=False),),
        build_options={"precision": "fp32"},
        model_sha256="0" * 64,
        plan_sha256="",
        plan_size=0,
        raw_plan=False,
        host_code=False,
    )
    path.write_bytes(engine_file.encode(info, b"ftrt" + bytes(60)))
    return path


def stats(p50: float) -> Stats:
    """Stats of samples whose p50 is ``p50``: p50 - 1 .. p50 + 1 in steps of 0.01."""
    return Stats.of(np.linspace(p50 - 1.0, p50 + 1.0, 201))


def row(
    path: str,
    io: str,
    p50: float,
    *,
    device_io: bool = False,
    cuda_graph: bool | None = True,
    sync: str | None = "spin",
) -> Row:
    return Row(path, io, device_io, cuda_graph, sync, stats(p50), 1e6 / p50)


def synthetic_result(scale: float = 1.0, *, gpu: float | None = 10.0) -> BenchResult:
    """floor 20 (host) / 5 (device), GPU ``gpu``; trtfast numpy 33, bound device 16.5;
    reference 99; every time multiplied by ``scale``."""
    rows = (
        row("floor", "host", 20 * scale, cuda_graph=None),
        row("floor", "host", 60 * scale, cuda_graph=None, sync="blocking"),
        row("floor", "device", 5 * scale, device_io=True, cuda_graph=None),
        row("floor", "device", 45 * scale, device_io=True, cuda_graph=None, sync="blocking"),
        row("trtfast", "numpy", 33 * scale),
        row("trtfast", "torch", 18 * scale, device_io=True),
        row("trtfast", "bound torch, run()", 16.5 * scale, device_io=True),
        row("trtfast", "numpy", 40 * scale, cuda_graph=False),
        row("trtfast", "numpy", 75 * scale, sync="blocking"),
        row("reference", "numpy", 99 * scale, cuda_graph=None, sync=None),
    )
    return BenchResult(
        engine="cnn-fp32.engine",
        gpu_name="NVIDIA H100 80GB HBM3",
        inputs={"images": ("float32", (8, 3, 32, 32))},
        iterations=201,
        warmup=20,
        rows=rows,
        gpu=stats(gpu * scale) if gpu is not None else None,
        gpu_method="graph replays" if gpu is not None else "",
        enqueue={
            CPP_ENQUEUE: stats(6.0),
            CPP_GRAPH_LAUNCH: stats(2.5),
            PYTHON_ENQUEUE: stats(14.0),
        },
        notes=("device inputs: torch",),
    )
