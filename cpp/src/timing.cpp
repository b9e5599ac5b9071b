#include "trtfast/timing.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "trtfast/cuda.hpp"
#include "trtfast/error.hpp"

namespace trtfast {

namespace {

using Clock = std::chrono::steady_clock;

// Runs queued per gate: well below the depth at which CUDA blocks the host while queuing.
constexpr int kRunsPerGate = 16;
// A gate that was not opened by then opens itself: queuing must have blocked on the stream.
constexpr std::chrono::seconds kGateTimeout{1};

double micros_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

// Holds a stream's later work until the host opens it: a host function that waits. With every
// run queued before the GPU starts, events time the GPU alone.
class Gate {
 public:
  explicit Gate(const cuda::Stream& stream)
      : stream_(stream), deadline_(Clock::now() + kGateTimeout) {
    TRTFAST_CUDA_CHECK(cudaLaunchHostFunc(stream_.get(), &Gate::wait, this));
  }
  // The host function reads this object: it lives until the stream has passed it.
  ~Gate() {
    open();
    cudaStreamSynchronize(stream_.get());
  }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  void open() noexcept { open_.store(true, std::memory_order_release); }
  bool timed_out() const noexcept { return timed_out_.load(std::memory_order_acquire); }

 private:
  static void CUDART_CB wait(void* data) {
    auto* gate = static_cast<Gate*>(data);
    while (!gate->open_.load(std::memory_order_acquire)) {
      if (Clock::now() > gate->deadline_) {
        gate->timed_out_.store(true, std::memory_order_release);
        return;
      }
      std::this_thread::yield();
    }
  }

  const cuda::Stream& stream_;
  Clock::time_point deadline_;
  std::atomic<bool> open_{false};
  std::atomic<bool> timed_out_{false};
};

// A graph of one enqueue, or the reason capture failed.
std::unique_ptr<cuda::GraphExec> capture(Executor& executor, const cuda::Stream& stream,
                                         std::string& failure) {
  cudaError_t status = cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal);
  if (status != cudaSuccess) {
    cudaGetLastError();
    failure = std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(status);
    return nullptr;
  }
  try {
    executor.enqueue(stream.get());
  } catch (const std::exception& error) {
    failure = error.what();
  }
  cudaGraph_t raw = nullptr;
  status = cudaStreamEndCapture(stream.get(), &raw);
  const cuda::Graph graph(raw);
  cudaGetLastError();  // a broken capture leaves a (non-sticky) error behind
  if (failure.empty() && (status != cudaSuccess || raw == nullptr)) {
    failure = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(status);
  }
  if (!failure.empty()) {
    return nullptr;
  }
  try {
    return std::make_unique<cuda::GraphExec>(graph);
  } catch (const std::exception& error) {
    failure = error.what();
    return nullptr;
  }
}

}  // namespace

EngineTimings time_engine(Engine& engine, int profile, const TensorArg* inputs, int iterations,
                          int warmup) {
  if (iterations < 1 || warmup < 0) {
    throw InputError("timing an engine needs iterations >= 1 and warmup >= 0, got " +
                     std::to_string(iterations) + " and " + std::to_string(warmup));
  }
  const int device = engine.device();
  const cuda::DeviceScope scope(device);  // the caller's device again on the way out
  const std::unique_ptr<Executor> executor = engine.create_executor();
  const Signature& signature = executor->signature();
  const cuda::Stream stream(device);
  executor->select_profile(profile, stream.get());

  std::vector<cuda::DeviceBuffer> buffers;
  for (std::size_t i = 0; i < signature.inputs().size(); ++i) {
    const TensorArg& input = inputs[i];
    const TensorInfo& info = signature.inputs()[i];
    if (!input.contiguous) {
      throw InputError("input '" + info.name + "' must be contiguous to be timed");
    }
    const std::size_t bytes =
        static_cast<std::size_t>(std::max<std::int64_t>(input.shape.volume(), 0)) *
        dtype_size(info.dtype);
    executor->set_input_shape(static_cast<int>(i), input.shape);
    if (info.host_memory) {
      // A shape tensor: TensorRT reads its values from host memory, at enqueue.
      if (input.location != Location::Host) {
        throw InputError("input '" + info.name +
                         "' is a shape tensor that TensorRT reads from host memory: expected a "
                         "host array");
      }
      executor->set_input_address(static_cast<int>(i), input.data);
      continue;
    }
    buffers.emplace_back(std::max<std::size_t>(bytes, 1), device);
    if (bytes > 0) {
      cuda::copy_async(buffers.back().data(), input.data, bytes, stream.view());
    }
    executor->set_input_address(static_cast<int>(i), buffers.back().data());
  }
  for (std::size_t j = 0; j < signature.outputs().size(); ++j) {
    const TensorInfo& info = signature.outputs()[j];
    const Dims shape = executor->output_shape(static_cast<int>(j));
    if (shape.is_dynamic()) {
      throw InputError("output '" + info.name +
                       "' has a data-dependent shape, so the engine cannot be timed on its own");
    }
    const std::size_t bytes = static_cast<std::size_t>(shape.volume()) * dtype_size(info.dtype);
    buffers.emplace_back(std::max<std::size_t>(bytes, 1), device);
    executor->set_output_address(static_cast<int>(j), buffers.back().data());
  }
  stream.synchronize();

  for (int i = 0; i < warmup; ++i) {
    executor->enqueue(stream.get());
    stream.synchronize();
  }
  EngineTimings timings;
  timings.enqueue_us.reserve(static_cast<std::size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    const auto start = Clock::now();
    executor->enqueue(stream.get());
    timings.enqueue_us.push_back(micros_since(start));
    stream.synchronize();
  }

  const std::unique_ptr<cuda::GraphExec> graph = capture(*executor, stream, timings.graph_failure);
  if (graph) {
    graph->launch(stream.view());  // the first launch uploads the graph
    stream.synchronize();
    timings.graph_launch_us.reserve(static_cast<std::size_t>(iterations));
    for (int i = 0; i < iterations; ++i) {
      const auto start = Clock::now();
      graph->launch(stream.view());
      timings.graph_launch_us.push_back(micros_since(start));
      stream.synchronize();
    }
  }

  timings.gpu_from_graph = graph != nullptr;
  std::vector<cuda::Event> starts;
  std::vector<cuda::Event> stops;
  for (int k = 0; k < kRunsPerGate; ++k) {
    starts.emplace_back(device, true);
    stops.emplace_back(device, true);
  }
  timings.gpu_us.reserve(static_cast<std::size_t>(iterations));
  for (int done = 0; done < iterations; done += kRunsPerGate) {
    const int runs = std::min(kRunsPerGate, iterations - done);
    {
      Gate gate(stream);
      for (int k = 0; k < runs; ++k) {
        const auto slot = static_cast<std::size_t>(k);
        starts[slot].record(stream.view());
        if (graph) {
          graph->launch(stream.view());
        } else {
          executor->enqueue(stream.get());
        }
        stops[slot].record(stream.view());
      }
      gate.open();
      stream.synchronize();
      timings.gated = timings.gated && !gate.timed_out();
    }
    for (int k = 0; k < runs; ++k) {
      const auto slot = static_cast<std::size_t>(k);
      timings.gpu_us.push_back(static_cast<double>(stops[slot].elapsed_ms_since(starts[slot])) *
                               1000.0);
    }
  }
  return timings;
}

}  // namespace trtfast
