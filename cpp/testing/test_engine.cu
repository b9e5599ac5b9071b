#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "test_engine.hpp"
#include "trtfast/cuda.hpp"
#include "trtfast/error.hpp"

namespace trtfast::testing {

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(std::int64_t count) {
  return static_cast<unsigned>(std::min<std::int64_t>((count + kThreads - 1) / kThreads, 4096));
}

// __fmul_rn/__fadd_rn: no fused multiply-add, so results equal numpy's float32 bit for bit.
__global__ void affine_kernel(const float* x, float* y, std::int64_t count, float a, float b) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    y[i] = __fadd_rn(__fmul_rn(a, x[i]), b);
  }
}

// The element count the executor's shape state holds for input 0 (see TestExecutor::upload_state),
// never more than the launch was sized for.
__device__ std::int64_t state_count(const long long* state, std::int64_t launched) {
  return static_cast<std::int64_t>(*state) < launched ? static_cast<std::int64_t>(*state)
                                                      : launched;
}

__global__ void affine_state_kernel(const float* x, float* y, const long long* state,
                                    std::int64_t launched, float a, float b) {
  const std::int64_t count = state_count(state, launched);
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    y[i] = __fadd_rn(__fmul_rn(a, x[i]), b);
  }
}

__global__ void add_bias_kernel(const float* x, const float* bias, float* sum,
                                const long long* state, std::int64_t launched,
                                std::int64_t features) {
  const std::int64_t count = state_count(state, launched);
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    sum[i] = __fadd_rn(x[i], bias[i % features]);
  }
}

__global__ void add_kernel(const float* x, const float* update, float* sum, const long long* state,
                           std::int64_t launched) {
  const std::int64_t count = state_count(state, launched);
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    sum[i] = __fadd_rn(x[i], update[i]);
  }
}

__global__ void take_columns_kernel(const float* x, float* y, const long long* state,
                                    std::int64_t launched, std::int64_t features,
                                    std::int64_t columns, float a, float b) {
  const std::int64_t count = state_count(state, launched) / features * columns;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    y[i] = __fadd_rn(__fmul_rn(a, x[i / columns * features + i % columns]), b);
  }
}

__global__ void count_rows_kernel(const float* x, int* positives, const long long* state,
                                  std::int64_t launched_rows, std::int64_t features) {
  const std::int64_t rows = state_count(state, launched_rows * features) / features;
  for (std::int64_t row = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
       row < rows; row += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    int total = 0;
    for (std::int64_t k = 0; k < features; ++k) {
      total += x[row * features + k] > 0.0f ? 1 : 0;
    }
    positives[row] = total;
  }
}

// One thread, in order: tests use small inputs, and order makes results deterministic.
__global__ void count_positive_kernel(const float* x, std::int64_t count, long long* total) {
  long long found = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    found += x[i] > 0.0f ? 1 : 0;
  }
  *total = found;
}

__global__ void gather_positive_kernel(const float* x, std::int64_t count, float* values) {
  std::int64_t next = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    if (x[i] > 0.0f) {
      values[next++] = x[i];
    }
  }
}

__device__ unsigned long long global_timer() {
  unsigned long long now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  return now;
}

__global__ void delay_kernel(long long nanoseconds) {
  const unsigned long long start = global_timer();
  while (global_timer() - start < static_cast<unsigned long long>(nanoseconds)) {
    __nanosleep(1000);
  }
}

void check_launch(const char* kernel) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    cuda::throw_cuda_error(status, kernel, __FILE__, __LINE__);
  }
}

// TRTFAST_CUDA_CHECK for this module's calls: they go to its own CUDA runtime (see
// CMakeLists.txt), whose last error the core's check cannot clear, so a failure here (a broken
// capture) would be reported again by the next launch.
void check(cudaError_t status, const char* call) {
  if (status != cudaSuccess) {
    cudaGetLastError();
    cuda::throw_cuda_error(status, call, __FILE__, __LINE__);
  }
}

TensorInfo tensor(const char* name, DataType dtype, const Dims& shape) {
  TensorInfo info;
  info.name = name;
  info.dtype = dtype;
  info.shape = shape;
  return info;
}

