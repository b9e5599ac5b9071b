#include "trtfast/cuda.hpp"

#include <atomic>
#include <cstdlib>
#include <string>
#include <utility>

namespace trtfast::cuda {

// Messages are built with std::string alone: after libnvinfer_lean 11.4 is loaded, formatting a
// number through an iostream in this library crashed (a corrupted num_put facet).
std::string describe(cudaError_t status) {
  return std::string(cudaGetErrorName(status)) + " (" + std::to_string(static_cast<int>(status)) +
         "): " + cudaGetErrorString(status);
}

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  cudaGetLastError();  // clear the sticky-free error so the next call starts clean
  throw CudaError(std::string(call) + " failed: " + describe(status) + " [" + file + ":" +
                      std::to_string(line) + "]",
                  static_cast<int>(status));
}

namespace {

std::atomic<std::uint64_t> allocations{0};

void check_device_index(int device) {
  const int count = device_count();
  if (device < 0 || device >= count) {
    std::string message = "CUDA device " + std::to_string(device) +
                          " does not exist: this machine has " + std::to_string(count) +
                          (count == 1 ? " device" : " devices");
    if (count == 0) {
      message += " (" + unavailable_reason() + ")";
    }
    throw CudaError(message, static_cast<int>(cudaErrorInvalidDevice));
  }
}

}  // namespace

int runtime_version() {
  int version = 0;
  TRTFAST_CUDA_CHECK(cudaRuntimeGetVersion(&version));
  return version;
}

int driver_version() noexcept {
  int version = 0;
  if (cudaDriverGetVersion(&version) != cudaSuccess) {
    return 0;
  }
  return version;
}

int device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

std::string unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return describe(status);
  }
  return count == 0 ? "no CUDA device found" : "";
}

namespace {

std::string format_uuid(const cudaUUID_t& uuid) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string text = "GPU-";
  for (std::size_t i = 0; i < sizeof(uuid.bytes); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      text += '-';
    }
    const auto byte = static_cast<unsigned char>(uuid.bytes[i]);
    text += digits[byte >> 4U];
    text += digits[byte & 0xFU];
  }
  return text;
}

}  // namespace

DeviceInfo device_info(int device) {
  check_device_index(device);
  cudaDeviceProp props{};
  TRTFAST_CUDA_CHECK(cudaGetDeviceProperties(&props, device));
  DeviceInfo info;
  info.index = device;
  info.name = props.name;
  info.compute_major = props.major;
  info.compute_minor = props.minor;
  info.total_memory = props.totalGlobalMem;
  info.multiprocessors = props.multiProcessorCount;
  info.uuid = format_uuid(props.uuid);
  return info;
}

std::vector<DeviceInfo> devices() {
  std::vector<DeviceInfo> result;
  const int count = device_count();
  for (int device = 0; device < count; ++device) {
    result.push_back(device_info(device));
  }
  return result;
}

void set_device(int device) {
  check_device_index(device);
  TRTFAST_CUDA_CHECK(cudaSetDevice(device));
}

std::pair<std::size_t, std::size_t> memory_info(int device) {
  check_device_index(device);
  DeviceScope guard(device);
  std::size_t free = 0;
  std::size_t total = 0;
  TRTFAST_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return {free, total};
}

int current_device() {
  int device = 0;
  TRTFAST_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

DeviceScope::DeviceScope(int device) {
  TRTFAST_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) {
    TRTFAST_CUDA_CHECK(cudaSetDevice(device));
    changed_ = true;
  }
}

DeviceScope::~DeviceScope() {
  if (changed_ && cudaSetDevice(previous_) != cudaSuccess) {
    cudaGetLastError();  // a destructor cannot report it; no later check should see it either
  }
}

CurrentDevice::CurrentDevice(int device) noexcept {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  if (previous != device) {
    if (cudaSetDevice(device) == cudaSuccess) {
      previous_ = previous;
    } else {
      cudaGetLastError();
    }
  }
}

CurrentDevice::~CurrentDevice() {
  if (previous_ >= 0 && cudaSetDevice(previous_) != cudaSuccess) {
    cudaGetLastError();
  }
}

void StreamView::synchronize() const { TRTFAST_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

// --- Stream --------------------------------------------------------------------------------------

Stream::Stream(int device, StreamOrder order) : device_(device) {
  check_device_index(device);
  DeviceScope guard(device);
  const unsigned flags =
      order == StreamOrder::Independent ? cudaStreamNonBlocking : cudaStreamDefault;
  TRTFAST_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, flags));
}

