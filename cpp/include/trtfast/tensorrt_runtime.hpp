// TensorRT's runtime, through the adapter of the loaded library's major (libtrtfast_trt<major>.so,
// the only code that includes NVIDIA's headers). This interface carries no TensorRT type, so
// everything above it compiles (and raises a clear error) without them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "trtfast/executor.hpp"
#include "trtfast/tensorrt_library.hpp"

// Exported from libtrtfast_core.so to the bindings and the adapters, which hide their own symbols.
#pragma GCC visibility push(default)

namespace trtfast {

// The adapters this build compiled: TensorRT major -> version of the headers ("10.16.0").
const std::map<int, std::string>& compiled_tensorrt_adapters();
// True when this build compiled at least one adapter.
bool tensorrt_adapter_available() noexcept;
// The file of the adapter for `library`'s major, loading it on first use. Throws
// TensorRTUnavailableError saying how to get one when this build has none for that major.
std::string tensorrt_adapter_path(const TensorRTLibrary& library);

// TensorRT's severities, most severe first (values of nvinfer1::ILogger::Severity).
enum class LogSeverity : int { InternalError = 0, Error = 1, Warning = 2, Info = 3, Verbose = 4 };

// Receives every TensorRT log line, from whichever thread TensorRT logs on.
using LogSink = std::function<void(LogSeverity, const std::string&)>;
void set_log_sink(LogSink sink);
// What the adapters' loggers call with each line TensorRT logs: it reaches the LoggedErrors
// collecting and the log sink. Never throws.
void deliver_tensorrt_log(LogSeverity severity, const char* message) noexcept;

// Collects the errors TensorRT logs while alive: a call that "succeeds" after logging an error
// has failed. ThisThread collects what the creating thread logs. AnyThread also collects errors
// logged on threads that have no collector of their own, as a build's worker threads do; two
// builds running at once in one process may then see each other's worker errors.
class LoggedErrors {
 public:
  enum class Scope { ThisThread, AnyThread };
  explicit LoggedErrors(Scope scope = Scope::ThisThread);
  ~LoggedErrors();
  LoggedErrors(const LoggedErrors&) = delete;
  LoggedErrors& operator=(const LoggedErrors&) = delete;
  std::vector<std::string> messages() const;
  bool empty() const;
  std::string joined() const;

 private:
  friend void deliver_tensorrt_log(LogSeverity severity, const char* message) noexcept;
  void add(const char* message);
  mutable std::mutex mutex_;
  std::vector<std::string> messages_;
  LoggedErrors* outer_;
  Scope scope_;
};

class DeserializedEngine;

// An IRuntime bound to one device, holding its library alive. Made by the adapter of the
// library's major.
class Runtime : public std::enable_shared_from_this<Runtime> {
 public:
  // Checks for a usable device first: without one, TensorRT's factory returns an invalid object.
  static std::shared_ptr<Runtime> create(std::shared_ptr<const TensorRTLibrary> library,
                                         int device);
  virtual ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const TensorRTLibrary& library() const noexcept { return *library_; }
  int device() const noexcept { return device_; }
  // Throws EngineFormatError carrying TensorRT's messages when the plan is refused. Plans that
  // embed host code (version-compatible engines, serialized plugins) run native code from the
  // file: TensorRT refuses them unless `allow_host_code`.
  // `plugins`: plugin libraries (canonical paths) the engine was built with, loaded into this
  // runtime's registry first, as trtexec does with --dynamicPlugins.
  virtual std::shared_ptr<DeserializedEngine> deserialize(
      const void* plan, std::size_t size, bool allow_host_code = false,
      const std::vector<std::string>& plugins = {}) = 0;

 protected:
  Runtime(std::shared_ptr<const TensorRTLibrary> library, int device);

 private:
  std::shared_ptr<const TensorRTLibrary> library_;
  int device_;
};

class DeserializedEngine : public Engine, public std::enable_shared_from_this<DeserializedEngine> {
 public:
  ~DeserializedEngine() override;
  DeserializedEngine(const DeserializedEngine&) = delete;
  DeserializedEngine& operator=(const DeserializedEngine&) = delete;
  virtual int num_io_tensors() const = 0;
  int device() const noexcept override { return runtime_->device(); }
  // Names, dtypes, shapes (-1 dynamic) and profile ranges (Engine::signature) are read from the
  // engine once. Throws Error for engines sessions cannot drive (shape-tensor inputs in host
  // memory). create_executor makes a new execution context (one per session), holding this
  // engine alive.

 protected:
  explicit DeserializedEngine(std::shared_ptr<Runtime> runtime);
  const Runtime& runtime() const noexcept { return *runtime_; }

 private:
  std::shared_ptr<Runtime> runtime_;  // an engine must not outlive its runtime
};

}  // namespace trtfast

#pragma GCC visibility pop
