// The engine builder: converts the options, releases the GIL for the build, forwards progress.
#include <pybind11/stl.h>
#include <pybind11/typing.h>

#include <cstdint>
#include <string>

#include "bindings.hpp"
#include "trtfast/builder.hpp"

namespace py = pybind11;

namespace trtfast::python {

namespace {

const char* const kBuildPlanDoc = R"doc(Build a serialized TensorRT plan from ONNX bytes.

library: a full TensorRTLibrary (the lean runtime cannot build).
options: {"precision": "fp32"|"fp16"|"bf16"|"int8"|"fp8", "strongly_typed": bool,
    "profiles": [{input_name: [min_shape, opt_shape, max_shape] or
    {"values": [min, opt, max]} for a shape-tensor input}, ...], "workspace": int|None,
    "timing_cache": bytes|None, "optimization_level": int|None, "version_compatible": bool,
    "exclude_lean_runtime": bool, "hardware_compatibility": None|"ampere_plus"|
    "same_compute_capability", "plugins": [path, ...], "device": int, "model_dir": str|None}.
    Missing keys take their defaults; unknown keys are refused.
progress: progress(event, phase, step, total) with event "start", "step" or "end"; step counts
    the phase's completed steps. Returning False cancels the build (BuildError); an exception
    raised in it (KeyboardInterrupt included: Ctrl-C is checked at every step) cancels the build
    and is raised again once TensorRT returns. The GIL is released during the build.

Returns {"plan": bytes, "timing_cache": bytes, "tensorrt_version": str,
"inputs": [{"name", "dtype", "shape", "is_input"}], "outputs": [...]}. The timing cache is the
one given (or a new one) after the build, to pass to the next build.)doc";

const char* const kOptionKeys[] = {
    "precision",
    "strongly_typed",
    "profiles",
    "workspace",
    "timing_cache",
    "optimization_level",
    "version_compatible",
    "exclude_lean_runtime",
    "hardware_compatibility",
    "plugins",
    "device",
    "model_dir",
};

std::string type_name(py::handle value) { return Py_TYPE(value.ptr())->tp_name; }

bool as_bool(py::handle value, const std::string& what) {
  if (!py::isinstance<py::bool_>(value)) {
    throw py::type_error(what + " must be a bool, not " + type_name(value));
  }
  return value.cast<bool>();
}

// Any integer, numpy's included; bools are refused.
std::int64_t as_int(py::handle value, const std::string& what) {
  if (py::isinstance<py::bool_>(value) || PyIndex_Check(value.ptr()) == 0) {
    throw py::type_error(what + " must be an int, not " + type_name(value));
  }
  return py::reinterpret_steal<py::int_>(PyNumber_Index(value.ptr())).cast<std::int64_t>();
}

std::string as_path(py::handle value, const std::string& what) {
  if (!py::isinstance<py::str>(value) && !py::hasattr(value, "__fspath__")) {
    throw py::type_error(what + " must be a path, not " + type_name(value));
  }
  return py::module_::import("os").attr("fspath")(value).cast<std::string>();
}

py::sequence as_sequence(py::handle value, const std::string& what) {
  if (!py::isinstance<py::list>(value) && !py::isinstance<py::tuple>(value)) {
    throw py::type_error(what + " must be a list or tuple, not " + type_name(value));
  }
  return py::reinterpret_borrow<py::sequence>(value);
}

std::vector<std::int64_t> as_shape(py::handle value, const std::string& what) {
  std::vector<std::int64_t> shape;
  for (py::handle dim : as_sequence(value, what)) {
    shape.push_back(as_int(dim, "each dimension of " + what));
  }
  return shape;
}

std::vector<OptimizationProfile> as_profiles(py::handle value) {
  std::vector<OptimizationProfile> profiles;
  for (py::handle entry : as_sequence(value, "build option 'profiles'")) {
    const std::string where = "optimization profile " + std::to_string(profiles.size());
    if (!py::isinstance<py::dict>(entry)) {
      throw py::type_error(where + " must be a dict of input name -> [min, opt, max], not " +
                           type_name(entry));
    }
    OptimizationProfile profile;
    for (auto [name, shapes] : py::reinterpret_borrow<py::dict>(entry)) {
      if (!py::isinstance<py::str>(name)) {
        throw py::type_error(where + ": input names must be str, not " + type_name(name));
      }
      const std::string input = name.cast<std::string>();
      const std::string what = where + ", input '" + input + "'";
      // {"values": [min, opt, max]} gives the value range of a shape-tensor input.
      const bool values = py::isinstance<py::dict>(shapes);
      if (values && (py::len(shapes) != 1 || !shapes.contains("values"))) {
        throw py::value_error(what + ": a dict must be {'values': [min, opt, max]}");
      }
      py::sequence range = as_sequence(values ? shapes["values"] : shapes, what);
      const char* kind = values ? " values" : " shape";
      if (range.size() != 3) {
        throw py::value_error(what + " needs [min" + kind + ", opt" + kind + ", max" + kind +
                              "], not " + std::to_string(range.size()));
      }
      profile.emplace_back(input, ShapeRange{as_shape(range[0], what + " min" + kind),
                                             as_shape(range[1], what + " opt" + kind),
                                             as_shape(range[2], what + " max" + kind), values});
    }
    profiles.push_back(std::move(profile));
  }
  return profiles;
}

Precision as_precision(py::handle value) {
  const std::string name = py::isinstance<py::str>(value) ? value.cast<std::string>() : "";
  if (name == "fp32") {
    return Precision::FP32;
  }
  if (name == "fp16") {
    return Precision::FP16;
  }
  if (name == "bf16") {
    return Precision::BF16;
  }
  if (name == "int8") {
    return Precision::INT8;
  }
  if (name == "fp8") {
    return Precision::FP8;
  }
  throw py::value_error(
      "build option 'precision' must be 'fp32', 'fp16', 'bf16', 'int8' or "
      "'fp8', not " +
      py::repr(value).cast<std::string>());
}

HardwareCompatibility as_hardware_compatibility(py::handle value) {
  if (value.is_none()) {
    return HardwareCompatibility::None;
  }
  const std::string name = py::isinstance<py::str>(value) ? value.cast<std::string>() : "";
  if (name == "ampere_plus") {
    return HardwareCompatibility::AmperePlus;
  }
  if (name == "same_compute_capability") {
    return HardwareCompatibility::SameComputeCapability;
  }
  throw py::value_error(
      "build option 'hardware_compatibility' must be None, 'ampere_plus' or "
      "'same_compute_capability', not " +
      py::repr(value).cast<std::string>());
}

std::string as_bytes(py::handle value, const std::string& what) {
  if (!py::isinstance<py::bytes>(value) && !py::isinstance<py::bytearray>(value) &&
      !py::isinstance<py::memoryview>(value)) {
    throw py::type_error(what + " must be bytes, not " + type_name(value));
  }
  return py::bytes(py::reinterpret_borrow<py::object>(value)).cast<std::string>();
}

BuildOptions as_build_options(const py::dict& options) {
  for (auto item : options) {
    const std::string key = py::str(item.first).cast<std::string>();
    if (std::find(std::begin(kOptionKeys), std::end(kOptionKeys), key) == std::end(kOptionKeys)) {
      std::string known;
      for (const char* name : kOptionKeys) {
        known += (known.empty() ? "" : ", ") + std::string(name);
      }
      throw py::value_error("unknown build option '" + key + "'; the options are " + known);
    }
  }
  auto given = [&options](const char* key) -> py::object {
    return options.contains(key) ? py::object(options[key]) : py::object(py::none());
  };
  auto option = [](const char* key) { return "build option '" + std::string(key) + "'"; };

  BuildOptions result;
  if (py::object value = given("precision"); !value.is_none()) {
    result.precision = as_precision(value);
  }
  if (py::object value = given("strongly_typed"); !value.is_none()) {
    result.strongly_typed = as_bool(value, option("strongly_typed"));
  }
  if (py::object value = given("profiles"); !value.is_none()) {
    result.profiles = as_profiles(value);
  }
  if (py::object value = given("workspace"); !value.is_none()) {
    const std::int64_t workspace = as_int(value, option("workspace"));
    if (workspace <= 0) {
      throw py::value_error(option("workspace") + " must be a positive number of bytes, not " +
                            std::to_string(workspace));
    }
    result.workspace = static_cast<std::size_t>(workspace);
  }
  if (py::object value = given("timing_cache"); !value.is_none()) {
    result.timing_cache = as_bytes(value, option("timing_cache"));
  }
  if (py::object value = given("optimization_level"); !value.is_none()) {
    result.optimization_level = static_cast<int>(as_int(value, option("optimization_level")));
  }
  if (py::object value = given("version_compatible"); !value.is_none()) {
    result.version_compatible = as_bool(value, option("version_compatible"));
  }
  if (py::object value = given("exclude_lean_runtime"); !value.is_none()) {
    result.exclude_lean_runtime = as_bool(value, option("exclude_lean_runtime"));
  }
  result.hardware_compatibility = as_hardware_compatibility(given("hardware_compatibility"));
  if (py::object value = given("plugins"); !value.is_none()) {
    for (py::handle path : as_sequence(value, option("plugins"))) {
      result.plugins.push_back(as_path(path, "each of " + option("plugins")));
    }
  }
  if (py::object value = given("device"); !value.is_none()) {
    result.device = static_cast<int>(as_int(value, option("device")));
  }
  if (py::object value = given("model_dir"); !value.is_none()) {
    result.model_dir = as_path(value, option("model_dir"));
  }
  return result;
}

const char* event_name(ProgressEvent event) {
  switch (event) {
    case ProgressEvent::Start:
      return "start";
    case ProgressEvent::Step:
      return "step";
    case ProgressEvent::End:
      return "end";
  }
  return "unknown";
}

py::bytes as_python_bytes(const Blob& blob) {
  return py::bytes(static_cast<const char*>(blob.data()), blob.size());
}

py::list as_python_specs(const std::vector<IOTensorSpec>& specs) {
  py::list result;
  for (const IOTensorSpec& spec : specs) {
    py::dict entry;
    entry["name"] = spec.name;
    entry["dtype"] = spec.dtype;
    entry["shape"] = py::tuple(py::cast(spec.shape));
    entry["is_input"] = spec.is_input;
    result.append(entry);
  }
  return result;
}

// A copy of a bytes-like object's bytes; TypeError unless its memory is C-contiguous.
py::bytes contiguous_bytes(const py::buffer& value) {
  Py_buffer view;
  if (PyObject_GetBuffer(value.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) {
    PyErr_Clear();
    throw py::type_error(
        "onnx must be bytes-like (bytes, bytearray, or a C-contiguous memoryview), not " +
        type_name(value));
  }
  py::bytes copy(static_cast<const char*>(view.buf), static_cast<std::size_t>(view.len));
  PyBuffer_Release(&view);
  return copy;
}

}  // namespace

void bind_builder(py::module_& module) {
  module.def(
      "build_plan",
      [](const TensorRTLibrary& library, const py::buffer& onnx_bytes_like,
         const py::typing::Dict<py::str, py::object>& options,
         const py::typing::Optional<py::typing::Callable<py::object(py::str, py::str, int, int)>>&
             progress) -> py::typing::Dict<py::str, py::object> {
        if (!progress.is_none() && PyCallable_Check(progress.ptr()) == 0) {
          throw py::type_error("progress must be callable or None, not " + type_name(progress));
        }
        const BuildOptions build_options = as_build_options(options);
        // bytes are immutable, so their storage is safe to read without the GIL; other
        // bytes-like objects (bytearray, memoryview) could change meanwhile and are copied once.
        const py::bytes onnx = PyBytes_Check(onnx_bytes_like.ptr())
                                   ? py::reinterpret_borrow<py::bytes>(onnx_bytes_like)
                                   : contiguous_bytes(onnx_bytes_like);
        const std::string_view model = onnx;
        const std::size_t model_size = model.size();
        if (model_size == 0) {
          throw py::value_error("onnx is empty: pass the bytes of an ONNX model");
        }

        // Borrowed: the caller's reference outlives the build, and copies of this function
        // then need no GIL.
        const py::handle callback = progress;
        const ProgressCallback forward = [callback](ProgressEvent event, const std::string& phase,
                                                    int step, int total) {
          py::gil_scoped_acquire gil;
          // The building thread runs no Python code meanwhile, so Ctrl-C is noticed here.
          if (PyErr_CheckSignals() != 0) {
            throw py::error_already_set();
          }
          if (callback.is_none()) {
            return true;
          }
          const py::object answer = callback(event_name(event), phase, step, total);
          if (answer.is_none()) {
            return true;
          }
          const int truth = PyObject_IsTrue(answer.ptr());
          if (truth < 0) {
            throw py::error_already_set();
          }
          return truth != 0;
        };

        BuildResult built;
        {
          py::gil_scoped_release release;
          built = build_plan(library, model.data(), model_size, build_options, forward);
        }
        py::dict result;
        result["plan"] = as_python_bytes(built.plan);
        result["timing_cache"] = as_python_bytes(built.timing_cache);
        result["tensorrt_version"] = built.tensorrt_version;
        result["inputs"] = as_python_specs(built.inputs);
        result["outputs"] = as_python_specs(built.outputs);
        return result;
      },
      py::arg("library"), py::arg("onnx"), py::arg("options"), py::arg("progress") = py::none(),
      kBuildPlanDoc);

  module.def(
      "combine_timing_caches",
      [](const TensorRTLibrary& library, const std::vector<py::bytes>& serialized, int device) {
        std::vector<std::string> caches(serialized.begin(), serialized.end());
        Blob combined;
        {
          py::gil_scoped_release release;
          combined = combine_timing_caches(library, caches, device);
        }
        return as_python_bytes(combined);
      },
      py::arg("library"), py::arg("caches"), py::arg("device") = 0,
      "One serialized timing cache holding the entries of all `caches`; caches made by another "
      "TensorRT version or GPU are left out with a warning.");
}

}  // namespace trtfast::python
