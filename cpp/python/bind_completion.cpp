// The completion queue of awaitable calls, as an event loop sees it: a file descriptor to watch
// and the tokens of the calls that finished.
#include <pybind11/stl.h>

#include <memory>

#include "bindings.hpp"
#include "trtfast/completion.hpp"

namespace py = pybind11;

namespace trtfast::python {

void bind_completion(py::module_& module) {
  py::class_<CompletionQueue, std::shared_ptr<CompletionQueue>>(
      module, "CompletionQueue",
      "Finished awaitable calls of one event loop: `fd` becomes readable when a call's work is "
      "done; take() returns the tokens of the calls that finished.")
      .def(py::init<>())
      .def_property_readonly("fd", &CompletionQueue::fd)
      .def("take", &CompletionQueue::take)
      .def("ready", &CompletionQueue::ready,
           "True when take() has tokens to give (no system call: for a loop that polls).")
      .def("push", &CompletionQueue::push, py::arg("token"),
           "Reports `token` finished, as a call thread does (for tests of the loop's side).");
}

}  // namespace trtfast::python
