// Everything per call: one executor, a stream, device buffers sized for the profile maximum,
// host staging (pinned where the system grants it), and an LRU cache of CUDA graphs keyed by the
// profile, input shapes, shape-tensor values and bound addresses.
//
// A graph replays the work its executor was set up for at capture. TensorRT applies a change of
// profile, shape or address at the next enqueue (onShapeChange, "layer resource updates"), which
// a replay does not run. So a graph is replayed only while the executor has had no change since
// its last plain enqueue: a call that changes anything runs by enqueue, and the calls after it
// with the same key replay. Capture follows a plain enqueue and a synchronize.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "trtfast/cuda.hpp"
#include "trtfast/executor.hpp"
#include "trtfast/signature.hpp"

// Exported from libtrtfast_core.so to the bindings and the adapters, which hide their own symbols.
#pragma GCC visibility push(default)

namespace trtfast {

// What a session tells its owner about through SessionOptions::warn.
enum class SessionWarning {
  GraphFallback,     // CUDA graph capture failed: the session runs without graphs from now on
  PageableStaging,   // no pinned host memory: host arrays are staged in pageable memory, slower
  UnalignedStaging,  // a device array not 256-byte aligned goes through an aligned copy, slower
};

struct SessionOptions {
  bool cuda_graph = true;
  // Spin: the wait for the GPU polls its event (lowest latency) and can be interrupted (see
  // `interrupted`). Blocking: the thread sleeps in CUDA's blocking wait, which nothing cuts short.
  cuda::SyncMode sync = cuda::SyncMode::Spin;
  // Order calls after the caller's stream instead of the default stream. Calls return once their
  // work is done, so the caller's later work needs no ordering after them.
  bool use_caller_stream = false;
  cudaStream_t caller_stream = nullptr;
  std::size_t graph_cache_size = 16;
  // Told when the session falls back to a slower way; called on the calling thread, inside
  // execute (so without the GIL in Python), at most once per kind and session.
  std::function<void(SessionWarning, const std::string&)> warn;
  // Asked while a spin wait for the GPU lasts long: about every 10 ms, never in its first
  // milliseconds. True ends the wait: the call throws Interrupted, its work left running on the
  // GPU, and the session waits for that work before it next touches its buffers (the next call,
  // finish_work_in_flight, the destructor). Called on the calling thread; may be empty.
  std::function<bool()> interrupted;
};

// Where an output goes, per call.
enum class OutputTarget {
  Host,    // caller's host memory (data set), or the session's host staging (data null)
  Device,  // caller's device memory (data set)
  Pooled,  // a session-owned device buffer handed to the caller (see DeviceOutput)
};

struct OutputArg {
  OutputTarget target = OutputTarget::Host;
  TensorArg tensor;  // data, dtype, shape of the caller's buffer for Host/Device with data
};

// A device result owned by the caller: `owner` keeps the memory alive (pooled buffers return to
// the session's pool when the last owner is gone).
struct DeviceOutput {
  std::shared_ptr<const void> owner;
  void* data = nullptr;
};

struct SessionStats {
  std::uint64_t calls = 0;
  std::uint64_t graph_launches = 0;
  std::uint64_t graph_captures = 0;
  // Calls run by enqueue: graphs off, the first call of a key, or a call that changed the
  // executor's profile, shapes, shape-tensor values or addresses.
  std::uint64_t plain_runs = 0;
  std::uint64_t executor_calls = 0;  // shape/address/profile calls into the executor
  // Host bytes copied by the CPU through host staging, and host bytes the GPU copied straight
  // from or to the caller's page-locked memory.
  std::uint64_t staged_bytes = 0;
  std::uint64_t direct_bytes = 0;
  std::size_t cached_graphs = 0;
  bool graphs_enabled = true;
};

// Not thread-safe: one thread at a time (a pool of sessions serves many threads).
class Session {
 public:
  Session(std::shared_ptr<Engine> engine, SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const Signature& signature() const noexcept { return executor_->signature(); }
  int device() const noexcept { return device_; }
  // The session's own stream: calls on host memory run here, and graphs are captured here.
  cudaStream_t stream() const noexcept { return stream_.get(); }
  // Where calls that read or write device memory run: after the default stream's work (see
  // default_ordered_), or on stream() after the caller's stream.
  cudaStream_t device_stream() const noexcept {
    return options_.use_caller_stream ? stream_.get() : default_ordered_.get();
  }
  const SessionOptions& options() const noexcept { return options_; }
  SessionStats stats() const noexcept;
  bool data_dependent(int output) const noexcept;

  // Step 1: checks the inputs (signature order) and readies the executor for their shapes.
  void prepare(const TensorArg* inputs);
  // After prepare: the shape each output will have; -1 where it depends on the data (known
  // after execute).
  const Dims& output_shape(int output) const noexcept;
  // Checks a caller's buffer for output `output` against the prepared shape.
  void check_output(int output, const TensorArg& buffer) const;
  // Step 2 (no Python needed): stages host inputs, runs (graph replay or enqueue), copies host
  // outputs, synchronizes. Pooled outputs are returned in `pooled` (one slot per output); Host
  // outputs without data stay in host staging (host_result). Throws on any failure, and
  // Interrupted when options().interrupted ends the wait.
  void execute(const TensorArg* inputs, const OutputArg* outputs, DeviceOutput* pooled);
  // prepare + execute.
  void run(const TensorArg* inputs, const OutputArg* outputs, DeviceOutput* pooled);
  // After execute: each output's shape, data-dependent ones included.
  const Dims& result_shape(int output) const noexcept;
  // A Host output run without a buffer: its bytes in host staging, valid until the next call.
  const void* host_result(int output) const noexcept;
  // Orders this session's next call on device memory after what `producer` has queued so far
  // (an event recorded there, waited on by device_stream()).
  void order_after(cudaStream_t producer);
  // True after an interrupted call until its GPU work is known to be done.
  bool work_in_flight() const noexcept { return in_flight_; }
  // Waits (as the session's sync mode waits, so it can be interrupted again) for the work an
  // interrupted call left running. prepare and execute do it first; an owner that must not wait
  // in prepare (Python holds the GIL there) calls it before.
  void finish_work_in_flight();

 private:
  struct Staging;
  struct GraphEntry;
  class DataDependentAllocator;
  struct Block;

  void size_buffers();
  Staging& input_staging(int input);
  Staging& output_staging(int output);
  // The staging in `slot`, created (capacity bytes each side) on first use.
  Staging& staging(std::unique_ptr<Staging>& slot, std::size_t capacity);
  std::shared_ptr<Block> acquire_block();
  void resolve_addresses(const TensorArg* inputs, const OutputArg* outputs,
                         std::shared_ptr<Block>& block);
  void bind_addresses();  // hands this call's addresses to the executor where they changed
  void build_key(const TensorArg* inputs, const OutputArg* outputs);
  void stage_inputs(const TensorArg* inputs, cudaStream_t stream);
  void stage_outputs(const TensorArg* inputs, const OutputArg* outputs, cudaStream_t stream);
  void stage_host_input(std::size_t input, const TensorArg& arg, std::size_t bytes,
                        cudaStream_t stream);
  void stage_host_output(std::size_t output, const OutputArg& out, std::size_t bytes,
                         cudaStream_t stream);
  // Copies out the chunks of large host outputs as each arrives, while later ones are in flight.
  void copy_out_chunks(const OutputArg* outputs);
  // A device array whose address TensorRT cannot take (not 256-byte aligned) is copied through
  // `slot`, created (capacity bytes) on first use.
  void* aligned(cuda::DeviceBuffer& slot, std::size_t capacity, const std::string& tensor,
                const void* address);
  // Host values of shape-tensor input `input` for this call; true when they differ from the
  // values the executor holds.
  bool load_shape_values(std::size_t input, const TensorArg& arg, bool shape_changed);
  void forget_executor_state();  // after a failed call into the executor: set everything again
  void layout_block();
  void record_work(const TensorArg* inputs, const OutputArg* outputs, cudaStream_t stream);
  void run_plain(const TensorArg* inputs, const OutputArg* outputs, cudaStream_t stream);
  bool capture();  // the engine's work, on stream_, into the cache under key_
  void disable_graphs(const std::string& reason);
  void wait_for(cudaStream_t producer, cudaStream_t consumer);
  void synchronize(cudaStream_t stream);
  void wait_until_done();                         // for done_event_, as options_.sync says
  void wait_for_event(const cuda::Event& event);  // as options_.sync says, interruptible
  void check_host_memory(const cuda::HostBuffer& buffer);
  void finish_data_dependent(const OutputArg* outputs, DeviceOutput* pooled, cudaStream_t stream);

  std::shared_ptr<Engine> engine_;
  int device_;
  SessionOptions options_;
  std::unique_ptr<Executor> executor_;
  cuda::Stream stream_;
  // Calls on device memory without a caller's stream must come after the default stream's work
  // (where torch and cupy write by default). Running them on a blocking stream gets that order
  // from the driver for about 0.1 us; an event recorded on the default stream and waited on here
  // costs about 1 us, and more with blocking sync. Graphs are still captured on stream_: a
  // capture on a blocking stream would fail other threads' work on the default stream.
  cuda::Stream default_ordered_;
  cuda::Event ordering_event_;
  cuda::Event done_event_;
  std::size_t num_inputs_;
  std::size_t num_outputs_;

  // Capacity in bytes each tensor needs at its largest profile shape.
  std::vector<std::size_t> input_capacity_;
  std::vector<std::size_t> output_capacity_;
  std::vector<bool> data_dependent_;
  std::vector<std::unique_ptr<Staging>> input_staging_;
  std::vector<std::unique_ptr<Staging>> output_staging_;
  // Device arrays that are not 256-byte aligned are copied through these (created on first use).
  std::vector<cuda::DeviceBuffer> input_aligned_;
  std::vector<cuda::DeviceBuffer> output_aligned_;
  std::vector<bool> input_unaligned_;   // this call's
  std::vector<bool> output_unaligned_;  // this call's
  // This call's host outputs the GPU writes straight into the caller's page-locked memory, and
  // those copied out of staging chunk by chunk (as the events in out_chunks_ fire).
  std::vector<bool> output_direct_;
  std::vector<bool> output_chunked_;
  struct OutChunk {
    std::size_t output;
    std::size_t offset;
    std::size_t bytes;
  };
  std::vector<OutChunk> out_chunks_;
  std::vector<cuda::Event> chunk_events_;  // one per chunk in flight, created on first need
  // Shape-tensor inputs (host memory): the values the executor reads, at a stable address.
  std::vector<std::vector<unsigned char>> shape_values_;
  // The largest values of each profile's shape-tensor inputs, which sized the outputs; bound in
  // the context until the first call, so they live as long as the session.
  std::vector<std::vector<std::vector<std::int64_t>>> sizing_values_;
  std::vector<std::size_t> block_offsets_;
  std::size_t block_size_ = 0;
  std::vector<std::shared_ptr<Block>> blocks_;
  cuda::DeviceBuffer scratch_;  // a non-null address for empty tensors

  // What the executor currently holds, so it is called only for changes.
  int current_profile_ = -1;
  std::vector<Dims> current_shapes_;
  std::vector<void*> current_input_addresses_;
  std::vector<void*> current_output_addresses_;
  std::vector<Dims> output_shapes_;
  std::vector<Dims> result_shapes_;      // data-dependent outputs, as the executor reports them
  std::vector<void*> input_addresses_;   // this call's
  std::vector<void*> output_addresses_;  // this call's
  std::vector<std::unique_ptr<DataDependentAllocator>> allocators_;
  bool has_data_dependent_ = false;
  // The executor's profile, shapes, shape-tensor values or addresses changed since its last
  // plain enqueue: TensorRT applies such changes at the next enqueue, so no graph may replay.
  bool executor_changed_ = true;

  std::vector<std::int64_t> key_;  // this call's graph key; capacity reserved up front
  std::vector<std::unique_ptr<GraphEntry>> graphs_;
  std::uint64_t tick_ = 0;
  bool graphs_enabled_;
  bool in_flight_ = false;  // an interrupted call's work may still run (up to done_event_)
  bool warned_pageable_ = false;
  bool warned_unaligned_ = false;
  mutable SessionStats stats_;
};

}  // namespace trtfast

#pragma GCC visibility pop
