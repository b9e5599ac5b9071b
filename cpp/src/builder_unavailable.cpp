// Built where no TensorRT headers (or no ONNX parser header) were found: the same interface,
// failing with the fix.
#include "trtfast/builder.hpp"
#include "trtfast/error.hpp"

#ifndef TRTFAST_WITHOUT_ONNX_PARSER_HEADER
#include "adapter_unavailable.hpp"
#endif

namespace trtfast {

namespace {
[[noreturn]] void throw_builder_unavailable() {
#ifdef TRTFAST_WITHOUT_ONNX_PARSER_HEADER
  throw TensorRTUnavailableError(
      "this trtfast was built with TensorRT headers but without NvOnnxParser.h, so it cannot "
      "build engines; rebuild it with TensorRT_INCLUDE_DIR pointing at a folder holding both "
      "NvInferRuntime.h and NvOnnxParser.h");
#else
  throw_adapter_unavailable();
#endif
}
}  // namespace

BuildResult build_plan(const TensorRTLibrary&, const void*, std::size_t, const BuildOptions&,
                       const ProgressCallback&) {
  throw_builder_unavailable();
}

Blob combine_timing_caches(const TensorRTLibrary&, const std::vector<std::string>&, int) {
  throw_builder_unavailable();
}

}  // namespace trtfast
