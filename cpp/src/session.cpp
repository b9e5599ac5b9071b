#include "trtfast/session.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>

#include "trtfast/error.hpp"
#include "trtfast/host_memory.hpp"

namespace trtfast {

namespace {

constexpr std::size_t kAlignment = 256;  // what cudaMalloc guarantees and TensorRT expects

// An interruptible spin wait reads the clock only every kPollsPerClockRead event queries (each
// some 0.1 us), and asks SessionOptions::interrupted every kInterruptCheckPeriod after the first.
constexpr std::uint64_t kPollsPerClockRead = 1024;
constexpr std::chrono::milliseconds kInterruptCheckPeriod{10};

std::size_t align_up(std::size_t bytes) {
  return (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

std::size_t byte_size(const Dims& shape, DataType dtype) {
  const std::int64_t volume = shape.volume();
  return volume <= 0 ? 0 : static_cast<std::size_t>(volume) * dtype_size(dtype);
}

std::int64_t as_key(const void* address) {
  return static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(address));
}

// The largest values profile `profile` allows for shape-tensor input `input`, in its dtype's
// layout (int32 values packed two to an int64 slot).
std::vector<std::int64_t> max_shape_values(const TensorInfo& input, int profile) {
  const std::int64_t volume = input.profiles[static_cast<std::size_t>(profile)].max.volume();
  const auto count = static_cast<std::size_t>(std::max<std::int64_t>(volume, 0));
  std::vector<std::int64_t> values(count + 1, 0);
  const Dims* largest = input.value_profiles.empty()
                            ? nullptr
                            : &input.value_profiles[static_cast<std::size_t>(profile)].max;
  for (std::size_t k = 0; k < count; ++k) {
    const std::int64_t value =
        largest != nullptr && k < static_cast<std::size_t>(largest->rank) ? largest->d[k] : 1;
    if (input.dtype == DataType::Int32) {
      const auto narrow = static_cast<std::int32_t>(value);
      std::memcpy(reinterpret_cast<char*>(values.data()) + k * sizeof(narrow), &narrow,
                  sizeof(narrow));
    } else {
      values[k] = value;
    }
  }
  return values;
}

bool is_aligned(const void* address) {
  return reinterpret_cast<std::uintptr_t>(address) % kAlignment == 0;
}

std::int64_t shape_value(const void* values, std::size_t index, DataType dtype) {
  if (dtype == DataType::Int32) {
    std::int32_t value = 0;
    std::memcpy(&value, static_cast<const char*>(values) + index * sizeof(value), sizeof(value));
    return value;
  }
  std::int64_t value = 0;
  std::memcpy(&value, static_cast<const char*>(values) + index * sizeof(value), sizeof(value));
  return value;
}

}  // namespace

// Memory for a tensor passed in host memory: the session's device buffer, and host staging
// that the device copies from and to: pinned (the only host memory CUDA copies asynchronously),
// or pageable where pinning failed.
struct Session::Staging {
  cuda::DeviceBuffer device;
  cuda::HostBuffer host;
};

struct Session::GraphEntry {
  std::vector<std::int64_t> key;
  cuda::GraphExec exec;
  bool empty = false;  // nothing was captured: nothing to launch
  std::uint64_t last_used = 0;
};

// One device allocation holding every output of one call, handed to the caller. It goes back to
// the pool when the caller drops the last result pointing into it.
struct Session::Block {
  cuda::DeviceBuffer buffer;
};

class Session::DataDependentAllocator final : public OutputAllocator {
 public:
  explicit DataDependentAllocator(Session& session) : session_(session) {}

  void* reallocate(int output, std::size_t bytes, cudaStream_t /*stream*/) noexcept override {
    try {
      Staging& staging = session_.output_staging(output);
      if (staging.device.size() < bytes) {
        staging.device = cuda::DeviceBuffer(align_up(bytes + bytes / 2), session_.device_);
      }
      return staging.device.data();
    } catch (...) {
      return nullptr;  // the executor fails the enqueue, which throws
    }
  }

  void notify_shape(int output, const Dims& shape) noexcept override {
    session_.result_shapes_[static_cast<std::size_t>(output)] = shape;
  }

