"""Preparation for TensorRT's parser (opset conversion, constant folding, shape inference),
checked on the model zoo: every prepared model computes what its original does in onnxruntime,
on the same random inputs (exactly for integers)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import build_models
import numpy as np
import onnx
import onnxruntime
import prepare_zoo
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtfast
from trtfast.errors import BuildError, BuildOptionError
from trtfast.prepare import load, parser_opsets, prepare_model, prepare_with_report

TENSORRT = "11.4.0"  # a parser importing opsets 9 to 24
ZOO = {model.name: model for model in prepare_zoo.ZOO}
prepare_module = sys.modules["trtfast.prepare._loading"]

needs_prepare_extra = pytest.mark.skipif(
    importlib.util.find_spec("onnx_graphsurgeon") is None
    or importlib.util.find_spec("onnxruntime") is None,
    reason="constant folding needs the prepare extra (onnx-graphsurgeon, onnxruntime)",
)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return [np.asarray(value) for value in session.run(None, feeds)]


def assert_same_results(expected: list[np.ndarray], actual: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual, strict=True):
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        if np.issubdtype(want.dtype, np.floating):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(got, want)


def default_opset(model: onnx.ModelProto) -> int:
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def op_types(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


def shapes(model: onnx.ModelProto) -> dict[str, list[int | str | None]]:
    return {
        value.name: [
            dim.dim_value or dim.dim_param or None for dim in value.type.tensor_type.shape.dim
        ]
        for value in (*model.graph.value_info, *model.graph.output)
    }


@pytest.mark.parametrize("zoo_model", prepare_zoo.ZOO, ids=lambda model: model.name)
def test_prepared_models_compute_what_the_originals_do(zoo_model):
    model = zoo_model.make()
    before = model.SerializeToString(deterministic=True)
    prepared, report = prepare_with_report(model, tensorrt_version=TENSORRT)
    assert model.SerializeToString(deterministic=True) == before
    onnx.checker.check_model(prepared, full_check=True)
    # Models onnxruntime cannot run as given (opset 6) are compared with their hand-written
    # twin at a current opset.
    reference = zoo_model.twin() if zoo_model.twin is not None else model
    for seed in range(3):
        feeds = zoo_model.feeds(np.random.default_rng(seed))
        assert_same_results(run(reference, feeds), run(prepared, feeds))
    assert report.opset_to == default_opset(prepared)
    assert report.nodes_after == len(prepared.graph.node)


@pytest.mark.parametrize("name", ["legacy_broadcast", "legacy_cnn"])
def test_legacy_broadcasting_models_are_converted(name):
    model = ZOO[name].make()
    with pytest.raises(Exception, match="Could not find an implementation"):
        run(model, ZOO[name].feeds(np.random.default_rng(0)))
    prepared, report = prepare_with_report(model, tensorrt_version=TENSORRT)
    assert (report.opset_from, report.opset_to) == (6, 17)
    assert default_opset(prepared) == 17
    # No attribute of the old broadcasting survives; the IR version is what opset 17 needs.
    for node in prepared.graph.node:
        assert not {attribute.name for attribute in node.attribute} & {"broadcast", "is_test"}
    assert prepared.ir_version == helper.find_min_ir_version_for(list(prepared.opset_import))


def test_the_target_opset_follows_the_parser():
    newest = onnx.defs.onnx_opset_version()
    assert parser_opsets("8.0.1") == (7, 13)
    assert parser_opsets("8.6.1.6") == (7, 17)
    assert parser_opsets("9.3.0") == (7, 19)
    assert parser_opsets("10.0.1") == (9, 20)
    assert parser_opsets("10.14.1") == (9, 20)  # between documented releases: the older range
    assert parser_opsets("10.15.0") == (9, min(24, newest))
    assert parser_opsets("11.4.0") == (9, min(24, newest))
    assert parser_opsets("11.5.0") == (9, min(25, newest))
    # Unknown parsers (none installed, TensorRT-RTX 1.x): opset 9 and up.
    assert parser_opsets(None) == parser_opsets("1.2.0") == parser_opsets("x") == (9, newest)
    legacy = ZOO["legacy_cnn"].make()
    assert default_opset(prepare_function(legacy, tensorrt_version="8.0")) == 13
    assert default_opset(prepare_function(legacy, tensorrt_version="1.2")) == 17
    # Inside the range: kept.
    assert default_opset(prepare_function(ZOO["upsample_opset9"].make())) == 9


def prepare_function(model: onnx.ModelProto, **options) -> onnx.ModelProto:
    return trtfast.prepare(model, fold_constants=False, **options)


def test_models_newer_than_the_parser_are_converted_down():
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Softmax", ["r"], ["y"], axis=-1),
    ]
    initializers = [
        numpy_helper.from_array(np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6), "w"),
        numpy_helper.from_array(np.linspace(-1, 1, 4, dtype=np.float32), "b"),
    ]
    model = build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializers,
        opset=23,
    )
    prepared, report = prepare_with_report(model, tensorrt_version="10.0")
    assert (report.opset_from, report.opset_to) == (23, 20)
    feeds = {"x": np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)}
    assert_same_results(run(model, feeds), run(prepared, feeds))


def test_an_explicit_opset_is_the_target():
    model = build_models.mlp()
    prepared, report = prepare_with_report(model, opset=21)
    assert (report.opset_from, report.opset_to) == (13, 21)
    feeds = {
        "features": np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32),
        "mask": np.ones((5, 8), np.int64),
    }
    assert_same_results(run(model, feeds), run(prepared, feeds))
    # onnx has no adapter taking BatchNormalization below opset 15: asked for, that fails.
    with pytest.raises(BuildError, match=r"cannot convert opset 17 to 13: .*BatchNormalization"):
        trtfast.prepare(build_models.cnn(), opset=13)
    for opset in (0, -3, True, 10_000, "17"):
        with pytest.raises(BuildOptionError, match="opset must be an int from 1 to"):
            trtfast.prepare(model, opset=opset)


def _legacy_without_shapes() -> onnx.ModelProto:
    # Legacy broadcasting along an axis of an input whose rank nobody knows: not convertible.
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "bias"], ["y"], broadcast=1, axis=1)],
        "unknown_rank",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ones(3, np.float32), "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)])
    model.ir_version = 3
    return model


def test_a_conversion_the_converter_cannot_do_keeps_the_opset_unless_asked_for(caplog):
    model = _legacy_without_shapes()
    prepared, report = prepare_with_report(model, tensorrt_version=TENSORRT)
    assert default_opset(prepared) == 6
    assert report.notes and report.notes[0].startswith("opset 6 kept:")
    assert "onnx's version converter cannot convert opset 6 to 17" in caplog.text
    with pytest.raises(BuildError, match="cannot convert opset 6 to 17"):
        trtfast.prepare(model, opset=17)


@needs_prepare_extra
def test_constant_subgraphs_are_folded():
    prepared, report = prepare_with_report(ZOO["constant_subgraph"].make())
    assert op_types(prepared) == ["Add", "Mul", "Add"]
    assert report.folded_nodes == 9
    assert (report.nodes_before, report.nodes_after) == (12, 3)
    # The folded values are the graph's constants now.
    initializers = {
        tensor.name: numpy_helper.to_array(tensor) for tensor in prepared.graph.initializer
    }
    encoding = next(
        value
        for value in initializers.values()
        if value.shape == (8,) and value.dtype == np.float32 and value[1] != 1
    )
    np.testing.assert_allclose(encoding, np.sin(np.arange(8, dtype=np.float32) * 0.25), rtol=1e-6)


@needs_prepare_extra
def test_static_shape_chains_fold_and_dynamic_ones_get_symbolic_shapes():
    static, report = prepare_with_report(ZOO["shape_chain_static"].make())
    assert op_types(static) == ["Reshape", "MatMul"]
    assert report.folded_nodes == 6
    target = next(t for t in static.graph.initializer if t.name == static.graph.node[0].input[1])
    np.testing.assert_array_equal(numpy_helper.to_array(target), [8, 8])
    assert shapes(static)["y"] == [8, 5]

    dynamic, report = prepare_with_report(ZOO["shape_chain_dynamic"].make())
    assert report.folded_nodes == 0
    assert report.symbolic_shapes
    assert shapes(dynamic)["rows"] == ["batch*steps", 8]
    assert shapes(dynamic)["y"] == ["batch*steps", 5]


def test_missing_shapes_are_inferred():
    model = ZOO["missing_shapes"].make()
    prepared, report = prepare_with_report(model)
    assert report.shapes_inferred == 4
    assert shapes(prepared) == {"h": [3, 4], "r": [3, 4], "t": [4, 3], "y": [4]}
    unprepared, report = prepare_with_report(model, infer_shapes=False)
    assert report.shapes_inferred == 0
    assert "shape inference off" in report.notes
    assert shapes(unprepared) == {"y": [None]}


def test_random_operators_are_not_folded():
    nodes = [
        helper.make_node("RandomNormal", [], ["noise"], shape=[3], scale=0.0),
        helper.make_node("Add", ["x", "noise"], ["y"]),
    ]
    model = build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    assert op_types(trtfast.prepare(model)) == ["RandomNormal", "Add"]


def test_folding_can_be_turned_off():
    model = ZOO["constant_subgraph"].make()
    prepared, report = prepare_with_report(model, fold_constants=False)
    assert report.folded_nodes == 0
    assert "constant folding off" in report.notes
    assert len(prepared.graph.node) == len(model.graph.node)


def test_without_the_prepare_extra_folding_is_skipped_or_refused():
    script = (
        "import sys; sys.modules['onnx_graphsurgeon'] = None\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import prepare_zoo, trtfast\n"
        "from trtfast.prepare import prepare_with_report\n"
        "model = prepare_zoo.constant_subgraph()\n"
        "prepared, report = prepare_with_report(model)\n"
        "print(report.folded_nodes, report.notes)\n"
        "try:\n"
        "    trtfast.prepare(model, fold_constants=True)\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    tests = str(Path(__file__).parent)
    result = subprocess.run(
        [sys.executable, "-c", script, tests], capture_output=True, text=True, check=True
    )
    skipped, refused = result.stdout.splitlines()
    assert skipped.startswith('0 ("constant folding skipped:')
    assert "pip install 'trtfast[prepare]'" in skipped
    assert "constant folding needs onnx-graphsurgeon and onnxruntime" in refused
    assert "pip install 'trtfast[prepare]', or pass fold_constants=False" in refused


def test_report_round_trips_through_json():
    _, report = prepare_with_report(ZOO["legacy_cnn"].make(), tensorrt_version=TENSORRT)
    record = json.loads(json.dumps(report.to_json()))
    again = trtfast.PrepareReport.from_json(record)
    assert again.summary() == report.summary()
    assert report.changed
    assert report.summary().startswith("opset 6 -> 17; ")


# --- weights kept out of the graph ------------------------------------------------------------


def save_with_external_weights(model: onnx.ModelProto, path: Path) -> Path:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    onnx.save_model(
        copy,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".weights",
        size_threshold=0,
    )
    return path


@pytest.fixture
def small_park_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Park every weight of the small test models, as a large model's would be.
    monkeypatch.setattr(prepare_module, "_PARK_BYTES", 64)


def test_external_weights_are_prepared_without_reading_them(tmp_path, small_park_limit):
    zoo_model = ZOO["legacy_cnn"]
    model_path = save_with_external_weights(zoo_model.make(), tmp_path / "legacy.onnx")
    prepared = prepare_model(load(model_path), tensorrt_version=TENSORRT)
    parked = [t for t in prepared.proto.graph.initializer if t.name in ("w", "fc")]
    assert len(parked) == 2
    for tensor in parked:
        assert not tensor.raw_data
        assert prepared_location(tensor).startswith("trtfast-parked/")
    assert all(
        source.path == model_path.with_name("legacy.onnx.weights")
        for source in prepared.sources.values()
    )

    # The parser reads the weights from the model's own folder.
    with prepared.parser_input("fp32", convert=False) as (data, folder):
        assert folder == str(tmp_path)
        parsed = onnx.load_model_from_string(data)
        assert {
            prepared_location(t) for t in parsed.graph.initializer if t.name in ("w", "fc")
        } == {"legacy.onnx.weights"}
        onnx.load_external_data_for_model(parsed, folder)
    feeds = zoo_model.feeds(np.random.default_rng(0))
    assert_same_results(run(zoo_model.twin(), feeds), run(parsed, feeds))


def prepared_location(tensor: onnx.TensorProto) -> str:
    return next(entry.value for entry in tensor.external_data if entry.key == "location")


def test_saving_copies_external_weights_file_to_file(tmp_path, small_park_limit):
    zoo_model = ZOO["legacy_cnn"]
    model_path = save_with_external_weights(zoo_model.make(), tmp_path / "legacy.onnx")
    output = tmp_path / "out" / "prepared.onnx"
    output.parent.mkdir()
    assert prepare_model(load(model_path)).save(output) == "prepared.onnx.data"
    assert sorted(os.listdir(output.parent)) == ["prepared.onnx", "prepared.onnx.data"]
    feeds = zoo_model.feeds(np.random.default_rng(0))
    assert_same_results(run(zoo_model.twin(), feeds), run(onnx.load(str(output)), feeds))
    # Over the model itself: its weights are read before they are replaced.
    assert prepare_model(load(model_path)).save(model_path) == "legacy.onnx.data"
    assert_same_results(run(zoo_model.twin(), feeds), run(onnx.load(str(model_path)), feeds))
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


def test_inline_weights_are_parked_and_written_once(tmp_path, small_park_limit):
    model = build_models.cnn()
    before = model.SerializeToString(deterministic=True)
    prepared = prepare_model(load(model))
    parked = {source.tensor.name for source in prepared.sources.values()}
    assert parked == {tensor.name for tensor in model.graph.initializer if tensor.ByteSize() >= 64}
    # Small enough for one file: written whole.
    assert prepared.save(tmp_path / "cnn.onnx") is None
    assert model.SerializeToString(deterministic=True) == before
    feeds = {"images": np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)}
    assert_same_results(run(model, feeds), run(onnx.load(str(tmp_path / "cnn.onnx")), feeds))
    # For the parser: one message, weights inside.
    with prepare_model(load(model)).parser_input("fp32", convert=False) as (data, folder):
        assert folder is None
        assert_same_results(run(model, feeds), run(onnx.load_model_from_string(data), feeds))


def test_a_parser_input_too_large_for_one_message_goes_through_a_folder(monkeypatch):
    monkeypatch.setattr(prepare_module, "_PARK_BYTES", 64)
    monkeypatch.setattr(prepare_module, "_PROTOBUF_LIMIT", 1024)
    model = build_models.cnn()
    with prepare_model(load(model)).parser_input("fp32", convert=False) as (data, folder):
        assert folder is not None
        assert os.listdir(folder) == ["weights.bin"]
        parsed = onnx.load_model_from_string(data)
        onnx.load_external_data_for_model(parsed, folder)
        feeds = {"images": np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)}
        assert_same_results(run(model, feeds), run(parsed, feeds))
    assert not os.path.exists(folder)


@needs_prepare_extra
def test_peak_memory_does_not_grow_with_external_weights(tmp_path):
    """The script prepares a model with 256 MiB of external weights and one with 1 MiB, and
    reports each process's peak resident memory (see its docstring)."""
    script = Path(__file__).with_name("measure_prepare_memory.py")
    peaks = {}
    for megabytes in (1, 256):
        result = subprocess.run(
            [sys.executable, str(script), str(tmp_path / f"m{megabytes}"), str(megabytes)],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[megabytes] = json.loads(result.stdout)
    small, large = peaks[1], peaks[256]
    # Preparing and saving, and handing the model to the parser, never hold the weights.
    assert large["save_peak_mib"] - small["save_peak_mib"] < 48, peaks
    assert large["parser_peak_mib"] - small["parser_peak_mib"] < 48, peaks
    # trtfast.prepare returns a model holding them: read once, not twice.
    assert large["prepare_peak_mib"] - small["prepare_peak_mib"] < 1.5 * 255, peaks


# --- trtfast prepare ----------------------------------------------------------------------------


def test_cli_prepare_writes_the_model_and_prints_what_changed(tmp_path, capsys):
    from trtfast.cli import main

    zoo_model = ZOO["legacy_cnn"]
    source, output = tmp_path / "legacy.onnx", tmp_path / "prepared.onnx"
    onnx.save_model(zoo_model.make(), str(source))
    arguments = ["prepare", str(source), "-o", str(output), "--tensorrt-version", "11.4"]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{output}: opset 6 -> 17; ")
    assert "nodes folded" in printed and "shapes inferred" in printed
    feeds = zoo_model.feeds(np.random.default_rng(0))
    assert_same_results(run(zoo_model.twin(), feeds), run(onnx.load(str(output)), feeds))

    assert main([*arguments, "--tensorrt-version", "8.0", "--no-fold", "--no-shapes"]) == 0
    printed = capsys.readouterr().out
    assert "opset 6 -> 13" in printed
    assert "constant folding off; shape inference off" in printed
    assert main([*arguments, "--opset", "15", "--precision", "fp16"]) == 0
    assert "opset 6 -> 15" in capsys.readouterr().out
    converted = onnx.load(str(output))
    assert default_opset(converted) == 15
    assert {t.data_type for t in converted.graph.initializer} >= {TensorProto.FLOAT16}


def test_cli_prepare_writes_external_weights_beside_the_model(tmp_path, capsys, small_park_limit):
    from trtfast.cli import main

    source = save_with_external_weights(ZOO["cnn"].make(), tmp_path / "cnn.onnx")
    output = tmp_path / "prepared.onnx"
    assert main(["prepare", str(source), "-o", str(output)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "weights: prepared.onnx.data"
    feeds = ZOO["cnn"].feeds(np.random.default_rng(0))
    assert_same_results(run(build_models.cnn(), feeds), run(onnx.load(str(output)), feeds))


def test_cli_prepare_errors(tmp_path, capsys):
    from trtfast.cli import main

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff not a model")
    assert main(["prepare", str(bad), "-o", str(tmp_path / "out.onnx")]) == 1
    assert "is not an ONNX model" in capsys.readouterr().err
    good = tmp_path / "good.onnx"
    onnx.save_model(build_models.cnn(), str(good))
    assert main(["prepare", str(good), "-o", str(tmp_path / "out.onnx"), "--opset", "0"]) == 2
    assert "opset must be an int from 1 to" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "out.onnx").exists()
    with pytest.raises(SystemExit):
        main(["prepare", str(good)])  # -o is required