Stream::~Stream() { reset(); }

Stream::Stream(Stream&& other) noexcept
    : stream_(std::exchange(other.stream_, nullptr)), device_(other.device_) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    reset();
    stream_ = std::exchange(other.stream_, nullptr);
    device_ = other.device_;
  }
  return *this;
}

void Stream::reset() noexcept {
  if (stream_ != nullptr) {
    cudaStreamDestroy(std::exchange(stream_, nullptr));
  }
}

// --- Event ---------------------------------------------------------------------------------------

Event::Event(int device, bool timing, SyncMode sync) {
  check_device_index(device);
  DeviceScope guard(device);
  unsigned flags = timing ? cudaEventDefault : cudaEventDisableTiming;
  if (sync == SyncMode::Blocking) {
    flags |= cudaEventBlockingSync;
  }
  TRTFAST_CUDA_CHECK(cudaEventCreateWithFlags(&event_, flags));
}

Event::~Event() { reset(); }

Event::Event(Event&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    reset();
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}

void Event::reset() noexcept {
  if (event_ != nullptr) {
    cudaEventDestroy(std::exchange(event_, nullptr));
  }
}

void Event::record(StreamView stream) { TRTFAST_CUDA_CHECK(cudaEventRecord(event_, stream.get())); }

void Event::synchronize() const { TRTFAST_CUDA_CHECK(cudaEventSynchronize(event_)); }

bool Event::query() const {
  const cudaError_t status = cudaEventQuery(event_);
  if (status == cudaErrorNotReady) {
    return false;
  }
  TRTFAST_CUDA_CHECK(status);
  return true;
}

float Event::elapsed_ms_since(const Event& start) const {
  float ms = 0.0f;
  TRTFAST_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
  return ms;
}

// --- DeviceBuffer --------------------------------------------------------------------------------

DeviceBuffer::DeviceBuffer(std::size_t bytes, int device) : size_(bytes), device_(device) {
  check_device_index(device);
  if (bytes == 0) {
    return;
  }
  DeviceScope guard(device);
  allocations.fetch_add(1, std::memory_order_relaxed);
  const cudaError_t status = cudaMalloc(&data_, bytes);
  if (status != cudaSuccess) {
    data_ = nullptr;
    cudaGetLastError();
    throw CudaError("cudaMalloc of " + std::to_string(bytes) + " bytes on device " +
                        std::to_string(device) + " failed: " + describe(status),
                    static_cast<int>(status));
  }
}

DeviceBuffer::~DeviceBuffer() { reset(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      device_(other.device_) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    device_ = other.device_;
  }
  return *this;
}

void DeviceBuffer::reset() noexcept {
  if (data_ != nullptr) {
    cudaFree(std::exchange(data_, nullptr));  // cudaErrorCudartUnloading at exit is harmless
  }
  size_ = 0;
}

// --- PinnedBuffer --------------------------------------------------------------------------------

PinnedBuffer::PinnedBuffer(std::size_t bytes) : size_(bytes) {
  if (bytes == 0) {
    return;
  }
  allocations.fetch_add(1, std::memory_order_relaxed);
  const cudaError_t status = cudaHostAlloc(&data_, bytes, cudaHostAllocPortable);
  if (status != cudaSuccess) {
    data_ = nullptr;
    cudaGetLastError();
    throw CudaError(
        "cudaHostAlloc of " + std::to_string(bytes) + " pinned bytes failed: " + describe(status),
        static_cast<int>(status));
  }
}

PinnedBuffer::~PinnedBuffer() { reset(); }

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void PinnedBuffer::reset() noexcept {
  if (data_ != nullptr) {
    cudaFreeHost(std::exchange(data_, nullptr));
  }
  size_ = 0;
}

// --- HostBuffer ----------------------------------------------------------------------------------

bool pinning_refused_for_testing() noexcept {
  static const bool refused = [] {
    const char* value = std::getenv("TRTFAST_TESTING_REFUSE_PINNED_MEMORY");
    return value != nullptr && std::string(value) == "1";
  }();
  return refused;
}

