// Where TensorRT's log lines go, whichever adapter's logger receives them: the LoggedErrors
// collecting on the logging thread (or on any thread) and the log sink.
#include <algorithm>
#include <memory>
#include <mutex>
#include <utility>

#include "trtfast/tensorrt_runtime.hpp"

namespace trtfast {

namespace {
thread_local LoggedErrors* current_errors = nullptr;

// Collectors of errors from threads that have none of their own (a build's worker threads).
std::mutex& any_thread_mutex() {
  static auto* mutex = new std::mutex();  // never destroyed: TensorRT may log until process exit
  return *mutex;
}
std::vector<LoggedErrors*>& any_thread_collectors() {
  static auto* collectors = new std::vector<LoggedErrors*>();
  return *collectors;
}

struct Sink {
  std::mutex mutex;
  std::shared_ptr<LogSink> sink;
};
Sink& log_sink() {
  static auto* sink = new Sink();  // never destroyed: used until process exit
  return *sink;
}
}  // namespace

LoggedErrors::LoggedErrors(Scope scope) : outer_(current_errors), scope_(scope) {
  current_errors = this;
  if (scope_ == Scope::AnyThread) {
    const std::lock_guard<std::mutex> lock(any_thread_mutex());
    any_thread_collectors().push_back(this);
  }
}

LoggedErrors::~LoggedErrors() {
  current_errors = outer_;
  if (scope_ == Scope::AnyThread) {
    const std::lock_guard<std::mutex> lock(any_thread_mutex());
    auto& collectors = any_thread_collectors();
    collectors.erase(std::remove(collectors.begin(), collectors.end(), this), collectors.end());
  }
}

void LoggedErrors::add(const char* message) {
  const std::lock_guard<std::mutex> lock(mutex_);
  messages_.emplace_back(message);
}

std::vector<std::string> LoggedErrors::messages() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return messages_;
}

bool LoggedErrors::empty() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return messages_.empty();
}

std::string LoggedErrors::joined() const {
  std::string text;
  for (const std::string& message : messages()) {
    text += text.empty() ? message : "; " + message;
  }
  return text;
}

void set_log_sink(LogSink sink) {
  Sink& target = log_sink();
  const std::lock_guard<std::mutex> lock(target.mutex);
  target.sink = std::make_shared<LogSink>(std::move(sink));
}

void deliver_tensorrt_log(LogSeverity severity, const char* message) noexcept {
  try {
    if (severity <= LogSeverity::Error) {
      if (current_errors != nullptr) {
        current_errors->add(message);
      } else {
        const std::lock_guard<std::mutex> lock(any_thread_mutex());
        for (LoggedErrors* collector : any_thread_collectors()) {
          collector->add(message);
        }
      }
    }
    std::shared_ptr<LogSink> sink;
    {
      Sink& source = log_sink();
      const std::lock_guard<std::mutex> lock(source.mutex);
      sink = source.sink;
    }
    if (sink && *sink) {
      (*sink)(severity, message);
    }
  } catch (...) {
    // A logger must never throw into TensorRT.
  }
}

}  // namespace trtfast
