// Maps each C++ exception type to its class in trtfast.errors.
#include <exception>

#include "bindings.hpp"
#include "trtfast/error.hpp"

namespace py = pybind11;

namespace trtfast::python {

namespace {

void raise(const char* class_name, const std::exception& error) {
  py::object cls = py::module_::import("trtfast.errors").attr(class_name);
  PyErr_SetObject(cls.ptr(), cls(error.what()).ptr());
}

}  // namespace

void bind_errors(py::module_& /*module*/) {
  py::register_exception_translator([](std::exception_ptr pending) {
    if (!pending) {
      return;
    }
    try {
      std::rethrow_exception(pending);
    } catch (const Interrupted&) {
      // Raised where a Python signal handler asked for it: its exception is already set.
      if (PyErr_Occurred() == nullptr) {
        PyErr_SetNone(PyExc_KeyboardInterrupt);
      }
    } catch (const CudaError& error) {
      py::object cls = py::module_::import("trtfast.errors").attr("CudaError");
      py::object instance = cls(error.what());
      instance.attr("code") = error.code();
      PyErr_SetObject(cls.ptr(), instance.ptr());
    } catch (const BuildOptionError& error) {
      raise("BuildOptionError", error);
    } catch (const BuildError& error) {
      py::object cls = py::module_::import("trtfast.errors").attr("BuildError");
      py::list parser_errors;
      for (const ParserError& parser_error : error.parser_errors()) {
        py::dict entry;
        entry["message"] = parser_error.message;
        entry["node_name"] = parser_error.node_name;
        entry["op_type"] = parser_error.op_type;
        entry["node_index"] = parser_error.node_index;
        parser_errors.append(entry);
      }
      py::object instance = cls(error.what(), parser_errors);
      PyErr_SetObject(cls.ptr(), instance.ptr());
    } catch (const TensorRTUnavailableError& error) {
      raise("TensorRTUnavailableError", error);
    } catch (const EngineFormatError& error) {
      raise("EngineFormatError", error);
    } catch (const EngineCompatibilityError& error) {
      raise("EngineCompatibilityError", error);
    } catch (const InputError& error) {
      raise("InputError", error);
    } catch (const Error& error) {
      raise("TrtfastError", error);
    }
  });
}

}  // namespace trtfast::python
