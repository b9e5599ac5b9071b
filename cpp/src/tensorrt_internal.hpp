// What the adapter's source files share about TensorRT objects; included only in an adapter,
// compiled with one major's headers.
#pragma once

#include <NvInferRuntime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "trtfast/builder.hpp"
#include "trtfast/signature.hpp"
#include "trtfast/tensorrt_library.hpp"
#include "trtfast/tensorrt_runtime.hpp"

namespace trtfast {

// The adapter's logger: it hands every line to the core (deliver_tensorrt_log). Never destroyed.
nvinfer1::ILogger& tensorrt_logger() noexcept;

// The version the factories (createInferRuntime_INTERNAL, createInferBuilder_INTERNAL) are told
// the caller was built for. NVIDIA promises that code built for an older minor runs on a newer
// library, not the reverse, and the adapter calls nothing newer than the library (it gates those
// methods by library version), so an older library is told its own version, not the headers'.
inline std::int32_t factory_version(const TensorRTLibrary& library) noexcept {
  const auto headers = static_cast<std::int32_t>(NV_TENSORRT_VERSION);  // NvInferRuntimeBase.h
  return library.version() < headers ? library.version() : headers;
}

class TensorRTRuntime final : public Runtime {
 public:
  static std::shared_ptr<Runtime> create(std::shared_ptr<const TensorRTLibrary> library,
                                         int device);
  ~TensorRTRuntime() override;
  std::shared_ptr<DeserializedEngine> deserialize(const void* plan, std::size_t size,
                                                  bool allow_host_code,
                                                  const std::vector<std::string>& plugins) override;

 private:
  TensorRTRuntime(std::shared_ptr<const TensorRTLibrary> library, int device,
                  nvinfer1::IRuntime* runtime);
  nvinfer1::IRuntime* runtime_;
  std::mutex mutex_;  // the host-code switch and the deserialization it governs go together
};

class TensorRTEngine final : public DeserializedEngine {
 public:
  TensorRTEngine(std::shared_ptr<Runtime> runtime, nvinfer1::ICudaEngine* engine);
  ~TensorRTEngine() override;
  int num_io_tensors() const override;
  const Signature& signature() const override;
  std::unique_ptr<Executor> create_executor() override;

 private:
  nvinfer1::ICudaEngine* engine_;
  mutable std::once_flag signature_once_;
  mutable Signature signature_;
};

// build_plan and combine_timing_caches of builder.hpp, as this adapter does them.
BuildResult build_plan_with_tensorrt(const TensorRTLibrary& library, const void* onnx,
                                     std::size_t onnx_size, const BuildOptions& options,
                                     const ProgressCallback& progress);
Blob combine_timing_caches_with_tensorrt(const TensorRTLibrary& library,
                                         const std::vector<std::string>& caches, int device);

// A library that comes with libnvinfer (the ONNX parser, the standard plugins), loaded.
struct CompanionLibrary {
  std::string path;
  void* handle = nullptr;
};

// Finds `stem`.so.<major> of the same TensorRT version as `library`, beside it first, then on the
// loader's path; each place tried and why it did not fit is added to `searched`.
std::optional<CompanionLibrary> find_companion(const TensorRTLibrary& library,
                                               const std::string& stem,
                                               const std::vector<const char*>& symbols,
                                               std::string& searched);

// TensorRT's standard plugins, registered once per process and library before parsing or
// deserializing: `path` is the plugin library, or empty with `missing_because` saying why.
struct StandardPlugins {
  std::string path;
  std::string expected;
  std::string missing_because;
};
const StandardPlugins& standard_plugins(const TensorRTLibrary& library);

// Loads each plugin library (canonical paths) into `registry`, once per registry: a registry
// refuses a library whose plugins it already has (NvInferRuntimeCommon.h, loadLibrary). A
// library it cannot load is a TensorRTUnavailableError naming the file and TensorRT's reason.
void load_plugin_libraries(nvinfer1::IPluginRegistry& registry,
                           const std::vector<std::string>& paths);

// Canonical paths of `paths`, each once; a path that is not a file is a BuildError.
std::vector<std::string> resolved_plugin_paths(const std::vector<std::string>& paths);

}  // namespace trtfast
