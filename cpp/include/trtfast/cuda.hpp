// RAII over the CUDA runtime: one owner per resource, every call checked.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "trtfast/error.hpp"

// Exported from libtrtfast_core.so to the bindings and the adapters, which hide their own symbols.
#pragma GCC visibility push(default)

namespace trtfast::cuda {

// "cudaErrorX (n): CUDA's description".
std::string describe(cudaError_t status);

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file,
                                   int line);

}  // namespace trtfast::cuda

// The message is built only on failure.
#define TRTFAST_CUDA_CHECK(call)                                                     \
  do {                                                                               \
    const cudaError_t trtfast_status_ = (call);                                      \
    if (trtfast_status_ != cudaSuccess) {                                            \
      ::trtfast::cuda::throw_cuda_error(trtfast_status_, #call, __FILE__, __LINE__); \
    }                                                                                \
  } while (0)

namespace trtfast::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  std::size_t total_memory = 0;
  int multiprocessors = 0;
  // As nvidia-smi writes it: "GPU-" and the 16 bytes in hex, grouped 8-4-4-4-12.
  std::string uuid;
};

// Versions are CUDA's integers (1000 * major + 10 * minor); 0 means no driver.
int runtime_version();
int driver_version() noexcept;
// Number of usable devices; 0 when there is no driver or no device (never throws).
int device_count() noexcept;
// Why device_count() is 0, in CUDA's words; empty when devices exist.
std::string unavailable_reason();
std::vector<DeviceInfo> devices();
DeviceInfo device_info(int device);
void set_device(int device);
int current_device();

// Makes `device` current for its scope and restores the caller's device after it; throws
// CudaError when the device cannot be made current.
class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

// As DeviceScope, but never throws,
// so destructors use it: objects that hold device memory are freed with their own device
// current (on a failure the current device is left as it was).
class CurrentDevice {
 public:
  explicit CurrentDevice(int device) noexcept;
  ~CurrentDevice();
  CurrentDevice(const CurrentDevice&) = delete;
  CurrentDevice& operator=(const CurrentDevice&) = delete;

 private:
  int previous_ = -1;  // -1: nothing to restore
};
// (free, total) bytes of device memory, as cudaMemGetInfo reports them for `device`.
std::pair<std::size_t, std::size_t> memory_info(int device);

// Non-owning handle of a stream (the legacy default stream when null).
class StreamView {
 public:
  constexpr StreamView() noexcept = default;
  constexpr explicit StreamView(cudaStream_t stream) noexcept : stream_(stream) {}
  constexpr cudaStream_t get() const noexcept { return stream_; }
  void synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
};

// How a stream relates to the legacy default stream.
enum class StreamOrder {
  // Never ordered with the default stream, so foreign work there never serializes ours.
  Independent,
  // A blocking stream: the driver orders its work after what the default stream has queued
  // (and the default stream's after it), with no event to record or wait on.
  AfterDefault,
};

class Stream {
 public:
  explicit Stream(int device, StreamOrder order = StreamOrder::Independent);
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  cudaStream_t get() const noexcept { return stream_; }
  StreamView view() const noexcept { return StreamView(stream_); }
  int device() const noexcept { return device_; }
  void synchronize() const { view().synchronize(); }

 private:
  void reset() noexcept;
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
};

enum class SyncMode { Spin, Blocking };

class Event {
 public:
  // Timing costs a little on every record; only benchmarks ask for it.
  explicit Event(int device, bool timing = false, SyncMode sync = SyncMode::Spin);
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  cudaEvent_t get() const noexcept { return event_; }
  void record(StreamView stream);
  void synchronize() const;
  bool query() const;  // true once the recorded work is done
  // Milliseconds from `start` to this event; both recorded with timing enabled.
  float elapsed_ms_since(const Event& start) const;

 private:
  void reset() noexcept;
  cudaEvent_t event_ = nullptr;
};

class DeviceBuffer {
 public:
  DeviceBuffer() noexcept = default;
  DeviceBuffer(std::size_t bytes, int device);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  int device() const noexcept { return device_; }

