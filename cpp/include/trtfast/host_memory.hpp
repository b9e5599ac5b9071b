// Host memory at the speed of the PCIe link: recognizing page-locked memory (copied by DMA with
// no staging), a pool of page-locked blocks handed to callers as arrays, and a parallel copier
// for the pageable arrays that must still be staged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

// Exported from libtrtfast_core.so to the bindings and the adapters, which hide their own symbols.
#pragma GCC visibility push(default)

namespace trtfast::cuda {

// True when [address, address + bytes) lies in page-locked host memory (cudaHostAlloc,
// cudaHostRegister, torch's pin_memory, cupyx's pinned arrays): both ends are looked up, one
// cudaPointerGetAttributes each (about 0.1-0.3 us). False without a driver, never throws.
bool is_pinned_host(const void* address, std::size_t bytes) noexcept;

// Page-locked blocks reused across calls, one pool per process. A block goes back to the pool
// when its last owner is gone; the pool keeps at most idle_limit() bytes of free blocks and frees
// the rest. Blocks come in size classes a quarter of a power of two apart (at most 25% unused).
class PinnedPool {
 public:
  static PinnedPool& instance();  // never destroyed: blocks may outlive static destruction

  struct Block {
    void* data = nullptr;
    std::size_t size = 0;  // its size class: what release() takes back
  };
  // A block of at least `bytes` (aligned as cudaHostAlloc aligns: 4096 bytes or more), or a null
  // one when pinning fails or the pool already holds limit() bytes; `why_not` then says why.
  Block acquire(std::size_t bytes, std::string* why_not = nullptr);
  // Gives a block back; the pool keeps it for the next acquire or, past idle_limit(), frees it
  // on a thread of its own (cudaFreeHost may wait for the device).
  void release(const Block& block) noexcept;

  struct Stats {
    std::size_t live_bytes = 0;  // held by owners
    std::size_t idle_bytes = 0;  // free in the pool
    std::uint64_t hits = 0;      // acquires served from the pool
    std::uint64_t misses = 0;    // acquires that pinned new memory
    std::uint64_t refusals = 0;  // acquires answered with null
  };
  Stats stats() const;
  // Live plus idle bytes the pool will pin at most: a quarter of the machine's memory.
  std::size_t limit() const noexcept { return limit_; }
  std::size_t idle_limit() const noexcept { return idle_limit_; }
  // Frees every idle block (tests; a service that wants its memory back).
  void trim();

  PinnedPool(const PinnedPool&) = delete;
  PinnedPool& operator=(const PinnedPool&) = delete;

 private:
  PinnedPool();
  struct State;
  std::unique_ptr<State> state_;
  std::size_t limit_;
  std::size_t idle_limit_;
};

// Half the machine's cores, at most 8: where 16 MB and 64 MB copies were fastest on a 16-core
// host (benchmarks/bench_host_io.py --sweep).
unsigned default_copy_threads() noexcept;

// Copies between host buffers: one memcpy for small copies, several threads for large ones (a
// single thread copies about 10 GB/s; the link moves 50). Defaults from the same sweep.
struct HostCopyTuning {
  unsigned threads = default_copy_threads();  // threads per copy, the caller's included
  std::size_t parallel_min_bytes = 1 << 20;   // smaller copies stay on the calling thread
  std::size_t chunk_bytes = 2 << 20;          // pipelining: bytes per chunk between host and DMA
  std::size_t pipeline_min_bytes = 4 << 20;   // smaller tensors are copied whole, then sent
  bool zero_copy = true;                      // page-locked caller arrays skip staging
  bool pooled_outputs = true;                 // host results land in pooled page-locked arrays
  std::size_t pooled_output_min_bytes = 64 << 10;
  // Smaller caller arrays are staged without asking whether they are page-locked: the question
  // costs about as much as their copy.
  std::size_t pinned_check_min_bytes = 32 << 10;
  // Copies the GPU reads next are written with streaming stores from this size (see host_copy).
  std::size_t streaming_min_bytes = 32 << 10;
};
const HostCopyTuning& host_copy_tuning() noexcept;
// For benchmarks that compare settings in one process; not thread-safe with calls in flight.
void set_host_copy_tuning(const HostCopyTuning& tuning);

// Who reads a copy's destination next.
enum class NextReader { Host, Device };

// Copies for the GPU to read next (staging for a DMA) use streaming stores on x86-64: a DMA that
// reads lines still modified in a core's cache waits on a snoop for each. On an H200 host,
// copying then sending 64 KB took 15 us with memcpy and 14 us with streaming stores (whose own
// write is slower), the send alone 9 us; 1 MB took 98, 85 and 27 us. At 8 KB memcpy won.
void host_copy(void* destination, const void* source, std::size_t bytes, NextReader next);

}  // namespace trtfast::cuda

#pragma GCC visibility pop
