// Timing an engine on its own, for trtfast.bench: device time and host enqueue time.
#include <pybind11/stl.h>

#include <memory>
#include <vector>

#include "bindings.hpp"
#include "tensors.hpp"
#include "trtfast/executor.hpp"
#include "trtfast/timing.hpp"

namespace py = pybind11;

namespace trtfast::python {

void bind_timing(py::module_& module) {
  module.def(
      "time_engine",
      [](const std::shared_ptr<Engine>& engine, const py::object& inputs, int iterations,
         int warmup) {
        const Signature& signature = engine->signature();
        TensorReader reader(signature, engine->device());
        std::vector<TensorArg> args(signature.inputs().size());
        std::vector<bool> present(args.size(), false);
        Keep keep;
        reader.read_inputs(inputs, py::none(), args, present, keep, nullptr);
        const int profile = signature.check_inputs(args.data(), engine->device(), -1);
        EngineTimings timings;
        {
          py::gil_scoped_release release;
          timings = time_engine(*engine, profile, args.data(), iterations, warmup);
        }
        keep.clear();
        py::dict result;
        result["gpu_us"] = timings.gpu_us;
        result["gpu_from_graph"] = timings.gpu_from_graph;
        result["gated"] = timings.gated;
        result["enqueue_us"] = timings.enqueue_us;
        result["graph_launch_us"] = timings.graph_launch_us;
        result["graph_failure"] = timings.graph_failure;
        return result;
      },
      py::arg("engine"), py::arg("inputs"), py::arg("iterations"), py::arg("warmup") = 10,
      "Times `engine` on an execution context of its own with `inputs` (a dict, as a session "
      "takes them): {'gpu_us': device time per run (events around runs queued behind a gate), "
      "'gpu_from_graph', 'gated', 'enqueue_us': host time per plain enqueue, 'graph_launch_us': "
      "host time per graph launch ([] when capture failed), 'graph_failure'}.");
}

}  // namespace trtfast::python
