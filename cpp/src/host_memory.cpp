#include "trtfast/host_memory.hpp"

#include <cuda_runtime_api.h>
#include <sched.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "trtfast/cuda.hpp"

namespace trtfast::cuda {

namespace {

bool pinned_at(const void* address) noexcept {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, address) != cudaSuccess) {
    cudaGetLastError();  // no driver, or an address CUDA has never heard of
    return false;
  }
  return attributes.type == cudaMemoryTypeHost;
}

// Classes a quarter of a power of two apart, from one page: a block wastes at most 25%.
std::size_t size_class(std::size_t bytes) {
  constexpr std::size_t kPage = 4096;
  if (bytes <= kPage) {
    return kPage;
  }
  unsigned shift = 0;
  for (std::size_t rest = bytes - 1; rest > 1; rest >>= 1) {
    ++shift;
  }
  const std::size_t step = std::size_t{1} << (shift - 2);
  return (bytes + step - 1) / step * step;
}

std::size_t physical_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page)
                               : std::size_t{8} << 30;
}

// The device current when the pool last pinned a block. cudaFreeHost on a thread with no device
// made current would make a context on device 0, in a process that may use another GPU alone.
std::atomic<int> pinning_device{-1};

// Frees page-locked blocks on its own thread: cudaFreeHost may wait for the device, and blocks
// are given back from hot paths (a result array dying while its owner holds the GIL). That takes
// the wait off the caller's thread only: the free may still stall other streams' work a while.
class Reaper {
 public:
  static void free_later(void* const* blocks, std::size_t count) noexcept {
    free(blocks, count, false);
  }

  // Returns once these blocks and every block given before them are freed.
  static void free_now(void* const* blocks, std::size_t count) noexcept {
    free(blocks, count, true);
  }

 private:
  Reaper() : owner_(getpid()) {
    std::thread([this] { work(); }).detach();  // lives as long as the process
  }

  static Reaper& instance() {
    static std::mutex mutex;
    static Reaper* reaper = nullptr;  // never destroyed: its thread runs until exit
    const std::lock_guard<std::mutex> lock(mutex);
    if (reaper == nullptr || reaper->owner_ != getpid()) {  // a forked child has no thread
      reaper = new Reaper();
    }
    return *reaper;
  }

  static void free(void* const* blocks, std::size_t count, bool wait) noexcept {
    if (count == 0 && !wait) {
      return;
    }
    bool queued = false;
    try {
      Reaper& reaper = instance();
      std::unique_lock<std::mutex> lock(reaper.mutex_);
      reaper.blocks_.insert(reaper.blocks_.end(), blocks, blocks + count);
      queued = true;
      const std::uint64_t ticket = reaper.queued_ += count;
      reaper.wake_.notify_one();
      if (wait) {
        reaper.freed_wake_.wait(lock, [&] { return reaper.freed_ >= ticket; });
      }
      return;
    } catch (...) {  // no thread or no memory: free them here, unless the reaper has them
    }
    for (std::size_t i = 0; !queued && i < count; ++i) {
      cudaFreeHost(blocks[i]);
    }
  }

  void work() {
    int current = -1;
    for (;;) {
      std::vector<void*> blocks;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return !blocks_.empty(); });
        blocks.swap(blocks_);
      }
      const int device = pinning_device.load(std::memory_order_relaxed);
      if (device >= 0 && device != current && cudaSetDevice(device) == cudaSuccess) {
        current = device;
      }
      for (void* block : blocks) {
        cudaFreeHost(block);
      }
      cudaGetLastError();  // nothing here is anybody's error
      {
        const std::lock_guard<std::mutex> lock(mutex_);
        freed_ += blocks.size();
      }
      freed_wake_.notify_all();
    }
  }

  pid_t owner_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable freed_wake_;
  std::vector<void*> blocks_;
  std::uint64_t queued_ = 0;  // blocks ever given, and ever freed
  std::uint64_t freed_ = 0;
};

}  // namespace

bool is_pinned_host(const void* address, std::size_t bytes) noexcept {
  if (address == nullptr || bytes == 0) {
    return false;
  }
  return pinned_at(address) &&
         (bytes == 1 || pinned_at(static_cast<const char*>(address) + bytes - 1));
}