 private:
  void reset() noexcept;
  void* data_ = nullptr;
  std::size_t size_ = 0;
  int device_ = 0;
};

// Page-locked host memory: the only host memory CUDA copies asynchronously.
class PinnedBuffer {
 public:
  PinnedBuffer() noexcept = default;
  explicit PinnedBuffer(std::size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }

 private:
  void reset() noexcept;
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

// Set by tests that need pinning to fail on a working GPU, where nothing a test can set makes
// cudaHostAlloc fail on demand: TRTFAST_TESTING_REFUSE_PINNED_MEMORY=1. Read once.
bool pinning_refused_for_testing() noexcept;

// Host memory for staging copies: pinned when the system grants it, else ordinary pageable
// memory. Pinning fails when the system runs out of memory it can lock (or has no usable GPU);
// a service then runs on, slower, instead of failing. Pageable memory still copies correctly,
// but synchronously, and a CUDA graph cannot capture copies from it: check pinned(). For tests,
// TRTFAST_TESTING_REFUSE_PINNED_MEMORY=1 in the environment makes every pinning fail.
class HostBuffer {
 public:
  HostBuffer() noexcept = default;
  // Throws CudaError naming the bytes asked for when neither kind of memory can be had.
  explicit HostBuffer(std::size_t bytes);
  HostBuffer(HostBuffer&& other) noexcept;
  HostBuffer& operator=(HostBuffer&& other) noexcept;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  ~HostBuffer() = default;

  void* data() const noexcept { return pageable_ ? pageable_.get() : pinned_.data(); }
  std::size_t size() const noexcept { return size_; }
  bool pinned() const noexcept { return !pageable_; }
  // Why pinning failed, in CUDA's words; empty when pinned.
  const std::string& pinned_failure() const noexcept { return pinned_failure_; }

 private:
  struct Free {
    void operator()(void* pointer) const noexcept { std::free(pointer); }
  };
  PinnedBuffer pinned_;
  std::unique_ptr<void, Free> pageable_;
  std::size_t size_ = 0;
  std::string pinned_failure_;
};

void copy_async(void* dst, const void* src, std::size_t bytes, StreamView stream);
// A blocking copy into host memory.
void copy_to_host(void* dst, const void* src, std::size_t bytes);

// The device of a stream handle; -1 for the default streams (they follow the current device) or
// where this CUDA cannot tell.
int stream_device(cudaStream_t stream) noexcept;
// What CUDA knows of a pointer; empty where it cannot tell (the error is cleared).
std::optional<cudaPointerAttributes> pointer_attributes(const void* pointer) noexcept;
// Waits for a stream where no error can be reported (cleanup): a failure is cleared.
void synchronize_quietly(cudaStream_t stream) noexcept;

// cudaMalloc and cudaHostAlloc calls made by DeviceBuffer and PinnedBuffer since the process
// started: lets tests prove a hot path allocates nothing.
std::uint64_t allocation_count() noexcept;

// A captured CUDA graph (the template); instantiate it to launch it.
class Graph {
 public:
  Graph() noexcept = default;
  explicit Graph(cudaGraph_t graph) noexcept : graph_(graph) {}  // takes ownership
  ~Graph();
  Graph(Graph&& other) noexcept;
  Graph& operator=(Graph&& other) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  cudaGraph_t get() const noexcept { return graph_; }
  std::size_t node_count() const;

 private:
  void reset() noexcept;
  cudaGraph_t graph_ = nullptr;
};

// An instantiated graph: what is launched.
class GraphExec {
 public:
  GraphExec() noexcept = default;
  explicit GraphExec(const Graph& graph);
  ~GraphExec();
  GraphExec(GraphExec&& other) noexcept;
  GraphExec& operator=(GraphExec&& other) noexcept;
  GraphExec(const GraphExec&) = delete;
  GraphExec& operator=(const GraphExec&) = delete;

  cudaGraphExec_t get() const noexcept { return exec_; }
  void launch(StreamView stream) const;

 private:
  void reset() noexcept;
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace trtfast::cuda

#pragma GCC visibility pop