 private:
  Session& session_;
};

Session::Session(std::shared_ptr<Engine> engine, SessionOptions options)
    : engine_(std::move(engine)),
      device_(engine_->device()),
      options_(std::move(options)),
      executor_(engine_->create_executor()),
      stream_(device_),
      default_ordered_(device_, cuda::StreamOrder::AfterDefault),
      ordering_event_(device_),
      done_event_(device_, false, options_.sync),
      num_inputs_(executor_->signature().inputs().size()),
      num_outputs_(executor_->signature().outputs().size()),
      scratch_(kAlignment, device_),
      graphs_enabled_(options_.cuda_graph && options_.graph_cache_size > 0) {
  const cuda::DeviceScope scope(device_);
  input_capacity_.assign(num_inputs_, kAlignment);
  output_capacity_.assign(num_outputs_, kAlignment);
  data_dependent_.assign(num_outputs_, false);
  input_staging_.resize(num_inputs_);
  output_staging_.resize(num_outputs_);
  input_aligned_.resize(num_inputs_);
  output_aligned_.resize(num_outputs_);
  input_unaligned_.assign(num_inputs_, false);
  output_unaligned_.assign(num_outputs_, false);
  output_direct_.assign(num_outputs_, false);
  output_chunked_.assign(num_outputs_, false);
  shape_values_.resize(num_inputs_);
  current_shapes_.assign(num_inputs_, Dims{});
  for (Dims& shape : current_shapes_) {
    shape.rank = -1;  // nothing set yet
  }
  current_input_addresses_.assign(num_inputs_, nullptr);
  current_output_addresses_.assign(num_outputs_, nullptr);
  input_addresses_.assign(num_inputs_, nullptr);
  output_addresses_.assign(num_outputs_, nullptr);
  output_shapes_.assign(num_outputs_, Dims{});
  result_shapes_.assign(num_outputs_, Dims{});
  graphs_.reserve(options_.graph_cache_size);
  size_buffers();
  std::size_t key_size = 1 + num_inputs_ * (kMaxRank + 3) + num_outputs_ * 2;
  const Signature& sig = signature();
  for (std::size_t i = 0; i < num_inputs_; ++i) {
    if (sig.inputs()[i].host_memory) {
      shape_values_[i].assign(input_capacity_[i], 0);
      key_size += input_capacity_[i] / dtype_size(sig.inputs()[i].dtype);
    }
  }
  key_.reserve(key_size);
  stats_.graphs_enabled = graphs_enabled_;
}

Session::~Session() {
  // Work in flight (an interrupted call's too) still reads the buffers freed below.
  cudaStreamSynchronize(stream_.get());
  cudaStreamSynchronize(default_ordered_.get());
  // The execution context goes first: it refers to the output allocators, shape values and
  // stream below, and nothing promises its destructor leaves them alone.
  graphs_.clear();
  executor_.reset();
}

void Session::size_buffers() {
  const Signature& sig = signature();
  for (const auto* tensors : {&sig.inputs(), &sig.outputs()}) {
    for (const TensorInfo& tensor : *tensors) {
      if (dtype_size(tensor.dtype) == 0) {
        throw Error("tensor '" + tensor.name + "' has the packed dtype " +
                    dtype_name(tensor.dtype) + ", which trtfast sessions do not support");
      }
    }
  }
  for (const TensorInfo& input : sig.inputs()) {
    if (input.host_memory && input.dtype != DataType::Int32 && input.dtype != DataType::Int64) {
      throw Error("input '" + input.name + "' lives in host memory but is " +
                  dtype_name(input.dtype) + "; TensorRT's shape tensors are int32 or int64");
    }
  }
  sizing_values_.reserve(static_cast<std::size_t>(sig.num_profiles()));
  for (int profile = 0; profile < sig.num_profiles(); ++profile) {
    executor_->select_profile(profile, stream_.get());
    // Shape-tensor inputs take their profile's largest values, so outputs are sized for them
    // (prepare grows an output that a call needs larger). The context keeps their addresses
    // until the first call sets new ones, and TensorRT may read host values whenever a shape is
    // set: the values stay alive with the session.
    std::vector<std::vector<std::int64_t>>& largest_values =
        sizing_values_.emplace_back(num_inputs_);
    for (std::size_t i = 0; i < num_inputs_; ++i) {
      const TensorInfo& input = sig.inputs()[i];
      const Dims& largest = input.profiles[static_cast<std::size_t>(profile)].max;
      executor_->set_input_shape(static_cast<int>(i), largest);
      input_capacity_[i] = std::max(input_capacity_[i], align_up(byte_size(largest, input.dtype)));
      if (input.host_memory) {
        largest_values[i] = max_shape_values(input, profile);
        executor_->set_input_address(static_cast<int>(i), largest_values[i].data());
      }
    }
    for (std::size_t j = 0; j < num_outputs_; ++j) {
      const Dims shape = executor_->output_shape(static_cast<int>(j));
      if (shape.is_dynamic()) {
        data_dependent_[j] = true;
      } else {
        output_capacity_[j] =
            std::max(output_capacity_[j], align_up(byte_size(shape, sig.outputs()[j].dtype)));
      }
    }
  }
  stream_.synchronize();
  current_profile_ = -1;  // select again on the first call, with its shapes
  has_data_dependent_ =
      std::find(data_dependent_.begin(), data_dependent_.end(), true) != data_dependent_.end();
  if (has_data_dependent_) {
    allocators_.push_back(std::make_unique<DataDependentAllocator>(*this));
    for (std::size_t j = 0; j < num_outputs_; ++j) {
      if (data_dependent_[j]) {
        executor_->set_output_allocator(static_cast<int>(j), allocators_.back().get());
      }
    }
    // TensorRT cannot capture engines with data-dependent shapes in a graph.
    graphs_enabled_ = false;
  }
  layout_block();
}

// A pooled block holds every output of a call, except those the engine writes elsewhere
// (data-dependent ones into their staging, aliased ones into their input).
void Session::layout_block() {
  block_offsets_.assign(num_outputs_, 0);
  block_size_ = 0;
  for (std::size_t j = 0; j < num_outputs_; ++j) {
    block_offsets_[j] = block_size_;
    const bool elsewhere =
        data_dependent_[j] || signature().aliased_input(static_cast<int>(j)) >= 0;
    block_size_ += elsewhere ? 0 : output_capacity_[j];
  }
}

SessionStats Session::stats() const noexcept {
  stats_.cached_graphs = graphs_.size();
  stats_.graphs_enabled = graphs_enabled_;
  return stats_;
}

bool Session::data_dependent(int output) const noexcept {
  return data_dependent_[static_cast<std::size_t>(output)];
}

const Dims& Session::output_shape(int output) const noexcept {
  return output_shapes_[static_cast<std::size_t>(output)];
}

const Dims& Session::result_shape(int output) const noexcept {
  const auto j = static_cast<std::size_t>(output);
  return data_dependent_[j] ? result_shapes_[j] : output_shapes_[j];
}

const void* Session::host_result(int output) const noexcept {
  const auto& staging = output_staging_[static_cast<std::size_t>(output)];
  return staging ? staging->host.data() : nullptr;
}

Session::Staging& Session::input_staging(int input) {
  const auto i = static_cast<std::size_t>(input);
  return staging(input_staging_[i], input_capacity_[i]);
}

Session::Staging& Session::output_staging(int output) {
  const auto j = static_cast<std::size_t>(output);
  return staging(output_staging_[j], output_capacity_[j]);
}

Session::Staging& Session::staging(std::unique_ptr<Staging>& slot, std::size_t capacity) {
  if (!slot) {
    auto created = std::make_unique<Staging>();
    created->device = cuda::DeviceBuffer(capacity, device_);
    created->host = cuda::HostBuffer(capacity);
    check_host_memory(created->host);
    slot = std::move(created);
    graphs_.clear();  // captured graphs never refer to freed or new memory
  }
  return *slot;
}

std::shared_ptr<Session::Block> Session::acquire_block() {
  for (const std::shared_ptr<Block>& block : blocks_) {
    if (block.use_count() == 1) {  // nobody outside the pool holds it
      return block;
    }
  }
  auto block = std::make_shared<Block>();
  block->buffer = cuda::DeviceBuffer(std::max(block_size_, kAlignment), device_);
  blocks_.push_back(block);
  return block;
}

// Copies from pageable memory are correct, only slower: the staging copies are never part of a
// captured graph (see stage_inputs), so graphs stay on.
void Session::check_host_memory(const cuda::HostBuffer& buffer) {
  if (buffer.pinned() || warned_pageable_) {
    return;
  }
  warned_pageable_ = true;
  if (options_.warn) {
    options_.warn(SessionWarning::PageableStaging,
                  "pinned host memory is unavailable (" + buffer.pinned_failure() +
                      "); this session stages host arrays in pageable memory instead (" +
                      std::to_string(buffer.size()) +
                      " bytes here): its copies between host arrays and the GPU are synchronous "
                      "and slower");
  }
}

void Session::order_after(cudaStream_t producer) {
  const cuda::DeviceScope scope(device_);
  wait_for(producer, device_stream());
}

void Session::wait_for(cudaStream_t producer, cudaStream_t consumer) {
  ordering_event_.record(cuda::StreamView(producer));
  TRTFAST_CUDA_CHECK(cudaStreamWaitEvent(consumer, ordering_event_.get(), 0));
}

void Session::prepare(const TensorArg* inputs) {
  finish_work_in_flight();
  const Signature& sig = signature();
  const int profile = sig.check_inputs(inputs, device_, current_profile_);
  const cuda::DeviceScope scope(device_);
  bool changed = false;
  try {
    if (profile != current_profile_) {
      current_profile_ = -1;  // unknown until the switch succeeds
      executor_changed_ = true;
      executor_->select_profile(profile, stream_.get());
      // TensorRT: not synchronizing the stream of the switch with the stream of the enqueue is
      // undefined behaviour, and the call may run on default_ordered_. Switches are rare.
      stream_.synchronize();
      ++stats_.executor_calls;
      current_profile_ = profile;
      for (Dims& shape : current_shapes_) {
        shape.rank = -1;
      }
      std::fill(current_input_addresses_.begin(), current_input_addresses_.end(), nullptr);
      std::fill(current_output_addresses_.begin(), current_output_addresses_.end(), nullptr);
      changed = true;
    }
    for (std::size_t i = 0; i < num_inputs_; ++i) {
      const bool shape_changed = inputs[i].shape != current_shapes_[i];
      if (shape_changed) {
        current_shapes_[i].rank = -1;
        executor_changed_ = true;
        executor_->set_input_shape(static_cast<int>(i), inputs[i].shape);
        ++stats_.executor_calls;
        current_shapes_[i] = inputs[i].shape;
        changed = true;
      }
      if (sig.inputs()[i].host_memory && load_shape_values(i, inputs[i], shape_changed)) {
        // TensorRT reads shape values at the address when it infers shapes and at enqueue;
        // setting the address again tells it that they changed.
        void* values = shape_values_[i].data();
        current_input_addresses_[i] = nullptr;
        executor_changed_ = true;
        executor_->set_input_address(static_cast<int>(i), values);
        ++stats_.executor_calls;
        current_input_addresses_[i] = values;
        changed = true;
      }
    }
    if (!changed) {
      return;
    }
    for (std::size_t j = 0; j < num_outputs_; ++j) {
      output_shapes_[j] = executor_->output_shape(static_cast<int>(j));
      ++stats_.executor_calls;
      if (data_dependent_[j]) {
        continue;
      }
      const std::size_t bytes = byte_size(output_shapes_[j], sig.outputs()[j].dtype);
      if (bytes > output_capacity_[j]) {
        // An output larger than at the profile maximum: rare, so grow rather than refuse.
        output_capacity_[j] = align_up(bytes);
        output_staging_[j].reset();
        output_aligned_[j] = cuda::DeviceBuffer();
        blocks_.clear();  // blocks still held by callers live on through their owners
        layout_block();
        graphs_.clear();
      }
    }
  } catch (...) {
    // Whatever failed (a shape, a shape query), the next call sets everything again rather than
    // trusting shapes or output shapes this call left half-done.
    forget_executor_state();
    throw;
  }
}

void Session::forget_executor_state() {
  for (Dims& shape : current_shapes_) {
    shape.rank = -1;
  }
  std::fill(current_input_addresses_.begin(), current_input_addresses_.end(), nullptr);
  std::fill(current_output_addresses_.begin(), current_output_addresses_.end(), nullptr);
  executor_changed_ = true;
}

bool Session::load_shape_values(std::size_t input, const TensorArg& arg, bool shape_changed) {
  const std::size_t bytes = byte_size(arg.shape, arg.dtype);
  std::vector<unsigned char>& values = shape_values_[input];
  const bool same = !shape_changed && current_input_addresses_[input] == values.data() &&
                    (bytes == 0 || std::memcmp(values.data(), arg.data, bytes) == 0);
  if (same) {
    return false;
  }
  if (bytes > 0) {
    std::memcpy(values.data(), arg.data, bytes);
  }
  return true;
}

void Session::check_output(int output, const TensorArg& buffer) const {
  const auto j = static_cast<std::size_t>(output);
  const Signature& sig = signature();
  if (data_dependent_[j]) {
    throw InputError("output '" + sig.outputs()[j].name +
                     "': its shape depends on the data, so no buffer can be given for it");
  }
  const int input = sig.aliased_input(output);
  if (input >= 0) {
    throw InputError("output '" + sig.outputs()[j].name + "' shares memory with input '" +
                     sig.inputs()[static_cast<std::size_t>(input)].name +
                     "': the engine writes it in place there, so no buffer can be given for it");
  }
  sig.check_output(output, buffer, output_shapes_[j], device_);
}

void* Session::aligned(cuda::DeviceBuffer& slot, std::size_t capacity, const std::string& tensor,
                       const void* address) {
  if (slot.data() == nullptr) {
    slot = cuda::DeviceBuffer(capacity, device_);
    graphs_.clear();  // captured graphs never refer to freed or new memory
  }
  if (!warned_unaligned_) {
    warned_unaligned_ = true;
    if (options_.warn) {
      char text[32];
      std::snprintf(text, sizeof text, "%p", address);
      options_.warn(SessionWarning::UnalignedStaging,
                    "the device array for '" + tensor + "' starts at " + text +
                        ", which is not 256-byte aligned as TensorRT requires; this session "
                        "copies such arrays through an aligned buffer of its own (one device "
                        "copy each way per call). Pass arrays that start on their allocation "
                        "(a slice such as t[1:] does not; t[1:].clone() does)");
    }
  }
  return slot.data();
}

void Session::resolve_addresses(const TensorArg* inputs, const OutputArg* outputs,
                                std::shared_ptr<Block>& block) {
  const Signature& sig = signature();
  for (std::size_t i = 0; i < num_inputs_; ++i) {
    const TensorArg& arg = inputs[i];
    void* address = nullptr;
    input_unaligned_[i] = false;
    if (sig.inputs()[i].host_memory) {
      address = shape_values_[i].data();  // TensorRT reads shape tensors from host memory
    } else if (arg.location == Location::Host) {
      address = input_staging(static_cast<int>(i)).device.data();
    } else if (arg.shape.volume() == 0) {
      address = scratch_.data();
    } else if (!is_aligned(arg.data)) {
      input_unaligned_[i] = true;
      address = aligned(input_aligned_[i], input_capacity_[i], sig.inputs()[i].name, arg.data);
    } else {
      address = arg.data;
    }
    input_addresses_[i] = address;
  }
  for (std::size_t j = 0; j < num_outputs_; ++j) {
    const OutputArg& out = outputs[j];
    void* address = nullptr;
    output_unaligned_[j] = false;
    const int input = sig.aliased_input(static_cast<int>(j));
    if (input >= 0) {
      // The engine updates the input in place: the output is bound where the input is.
      const auto i = static_cast<std::size_t>(input);
      if (out.target == OutputTarget::Device ||
          (out.target == OutputTarget::Pooled && inputs[i].location == Location::Host)) {
        throw InputError("output '" + sig.outputs()[j].name + "' shares memory with input '" +
                         sig.inputs()[i].name +
                         "': its result is that input updated in place (a device input), or a "
                         "host array (a host input), never a buffer of its own");
      }
      address = input_addresses_[i];
      if (out.target == OutputTarget::Host) {
        output_staging(static_cast<int>(j));  // its host side receives the result
      }
    } else if (data_dependent_[j] || out.target == OutputTarget::Host) {
      address = output_staging(static_cast<int>(j)).device.data();
    } else if (out.target == OutputTarget::Device) {
      if (output_shapes_[j].volume() == 0) {
        address = scratch_.data();
      } else if (!is_aligned(out.tensor.data)) {
        output_unaligned_[j] = true;
        address = aligned(output_aligned_[j], output_capacity_[j], sig.outputs()[j].name,
                          out.tensor.data);
      } else {
        address = out.tensor.data;
      }
    } else {
      if (!block) {
        block = acquire_block();
      }
      address = static_cast<char*>(block->buffer.data()) + block_offsets_[j];
    }
    output_addresses_[j] = address;
  }
}

void Session::bind_addresses() {
  for (std::size_t i = 0; i < num_inputs_; ++i) {
    if (input_addresses_[i] != current_input_addresses_[i]) {
      current_input_addresses_[i] = nullptr;
      executor_changed_ = true;
      executor_->set_input_address(static_cast<int>(i), input_addresses_[i]);
      ++stats_.executor_calls;
      current_input_addresses_[i] = input_addresses_[i];
    }
  }
  for (std::size_t j = 0; j < num_outputs_; ++j) {
    if (output_addresses_[j] != current_output_addresses_[j]) {
      current_output_addresses_[j] = nullptr;
      executor_changed_ = true;
      executor_->set_output_address(static_cast<int>(j), output_addresses_[j]);
      ++stats_.executor_calls;
      current_output_addresses_[j] = output_addresses_[j];
    }
  }
}

void Session::build_key(const TensorArg* inputs, const OutputArg* outputs) {
  const Signature& sig = signature();
  key_.clear();
  key_.push_back(current_profile_);
  for (std::size_t i = 0; i < num_inputs_; ++i) {
    const TensorArg& arg = inputs[i];
    key_.push_back(arg.location == Location::Host ? -arg.shape.rank - 1 : arg.shape.rank);
    for (int k = 0; k < arg.shape.rank; ++k) {
      key_.push_back(arg.shape.d[static_cast<std::size_t>(k)]);
    }
    key_.push_back(as_key(input_addresses_[i]));
    if (sig.inputs()[i].host_memory) {
      // A graph holds what TensorRT made of the values at capture.
      const auto count = static_cast<std::size_t>(std::max<std::int64_t>(arg.shape.volume(), 0));
      for (std::size_t k = 0; k < count; ++k) {
        key_.push_back(shape_value(shape_values_[i].data(), k, arg.dtype));
      }
    }
  }
  for (std::size_t j = 0; j < num_outputs_; ++j) {
    key_.push_back(static_cast<std::int64_t>(outputs[j].target));
    key_.push_back(as_key(output_addresses_[j]));
  }
}

// Copies of host inputs from host staging to the device, and of unaligned device inputs into
// their aligned buffers. Never captured: a copy between pinned and device memory queued on a
// stream costs less than the same copy as a graph node, a graph could not hold a copy from
// pageable staging at all, and a caller's unaligned address may differ at every call.
void Session::stage_inputs(const TensorArg* inputs, cudaStream_t stream) {
  const Signature& sig = signature();
  for (std::size_t i = 0; i < num_inputs_; ++i) {
    const TensorInfo& info = sig.inputs()[i];
    if (info.host_memory) {
      continue;
    }
    const std::size_t bytes = byte_size(inputs[i].shape, info.dtype);
    if (inputs[i].location == Location::Host) {
      stage_host_input(i, inputs[i], bytes, stream);
    } else if (input_unaligned_[i]) {
      cuda::copy_async(input_addresses_[i], inputs[i].data, bytes, cuda::StreamView(stream));
    }
  }
}

void Session::stage_outputs(const TensorArg* inputs, const OutputArg* outputs,
                            cudaStream_t stream) {
  const Signature& sig = signature();
  for (std::size_t j = 0; j < num_outputs_; ++j) {
    if (data_dependent_[j]) {
      continue;
    }
    const std::size_t bytes = byte_size(output_shapes_[j], sig.outputs()[j].dtype);
    const int input = sig.aliased_input(static_cast<int>(j));
    if (outputs[j].target == OutputTarget::Host) {
      stage_host_output(j, outputs[j], bytes, stream);
    } else if (output_unaligned_[j]) {
      cuda::copy_async(outputs[j].tensor.data, output_addresses_[j], bytes,
                       cuda::StreamView(stream));
    } else if (input >= 0 && input_unaligned_[static_cast<std::size_t>(input)]) {
      // Updated in place in the aligned copy: back into the caller's array.
      const auto i = static_cast<std::size_t>(input);
      cuda::copy_async(inputs[i].data, input_addresses_[i], bytes, cuda::StreamView(stream));
    }
  }
}

// A page-locked array goes by DMA straight to the device. A pageable one is copied into staging
// first; a large one in chunks, each sent while the next is copied, so the link and the host copy
// overlap. The previous call's work is done, so no copy still reads this staging.
void Session::stage_host_input(std::size_t input, const TensorArg& arg, std::size_t bytes,
                               cudaStream_t stream) {
  Staging& staging = *input_staging_[input];
  const cuda::HostCopyTuning& tuning = cuda::host_copy_tuning();
  if (arg.pinned && tuning.zero_copy) {
    cuda::copy_async(staging.device.data(), arg.data, bytes, cuda::StreamView(stream));
    stats_.direct_bytes += bytes;
    return;
  }
  const bool chunked = bytes >= tuning.pipeline_min_bytes && staging.host.pinned();
  const std::size_t chunk = chunked ? tuning.chunk_bytes : bytes;
  auto* host = static_cast<char*>(staging.host.data());
  auto* device = static_cast<char*>(staging.device.data());
  const auto* source = static_cast<const char*>(arg.data);
  // Pageable staging (pinning failed) is read by the driver's own copy on the CPU, which
  // streaming stores would send to memory first.
  const cuda::NextReader next =
      staging.host.pinned() ? cuda::NextReader::Device : cuda::NextReader::Host;
  for (std::size_t offset = 0; offset < bytes; offset += chunk) {
    const std::size_t size = std::min(chunk, bytes - offset);
    cuda::host_copy(host + offset, source + offset, size, next);
    cuda::copy_async(device + offset, host + offset, size, cuda::StreamView(stream));
  }
  stats_.staged_bytes += bytes;
}

// A caller's page-locked array receives its output by DMA. A large pageable one is copied out of
// staging chunk by chunk as each chunk's event fires (copy_out_chunks); the rest after the call.
void Session::stage_host_output(std::size_t output, const OutputArg& out, std::size_t bytes,
                                cudaStream_t stream) {
  const cuda::HostCopyTuning& tuning = cuda::host_copy_tuning();
  const auto* device = static_cast<const char*>(output_addresses_[output]);
  output_direct_[output] = out.tensor.data != nullptr && out.tensor.pinned && tuning.zero_copy;
  if (output_direct_[output]) {
    cuda::copy_async(out.tensor.data, device, bytes, cuda::StreamView(stream));
    stats_.direct_bytes += bytes;
    return;
  }
  Staging& staging = *output_staging_[output];
  auto* host = static_cast<char*>(staging.host.data());
  output_chunked_[output] =
      out.tensor.data != nullptr && bytes >= tuning.pipeline_min_bytes && staging.host.pinned();
  if (!output_chunked_[output]) {
    cuda::copy_async(host, device, bytes, cuda::StreamView(stream));
    return;
  }
  for (std::size_t offset = 0; offset < bytes; offset += tuning.chunk_bytes) {
    const std::size_t size = std::min(tuning.chunk_bytes, bytes - offset);
    cuda::copy_async(host + offset, device + offset, size, cuda::StreamView(stream));
    if (out_chunks_.size() == chunk_events_.size()) {
      chunk_events_.emplace_back(device_, false, options_.sync);
    }
    chunk_events_[out_chunks_.size()].record(cuda::StreamView(stream));
    out_chunks_.push_back(OutChunk{output, offset, size});
  }
}

void Session::copy_out_chunks(const OutputArg* outputs) {
  for (std::size_t k = 0; k < out_chunks_.size(); ++k) {
    const OutChunk& chunk = out_chunks_[k];
    wait_for_event(chunk_events_[k]);
    const auto* host = static_cast<const char*>(output_staging_[chunk.output]->host.data());
    cuda::host_copy(static_cast<char*>(outputs[chunk.output].tensor.data) + chunk.offset,
                    host + chunk.offset, chunk.bytes, cuda::NextReader::Host);
    stats_.staged_bytes += chunk.bytes;
  }
}

// The device work of one call: the engine's work (what a graph holds) between the copies.
void Session::record_work(const TensorArg* inputs, const OutputArg* outputs, cudaStream_t stream) {
  stage_inputs(inputs, stream);
  executor_->enqueue(stream);
  executor_changed_ = false;  // TensorRT has applied every change
  stage_outputs(inputs, outputs, stream);
}

void Session::run_plain(const TensorArg* inputs, const OutputArg* outputs, cudaStream_t stream) {
  record_work(inputs, outputs, stream);
  ++stats_.plain_runs;
}

void Session::disable_graphs(const std::string& reason) {
  graphs_enabled_ = false;
  graphs_.clear();
  if (options_.warn) {
    options_.warn(SessionWarning::GraphFallback,
                  "CUDA graph capture failed, so this session runs without CUDA graphs from now "
                  "on: " +
                      reason);
  }
}

bool Session::capture() {
  // Thread-local: other threads' CUDA calls neither break this capture nor fail because of it.
  cudaError_t status = cudaStreamBeginCapture(stream_.get(), cudaStreamCaptureModeThreadLocal);
  if (status != cudaSuccess) {
    cudaGetLastError();
    disable_graphs(std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(status));
    return false;
  }
  std::string failure;
  try {
    executor_->enqueue(stream_.get());
  } catch (const std::exception& error) {
    failure = error.what();
  }
  cudaGraph_t raw = nullptr;
  status = cudaStreamEndCapture(stream_.get(), &raw);
  cuda::Graph graph(raw);
  if (failure.empty() && status != cudaSuccess) {
    failure = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(status);
  }
  cudaGetLastError();  // a broken capture leaves a (non-sticky) error behind
  if (failure.empty() && raw == nullptr) {
    failure = "cudaStreamEndCapture returned no graph";
  }
  if (!failure.empty()) {
    disable_graphs(failure);
    return false;
  }
  auto entry = std::make_unique<GraphEntry>();
  try {
    entry->empty = graph.node_count() == 0;
    if (!entry->empty) {
      entry->exec = cuda::GraphExec(graph);
    }
  } catch (const std::exception& error) {
    disable_graphs(error.what());
    return false;
  }
  entry->key = key_;
  entry->last_used = ++tick_;
  if (graphs_.size() >= options_.graph_cache_size) {
    auto oldest =
        std::min_element(graphs_.begin(), graphs_.end(),
                         [](const auto& a, const auto& b) { return a->last_used < b->last_used; });
    graphs_.erase(oldest);
  }
  graphs_.push_back(std::move(entry));
  ++stats_.graph_captures;
  return true;
}

void Session::synchronize(cudaStream_t stream) {
  done_event_.record(cuda::StreamView(stream));
  wait_until_done();
}

void Session::wait_until_done() { wait_for_event(done_event_); }

void Session::wait_for_event(const cuda::Event& event) {
  if (options_.sync == cuda::SyncMode::Blocking) {
    event.synchronize();  // sleeps until the GPU wakes it
    return;
  }
  // Spins as cudaEventSynchronize would, with or without a hook, so that a session waits alike
  // from C++ and from Python. A short wait reads no clock and asks nobody; a long one asks
  // options_.interrupted every kInterruptCheckPeriod.
  std::uint64_t polls = 0;
  std::chrono::steady_clock::time_point next_check;
  while (!event.query()) {
    if (++polls % kPollsPerClockRead != 0) {
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (polls == kPollsPerClockRead) {
      next_check = now + kInterruptCheckPeriod;
    } else if (now >= next_check) {
      if (options_.interrupted && options_.interrupted()) {
        throw Interrupted("the wait for the GPU was interrupted");
      }
      next_check = now + kInterruptCheckPeriod;
    }
  }
}

void Session::finish_work_in_flight() {
  if (!in_flight_) {
    return;
  }
  try {
    wait_until_done();  // done_event_ still marks the end of the interrupted call's work
  } catch (const Interrupted&) {
    throw;  // still in flight
  } catch (...) {
    in_flight_ = false;  // the work failed: nothing is left to wait for
    throw;
  }
  in_flight_ = false;
}

void Session::execute(const TensorArg* inputs, const OutputArg* outputs, DeviceOutput* pooled) {
  // Before anything below reuses a buffer (staging, a pooled block) the interrupted call's work
  // may still read or write.
  finish_work_in_flight();
  const Signature& sig = signature();
  const cuda::DeviceScope scope(device_);
  std::shared_ptr<Block> block;
  resolve_addresses(inputs, outputs, block);

  bool device_io = false;
  for (std::size_t i = 0; i < num_inputs_; ++i) {
    // Host inputs are staged with the copies (stage_inputs); prepare took shape values.
    device_io =
        device_io || (!sig.inputs()[i].host_memory && inputs[i].location == Location::Device);
  }
  for (std::size_t j = 0; j < num_outputs_; ++j) {
    device_io = device_io || outputs[j].target != OutputTarget::Host;
  }
  for (std::size_t j = 0; j < num_outputs_; ++j) {
    if (data_dependent_[j]) {
      result_shapes_[j].rank = -1;
    }
    output_direct_[j] = false;
    output_chunked_[j] = false;
  }
  out_chunks_.clear();

  // Device memory the caller hands over may still be written by work it queued: on its stream,
  // or (without one) on the default stream, where torch and cupy work by default.
  const cudaStream_t stream = device_io ? device_stream() : stream_.get();
  try {
    if (options_.use_caller_stream) {
      wait_for(options_.caller_stream, stream);
    }
    bool done = false;
    if (graphs_enabled_) {
      build_key(inputs, outputs);
      GraphEntry* hit = nullptr;
      for (const auto& entry : graphs_) {
        if (entry->key == key_) {
          hit = entry.get();
          break;
        }
      }
      // The graph holds the addresses, but TensorRT applies a changed address (like a changed
      // shape or profile) at the next enqueue only: the executor must hold the graph's state.
      bind_addresses();
      if (hit != nullptr && !executor_changed_) {
        hit->last_used = ++tick_;
        stage_inputs(inputs, stream);
        if (!hit->empty) {
          hit->exec.launch(cuda::StreamView(stream));
        }
        stage_outputs(inputs, outputs, stream);
        ++stats_.graph_launches;
        done = true;
      } else if (hit != nullptr) {
        // A change since the last enqueue: this call applies it, the next one replays.
        hit->last_used = ++tick_;
        run_plain(inputs, outputs, stream);
        done = true;
      } else {
        // Enqueue once outside capture (first enqueues may allocate or synchronize), on the
        // stream the capture runs on, and wait for it, as trtexec does; then capture the
        // engine's work for the calls to come. Replays may run on any stream.
        if (stream != stream_.get()) {
          wait_for(stream, stream_.get());
        }
        run_plain(inputs, outputs, stream_.get());
        synchronize(stream_.get());
        capture();
        done = true;
      }
    }
    if (!done) {
      bind_addresses();
      run_plain(inputs, outputs, stream);
    }
    // The call returns only once its work is done, so whatever the caller queues next on its
    // stream comes after it without an event. done_event_ is recorded before the chunks are
    // copied out, so an interrupted wait leaves it marking the end of this call's work.
    done_event_.record(cuda::StreamView(stream));
    copy_out_chunks(outputs);
    wait_until_done();
    if (has_data_dependent_) {
      finish_data_dependent(outputs, pooled, stream);
    }
  } catch (const Interrupted&) {
    // Waiting here would defeat the interruption: the next call waits instead.
    in_flight_ = true;
    throw;
  } catch (...) {
    // Leave nothing in flight that reads the buffers of a failed call: a first call of a new
    // graph key runs its work on the session's own stream, whatever the caller's.
    cudaStreamSynchronize(stream);
    if (stream != stream_.get()) {
      cudaStreamSynchronize(stream_.get());
    }
    cudaGetLastError();
    throw;
  }
  ++stats_.calls;

  for (std::size_t j = 0; j < num_outputs_; ++j) {
    if (data_dependent_[j]) {
      continue;
    }
    const OutputArg& out = outputs[j];
    if (out.target == OutputTarget::Host && out.tensor.data != nullptr) {
      if (!output_direct_[j] && !output_chunked_[j]) {
        const std::size_t bytes = byte_size(output_shapes_[j], sig.outputs()[j].dtype);
        cuda::host_copy(out.tensor.data, output_staging_[j]->host.data(), bytes,
                        cuda::NextReader::Host);
        stats_.staged_bytes += bytes;
      }
    } else if (out.target == OutputTarget::Pooled) {
      const int input = sig.aliased_input(static_cast<int>(j));
      if (input >= 0) {
        // Updated in place: the result is the caller's input, which the caller owns.
        pooled[j].owner = nullptr;
        pooled[j].data = inputs[static_cast<std::size_t>(input)].data;
        continue;
      }
      // Aliasing: shares the block's count, allocates nothing.
      pooled[j].owner = std::shared_ptr<const void>(block, output_addresses_[j]);
      pooled[j].data = output_addresses_[j];
    }
  }
}

void Session::finish_data_dependent(const OutputArg* outputs, DeviceOutput* pooled,
                                    cudaStream_t stream) {
  const Signature& sig = signature();
  bool copied = false;
  for (std::size_t j = 0; j < num_outputs_; ++j) {
    if (!data_dependent_[j]) {
      continue;
    }
    const Dims& shape = result_shapes_[j];
    if (shape.rank < 0 || shape.is_dynamic()) {
      throw Error("the engine did not report the shape of output '" + sig.outputs()[j].name + "'");
    }
    const std::size_t bytes = byte_size(shape, sig.outputs()[j].dtype);
    Staging& staging = output_staging(static_cast<int>(j));
    if (outputs[j].target == OutputTarget::Pooled) {
      auto buffer = std::make_shared<cuda::DeviceBuffer>(bytes, device_);
      cuda::copy_async(buffer->data(), staging.device.data(), bytes, cuda::StreamView(stream));
      pooled[j].data = buffer->data();
      pooled[j].owner = std::move(buffer);
    } else {
      if (staging.host.size() < bytes) {
        staging.host = cuda::HostBuffer(align_up(bytes + bytes / 2));
        check_host_memory(staging.host);
      }
      cuda::copy_async(staging.host.data(), staging.device.data(), bytes, cuda::StreamView(stream));
    }
    copied = true;
  }
  if (copied) {
    synchronize(stream);
  }
}

void Session::run(const TensorArg* inputs, const OutputArg* outputs, DeviceOutput* pooled) {
  prepare(inputs);
  for (std::size_t j = 0; j < num_outputs_; ++j) {
    if (outputs[j].target != OutputTarget::Pooled && outputs[j].tensor.data != nullptr) {
      check_output(static_cast<int>(j), outputs[j].tensor);
    }
  }
  execute(inputs, outputs, pooled);
}

}  // namespace trtfast
