#include <cuda_runtime_api.h>
#include <pybind11/typing.h>

#include "bindings.hpp"
#include "trtfast/tensorrt_runtime.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, module) {
  module.doc() = "trtfast's C++ core. Use the trtfast package, not this module.";
  trtfast::python::bind_errors(module);
  trtfast::python::bind_cuda(module);
  trtfast::python::bind_host_memory(module);
  trtfast::python::bind_completion(module);  // before sessions, whose signatures name it
  trtfast::python::bind_engine(module);
  trtfast::python::bind_tensorrt(module);
  trtfast::python::bind_builder(module);
  trtfast::python::bind_engine_file(module);
  trtfast::python::bind_session(module);
  trtfast::python::bind_timing(module);

  module.def(
      "build_info",
      []() -> py::typing::Dict<py::str, py::object> {
        py::dict info;
        info["version"] = TRTFAST_VERSION;
        py::dict adapters;  // JSON-like: the major as a string
        for (const auto& [major, headers] : trtfast::compiled_tensorrt_adapters()) {
          adapters[py::str(std::to_string(major))] = headers;
        }
        info["tensorrt_adapters"] = adapters;
        info["cuda_runtime"] = std::to_string(CUDART_VERSION / 1000) + "." +
                               std::to_string((CUDART_VERSION % 1000) / 10);
        info["compiler"] = __VERSION__;
        return info;
      },
      "What this build of trtfast was compiled with.");
}
