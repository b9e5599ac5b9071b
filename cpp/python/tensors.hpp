// Reading caller tensors (numpy, torch, cupy and anything with __cuda_array_interface__ or
// __dlpack__) as TensorArgs without copies, and the device array sessions return.
#pragma once

#include <cuda_runtime_api.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <vector>

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
  // Producer streams that device tensors came with (__cuda_array_interface__ v3).
  void add_stream(cudaStream_t stream) { streams_.push_back(stream); }
  const std::vector<cudaStream_t>& streams() const noexcept { return streams_; }
  void clear();  // needs the GIL: DLPack deleters may touch Python objects
  void swap(Keep& other) noexcept {
    objects_.swap(other.objects_);
    dlpack_.swap(other.dlpack_);
    streams_.swap(other.streams_);
  }

 private:
  struct Held {
    void* managed;
    bool versioned;
  };
  std::vector<pybind11::object> objects_;
  std::vector<Held> dlpack_;
  std::vector<cudaStream_t> streams_;
};

// Reads caller tensors for one signature: names to indices, numpy dtypes to expect.
class TensorReader {
 public:
  explicit TensorReader(const Signature& signature);

  // Reads `mapping` (a dict, another Mapping, or None) and then `named` (keyword arguments, may
  // be null) into `args` (one per input). Throws InputError for unknown, repeated or missing
  // names. `consumer` is the stream the tensors will be used on (for __dlpack__).
  void read_inputs(pybind11::handle mapping, pybind11::handle named, std::vector<TensorArg>& args,
                   std::vector<bool>& present, Keep& keep, cudaStream_t consumer) const;
  // One tensor; `what` names it in errors ("input 'x'").
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
  const Signature* signature_;
  pybind11::dict input_indices_;
  pybind11::dict output_indices_;
  std::vector<pybind11::object> input_dtypes_;
  std::vector<pybind11::object> output_dtypes_;
  std::vector<pybind11::str> output_names_;
};

// A new C-contiguous numpy array of `dtype` (a numpy dtype object) and `shape`.
pybind11::array new_numpy(const pybind11::object& dtype, const Dims& shape);

// numpy's dtype for a DataType; None where numpy (with ml_dtypes, if installed) has none.
pybind11::object numpy_dtype(DataType dtype);

// Device memory handed to Python: exposes __cuda_array_interface__ and __dlpack__, so torch,
// cupy and others take it without a copy. `owner` keeps the memory alive.
struct DeviceArray {
  std::shared_ptr<const void> owner;
  void* data = nullptr;
  Dims shape;
  DataType dtype = DataType::Float32;
  int device = 0;

  std::size_t nbytes() const noexcept;
};

void bind_device_array(pybind11::module_& module);

}  // namespace trtfast::python
