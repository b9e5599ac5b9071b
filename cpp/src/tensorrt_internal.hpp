// What the adapter's source files share about TensorRT objects; included only where NVIDIA's
// headers are.
#pragma once

#include <NvInferRuntime.h>

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "trtfast/signature.hpp"
#include "trtfast/tensorrt_runtime.hpp"

namespace trtfast {

struct Runtime::Impl {
  nvinfer1::IRuntime* runtime = nullptr;
};

struct DeserializedEngine::Impl {
  nvinfer1::ICudaEngine* engine = nullptr;
  std::once_flag signature_once;
  Signature signature;
};

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
