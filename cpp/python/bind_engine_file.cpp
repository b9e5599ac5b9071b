// The engine container: framing and checksums in C++; trtfast.engine_file builds the Python view.
#include <pybind11/typing.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <system_error>
#include <utility>

#include "bindings.hpp"
#include "trtfast/engine_file.hpp"

namespace py = pybind11;

namespace trtfast::python {

namespace {

using InfoDict = py::typing::Dict<py::str, py::object>;

// A C-contiguous view of any bytes-like object, released with the GIL held.
class ContiguousBytes {
 public:
  explicit ContiguousBytes(const py::object& object) {
    if (PyObject_GetBuffer(object.ptr(), &view_, PyBUF_SIMPLE) != 0) {
      throw py::error_already_set();
    }
  }
  ~ContiguousBytes() { PyBuffer_Release(&view_); }
  ContiguousBytes(const ContiguousBytes&) = delete;
  ContiguousBytes& operator=(const ContiguousBytes&) = delete;
  const void* data() const noexcept { return view_.buf; }
  std::size_t size() const noexcept { return static_cast<std::size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

// The operating system's read failures become OSError naming the file, as Python's own I/O does.
template <typename Fn>
auto with_os_errors(const std::string& name, Fn&& fn) {
  try {
    return fn();
  } catch (const std::system_error& error) {
    errno = error.code().value();
    PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, py::str(name).ptr());
    throw py::error_already_set();
  }
}

InfoDict to_dict(const EngineFileInfo& info) {
  py::dict result;
  result["format_version"] = info.format_version;
  result["raw_plan"] = info.raw_plan;
  result["tensorrt_version"] = info.tensorrt_version;
  result["edition"] = to_string(info.edition);
  result["gpu_name"] = info.gpu_name;
  result["compute_capability"] =
      py::make_tuple(info.compute_capability_major, info.compute_capability_minor);
  result["host_code"] = info.host_code;
  result["model_sha256"] = info.model_sha256;
  result["plan_sha256"] = info.plan_sha256;
  result["metadata_json"] = info.metadata_json;
  result["plan_offset"] = info.plan_offset;
  result["plan_size"] = info.plan_size;
  return result;
}

}  // namespace

void bind_engine_file(py::module_& module) {
  py::module_ m = module.def_submodule(
      "engine_file", "trtfast's engine container. Use trtfast.engine_file, not this module.");
  m.attr("FORMAT_VERSION") = kEngineFormatVersion;

  m.def(
      "encode_header",
      [](const py::buffer& plan, const std::string& tensorrt_version, const std::string& edition,
         const std::string& gpu_name, int compute_capability_major, int compute_capability_minor,
         bool host_code, const std::string& model_sha256, const std::string& metadata_json) {
        EngineFileInfo info;
        info.tensorrt_version = tensorrt_version;
        info.edition = parse_edition(edition);
        info.gpu_name = gpu_name;
        info.compute_capability_major = compute_capability_major;
        info.compute_capability_minor = compute_capability_minor;
        info.host_code = host_code;
        info.model_sha256 = model_sha256;
        info.metadata_json = metadata_json;
        const ContiguousBytes bytes(plan);
        std::string header;
        {
          py::gil_scoped_release release;
          header = encode_engine_header(info, bytes.data(), bytes.size());
        }
        return py::bytes(header);
      },
      py::arg("plan"), py::kw_only(), py::arg("tensorrt_version"), py::arg("edition"),
      py::arg("gpu_name"), py::arg("compute_capability_major"), py::arg("compute_capability_minor"),
      py::arg("host_code"), py::arg("model_sha256"), py::arg("metadata_json"),
      "The header that goes in front of `plan`; computes the plan's size, CRC-32 and SHA-256.");

  m.def(
      "parse",
      [](const py::buffer& data, const std::string& name, bool check_plan) {
        const ContiguousBytes bytes(data);
        EngineFileInfo info;
        {
          py::gil_scoped_release release;
          info = parse_engine(bytes.data(), bytes.size(), name, check_plan);
        }
        return to_dict(info);
      },
      py::arg("data"), py::arg("name"), py::arg("check_plan"),
      "Identify and check an engine held in memory; the dict gives plan_offset and plan_size.");

  m.def(
      "read_info",
      [](int fd, const std::string& name, bool check_plan) {
        const EngineFileInfo info = with_os_errors(name, [&] {
          py::gil_scoped_release release;
          return read_engine_info(fd, name, check_plan);
        });
        return to_dict(info);
      },
      py::arg("fd"), py::arg("name"), py::arg("check_plan"),
      "Identify and check the engine in an open file; check_plan also streams the plan's CRC-32.");

  m.def(
      "read",
      [](int fd, const std::string& name) -> py::typing::Tuple<InfoDict, py::bytes> {
        const EngineFileInfo info = with_os_errors(name, [&] {
          py::gil_scoped_release release;
          return read_engine_info(fd, name, false);
        });
        // The plan is read straight into the bytes object that is returned: no other copy.
        auto plan = py::reinterpret_steal<py::bytes>(
            PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(info.plan_size)));
        if (!plan) {
          throw py::error_already_set();
        }
        char* destination = PyBytes_AS_STRING(plan.ptr());
        with_os_errors(name, [&] {
          py::gil_scoped_release release;
          read_engine_plan(fd, name, info, destination);
          return 0;
        });
        return py::make_tuple(to_dict(info), plan);
      },
      py::arg("fd"), py::arg("name"), "The header and the checked plan of an open engine file.");

  m.def(
      "crc32",
      [](const py::buffer& data, std::uint32_t crc) {
        const ContiguousBytes bytes(data);
        return trtfast::crc32(bytes.data(), bytes.size(), crc);
      },
      py::arg("data"), py::arg("crc") = 0, "CRC-32 as zlib computes it.");
  m.def(
      "sha256",
      [](const py::buffer& data) {
        const ContiguousBytes bytes(data);
        return sha256_hex(bytes.data(), bytes.size());
      },
      py::arg("data"), "SHA-256 as lowercase hex.");
}

}  // namespace trtfast::python
