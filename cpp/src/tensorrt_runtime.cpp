// The TensorRT adapter, compiled only where NVIDIA's headers exist.
#include "trtfast/tensorrt_runtime.hpp"

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <utility>

#include "tensorrt_adapter.hpp"
#include "tensorrt_internal.hpp"
#include "trtfast/cuda.hpp"
#include "trtfast/error.hpp"

namespace trtfast {

int compiled_tensorrt_major() noexcept { return NV_TENSORRT_MAJOR; }

std::string compiled_tensorrt_version() {
  return std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
         std::to_string(NV_TENSORRT_PATCH);
}

bool tensorrt_adapter_available() noexcept { return true; }

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

// One logger for the process: TensorRT keeps the pointer for the lifetime of every object.
class TensorRTLogger final : public nvinfer1::ILogger {
 public:
  static TensorRTLogger& instance() {
    static auto* logger = new TensorRTLogger();  // never destroyed: used until process exit
    return *logger;
  }

  void set_sink(LogSink sink) {
    std::lock_guard<std::mutex> lock(mutex_);
    sink_ = std::make_shared<LogSink>(std::move(sink));
  }

  void log(Severity severity, const char* message) noexcept override {
    try {
      if (severity <= Severity::kERROR) {
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
        std::lock_guard<std::mutex> lock(mutex_);
        sink = sink_;
      }
      if (sink && *sink) {
        (*sink)(static_cast<LogSeverity>(severity), message);
      }
    } catch (...) {
      // A logger must never throw into TensorRT.
    }
  }

 private:
  std::mutex mutex_;
  std::shared_ptr<LogSink> sink_;
};

void set_log_sink(LogSink sink) { TensorRTLogger::instance().set_sink(std::move(sink)); }

nvinfer1::ILogger& tensorrt_logger() noexcept { return TensorRTLogger::instance(); }

// --- Runtime -------------------------------------------------------------------------------------

namespace {
using CreateRuntimeFn = void* (*)(void* logger, int32_t version);
}  // namespace

std::shared_ptr<Runtime> Runtime::create(std::shared_ptr<const TensorRTLibrary> library,
                                         int device) {
  if (cuda::device_count() == 0) {
    throw TensorRTUnavailableError("TensorRT needs a CUDA device, and none is usable: " +
                                   cuda::unavailable_reason());
  }
  cuda::set_device(device);
  auto factory = reinterpret_cast<CreateRuntimeFn>(library->symbol("createInferRuntime_INTERNAL"));
  LoggedErrors errors;
  void* created = factory(&TensorRTLogger::instance(), NV_TENSORRT_VERSION);
  if (created == nullptr || !errors.empty()) {
    // A runtime created while TensorRT logged an error is invalid: it is leaked, not used.
    throw TensorRTUnavailableError("TensorRT " + library->version_string() + " at " +
                                   library->path() + " could not create a runtime: " +
                                   (errors.empty() ? "no object returned" : errors.joined()));
  }
  auto impl = std::make_unique<Impl>();
  impl->runtime = static_cast<nvinfer1::IRuntime*>(created);
  return std::shared_ptr<Runtime>(new Runtime(std::move(library), device, std::move(impl)));
}

Runtime::Runtime(std::shared_ptr<const TensorRTLibrary> library, int device,
                 std::unique_ptr<Impl> impl)
    : library_(std::move(library)), device_(device), impl_(std::move(impl)) {}

// TensorRT objects are destroyed with their own device current (a process may use several).
Runtime::~Runtime() {
  const cuda::CurrentDevice current(device_);
  delete impl_->runtime;
}

namespace {
bool mentions_plugins(const std::string& text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower.find("plugin") != std::string::npos;
}
}  // namespace

std::shared_ptr<DeserializedEngine> Runtime::deserialize(const void* plan, std::size_t size,
                                                         bool allow_host_code,
                                                         const std::vector<std::string>& plugins) {
  cuda::set_device(device_);
  const std::lock_guard<std::mutex> lock(mutex_);
  impl_->runtime->setEngineHostCodeAllowed(allow_host_code);
  // Engines that use TensorRT's standard plugins find them registered, as trtexec does before
  // it deserializes. Where the library is missing, only such engines fail, saying so below.
  const StandardPlugins& standard = standard_plugins(*library_);
  load_plugin_libraries(impl_->runtime->getPluginRegistry(), plugins);
  LoggedErrors errors;
  nvinfer1::ICudaEngine* engine = impl_->runtime->deserializeCudaEngine(plan, size);
  if (engine != nullptr && !errors.empty()) {
    delete engine;  // an engine made while TensorRT logged an error is not trusted
    engine = nullptr;
  }
  if (engine == nullptr) {
    const std::string logged = errors.joined();
    std::string message = "TensorRT " + library_->version_string() +
                          " refused the plan: " + (logged.empty() ? "no engine returned" : logged);
    if (mentions_plugins(logged)) {
      message +=
          ". The engine uses plugins: pass the plugin libraries it was built with to "
          "Engine.load(..., plugins=[...])";
      if (standard.path.empty()) {
        message += "; TensorRT's standard plugins are not registered: " + standard.missing_because;
      }
    }
    throw EngineFormatError(message);
  }
  auto impl = std::make_unique<DeserializedEngine::Impl>();
  impl->engine = engine;
  return std::shared_ptr<DeserializedEngine>(
      new DeserializedEngine(shared_from_this(), std::move(impl)));
}

// --- DeserializedEngine --------------------------------------------------------------------------

DeserializedEngine::DeserializedEngine(std::shared_ptr<Runtime> runtime, std::unique_ptr<Impl> impl)
    : runtime_(std::move(runtime)), impl_(std::move(impl)) {}

DeserializedEngine::~DeserializedEngine() {
  const cuda::CurrentDevice current(runtime_->device());
  delete impl_->engine;
}

int DeserializedEngine::num_io_tensors() const { return impl_->engine->getNbIOTensors(); }

}  // namespace trtfast
