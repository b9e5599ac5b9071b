// The adapter's runtime and its entry point; compiled once per TensorRT major, with that major's
// headers alone, into libtrtfast_trt<major>.so.
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

namespace {

// One logger per adapter: TensorRT keeps the pointer for the lifetime of every object. What it
// receives goes to the core, which holds the collectors and the sink.
class TensorRTLogger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* message) noexcept override {
    deliver_tensorrt_log(static_cast<LogSeverity>(severity), message);
  }
};

using CreateRuntimeFn = void* (*)(void* logger, int32_t version);

bool mentions_plugins(const std::string& text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower.find("plugin") != std::string::npos;
}

}  // namespace

nvinfer1::ILogger& tensorrt_logger() noexcept {
  static auto* logger = new TensorRTLogger();  // never destroyed: used until process exit
  return *logger;
}

// --- Runtime -------------------------------------------------------------------------------------

std::shared_ptr<Runtime> TensorRTRuntime::create(std::shared_ptr<const TensorRTLibrary> library,
                                                 int device) {
  if (cuda::device_count() == 0) {
    throw TensorRTUnavailableError("TensorRT needs a CUDA device, and none is usable: " +
                                   cuda::unavailable_reason());
  }
  // TensorRT works on the current device; the caller's is current again on the way out.
  const cuda::DeviceScope scope(device);
  auto factory = reinterpret_cast<CreateRuntimeFn>(library->symbol("createInferRuntime_INTERNAL"));
  LoggedErrors errors;
  void* created = factory(&tensorrt_logger(), factory_version(*library));
  if (created == nullptr || !errors.empty()) {
    // A runtime created while TensorRT logged an error is invalid: it is leaked, not used.
    throw TensorRTUnavailableError("TensorRT " + library->version_string() + " at " +
                                   library->path() + " could not create a runtime: " +
                                   (errors.empty() ? "no object returned" : errors.joined()));
  }
  return std::shared_ptr<Runtime>(
      new TensorRTRuntime(std::move(library), device, static_cast<nvinfer1::IRuntime*>(created)));
}

TensorRTRuntime::TensorRTRuntime(std::shared_ptr<const TensorRTLibrary> library, int device,
                                 nvinfer1::IRuntime* runtime)
    : Runtime(std::move(library), device), runtime_(runtime) {}

// TensorRT objects are destroyed with their own device current (a process may use several).
TensorRTRuntime::~TensorRTRuntime() {
  const cuda::CurrentDevice current(device());
  delete runtime_;
}

std::shared_ptr<DeserializedEngine> TensorRTRuntime::deserialize(
    const void* plan, std::size_t size, bool allow_host_code,
    const std::vector<std::string>& plugins) {
  const cuda::DeviceScope scope(device());
  const std::lock_guard<std::mutex> lock(mutex_);
  runtime_->setEngineHostCodeAllowed(allow_host_code);
  // Engines that use TensorRT's standard plugins find them registered, as trtexec does before
  // it deserializes. Where the library is missing, only such engines fail, saying so below.
  const StandardPlugins& standard = standard_plugins(library());
  load_plugin_libraries(runtime_->getPluginRegistry(), plugins);
  LoggedErrors errors;
  nvinfer1::ICudaEngine* engine = runtime_->deserializeCudaEngine(plan, size);
  if (engine != nullptr && !errors.empty()) {
    delete engine;  // an engine made while TensorRT logged an error is not trusted
    engine = nullptr;
  }
  if (engine == nullptr) {
    const std::string logged = errors.joined();
    std::string message = "TensorRT " + library().version_string() +
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
  return std::shared_ptr<DeserializedEngine>(new TensorRTEngine(shared_from_this(), engine));
}

// --- DeserializedEngine --------------------------------------------------------------------------

TensorRTEngine::TensorRTEngine(std::shared_ptr<Runtime> runtime, nvinfer1::ICudaEngine* engine)
    : DeserializedEngine(std::move(runtime)), engine_(engine) {}

TensorRTEngine::~TensorRTEngine() {
  const cuda::CurrentDevice current(device());
  delete engine_;
}

int TensorRTEngine::num_io_tensors() const { return engine_->getNbIOTensors(); }

// --- The adapter ---------------------------------------------------------------------------------

namespace {

class Adapter final : public TensorRTAdapter {
 public:
  int major() const noexcept override { return NV_TENSORRT_MAJOR; }
  std::shared_ptr<Runtime> create_runtime(std::shared_ptr<const TensorRTLibrary> library,
                                          int device) const override {
    return TensorRTRuntime::create(std::move(library), device);
  }
  BuildResult build_plan(const TensorRTLibrary& library, const void* onnx, std::size_t onnx_size,
                         const BuildOptions& options,
                         const ProgressCallback& progress) const override {
    return build_plan_with_tensorrt(library, onnx, onnx_size, options, progress);
  }
  Blob combine_timing_caches(const TensorRTLibrary& library, const std::vector<std::string>& caches,
                             int device) const override {
    return combine_timing_caches_with_tensorrt(library, caches, device);
  }
};

}  // namespace

}  // namespace trtfast

extern "C" const trtfast::TensorRTAdapter* trtfast_tensorrt_adapter_v1() {
  static const auto* adapter = new trtfast::Adapter();  // never destroyed, as the library
  return adapter;
}
