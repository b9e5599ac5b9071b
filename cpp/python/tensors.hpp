// Reading caller tensors (numpy, torch, cupy and anything with __cuda_array_interface__ or
// __dlpack__) as TensorArgs without copies, and the device array sessions return.
#pragma once

#include <cuda_runtime_api.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "trtfast/cuda.hpp"
#include "trtfast/signature.hpp"

namespace trtfast::python {

// Python objects and DLPack tensors that must stay alive while a call (or a binding) uses them.
class Keep {
 public:
  Keep() = default;
  ~Keep();
  Keep(const Keep&) = delete;
  Keep& operator=(const Keep&) = delete;
  void reserve(std::size_t count);
  void hold(pybind11::object object) { objects_.push_back(std::move(object)); }
  void hold_dlpack(void* managed, bool versioned);
  // Producer streams that tensors came with (__cuda_array_interface__ v3), to be waited on before
  // the data is touched: by the GPU for device memory, by the CPU for pinned host memory (which
  // is copied by the CPU).
  void add_stream(cudaStream_t stream) { streams_.push_back(stream); }
  void add_host_stream(cudaStream_t stream) { host_streams_.push_back(stream); }
  const std::vector<cudaStream_t>& streams() const noexcept { return streams_; }
  const std::vector<cudaStream_t>& host_streams() const noexcept { return host_streams_; }
  void clear();  // needs the GIL: DLPack deleters may touch Python objects
  void swap(Keep& other) noexcept {
    objects_.swap(other.objects_);
    dlpack_.swap(other.dlpack_);
    streams_.swap(other.streams_);
    host_streams_.swap(other.host_streams_);
  }

 private:
  struct Held {
    void* managed;
    bool versioned;
  };
  std::vector<pybind11::object> objects_;
  std::vector<Held> dlpack_;
  std::vector<cudaStream_t> streams_;
  std::vector<cudaStream_t> host_streams_;
};

// Reads caller tensors for one signature: names to indices, numpy dtypes to expect.
class TensorReader {
 public:
  // `device`: the session's device, where zero-size arrays without memory are taken to live.
  TensorReader(const Signature& signature, int device);

  // Reads `mapping` (a dict, another Mapping, one array for a one-input signature, or None) and
  // then `named` (keyword arguments, may be null) into `args` (one per input). Throws InputError
  // for unknown, repeated or missing names, and for anything else passed positionally.
  // `consumer` is the stream the tensors will be used on (for __dlpack__). True when any input
  // is a torch tensor.
  bool read_inputs(pybind11::handle mapping, pybind11::handle named, std::vector<TensorArg>& args,
                   std::vector<bool>& present, Keep& keep, cudaStream_t consumer) const;
  // One tensor. Holds `value` (and whatever owns its memory) in `keep`.
  void read(pybind11::handle value, const TensorInfo& info, bool is_output, TensorArg& arg,
            Keep& keep, cudaStream_t consumer) const;

  int output_index(pybind11::handle name) const;  // throws InputError when unknown
  const Signature& signature() const noexcept { return *signature_; }
  // numpy dtype of each output (None where numpy lacks the type, e.g. bfloat16 without ml_dtypes)
  const pybind11::object& output_dtype(int output) const {
    return output_dtypes_[static_cast<std::size_t>(output)];
  }
  const pybind11::str& output_name(int output) const {
    return output_names_[static_cast<std::size_t>(output)];
  }

 private:
  // InputError for inputs passed positionally that are not a mapping (nor one array for a
  // one-input signature): shows how to pass them by name.
  [[noreturn]] void throw_not_by_name(pybind11::handle value) const;

  const Signature* signature_;
  int device_;
  pybind11::dict input_indices_;
  pybind11::dict output_indices_;
  std::vector<pybind11::object> input_dtypes_;
  std::vector<pybind11::object> output_dtypes_;
  std::vector<pybind11::str> output_names_;
};

// A C-contiguous numpy array of `dtype` (a numpy dtype object) and `shape`: new memory, or a
// writable view of `data` (the caller sets what keeps it alive as the array's base).
pybind11::array new_numpy(const pybind11::object& dtype, const Dims& shape, void* data = nullptr);
// The same over a page-locked block of at least `bytes` from the pool; a null handle when the
// pool has none to give (`why_not` says why).
pybind11::object pinned_numpy(const pybind11::object& dtype, const Dims& shape, std::size_t bytes,
                              std::string* why_not = nullptr);
// True when `base` (a numpy array's base) is a pooled page-locked block.
bool is_pooled_pinned(PyObject* base) noexcept;

// numpy's dtype for a DataType; None where numpy (with ml_dtypes, if installed) has none.
pybind11::object numpy_dtype(DataType dtype);
// True for a collections.abc.Mapping (dicts included).
bool is_mapping(pybind11::handle value);

// A result (numpy array or DeviceArray) as a torch tensor sharing its memory.
pybind11::object to_torch(pybind11::handle result);

// Pooled output blocks that DLPack consumers let go of while work they queued on their stream (the
// one they named in __dlpack__) may still read them. Each stays out of its session's pool until
// an event recorded on that stream at release has passed; the pool hands out another block
// meanwhile, so neither the consumer nor the session waits.
class PendingReleases {
 public:
  explicit PendingReleases(int device) : device_(device) {}
  ~PendingReleases() = default;  // owners let go of here: their blocks return or are freed
  PendingReleases(const PendingReleases&) = delete;
  PendingReleases& operator=(const PendingReleases&) = delete;

  // From a DLPack deleter (any thread, GIL or not); never throws.
  void defer(cudaStream_t consumer, std::shared_ptr<const void> owner) noexcept;
  // Lets go of the blocks whose consumer work is done: one atomic load when none wait.
  void poll();

 private:
  struct Pending {
    cuda::Event done;
    std::shared_ptr<const void> owner;
  };
  int device_;
  std::mutex mutex_;
  std::vector<Pending> pending_;
  std::vector<cuda::Event> spare_;
  std::atomic<bool> any_{false};
};

// Device memory handed to Python: exposes __cuda_array_interface__ and __dlpack__, so torch,
// cupy and others take it without a copy. `owner` keeps the memory alive.
struct DeviceArray {
  std::shared_ptr<const void> owner;
  void* data = nullptr;
  Dims shape;
  DataType dtype = DataType::Float32;
  int device = 0;
  // Set for pooled blocks: where a DLPack consumer's release waits for its stream.
  std::shared_ptr<PendingReleases> releases;

  std::size_t nbytes() const noexcept;
};

void bind_device_array(pybind11::module_& module);

}  // namespace trtfast::python