HostBuffer::HostBuffer(std::size_t bytes) : size_(bytes) {
  if (bytes == 0) {
    return;
  }
  int status = 0;
  if (pinning_refused_for_testing()) {
    pinned_failure_ = "cudaHostAlloc of " + std::to_string(bytes) +
                      " pinned bytes was not tried: TRTFAST_TESTING_REFUSE_PINNED_MEMORY=1";
    status = static_cast<int>(cudaErrorMemoryAllocation);
  } else {
    try {
      pinned_ = PinnedBuffer(bytes);
      return;
    } catch (const CudaError& error) {
      pinned_failure_ = error.what();
      status = error.code();
    }
  }
  // Page-aligned, as pinned memory is, so that copies behave the same.
  constexpr std::size_t kPage = 4096;
  const std::size_t rounded = (bytes + kPage - 1) / kPage * kPage;
  if (rounded >= bytes) {
    pageable_.reset(std::aligned_alloc(kPage, rounded));
  }
  if (!pageable_) {
    throw CudaError("cannot allocate " + std::to_string(bytes) +
                        " bytes of host memory: pinned memory is unavailable (" + pinned_failure_ +
                        ") and so is pageable memory",
                    status);
  }
}

HostBuffer::HostBuffer(HostBuffer&& other) noexcept
    : pinned_(std::move(other.pinned_)),
      pageable_(std::move(other.pageable_)),
      size_(std::exchange(other.size_, 0)),
      pinned_failure_(std::move(other.pinned_failure_)) {}

HostBuffer& HostBuffer::operator=(HostBuffer&& other) noexcept {
  if (this != &other) {
    pinned_ = std::move(other.pinned_);
    pageable_ = std::move(other.pageable_);
    size_ = std::exchange(other.size_, 0);
    pinned_failure_ = std::move(other.pinned_failure_);
  }
  return *this;
}

void copy_async(void* dst, const void* src, std::size_t bytes, StreamView stream) {
  if (bytes == 0) {
    return;
  }
  TRTFAST_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream.get()));
}

void copy_to_host(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) {
    return;
  }
  TRTFAST_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

int stream_device(cudaStream_t stream) noexcept {
  if (stream == cudaStreamLegacy || stream == cudaStreamPerThread || stream == nullptr) {
    return -1;
  }
#if CUDART_VERSION >= 12080
  int device = -1;
  if (cudaStreamGetDevice(stream, &device) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return device;
#else
  return -1;
#endif
}

std::optional<cudaPointerAttributes> pointer_attributes(const void* pointer) noexcept {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, pointer) != cudaSuccess) {
    cudaGetLastError();
    return std::nullopt;
  }
  return attributes;
}

void synchronize_quietly(cudaStream_t stream) noexcept {
  if (cudaStreamSynchronize(stream) != cudaSuccess) {
    cudaGetLastError();
  }
}

std::uint64_t allocation_count() noexcept { return allocations.load(std::memory_order_relaxed); }

// --- Graph ---------------------------------------------------------------------------------------

Graph::~Graph() { reset(); }

Graph::Graph(Graph&& other) noexcept : graph_(std::exchange(other.graph_, nullptr)) {}

Graph& Graph::operator=(Graph&& other) noexcept {
  if (this != &other) {
    reset();
    graph_ = std::exchange(other.graph_, nullptr);
  }
  return *this;
}

void Graph::reset() noexcept {
  if (graph_ != nullptr) {
    cudaGraphDestroy(std::exchange(graph_, nullptr));
  }
}

std::size_t Graph::node_count() const {
  std::size_t count = 0;
  TRTFAST_CUDA_CHECK(cudaGraphGetNodes(graph_, nullptr, &count));
  return count;
}

// --- GraphExec -----------------------------------------------------------------------------------

GraphExec::GraphExec(const Graph& graph) {
  TRTFAST_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph.get(), 0));
}

GraphExec::~GraphExec() { reset(); }

GraphExec::GraphExec(GraphExec&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}

GraphExec& GraphExec::operator=(GraphExec&& other) noexcept {
  if (this != &other) {
    reset();
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}

void GraphExec::reset() noexcept {
  if (exec_ != nullptr) {
    cudaGraphExecDestroy(std::exchange(exec_, nullptr));
  }
}

void GraphExec::launch(StreamView stream) const {
  TRTFAST_CUDA_CHECK(cudaGraphLaunch(exec_, stream.get()));
}

}  // namespace trtfast::cuda
