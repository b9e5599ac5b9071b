// The small execution interface a session drives: TensorRT's execution context implements it,
// and so does a test executor of plain CUDA kernels, so session logic is tested without TensorRT.
// The destructors are defined in the core (tensorrt_adapter.cpp): one type information for the
// core, the adapters and the test executor.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>

#include "trtfast/signature.hpp"

// Exported from libtrtfast_core.so to the bindings and the adapters, which hide their own symbols.
#pragma GCC visibility push(default)

namespace trtfast {

// Receives outputs whose shape is known only once the engine has run (data-dependent shapes).
class OutputAllocator {
 public:
  virtual ~OutputAllocator();
  // Device memory of at least `bytes` for output `output`, or null when none can be had.
  // Called during enqueue, on the thread that enqueues.
  virtual void* reallocate(int output, std::size_t bytes, cudaStream_t stream) noexcept = 0;
  virtual void notify_shape(int output, const Dims& shape) noexcept = 0;
};

// One execution context. Not thread-safe: one session drives it. Indices follow the signature:
// inputs in signature().inputs() order, outputs in signature().outputs() order. Every failure
// throws (never a false or a log line).
class Executor {
 public:
  virtual ~Executor();

  virtual const Signature& signature() const noexcept = 0;
  // Input shapes and addresses must be set again after a profile switch.
  virtual void select_profile(int profile, cudaStream_t stream) = 0;
  virtual void set_input_shape(int input, const Dims& shape) = 0;
  virtual void set_input_address(int input, void* address) = 0;
  virtual void set_output_address(int output, void* address) = 0;
  // Valid once every input shape is set; -1 where the size depends on the data.
  virtual Dims output_shape(int output) = 0;
  virtual void set_output_allocator(int output, OutputAllocator* allocator) = 0;
  virtual void enqueue(cudaStream_t stream) = 0;
};

// What sessions are made from: an engine that creates one executor per session.
class Engine {
 public:
  virtual ~Engine();
  virtual const Signature& signature() const = 0;
  virtual int device() const noexcept = 0;
  virtual std::unique_ptr<Executor> create_executor() = 0;
};

}  // namespace trtfast

#pragma GCC visibility pop
