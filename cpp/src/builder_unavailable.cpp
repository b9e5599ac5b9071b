// The builder half of an adapter compiled with headers that lack NvOnnxParser.h: the same
// interface, failing with the fix.
#include <NvInferVersion.h>

#include <string>

#include "tensorrt_internal.hpp"
#include "trtfast/error.hpp"

namespace trtfast {

namespace {
[[noreturn]] void throw_builder_unavailable() {
  throw TensorRTUnavailableError(
      "this trtfast was built with TensorRT " + std::to_string(NV_TENSORRT_MAJOR) +
      " headers but without NvOnnxParser.h, so it cannot build engines; rebuild it with "
      "TensorRT_INCLUDE_DIR (or TensorRT" +
      std::to_string(NV_TENSORRT_MAJOR) +
      "_ROOT) pointing at a folder holding both NvInferRuntime.h and NvOnnxParser.h");
}
}  // namespace

BuildResult build_plan_with_tensorrt(const TensorRTLibrary&, const void*, std::size_t,
                                     const BuildOptions&, const ProgressCallback&) {
  throw_builder_unavailable();
}

Blob combine_timing_caches_with_tensorrt(const TensorRTLibrary&, const std::vector<std::string>&,
                                         int) {
  throw_builder_unavailable();
}

}  // namespace trtfast
