// The TensorRT adapter: the only code that includes NVIDIA's headers. Its interface carries no
// TensorRT type, so everything above it compiles (and raises a clear error) without them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "trtfast/executor.hpp"
#include "trtfast/tensorrt_library.hpp"

namespace trtfast {

// True when the adapter was compiled against TensorRT headers.
bool tensorrt_adapter_available() noexcept;

// TensorRT's severities, most severe first (values of nvinfer1::ILogger::Severity).
enum class LogSeverity : int { InternalError = 0, Error = 1, Warning = 2, Info = 3, Verbose = 4 };

// Receives every TensorRT log line, from whichever thread TensorRT logs on.
using LogSink = std::function<void(LogSeverity, const std::string&)>;
void set_log_sink(LogSink sink);

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
  friend class TensorRTLogger;
  void add(const char* message);
  mutable std::mutex mutex_;
  std::vector<std::string> messages_;
  LoggedErrors* outer_;
  Scope scope_;
};

class DeserializedEngine;

// An IRuntime bound to one device, holding its library alive.
class Runtime : public std::enable_shared_from_this<Runtime> {
 public:
  // Checks for a usable device first: without one, TensorRT's factory returns an invalid object.
  static std::shared_ptr<Runtime> create(std::shared_ptr<const TensorRTLibrary> library,
                                         int device);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const TensorRTLibrary& library() const noexcept { return *library_; }
  int device() const noexcept { return device_; }
  // Throws EngineFormatError carrying TensorRT's messages when the plan is refused. Plans that
  // embed host code (version-compatible engines, serialized plugins) run native code from the
  // file: TensorRT refuses them unless `allow_host_code`.
  // `plugins`: plugin libraries (canonical paths) the engine was built with, loaded into this
  // runtime's registry first, as trtexec does with --dynamicPlugins.
  std::shared_ptr<DeserializedEngine> deserialize(const void* plan, std::size_t size,
                                                  bool allow_host_code = false,
                                                  const std::vector<std::string>& plugins = {});

  struct Impl;

 private:
  Runtime(std::shared_ptr<const TensorRTLibrary> library, int device, std::unique_ptr<Impl> impl);
  std::shared_ptr<const TensorRTLibrary> library_;
  int device_;
  std::unique_ptr<Impl> impl_;
  std::mutex mutex_;  // the host-code switch and the deserialization it governs go together
};

class DeserializedEngine final : public Engine,
                                 public std::enable_shared_from_this<DeserializedEngine> {
 public:
  ~DeserializedEngine() override;
  DeserializedEngine(const DeserializedEngine&) = delete;
  DeserializedEngine& operator=(const DeserializedEngine&) = delete;
  int num_io_tensors() const;

  // Names, dtypes, shapes (-1 dynamic) and profile ranges, read from the engine once.
  // Throws Error for engines sessions cannot drive (shape-tensor inputs in host memory).
  const Signature& signature() const override;
  int device() const noexcept override;
  // A new execution context (one per session), holding this engine alive.
  std::unique_ptr<Executor> create_executor() override;

  struct Impl;

 private:
  friend class Runtime;
  DeserializedEngine(std::shared_ptr<Runtime> runtime, std::unique_ptr<Impl> impl);
  std::shared_ptr<Runtime> runtime_;  // an engine must not outlive its runtime
  std::unique_ptr<Impl> impl_;
};

}  // namespace trtfast
