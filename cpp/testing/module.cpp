// trtfast._testing: test engines of plain CUDA kernels and the benchmark floors. trtfast.bench
// uses the floors; nothing else in trtfast imports it.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "test_engine.hpp"
#include "trtfast/executor.hpp"

namespace py = pybind11;

namespace {

using trtfast::testing::BatchProfile;
using trtfast::testing::TestEngine;
using trtfast::testing::TestEngineOptions;
using trtfast::testing::TestKind;

using ProfileList = std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t>>;

std::shared_ptr<TestEngine> make(TestKind kind, const ProfileList& profiles, int device,
                                 std::int64_t features, float a, float b, double delay_us,
                                 bool break_capture, std::string io_format = {}) {
  TestEngineOptions options;
  options.kind = kind;
  options.device = device;
  options.features = features;
  options.a = a;
  options.b = b;
  options.delay_ns = static_cast<std::int64_t>(delay_us * 1000.0);
  options.break_capture = break_capture;
  options.io_format = std::move(io_format);
  options.profiles.clear();
  for (const auto& [min, opt, max] : profiles) {
    options.profiles.push_back(BatchProfile{min, opt, max});
  }
  if (options.profiles.empty()) {
    throw py::value_error("a test engine needs at least one profile");
  }
  return std::make_shared<TestEngine>(std::move(options));
}

}  // namespace

PYBIND11_MODULE(_testing, m) {
  m.doc() = "Test engines of plain CUDA kernels for trtfast's own tests. Not part of the API.";
  // The base class Engine is registered by trtfast._core.
  py::module_::import("trtfast._core");

  py::class_<TestEngine, trtfast::Engine, std::shared_ptr<TestEngine>>(m, "TestEngine")
      .def_property(
          "fail_enqueue", [](const TestEngine& e) { return e.fail_enqueue.load(); },
          [](TestEngine& e, bool fail) { e.fail_enqueue.store(fail); },
          "While true, every enqueue throws.")
      .def_property(
          "fail_output_shape", [](const TestEngine& e) { return e.fail_output_shape.load(); },
          [](TestEngine& e, bool fail) { e.fail_output_shape.store(fail); },
          "While true, every output-shape query throws.")
      .def_property_readonly("enqueue_count",
                             [](const TestEngine& e) { return e.enqueue_count.load(); })
      .def_property_readonly("executors_created",
                             [](const TestEngine& e) { return e.executors_created.load(); });

  const ProfileList one_profile{{1, 8, 64}};
  m.def(
      "affine",
      [](float a, float b, std::int64_t features, const ProfileList& profiles, int device,
         double delay_us, bool break_capture, std::string io_format) {
        return make(TestKind::Affine, profiles, device, features, a, b, delay_us, break_capture,
                    std::move(io_format));
      },
      py::arg("a") = 2.0f, py::arg("b") = 1.0f, py::arg("features") = 4,
      py::arg("profiles") = one_profile, py::arg("device") = 0, py::arg("delay_us") = 0.0,
      py::arg("break_capture") = false, py::arg("io_format") = "",
      "x [-1, features] float32 -> y = a * x + b. profiles: (min, opt, max) batch per profile. "
      "io_format: a non-linear layout declared for x, as TensorRT names it (\"kHWC8\").");
  m.def(
      "take_columns",
      [](float a, float b, std::int64_t features, const ProfileList& profiles, int device) {
        return make(TestKind::TakeColumns, profiles, device, features, a, b, 0.0, false);
      },
      py::arg("a") = 2.0f, py::arg("b") = 1.0f, py::arg("features") = 4,
      py::arg("profiles") = one_profile, py::arg("device") = 0,
      "x [-1, features] float32, k int64 [1] (a shape tensor in host memory, 1..features) -> "
      "y [-1, k] = a * x[:, :k] + b.");
  m.def(
      "accumulate",
      [](std::int64_t features, const ProfileList& profiles, int device) {
        return make(TestKind::Accumulate, profiles, device, features, 1.0f, 0.0f, 0.0, false);
      },
      py::arg("features") = 4, py::arg("profiles") = one_profile, py::arg("device") = 0,
      "cache [-1, features], update [-1, features] float32 -> cache_out = cache + update, "
      "aliased to cache (updated in place).");
  m.def(
      "two_outputs",
      [](std::int64_t features, const ProfileList& profiles, int device) {
        return make(TestKind::TwoOutputs, profiles, device, features, 1.0f, 0.0f, 0.0, false);
      },
      py::arg("features") = 4, py::arg("profiles") = one_profile, py::arg("device") = 0,
      "x [-1, features], bias [features] float32 -> sum = x + bias, positives [-1] int32.");
  m.def(
      "positives",
      [](const ProfileList& profiles, int device) {
        return make(TestKind::Positives, profiles, device, 1, 1.0f, 0.0f, 0.0, false);
      },
      py::arg("profiles") = one_profile, py::arg("device") = 0,
      "x [-1] float32 -> values = x[x > 0]: an output of data-dependent shape.");
  m.def(
      "floor_latencies",
      [](bool host, bool blocking_sync, std::int64_t batch, std::int64_t features, int iterations,
         int warmup, int device) {
        py::gil_scoped_release release;
        return trtfast::testing::floor_latencies(host, blocking_sync, batch, features, iterations,
                                                 warmup, device);
      },
      py::arg("host"), py::arg("blocking_sync"), py::arg("batch"), py::arg("features"),
      py::arg("iterations"), py::arg("warmup") = 100, py::arg("device") = 0,
      "Latency (us) of each iteration of the raw floor: a session call's copies and kernel "
      "from plain C++.");
  m.def(
      "session_latencies",
      [](const std::shared_ptr<trtfast::Engine>& engine, bool host, bool cuda_graph,
         bool blocking_sync, std::int64_t batch, int iterations, int warmup) {
        py::gil_scoped_release release;
        return trtfast::testing::session_latencies(engine, host, cuda_graph, blocking_sync, batch,
                                                   iterations, warmup);
      },
      py::arg("engine"), py::arg("host"), py::arg("cuda_graph"), py::arg("blocking_sync"),
      py::arg("batch"), py::arg("iterations"), py::arg("warmup") = 100,
      "Latency (us) of each iteration of the same call through a session driven from C++: the "
      "session's cost without the Python entry.");
  m.def(
      "io_floor_latencies",
      [](const std::vector<std::size_t>& input_bytes, const std::vector<std::size_t>& output_bytes,
         bool host, bool blocking_sync, int iterations, int warmup, int device) {
        py::gil_scoped_release release;
        return trtfast::testing::io_floor_latencies(input_bytes, output_bytes, host, blocking_sync,
                                                    iterations, warmup, device);
      },
      py::arg("input_bytes"), py::arg("output_bytes"), py::arg("host"), py::arg("blocking_sync"),
      py::arg("iterations"), py::arg("warmup") = 100, py::arg("device") = 0,
      "Latency (us) of each iteration of any engine's I/O floor, without engine work: host: "
      "each input pageable -> pinned -> device, each output back, synchronize; device: an "
      "event recorded and synchronized.");
}
