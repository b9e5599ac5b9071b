// A test engine of plain CUDA kernels behind the execution interface, so sessions are tested on
// a GPU without TensorRT. Test-only: built into trtfast._testing, never into trtfast._core.
//
// Its executors are as strict as TensorRT where TensorRT is strict (docs/tensorrt-rules.md):
// - device addresses must be 256-byte aligned, and a shape tensor's address must be host memory;
// - an output aliased to an input must be bound at that input's address;
// - shapes, profile and addresses set since the last enqueue take effect at the next enqueue:
//   it writes the shape-dependent state its kernels read to device memory outside any stream
//   (as a synchronous copy, which no graph capture allows), so a graph captured under other
//   shapes and replayed without a plain enqueue computes a wrong result, as it might on TensorRT;
// - output shapes that follow a shape tensor need its values set first.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "trtfast/executor.hpp"
#include "trtfast/signature.hpp"

namespace trtfast::testing {

enum class TestKind {
  Affine,      // x [-1, F] float32 -> y = a * x + b
  TwoOutputs,  // x [-1, F], bias [F] -> sum = x + bias, positives [-1] int32 (per-row count > 0)
  Positives,   // x [-1] -> values = x[x > 0]: a data-dependent output shape
  // x [-1, F] float32, k int64 [1] (a shape tensor in host memory, values 1..F) ->
  // y [-1, k] = a * x[:, :k] + b: an output shape that follows a shape tensor's values
  TakeColumns,
  // cache [-1, F], update [-1, F] float32 -> cache_out = cache + update, aliased to cache: the
  // engine updates the cache in place (TensorRT's KV-cache updates)
  Accumulate,
};

struct BatchProfile {
  std::int64_t min = 1;
  std::int64_t opt = 1;
  std::int64_t max = 1;
};

struct TestEngineOptions {
  TestKind kind = TestKind::Affine;
  int device = 0;
  float a = 2.0f;
  float b = 1.0f;
  std::int64_t features = 4;
  std::vector<BatchProfile> profiles{{1, 8, 64}};
  std::int64_t delay_ns = 0;   // a kernel that waits this long runs first on every enqueue
  bool break_capture = false;  // enqueue synchronizes its stream, which no graph capture allows
  // Declares input x in a layout other than row-major, as TensorRT reports one ("kHWC8");
  // empty for linear. Sessions cannot run such engines.
  std::string io_format;
};

class TestEngine final : public Engine, public std::enable_shared_from_this<TestEngine> {
 public:
  explicit TestEngine(TestEngineOptions options);

  const Signature& signature() const override { return signature_; }
  int device() const noexcept override { return options_.device; }
  std::unique_ptr<Executor> create_executor() override;
  const TestEngineOptions& options() const noexcept { return options_; }

  std::atomic<bool> fail_enqueue{false};
  std::atomic<bool> fail_output_shape{false};  // while true, every output-shape query throws
  std::atomic<std::uint64_t> enqueue_count{0};
  std::atomic<int> executors_created{0};

 private:
  TestEngineOptions options_;
  Signature signature_;
};

// The affine kernel alone (y = a * x + b, rounded exactly like numpy's float32 arithmetic), for
// the benchmark's floor.
void launch_affine(const float* x, float* y, std::int64_t count, float a, float b,
                   cudaStream_t stream);

// The raw floor: the same copies and kernel as a session call, from plain C++ with no session.
// `host`: pageable -> pinned -> device, kernel, device -> pinned -> pageable; else the kernel
// alone on device memory. Returns each iteration's latency in microseconds.
std::vector<double> floor_latencies(bool host, bool blocking_sync, std::int64_t batch,
                                    std::int64_t features, int iterations, int warmup, int device);

// The same call through a session driven from C++ (run: checks, then execute), with the caller's
// host buffers (`host`) or device buffers; no Python. Microseconds per iteration.
std::vector<double> session_latencies(const std::shared_ptr<Engine>& engine, bool host,
                                      bool cuda_graph, bool blocking_sync, std::int64_t batch,
                                      int iterations, int warmup);

// The floor of any engine's I/O: no engine work, only what a call must move. `host`: each
// input pageable -> pinned -> device, each output device -> pinned -> pageable, synchronize;
// else an event recorded and synchronized, all a call on device memory must wait for. Returns
// each iteration's latency in microseconds.
std::vector<double> io_floor_latencies(const std::vector<std::size_t>& input_bytes,
                                       const std::vector<std::size_t>& output_bytes, bool host,
                                       bool blocking_sync, int iterations, int warmup, int device);

}  // namespace trtfast::testing
