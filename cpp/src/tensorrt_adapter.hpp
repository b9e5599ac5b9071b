// The contract between the core and the adapter of one TensorRT major (libtrtfast_trt<major>.so):
// everything that needs NVIDIA's headers, behind one table of virtual functions. The core and its
// adapters come from one build, so the entry point's name is the only version the table needs.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "trtfast/builder.hpp"
#include "trtfast/tensorrt_library.hpp"
#include "trtfast/tensorrt_runtime.hpp"

#pragma GCC visibility push(default)

namespace trtfast {

class TensorRTAdapter {
 public:
  virtual ~TensorRTAdapter();
  // NV_TENSORRT_MAJOR of the headers the adapter was compiled with.
  virtual int major() const noexcept = 0;
  virtual std::shared_ptr<Runtime> create_runtime(std::shared_ptr<const TensorRTLibrary> library,
                                                  int device) const = 0;
  virtual BuildResult build_plan(const TensorRTLibrary& library, const void* onnx,
                                 std::size_t onnx_size, const BuildOptions& options,
                                 const ProgressCallback& progress) const = 0;
  virtual Blob combine_timing_caches(const TensorRTLibrary& library,
                                     const std::vector<std::string>& caches, int device) const = 0;
};

// The adapter of `library`'s major, loaded once from beside libtrtfast_core.so and never
// unloaded. Throws TensorRTUnavailableError saying how to get one when this build has none.
const TensorRTAdapter& tensorrt_adapter_for(const TensorRTLibrary& library);

}  // namespace trtfast

// What each adapter exports, and nothing else: its adapter, made once and never destroyed.
extern "C" const trtfast::TensorRTAdapter* trtfast_tensorrt_adapter_v1();

#pragma GCC visibility pop

#define TRTFAST_ADAPTER_ENTRY_POINT "trtfast_tensorrt_adapter_v1"
