// The TensorRT loader and adapter.
#include <pybind11/functional.h>
#include <pybind11/stl.h>
#include <pybind11/typing.h>

#include "bindings.hpp"
#include "trtfast/error.hpp"
#include "trtfast/executor.hpp"
#include "trtfast/tensorrt_library.hpp"
#include "trtfast/tensorrt_runtime.hpp"

namespace py = pybind11;

namespace trtfast::python {

namespace {

LibraryKind parse_kind(const std::string& kind) {
  if (kind == "full") {
    return LibraryKind::Full;
  }
  if (kind == "lean") {
    return LibraryKind::Lean;
  }
  throw py::value_error("library kind must be 'full' or 'lean', not '" + kind + "'");
}

bool python_is_running() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsInitialized() && !Py_IsFinalizing();
#else
  return Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

// Holds the Python callable: released with the GIL (TensorRT may drop the last copy on any
// thread), leaked once the interpreter is gone, and never called after that.
struct PythonLogSink {
  explicit PythonLogSink(py::function fn)
      : function(new py::function(std::move(fn)), [](py::function* f) {
          if (python_is_running()) {
            py::gil_scoped_acquire gil;
            delete f;
          }
        }) {}
  void operator()(LogSeverity severity, const std::string& message) const {
    if (!python_is_running()) {
      return;
    }
    py::gil_scoped_acquire gil;
    try {
      (*function)(static_cast<int>(severity), message);
    } catch (py::error_already_set& error) {
      error.discard_as_unraisable("trtfast TensorRT log sink");
    }
  }
  std::shared_ptr<py::function> function;
};

}  // namespace

void bind_tensorrt(py::module_& module) {
  py::class_<TensorRTLibrary, std::shared_ptr<TensorRTLibrary>>(
      module, "TensorRTLibrary", "A loaded TensorRT library: where it is, its version and kind.")
      .def_property_readonly("path", &TensorRTLibrary::path)
      .def_property_readonly("version", &TensorRTLibrary::version_string,
                             "major.minor.patch, as the library reports it.")
      .def_property_readonly("major", &TensorRTLibrary::major)
      .def_property_readonly(
          "kind", [](const TensorRTLibrary& l) { return to_string(l.kind()); },
          "'full' (builds and runs engines) or 'lean' (runs them only).")
      .def_property_readonly("origin", &TensorRTLibrary::origin, "Where the search found it.")
      .def("__repr__", [](const TensorRTLibrary& l) {
        return "TensorRTLibrary(path='" + l.path() + "', version='" + l.version_string() +
               "', kind='" + to_string(l.kind()) + "')";
      });

  module.def(
      "find_tensorrt_library",
      [](const std::vector<std::tuple<std::string, std::string, std::string>>& packages) {
        std::vector<PackageFolder> folders;
        for (const auto& [package, folder, kind] : packages) {
          folders.push_back(PackageFolder{package, folder, parse_kind(kind)});
        }
        return TensorRTLibrary::find(folders);
      },
      py::arg("package_folders"),
      "Search TRTFAST_TENSORRT_LIBRARY, then (package, folder, kind) triples (folder '' when the "
      "package is not installed), then the system loader path.");
  module.def("open_tensorrt_library", &TensorRTLibrary::open, py::arg("path"),
             py::arg("origin") = "explicit path");
  module.def("compiled_tensorrt_adapters", &compiled_tensorrt_adapters,
             "TensorRT major -> version of the headers its adapter was compiled with.");
  module.def("tensorrt_adapter_available", &tensorrt_adapter_available,
             "True when this build has an adapter for at least one TensorRT major.");
  module.def("tensorrt_adapter", &tensorrt_adapter_path, py::arg("library"),
             "The file of the adapter for the library's major, loaded; raises "
             "TensorRTUnavailableError saying how to get one when this build has none.");

  module.def(
      "set_tensorrt_log_sink",
      [](const py::typing::Callable<void(int, py::str)>& sink) {
        PythonLogSink python_sink(sink);
        set_log_sink([python_sink](LogSeverity severity, const std::string& message) {
          python_sink(severity, message);
        });
      },
      py::arg("sink"), "sink(severity: int, message: str), severity 0 (internal error)..4.");

  py::class_<DeserializedEngine, Engine, std::shared_ptr<DeserializedEngine>>(
      module, "DeserializedEngine", "A TensorRT engine deserialized from a plan.")
      .def_property_readonly("num_io_tensors", &DeserializedEngine::num_io_tensors);

  py::class_<Runtime, std::shared_ptr<Runtime>>(module, "Runtime",
                                                "A TensorRT runtime bound to one device.")
      .def(py::init([](std::shared_ptr<TensorRTLibrary> library, int device) {
             py::gil_scoped_release release;
             return Runtime::create(std::move(library), device);
           }),
           py::arg("library"), py::arg("device") = 0)
      .def_property_readonly("device", &Runtime::device)
      .def(
          "deserialize",
          [](Runtime& runtime, const py::bytes& plan, bool allow_host_code,
             const std::vector<std::string>& plugins) {
            // bytes are immutable, so their storage is safe to read without the GIL.
            const std::string_view view = plan;
            py::gil_scoped_release release;
            return runtime.deserialize(view.data(), view.size(), allow_host_code, plugins);
          },
          py::arg("plan"), py::arg("allow_host_code") = false,
          py::arg("plugins") = std::vector<std::string>{},
          "Deserializes a plan; one that embeds host code is refused unless allow_host_code. "
          "plugins: canonical paths of the plugin libraries the engine was built with.");
}

}  // namespace trtfast::python
