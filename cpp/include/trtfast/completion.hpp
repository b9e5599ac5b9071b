// Awaitable calls: a call's GPU work is queued and waited for on a thread of its own, which
// then tells an event loop through a file descriptor. Nothing here takes a Python lock, and no
// CUDA host callback is used: the GIL and the driver's lock would deadlock.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

// Exported from libtrtfast_core.so to the bindings and the adapters, which hide their own symbols.
#pragma GCC visibility push(default)

namespace trtfast {

// Finished calls, named by tokens, for one event loop: push() from any thread makes fd()
// readable; the loop's reader takes the tokens.
class CompletionQueue {
 public:
  CompletionQueue();  // throws Error when the system refuses a file descriptor
  ~CompletionQueue();
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  int fd() const noexcept { return read_fd_; }
  void push(std::uint64_t token) noexcept;
  // The tokens pushed since the last take, oldest first; fd() is no longer readable after.
  std::vector<std::uint64_t> take();
  // True when take() has tokens to give: a loop that polls asks this, which costs no system call.
  bool ready() const noexcept { return ready_.load(std::memory_order_acquire); }

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;  // the same as read_fd_ for an eventfd
  std::mutex mutex_;
  std::vector<std::uint64_t> finished_;
  std::atomic<bool> ready_{false};
};

// One thread that runs posted work in order, each piece then reported to its queue. Work that
// throws must catch its own errors: the thread reports it finished either way.
class CallThread {
 public:
  CallThread();
  ~CallThread();  // runs the work posted so far, then ends the thread
  CallThread(const CallThread&) = delete;
  CallThread& operator=(const CallThread&) = delete;

  void post(std::function<void()> work, std::shared_ptr<CompletionQueue> queue,
            std::uint64_t token);

 private:
  struct Job {
    std::function<void()> work;
    std::shared_ptr<CompletionQueue> queue;
    std::uint64_t token = 0;
  };
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Job> jobs_;
  std::atomic<bool> pending_{false};  // jobs_ is not empty: read while spinning, without mutex_
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace trtfast

#pragma GCC visibility pop