Signature make_signature(const TestEngineOptions& options) {
  const auto count = static_cast<int>(options.profiles.size());
  const std::int64_t f = options.features;
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
  TensorInfo x;
  x.name = "x";
  x.dtype = DataType::Float32;
  if (options.kind == TestKind::Positives) {
    x.shape = Dims{-1};
    for (const BatchProfile& p : options.profiles) {
      x.profiles.push_back({Dims{p.min}, Dims{p.opt}, Dims{p.max}});
    }
  } else {
    x.shape = Dims{-1, f};
    for (const BatchProfile& p : options.profiles) {
      x.profiles.push_back({Dims{p.min, f}, Dims{p.opt, f}, Dims{p.max, f}});
    }
  }
  if (!options.io_format.empty()) {
    x.nonlinear_format = options.io_format + " in profile 0";
  }
  if (options.kind == TestKind::Accumulate) {
    x.name = "cache";
  }
  inputs.push_back(x);
  switch (options.kind) {
    case TestKind::Affine:
      outputs.push_back(tensor("y", DataType::Float32, Dims{-1, f}));
      break;
    case TestKind::TakeColumns: {
      TensorInfo k = tensor("k", DataType::Int64, Dims{1});
      k.host_memory = true;
      for (std::size_t p = 0; p < options.profiles.size(); ++p) {
        k.value_profiles.push_back({Dims{1}, Dims{f}, Dims{f}});
      }
      inputs.push_back(k);
      outputs.push_back(tensor("y", DataType::Float32, Dims{-1, -1}));
      break;
    }
    case TestKind::Accumulate: {
      TensorInfo update = x;
      update.name = "update";
      inputs.push_back(update);
      TensorInfo cache_out = tensor("cache_out", DataType::Float32, Dims{-1, f});
      cache_out.aliased_input = "cache";
      outputs.push_back(cache_out);
      break;
    }
    case TestKind::TwoOutputs:
      inputs.push_back(tensor("bias", DataType::Float32, Dims{f}));
      outputs.push_back(tensor("sum", DataType::Float32, Dims{-1, f}));
      outputs.push_back(tensor("positives", DataType::Int32, Dims{-1}));
      break;
    case TestKind::Positives:
      outputs.push_back(tensor("values", DataType::Float32, Dims{-1}));
      break;
  }
  return Signature(std::move(inputs), std::move(outputs), count);
}

constexpr std::uintptr_t kAddressAlignment =
    256;  // setTensorAddress: "at least 256-byte alignment"

class TestExecutor final : public Executor {
 public:
  explicit TestExecutor(std::shared_ptr<TestEngine> engine)
      : engine_(std::move(engine)),
        options_(engine_->options()),
        signature_(engine_->signature()),
        shapes_(signature_.inputs().size()),
        inputs_(signature_.inputs().size(), nullptr),
        outputs_(signature_.outputs().size(), nullptr),
        allocators_(signature_.outputs().size(), nullptr),
        state_(sizeof(long long) * signature_.inputs().size(), options_.device),
        state_host_(sizeof(long long) * signature_.inputs().size()) {
    forget_shapes();
    if (options_.kind == TestKind::Positives) {
      count_device_ = cuda::DeviceBuffer(sizeof(long long), options_.device);
      count_host_ = cuda::PinnedBuffer(sizeof(long long));
    }
    engine_->executors_created.fetch_add(1);
  }

  const Signature& signature() const noexcept override { return signature_; }

  void select_profile(int profile, cudaStream_t /*stream*/) override {
    if (profile < 0 || profile >= signature_.num_profiles()) {
      throw Error("test executor: no profile " + std::to_string(profile));
    }
    profile_ = profile;
    forget_shapes();  // as TensorRT: shapes are set again after a switch
    state_pending_ = true;
  }

  void set_input_shape(int input, const Dims& shape) override {
    const TensorInfo& info = signature_.inputs()[static_cast<std::size_t>(input)];
    const ProfileRange& range = info.profiles[static_cast<std::size_t>(profile_)];
    bool fits = shape.rank == info.shape.rank;
    for (int i = 0; fits && i < shape.rank; ++i) {
      const auto k = static_cast<std::size_t>(i);
      fits = shape.d[k] >= range.min.d[k] && shape.d[k] <= range.max.d[k];
    }
    if (!fits) {
      throw Error("test executor: shape " + shape.str() + " of input '" + info.name +
                  "' is outside profile " + std::to_string(profile_));
    }
    shapes_[static_cast<std::size_t>(input)] = shape;
    state_pending_ = true;
  }

  void set_input_address(int input, void* address) override {
    const TensorInfo& info = signature_.inputs()[static_cast<std::size_t>(input)];
    if (info.host_memory) {
      require_host(info.name, address);
    } else {
      require_aligned(info.name, address);
    }
    inputs_[static_cast<std::size_t>(input)] = address;
    state_pending_ = true;
  }

