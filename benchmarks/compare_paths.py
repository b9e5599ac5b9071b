"""trtfast's C++ core against TensorRT's Python API over the bundled models and batch sizes:
parity (trtfast.compare) and latency (trtfast.bench), as a Markdown table and a PNG plot.

    python benchmarks/compare_paths.py [--models cnn mlp] [--batches 1 8 32]
        [--precision fp32] [--iterations 1000] [--output benchmark-results]
    python benchmarks/compare_paths.py --from-json benchmark-results/compare_paths.json

Measuring needs TensorRT and a GPU; it writes OUTPUT/compare_paths.json (every measurement),
then renders it. ``--from-json`` renders a saved result again, anywhere. Rendering writes
OUTPUT/compare_paths.md and OUTPUT/compare_paths.png; the plot needs matplotlib
(``pip install "trtfast[plot]"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trtfast import models
from trtfast.bench import BenchResult, Row

NAME = "compare_paths"


def measure(
    names: Sequence[str],
    precisions: Sequence[str],
    batches: Sequence[int] | None,
    iterations: int,
    folder: Path,
) -> dict[str, Any]:
    """Builds each model at each precision and runs compare and bench at each batch."""
    import trtfast
    from trtfast import reference
    from trtfast.bench import benchmark

    runs = []
    parity_reason = reference.unavailable_reason("standard")
    for name in names:
        (shape_range,) = models.shapes(name).values()
        low, opt, high = (shape[0] for shape in shape_range)
        sizes = sorted({low, opt, high}) if batches is None else list(batches)
        for precision in precisions:
            engine = folder / "engines" / f"{name}-{precision}.engine"
            engine.parent.mkdir(parents=True, exist_ok=True)
            trtfast.build(
                models.path(name),
                output=engine,
                shapes=models.shapes(name),
                precision=precision,
                cache_dir=folder / "engines" / "cache",
                progress=False,
            )
            for batch in sizes:
                if not low <= batch <= high:
                    print(f"{name}: batch {batch} is outside {low}..{high}; skipped")
                    continue
                print(f"{name} {precision} batch {batch} ...", flush=True)
                parity = None
                if parity_reason is None:
                    parity = trtfast.compare(engine, batch=batch).to_json()
                measured = benchmark(
                    engine,
                    batch=batch,
                    iterations=iterations,
                    warmup=max(iterations // 10, 10),
                    reference=parity_reason is None,
                )
                runs.append(
                    {
                        "model": name,
                        "precision": precision,
                        "batch": batch,
                        "parity": parity,
                        "bench": measured.to_json(),
                    }
                )
    return {"runs": runs, "parity_skipped": parity_reason}


def _parity_cell(parity: dict[str, Any] | None) -> str:
    if parity is None:
        return "not checked"
    worst = max((float(output["max_abs_error"]) for output in parity["outputs"]), default=0.0)
    return f"{'ok' if parity['passed'] else 'MISMATCH'} ({worst:.1e})"


def _p50(row: Row | None) -> float | None:
    return row.latency.p50 if row is not None else None


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _lines(run: dict[str, Any]) -> dict[str, float | None]:
    """The p50s the table and the plot show for one run."""
    result = BenchResult.from_json(run["bench"])
    numpy_row = result.find("trtfast")
    floor = result.floor(device_io=False, sync="spin")
    return {
        "reference": _p50(result.find("reference")),
        "trtfast, numpy": _p50(numpy_row),
        "trtfast, bound device run()": _p50(result.find("trtfast", device_io=True, bound=True)),
        "floor + GPU, numpy": result.bound(numpy_row) if numpy_row is not None and floor else None,
        "gpu": result.gpu.p50 if result.gpu is not None else None,
    }


def markdown(data: dict[str, Any]) -> str:
    """One row per model, precision and batch: parity and p50 latencies (graphs on, spin)."""
    lines = [
        "p50 latency in microseconds; trtfast with CUDA graphs and spin sync; parity gives the "
        "largest absolute difference between the two paths.",
        "",
        "| model | precision | batch | parity | GPU | floor + GPU | trtfast numpy | trtfast "
        "bound device | reference | reference / trtfast | trtfast / (floor + GPU) |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in data["runs"]:
        p50 = _lines(run)
        ours, theirs, bound = p50["trtfast, numpy"], p50["reference"], p50["floor + GPU, numpy"]
        speedup = theirs / ours if ours and theirs else None
        over = ours / bound if ours and bound else None
        lines.append(
            f"| {run['model']} | {run['precision']} | {run['batch']} | "
            f"{_parity_cell(run['parity'])} | {_cell(p50['gpu'])} | {_cell(bound)} | "
            f"{_cell(ours)} | {_cell(p50['trtfast, bound device run()'])} | {_cell(theirs)} | "
            f"{_ratio(speedup)} | {_ratio(over)} |"
        )
    if data.get("parity_skipped"):
        lines += ["", f"Parity not checked: {data['parity_skipped']}"]
    return "\n".join(lines) + "\n"


def pyplot() -> Any:
    """matplotlib's pyplot on a file-only backend; ImportError saying what to install."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            f"the plot needs matplotlib ({error}): pip install 'trtfast[plot]'"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def plot(data: dict[str, Any], output: Path) -> None:
    """p50 latency against batch, one panel per model and precision, one line per path."""
    plt = pyplot()
    panels: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in data["runs"]:
        panels.setdefault((run["model"], run["precision"]), []).append(run)
    if not panels:
        raise ValueError("the result holds no runs to plot")
    figure, axes = plt.subplots(
        1, len(panels), figsize=(5 * len(panels), 4), squeeze=False, constrained_layout=True
    )
    for axis, ((model, precision), runs) in zip(axes[0], panels.items(), strict=True):
        runs = sorted(runs, key=lambda run: int(run["batch"]))
        batches = [int(run["batch"]) for run in runs]
        series = [_lines(run) for run in runs]
        for label, style in (
            ("reference", "o-"),
            ("trtfast, numpy", "s-"),
            ("trtfast, bound device run()", "^-"),
            ("floor + GPU, numpy", "k--"),
        ):
            points = [(b, s[label]) for b, s in zip(batches, series, strict=True) if s[label]]
            if points:
                axis.plot(*zip(*points, strict=True), style, label=label)
        axis.set_xscale("log", base=2)
        axis.set_xticks(batches, [str(batch) for batch in batches])
        axis.set_xlabel("batch")
        axis.set_ylabel("p50 latency (us)")
        axis.set_ylim(bottom=0)
        axis.set_title(f"{model}, {precision}")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize="small")
    figure.savefig(output, dpi=120)
    plt.close(figure)


def render(data: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / f"{NAME}.md"
    table.write_text(markdown(data))
    print(f"wrote {table}")
    image = folder / f"{NAME}.png"
    plot(data, image)
    print(f"wrote {image}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=models.names(), default=models.names())
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16"])
    parser.add_argument(
        "--batches", nargs="+", type=int, help="default: each model's min, opt and max batch"
    )
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=Path("benchmark-results"))
    parser.add_argument("--from-json", type=Path, metavar="FILE", help="render a saved result")
    args = parser.parse_args(argv)

    try:
        if args.from_json is not None:
            data = json.loads(args.from_json.read_text())
        else:
            from trtfast import doctor

            reason = doctor.unavailable_reason()
            if reason is not None:
                print(f"TensorRT cannot run engines here: {reason}", file=sys.stderr)
                return 3
            data = measure(args.models, args.precisions, args.batches, args.iterations, args.output)
            args.output.mkdir(parents=True, exist_ok=True)
            saved = args.output / f"{NAME}.json"
            saved.write_text(json.dumps(data, indent=2))
            print(f"wrote {saved}")
        render(data, args.output)
    except (ImportError, ValueError, KeyError, OSError) as error:
        print(f"{NAME}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
