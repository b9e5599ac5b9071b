// The cuda layer, exposed for diagnostics (doctor) and for testing the wrappers on a GPU.
#include <pybind11/stl.h>
#include <pybind11/typing.h>

#include <cstdint>
#include <memory>
#include <string>

#include "bindings.hpp"
#include "trtfast/cuda.hpp"

namespace py = pybind11;

namespace trtfast::python {

namespace {

void* as_pointer(std::uintptr_t address) { return reinterpret_cast<void*>(address); }

std::uintptr_t as_address(const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer); }

void warn_pageable(const cuda::HostBuffer& buffer) {
  const std::string message =
      "pinned host memory is unavailable (" + buffer.pinned_failure() + "); using " +
      std::to_string(buffer.size()) +
      " bytes of pageable memory instead: copies to and from the GPU are synchronous and slower";
  const py::object category = py::module_::import("trtfast.errors").attr("PerformanceWarning");
  if (PyErr_WarnEx(category.ptr(), message.c_str(), 1) != 0) {
    throw py::error_already_set();
  }
}

}  // namespace

void bind_cuda(py::module_& module) {
  py::module_ m = module.def_submodule("cuda", "RAII wrappers over the CUDA runtime.");

  m.def("runtime_version", &cuda::runtime_version,
        "CUDA runtime version linked into trtfast (1000 * major + 10 * minor).");
  m.def("driver_version", &cuda::driver_version,
        "CUDA version the installed driver supports; 0 without a driver.");
  m.def("device_count", &cuda::device_count, "Usable CUDA devices; 0 without driver or device.");
  m.def("unavailable_reason", &cuda::unavailable_reason,
        "Why no device is usable, in CUDA's words; empty when devices exist.");
  m.def(
      "devices",
      []() -> py::typing::List<py::typing::Dict<py::str, py::object>> {
        py::list result;
        for (const cuda::DeviceInfo& info : cuda::devices()) {
          py::dict entry;
          entry["index"] = info.index;
          entry["name"] = info.name;
          entry["compute_capability"] = py::make_tuple(info.compute_major, info.compute_minor);
          entry["total_memory"] = info.total_memory;
          entry["multiprocessors"] = info.multiprocessors;
          entry["uuid"] = info.uuid;
          result.append(entry);
        }
        return result;
      },
      "Name, compute capability, memory, multiprocessors and UUID of each device.");

  m.def("memory_info", &cuda::memory_info, py::arg("device") = 0,
        "(free, total) bytes of the device's memory.");

  py::class_<cuda::Stream>(m, "Stream", "An owned CUDA stream, non-blocking to the legacy stream.")
      .def(py::init<int>(), py::arg("device") = 0)
      .def_property_readonly("handle", [](const cuda::Stream& s) { return as_address(s.get()); })
      .def_property_readonly("device", &cuda::Stream::device)
      .def("synchronize", &cuda::Stream::synchronize, py::call_guard<py::gil_scoped_release>());

  py::class_<cuda::Event>(m, "Event", "A CUDA event; timing only when asked for.")
      .def(py::init([](int device, bool timing, bool blocking) {
             return cuda::Event(device, timing,
                                blocking ? cuda::SyncMode::Blocking : cuda::SyncMode::Spin);
           }),
           py::arg("device") = 0, py::arg("timing") = false, py::arg("blocking") = false)
      .def(
          "record", [](cuda::Event& e, const cuda::Stream& s) { e.record(s.view()); },
          py::arg("stream"))
      .def("synchronize", &cuda::Event::synchronize, py::call_guard<py::gil_scoped_release>())
      .def("query", &cuda::Event::query, "True once the recorded work is done.")
      .def("elapsed_ms_since", &cuda::Event::elapsed_ms_since, py::arg("start"));

  py::class_<cuda::DeviceBuffer>(m, "DeviceBuffer", "Device memory from cudaMalloc.")
      .def(py::init<std::size_t, int>(), py::arg("nbytes"), py::arg("device") = 0)
      .def_property_readonly("ptr",
                             [](const cuda::DeviceBuffer& b) { return as_address(b.data()); })
      .def_property_readonly("nbytes", &cuda::DeviceBuffer::size)
      .def_property_readonly("device", &cuda::DeviceBuffer::device);

  py::class_<cuda::PinnedBuffer>(m, "PinnedBuffer", "Page-locked host memory; a writable buffer.",
                                 py::buffer_protocol())
      .def(py::init<std::size_t>(), py::arg("nbytes"))
      .def_property_readonly("ptr",
                             [](const cuda::PinnedBuffer& b) { return as_address(b.data()); })
      .def_property_readonly("nbytes", &cuda::PinnedBuffer::size)
      .def_buffer([](cuda::PinnedBuffer& b) {
        return py::buffer_info(b.data(), 1, py::format_descriptor<std::uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(b.size())}, {1});
      });

  m.def("allocation_count", &cuda::allocation_count,
        "cudaMalloc and cudaHostAlloc calls trtfast has made in this process.");
  py::class_<cuda::HostBuffer>(
      m, "HostBuffer",
      "Host memory for staging copies: pinned when the system grants it, else pageable (with a "
      "trtfast.PerformanceWarning); a writable buffer.",
      py::buffer_protocol())
      .def(py::init([](std::size_t nbytes) {
             auto buffer = std::make_unique<cuda::HostBuffer>(nbytes);
             if (!buffer->pinned()) {
               warn_pageable(*buffer);
             }
             return buffer;
           }),
           py::arg("nbytes"))
      .def_property_readonly("ptr", [](const cuda::HostBuffer& b) { return as_address(b.data()); })
      .def_property_readonly("nbytes", &cuda::HostBuffer::size)
      .def_property_readonly("pinned", &cuda::HostBuffer::pinned)
      .def_property_readonly("pinned_failure", &cuda::HostBuffer::pinned_failure,
                             "Why pinning failed, in CUDA's words; empty when pinned.")
      .def_buffer([](cuda::HostBuffer& b) {
        return py::buffer_info(b.data(), 1, py::format_descriptor<std::uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(b.size())}, {1});
      });

  m.def(
      "copy_async",
      [](std::uintptr_t dst, std::uintptr_t src, std::size_t nbytes, const cuda::Stream& stream) {
        cuda::copy_async(as_pointer(dst), as_pointer(src), nbytes, stream.view());
      },
      py::arg("dst"), py::arg("src"), py::arg("nbytes"), py::arg("stream"),
      "Asynchronous copy between any two addresses (direction inferred by CUDA).");
}

}  // namespace trtfast::python