// --- PinnedPool ----------------------------------------------------------------------------------

struct PinnedPool::State {
  mutable std::mutex mutex;
  std::map<std::size_t, std::vector<void*>> idle;  // by size class
  Stats stats;
};

PinnedPool& PinnedPool::instance() {
  static auto* pool = new PinnedPool();  // never destroyed, see the header
  return *pool;
}

PinnedPool::PinnedPool()
    : state_(std::make_unique<State>()),
      limit_(physical_memory() / 4),
      idle_limit_(std::min<std::size_t>(limit_ / 2, std::size_t{1} << 30)) {}

PinnedPool::Block PinnedPool::acquire(std::size_t bytes, std::string* why_not) {
  const std::size_t size = size_class(bytes);
  std::vector<void*> to_free;
  void* block = nullptr;
  bool refused = false;
  {
    const std::lock_guard<std::mutex> lock(state_->mutex);
    Stats& stats = state_->stats;
    auto found = state_->idle.find(size);
    if (found != state_->idle.end() && !found->second.empty()) {
      block = found->second.back();
      found->second.pop_back();
      stats.idle_bytes -= size;
      stats.live_bytes += size;
      ++stats.hits;
    } else if (stats.live_bytes + size <= limit_) {
      // Room for a new block: idle blocks of other sizes give way first.
      for (auto it = state_->idle.begin();
           it != state_->idle.end() && stats.live_bytes + stats.idle_bytes + size > limit_; ++it) {
        while (!it->second.empty() && stats.live_bytes + stats.idle_bytes + size > limit_) {
          to_free.push_back(it->second.back());
          it->second.pop_back();
          stats.idle_bytes -= it->first;
        }
      }
      stats.live_bytes += size;  // reserved; given back below if pinning fails
      ++stats.misses;
    } else {  // even with every idle block freed there would be no room
      refused = true;
      ++stats.refusals;
      if (why_not != nullptr) {
        *why_not = "the pinned pool already holds " + std::to_string(stats.live_bytes) +
                   " bytes in use, and pins at most " + std::to_string(limit_) +
                   " (a quarter of this machine's memory)";
      }
    }
  }
  // Before pinning more, so that the pool never holds more than its limit.
  if (!to_free.empty()) {
    Reaper::free_now(to_free.data(), to_free.size());
  }
  if (refused) {
    return Block{};
  }
  if (block == nullptr) {
    std::string failure;
    if (pinning_refused_for_testing()) {
      failure = "TRTFAST_TESTING_REFUSE_PINNED_MEMORY=1";
    } else {
      const cudaError_t status = cudaHostAlloc(&block, size, cudaHostAllocPortable);
      if (status != cudaSuccess) {
        cudaGetLastError();
        block = nullptr;
        failure = "cudaHostAlloc of " + std::to_string(size) + " bytes failed: " + describe(status);
      } else if (int device = -1; cudaGetDevice(&device) == cudaSuccess) {
        pinning_device.store(device, std::memory_order_relaxed);
      }
    }
    if (block == nullptr) {
      const std::lock_guard<std::mutex> lock(state_->mutex);
      state_->stats.live_bytes -= size;
      --state_->stats.misses;
      ++state_->stats.refusals;
      if (why_not != nullptr) {
        *why_not = failure;
      }
      return Block{};
    }
  }
  return Block{block, size};
}

void PinnedPool::release(const Block& given) noexcept {
  void* const block = given.data;
  const std::size_t size = given.size;
  if (block == nullptr) {
    return;
  }
  {
    const std::lock_guard<std::mutex> lock(state_->mutex);
    Stats& stats = state_->stats;
    stats.live_bytes -= size;
    if (stats.idle_bytes + size <= idle_limit_) {
      try {
        state_->idle[size].push_back(block);
        stats.idle_bytes += size;
        return;
      } catch (...) {  // no memory for the list: free the block instead
      }
    }
  }
  Reaper::free_later(&block, 1);
}

PinnedPool::Stats PinnedPool::stats() const {
  const std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->stats;
}

void PinnedPool::trim() {
  std::vector<void*> blocks;
  {
    const std::lock_guard<std::mutex> lock(state_->mutex);
    for (auto& [size, idle] : state_->idle) {
      blocks.insert(blocks.end(), idle.begin(), idle.end());
    }
    state_->idle.clear();
    state_->stats.idle_bytes = 0;
  }
  // The caller asked for its memory back now: these, and blocks given back before.
  Reaper::free_now(blocks.data(), blocks.size());
}

