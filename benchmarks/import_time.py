"""`import trtfast` against `import numpy`, side by side.

Each round imports numpy and then trtfast in fresh interpreters (`python -X importtime`), in a
new random order each round, and takes the cumulative time Python reports for the top-level
module: only the import itself, not the interpreter's start. The ratio is the median over rounds
of trtfast's time over numpy's within the round, so a slow phase of the machine hits both alike.
Also lists the slowest imports trtfast makes itself (from the last round).

Goal: `import trtfast` at most 1.3x `import numpy` (a program that only runs engines never
imports onnx; tests/test_imports.py checks that).

    python benchmarks/import_time.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys

GOAL = 1.3


def import_times(module: str) -> tuple[int, dict[str, int]]:
    """Cumulative microseconds of `import module`, and of each import it makes directly."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    # "import time: self [us] | cumulative | imported package", nested imports indented by two
    # more spaces and listed before the import that made them.
    entries = []
    for line in result.stderr.splitlines():
        fields = line.split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[1].strip().isdigit():
            name = fields[2]
            depth = (len(name) - len(name.lstrip(" ")) + 1) // 2
            entries.append((depth, name.strip(), int(fields[1])))
    last = max(i for i, (depth, name, _) in enumerate(entries) if depth == 1 and name == module)
    children: dict[str, int] = {}
    for depth, name, cumulative in reversed(entries[:last]):
        if depth == 1:
            break
        if depth == 2:
            children[name] = cumulative
    return entries[last][2], children


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    import_times("trtfast")  # warm the file cache for both
    import_times("numpy")
    numpy_us: list[int] = []
    trtfast_us: list[int] = []
    ratios: list[float] = []
    children: dict[str, int] = {}
    for _ in range(args.rounds):
        order = ["numpy", "trtfast"]
        random.shuffle(order)
        measured = {module: import_times(module) for module in order}
        numpy_us.append(measured["numpy"][0])
        trtfast_us.append(measured["trtfast"][0])
        children = measured["trtfast"][1]
        ratios.append(trtfast_us[-1] / numpy_us[-1])
    ratio = statistics.median(ratios)
    print(f"{args.rounds} rounds, Python {sys.version.split()[0]}; milliseconds")
    print()
    print("| import | median | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in (("numpy", numpy_us), ("trtfast", trtfast_us)):
        row = [statistics.median(values), min(values), max(values)]
        print(f"| {name} | " + " | ".join(f"{value / 1000:.1f}" for value in row) + " |")
    print()
    print(f"trtfast / numpy (median of per-round ratios): {ratio:.2f} (goal <= {GOAL})")
    slowest = sorted(children.items(), key=lambda item: -item[1])[:8]
    listed = ", ".join(f"{name} {us / 1000:.1f}" for name, us in slowest)
    print(f"slowest imports made by trtfast itself, last round (ms): {listed}")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
