"""Peak memory of preparing a model whose weights are in an external file.

    python measure_prepare_memory.py FOLDER MEGABYTES

writes FOLDER/model.onnx with MEGABYTES MiB of weights in FOLDER/model.onnx.data (16 MatMul
weights, then a Shape -> Gather -> Reshape chain to fold), then, each in a fresh process that
has imported everything first, measures the peak resident memory (ru_maxrss) of:
- save: ``prepare_model(load(path)).save(out)``, what ``trtfast prepare`` does;
- parser: ``prepare_model(load(path)).parser_input(...)``, what ``trtfast.build`` hands to
  TensorRT's parser after preparing;
- prepare: ``trtfast.prepare(path)``, which returns a model holding every weight.
Prints one JSON object: each peak and the process's peak before the work, in MiB.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

_TENSORS = 16


def generate(folder: Path, megabytes: int) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    side = int((megabytes * 2**20 / _TENSORS / 4) ** 0.5)
    block = np.random.default_rng(0).normal(0, 0.01, size=(side, side)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    nodes, initializers, value = [], [], "x"
    with open(folder / "model.onnx.data", "wb") as weights:
        for index in range(_TENSORS):
            tensor = TensorProto(name=f"w{index}", data_type=TensorProto.FLOAT, dims=[side, side])
            tensor.data_location = TensorProto.EXTERNAL
            offset = weights.tell()
            weights.write(np.roll(block, index).tobytes())  # one tensor in memory at a time
            for key, entry in (
                ("location", "model.onnx.data"),
                ("offset", offset),
                ("length", block.nbytes),
            ):
                item = tensor.external_data.add()
                item.key, item.value = key, str(entry)
            initializers.append(tensor)
            nodes.append(helper.make_node("MatMul", [value, tensor.name], [f"h{index}"]))
            value = f"h{index}"
    nodes += [
        helper.make_node("Shape", [value], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["rows"], axis=0),
        helper.make_node("Unsqueeze", ["rows", "zero_axis"], ["rows_1d"]),
        helper.make_node("Concat", ["rows_1d", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", [value, "target"], ["y"]),
    ]
    initializers += [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([0], np.int64), "zero_axis"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
    ]
    graph = helper.make_graph(
        nodes,
        "large",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, side])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(path: Path, mode: str) -> dict[str, float]:
    # Everything preparation imports, imported before the baseline.
    import onnx_graphsurgeon  # noqa: F401
    import onnxruntime.tools.symbolic_shape_infer  # noqa: F401

    import trtfast
    from trtfast.prepare import load, prepare_model

    baseline = _peak_mib()
    if mode == "save":
        prepare_model(load(path)).save(path.with_name("prepared.onnx"))
    elif mode == "parser":
        with prepare_model(load(path)).parser_input("fp32", convert=False) as (data, folder):
            assert folder is None or (folder == str(path.parent) and len(data) < 2**20)
    else:
        model = trtfast.prepare(path)
        assert all(tensor.raw_data for tensor in model.graph.initializer[:_TENSORS])
    return {"baseline": baseline, "peak": _peak_mib()}


def main(folder: Path, megabytes: int) -> None:
    path = folder / "model.onnx"
    if not path.exists():
        subprocess.run(
            [sys.executable, __file__, "--generate", str(folder), str(megabytes)], check=True
        )
    result: dict[str, float] = {
        "weights_mib": (path.with_suffix(".onnx.data")).stat().st_size / 2**20
    }
    for mode in ("save", "parser", "prepare"):
        output = subprocess.run(
            [sys.executable, __file__, "--measure", str(path), mode],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        measured = json.loads(output)
        result[f"{mode}_baseline_mib"] = round(measured["baseline"], 1)
        result[f"{mode}_peak_mib"] = round(measured["peak"], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "--generate":
        generate(Path(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "--measure":
        print(json.dumps(measure(Path(sys.argv[2]), sys.argv[3])))
    else:
        main(Path(sys.argv[1]), int(sys.argv[2]))