// --- Parallel host copies ------------------------------------------------------------------------

namespace {

constexpr std::size_t kCacheLine = 64;

// Whole cache lines with stores that bypass the cache (SSE2: every x86-64 CPU), then a fence, so
// that they reach memory before the caller hands the buffer to the GPU. The fence must run on the
// thread that stored: a worker's fence comes before it reports its slice done. Elsewhere, memcpy.
void copy_streaming(char* destination, const char* source, std::size_t bytes) noexcept {
#if defined(__x86_64__)
  const auto misalignment =
      static_cast<std::size_t>(reinterpret_cast<std::uintptr_t>(destination) % kCacheLine);
  std::size_t done = std::min(bytes, (kCacheLine - misalignment) % kCacheLine);
  std::memcpy(destination, source, done);
  for (; done + kCacheLine <= bytes; done += kCacheLine) {
    const auto* from = static_cast<const __m128i*>(static_cast<const void*>(source + done));
    auto* to = static_cast<__m128i*>(static_cast<void*>(destination + done));
    const __m128i first = _mm_loadu_si128(from);
    const __m128i second = _mm_loadu_si128(from + 1);
    const __m128i third = _mm_loadu_si128(from + 2);
    const __m128i fourth = _mm_loadu_si128(from + 3);
    _mm_stream_si128(to, first);
    _mm_stream_si128(to + 1, second);
    _mm_stream_si128(to + 2, third);
    _mm_stream_si128(to + 3, fourth);
  }
  std::memcpy(destination + done, source + done, bytes - done);
  _mm_sfence();
#else
  std::memcpy(destination, source, bytes);
#endif
}

void copy_bytes(char* destination, const char* source, std::size_t bytes, bool streaming) noexcept {
  if (streaming) {
    copy_streaming(destination, source, bytes);
  } else {
    std::memcpy(destination, source, bytes);
  }
}

// Threads that each copy one slice of a large copy while the caller copies the first. One copy
// at a time: a caller that finds them busy copies alone (concurrent sessions already use the
// machine's cores). The chunks of one call follow each other within microseconds, so a worker
// spins a while for the next slice before it sleeps: a wake-up from sleep costs tens of us.
class CopyWorkers {
 public:
  explicit CopyWorkers(unsigned workers) : owner_(getpid()), asked_(workers) {
    for (unsigned i = 0; i < workers; ++i) {
      try {
        std::thread([this, i] { work(i + 1); }).detach();  // lives as long as the process
      } catch (...) {  // the system gives no more threads: copy with fewer
        break;
      }
      ++workers_;
    }
  }

  bool owned_by_this_process() const noexcept { return owner_ == getpid(); }
  unsigned workers() const noexcept { return workers_; }
  unsigned asked() const noexcept { return asked_; }

  // False when another copy holds the workers.
  bool copy(char* destination, const char* source, std::size_t bytes, unsigned parts,
            bool streaming) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) {
      return false;
    }
    parts = std::min(parts, workers() + 1);
    // A sequence lock: the generation is odd while the job is written, so a worker that reads
    // it meanwhile (one with no part in the last job) sees the change and reads again.
    const std::uint64_t generation = generation_.load(std::memory_order_relaxed);
    generation_.store(generation + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    destination_.store(destination, std::memory_order_relaxed);
    source_.store(source, std::memory_order_relaxed);
    bytes_.store(bytes, std::memory_order_relaxed);
    parts_.store(parts, std::memory_order_relaxed);
    streaming_.store(streaming, std::memory_order_relaxed);
    remaining_.store(parts - 1, std::memory_order_relaxed);
    {
      const std::lock_guard<std::mutex> lock(mutex_);  // no sleeper misses the new generation
      generation_.store(generation + 2, std::memory_order_release);
    }
    wake_.notify_all();
    copy_part(0, destination, source, bytes, parts, streaming);
    while (remaining_.load(std::memory_order_acquire) != 0) {
      std::this_thread::yield();
    }
    return true;
  }

 private:
  static constexpr std::chrono::microseconds kSpin{300};

