#include "trtfast/completion.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <utility>

#include "trtfast/error.hpp"

namespace trtfast {

namespace {

// After a call, the thread polls for the next one this long before it sleeps: a client that
// awaits one call and then makes the next is served without a wake-up (some 5-10 us each).
constexpr std::chrono::microseconds kSpinAfterWork{200};

}  // namespace

CompletionQueue::CompletionQueue() {
  read_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (read_fd_ < 0) {
    throw Error(std::string("cannot create an eventfd for awaitable calls: ") +
                std::strerror(errno));
  }
  write_fd_ = read_fd_;
}

CompletionQueue::~CompletionQueue() {
  if (read_fd_ >= 0) {
    close(read_fd_);
  }
}

void CompletionQueue::push(std::uint64_t token) noexcept {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    finished_.push_back(token);
    ready_.store(true, std::memory_order_release);
  }
  const std::uint64_t one = 1;
  // A full counter (2^64 - 2 unread wake-ups) cannot happen; EINTR is retried.
  while (write(write_fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
}

std::vector<std::uint64_t> CompletionQueue::take() {
  std::uint64_t count = 0;
  while (read(read_fd_, &count, sizeof(count)) < 0 && errno == EINTR) {
  }
  std::vector<std::uint64_t> tokens;
  const std::lock_guard<std::mutex> lock(mutex_);
  tokens.swap(finished_);
  ready_.store(false, std::memory_order_release);
  return tokens;
}

CallThread::CallThread() : thread_([this] { loop(); }) {}

CallThread::~CallThread() {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void CallThread::post(std::function<void()> work, std::shared_ptr<CompletionQueue> queue,
                      std::uint64_t token) {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back({std::move(work), std::move(queue), token});
    pending_.store(true, std::memory_order_release);
  }
  wake_.notify_one();
}

void CallThread::loop() {
  std::vector<Job> jobs;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) {
        return;  // stopping, and nothing left to run
      }
      jobs.swap(jobs_);
      pending_.store(false, std::memory_order_relaxed);
    }
    for (Job& job : jobs) {
      job.work();
      job.work = nullptr;  // what the work holds is let go of before the loop hears of it
      job.queue->push(job.token);
    }
    jobs.clear();
    const auto until = std::chrono::steady_clock::now() + kSpinAfterWork;
    while (!pending_.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < until) {
    }
  }
}

}  // namespace trtfast
