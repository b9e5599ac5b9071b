#pragma once

#include <pybind11/pybind11.h>

namespace trtfast::python {

void bind_errors(pybind11::module_& module);
void bind_cuda(pybind11::module_& module);
void bind_tensorrt(pybind11::module_& module);
void bind_builder(pybind11::module_& module);
void bind_engine_file(pybind11::module_& module);
void bind_engine(pybind11::module_& module);
void bind_session(pybind11::module_& module);
void bind_timing(pybind11::module_& module);
void bind_completion(pybind11::module_& module);
void bind_host_memory(pybind11::module_& module);

}  // namespace trtfast::python