  static void copy_part(unsigned part, char* destination, const char* source, std::size_t bytes,
                        unsigned parts, bool streaming) {
    // Slices start on cache lines.
    const std::size_t slice = (bytes / parts + kCacheLine - 1) / kCacheLine * kCacheLine;
    const std::size_t begin = std::min(bytes, slice * part);
    const std::size_t end = part + 1 == parts ? bytes : std::min(bytes, begin + slice);
    if (end > begin) {
      copy_bytes(destination + begin, source + begin, end - begin, streaming);
    }
  }

  void work(unsigned part) {
    std::uint64_t seen = 0;
    const auto published = [&] {
      const std::uint64_t generation = generation_.load(std::memory_order_acquire);
      return generation != seen && generation % 2 == 0;
    };
    for (;;) {
      const auto give_up = std::chrono::steady_clock::now() + kSpin;
      while (!published() && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::yield();
      }
      if (!published()) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, published);
      }
      // A job stays as it is until its parts are done (the caller waits for remaining_), but one
      // this worker has no part in may be replaced while it reads: then it reads the new one.
      const std::uint64_t generation = generation_.load(std::memory_order_acquire);
      if (generation % 2 != 0) {
        continue;
      }
      const unsigned parts = parts_.load(std::memory_order_relaxed);
      char* destination = destination_.load(std::memory_order_relaxed);
      const char* source = source_.load(std::memory_order_relaxed);
      const std::size_t bytes = bytes_.load(std::memory_order_relaxed);
      const bool streaming = streaming_.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (generation_.load(std::memory_order_relaxed) != generation) {
        continue;
      }
      seen = generation;
      if (part < parts) {
        copy_part(part, destination, source, bytes, parts, streaming);
        remaining_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  pid_t owner_;
  std::mutex busy_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<char*> destination_{nullptr};
  std::atomic<const char*> source_{nullptr};
  std::atomic<std::size_t> bytes_{0};
  std::atomic<unsigned> parts_{0};
  std::atomic<bool> streaming_{false};
  std::atomic<unsigned> remaining_{0};
  unsigned asked_;
  unsigned workers_ = 0;
};

HostCopyTuning tuning;
std::mutex workers_mutex;
CopyWorkers* workers = nullptr;  // never destroyed: detached threads use it until exit

CopyWorkers* copy_workers() {
  const std::lock_guard<std::mutex> lock(workers_mutex);
  const unsigned wanted = tuning.threads > 1 ? tuning.threads - 1 : 0;
  // A forked child has none of its parent's threads. Fewer threads are asked of the same
  // workers: only a benchmark asking for more leaves the old ones idle. Workers the system
  // refused are not asked for again at every copy.
  if (wanted > 0 &&
      (workers == nullptr || !workers->owned_by_this_process() || workers->asked() < wanted)) {
    workers = new CopyWorkers(wanted);
  }
  return workers;
}

}  // namespace

unsigned default_copy_threads() noexcept {
  // The cores this process may run on (taskset, cgroup cpusets), not the machine's.
  unsigned cores = std::thread::hardware_concurrency();
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
    cores = static_cast<unsigned>(CPU_COUNT(&allowed));
  }
  return std::clamp(cores / 2, 1U, 8U);
}

const HostCopyTuning& host_copy_tuning() noexcept { return tuning; }

void set_host_copy_tuning(const HostCopyTuning& value) {
  if (value.threads == 0 || value.chunk_bytes == 0) {
    throw Error("host copies need at least one thread and chunks of at least one byte");
  }
  tuning = value;
}

void host_copy(void* destination, const void* source, std::size_t bytes, NextReader next) {
  if (bytes == 0) {
    return;
  }
  auto* to = static_cast<char*>(destination);
  const auto* from = static_cast<const char*>(source);
  const bool streaming = next == NextReader::Device && bytes >= tuning.streaming_min_bytes;
  if (bytes >= tuning.parallel_min_bytes && tuning.threads > 1) {
    if (CopyWorkers* pool = copy_workers();
        pool != nullptr && pool->copy(to, from, bytes, tuning.threads, streaming)) {
      return;
    }
  }
  copy_bytes(to, from, bytes, streaming);
}

}  // namespace trtfast::cuda