  void set_output_address(int output, void* address) override {
    require_aligned(signature_.outputs()[static_cast<std::size_t>(output)].name, address);
    outputs_[static_cast<std::size_t>(output)] = address;
    state_pending_ = true;
  }

  Dims output_shape(int output) override {
    if (engine_->fail_output_shape.load()) {
      throw Error("test executor: the output-shape query failed, as the test asked");
    }
    require_shapes();
    const Dims& x = shapes_[0];
    switch (options_.kind) {
      case TestKind::Affine:
      case TestKind::Accumulate:
        return x;
      case TestKind::TwoOutputs:
        return output == 0 ? x : Dims{x.d[0]};
      case TestKind::Positives:
        return Dims{-1};
      case TestKind::TakeColumns:
        return Dims{x.d[0], columns()};
    }
    return x;
  }

  void set_output_allocator(int output, OutputAllocator* allocator) override {
    allocators_[static_cast<std::size_t>(output)] = allocator;
  }

  void enqueue(cudaStream_t stream) override {
    engine_->enqueue_count.fetch_add(1);
    if (engine_->fail_enqueue.load()) {
      throw Error("test executor: enqueue failed, as the test asked");
    }
    require_shapes();
    for (void* address : inputs_) {
      if (address == nullptr) {
        throw Error("test executor: an input address is not set");
      }
    }
    if (state_pending_) {
      upload_state();
    }
    if (options_.delay_ns > 0) {
      delay_kernel<<<1, 1, 0, stream>>>(options_.delay_ns);
      check_launch("delay_kernel");
    }
    if (options_.break_capture) {
      // Legal outside capture; inside it, this invalidates the capture.
      check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    }
    const auto* x = static_cast<const float*>(inputs_[0]);
    const std::int64_t count = shapes_[0].volume();
    const auto* state = static_cast<const long long*>(state_.data());
    switch (options_.kind) {
      case TestKind::Affine:
        require_output(0);
        if (count > 0) {
          affine_state_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
              x, static_cast<float*>(outputs_[0]), state, count, options_.a, options_.b);
          check_launch("affine_state_kernel");
        }
        break;
      case TestKind::TwoOutputs: {
        require_output(0);
        require_output(1);
        const std::int64_t rows = shapes_[0].d[0];
        if (count > 0) {
          add_bias_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
              x, static_cast<const float*>(inputs_[1]), static_cast<float*>(outputs_[0]), state,
              count, options_.features);
          check_launch("add_bias_kernel");
        }
        if (rows > 0) {
          count_rows_kernel<<<blocks_for(rows), kThreads, 0, stream>>>(
              x, static_cast<int*>(outputs_[1]), state, rows, options_.features);
          check_launch("count_rows_kernel");
        }
        break;
      }
      case TestKind::Positives:
        enqueue_positives(x, count, stream);
        break;
      case TestKind::TakeColumns: {
        require_output(0);
        // As TensorRT: shape values are read from host memory when the work is enqueued.
        const std::int64_t k = columns();
        if (count > 0) {
          take_columns_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
              x, static_cast<float*>(outputs_[0]), state, count, options_.features, k, options_.a,
              options_.b);
          check_launch("take_columns_kernel");
        }
        break;
      }
      case TestKind::Accumulate:
        require_output(0);
        if (outputs_[0] != inputs_[0]) {
          throw Error(
              "test executor: output 'cache_out' is aliased to input 'cache' and must be "
              "bound at its address");
        }
        if (count > 0) {
          add_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
              x, static_cast<const float*>(inputs_[1]), static_cast<float*>(outputs_[0]), state,
              count);
          check_launch("add_kernel");
        }
        break;
    }
  }

 private:
  void forget_shapes() {
    for (Dims& shape : shapes_) {
      shape.rank = -1;
    }
  }

  void require_shapes() const {
    for (const Dims& shape : shapes_) {
      if (shape.rank < 0) {
        throw Error("test executor: an input shape is not set");
      }
    }
  }

  void require_output(std::size_t output) const {
    if (outputs_[output] == nullptr) {
      throw Error("test executor: an output address is not set");
    }
  }

  static void require_aligned(const std::string& tensor, const void* address) {
    if (reinterpret_cast<std::uintptr_t>(address) % kAddressAlignment != 0) {
      throw Error("test executor: the address of tensor '" + tensor +
                  "' is not 256-byte aligned, which TensorRT refuses");
    }
  }

  // TensorRT reads shape tensors (TensorLocation::kHOST) on the host.
  static void require_host(const std::string& tensor, const void* address) {
    cudaPointerAttributes attributes{};
    if (address == nullptr || (cudaPointerGetAttributes(&attributes, address) == cudaSuccess &&
                               attributes.type == cudaMemoryTypeDevice)) {
      cudaGetLastError();
      throw Error("test executor: shape tensor '" + tensor + "' must be bound to host memory");
    }
    cudaGetLastError();
  }

  // The value of shape tensor k, read from host memory as TensorRT reads it; it must be set.
  std::int64_t columns() const {
    const void* values = inputs_[1];
    if (values == nullptr) {
      throw Error("test executor: the values of shape tensor 'k' are not set");
    }
    std::int64_t k = 0;
    std::memcpy(&k, values, sizeof(k));
    if (k < 1 || k > options_.features) {
      throw Error("test executor: shape tensor 'k' is " + std::to_string(k) + ", outside 1.." +
                  std::to_string(options_.features));
    }
    return k;
  }

  // The shape-dependent state the kernels read (each input's element count), written when the
  // first enqueue after a change runs, outside any stream: inside a graph capture this copy
  // fails the capture, and a replayed graph reads whatever state the last plain enqueue left.
  // From pinned memory, cudaMemcpy returns once the copy is done (from pageable memory it may
  // return before the data reaches the device, and a kernel on another stream could read it
  // first).
  void upload_state() {
    auto* volumes = static_cast<long long*>(state_host_.data());
    for (std::size_t i = 0; i < shapes_.size(); ++i) {
      volumes[i] = static_cast<long long>(shapes_[i].volume());
    }
    check(cudaMemcpy(state_.data(), volumes, shapes_.size() * sizeof(long long),
                     cudaMemcpyHostToDevice),
          "cudaMemcpy");
    state_pending_ = false;
  }

  // As TensorRT does for data-dependent shapes: learn the size, ask for memory, report the shape.
  void enqueue_positives(const float* x, std::int64_t count, cudaStream_t stream) {
    OutputAllocator* allocator = allocators_[0];
    if (allocator == nullptr) {
      throw Error("test executor: output 'values' has a data-dependent shape and no allocator");
    }
    long long found = 0;
    if (count > 0) {
      count_positive_kernel<<<1, 1, 0, stream>>>(x, count,
                                                 static_cast<long long*>(count_device_.data()));
      check_launch("count_positive_kernel");
      cuda::copy_async(count_host_.data(), count_device_.data(), sizeof(long long),
                       cuda::StreamView(stream));
      check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
      found = *static_cast<const long long*>(count_host_.data());
    }
    const std::size_t bytes =
        std::max<std::size_t>(static_cast<std::size_t>(found) * sizeof(float), 1);
    void* values = allocator->reallocate(0, bytes, stream);
    if (values == nullptr) {
      throw Error("test executor: no memory for output 'values'");
    }
    if (found > 0) {
      gather_positive_kernel<<<1, 1, 0, stream>>>(x, count, static_cast<float*>(values));
      check_launch("gather_positive_kernel");
    }
    allocator->notify_shape(0, Dims{found});
  }

  std::shared_ptr<TestEngine> engine_;
  const TestEngineOptions& options_;
  const Signature& signature_;
  int profile_ = 0;
  std::vector<Dims> shapes_;
  std::vector<void*> inputs_;
  std::vector<void*> outputs_;
  std::vector<OutputAllocator*> allocators_;
  cuda::DeviceBuffer state_;
  cuda::PinnedBuffer state_host_;
  bool state_pending_ = true;
  cuda::DeviceBuffer count_device_;
  cuda::PinnedBuffer count_host_;
};

}  // namespace

void launch_affine(const float* x, float* y, std::int64_t count, float a, float b,
                   cudaStream_t stream) {
  if (count == 0) {
    return;
  }
  affine_kernel<<<blocks_for(count), kThreads, 0, stream>>>(x, y, count, a, b);
  check_launch("affine_kernel");
}

TestEngine::TestEngine(TestEngineOptions options)
    : options_(std::move(options)), signature_(make_signature(options_)) {}

std::unique_ptr<Executor> TestEngine::create_executor() {
  cuda::set_device(options_.device);
  return std::make_unique<TestExecutor>(shared_from_this());
}

}  // namespace trtfast::testing
