// ONNX bytes + options -> serialized TensorRT plan, through TensorRT's ONNX parser. The interface
// carries no TensorRT type: without TensorRT headers it compiles and raises a clear error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "trtfast/tensorrt_library.hpp"

// Exported from libtrtfast_core.so to the bindings and the adapters, which hide their own symbols.
#pragma GCC visibility push(default)

namespace trtfast {

// On TensorRT 10 these choose builder flags; on TensorRT 11 networks are strongly typed and the
// precision was already applied to the ONNX model, so the builder ignores it.
enum class Precision { FP32, FP16, BF16, INT8, FP8 };

enum class HardwareCompatibility { None, AmperePlus, SameComputeCapability };

struct ShapeRange {
  std::vector<std::int64_t> min;
  std::vector<std::int64_t> opt;
  std::vector<std::int64_t> max;
  // For a shape-tensor input (int32/int64 whose values decide shapes): the three are ranges of
  // its values, row-major, not of its shape.
  bool values = false;
};

// One optimization profile: a shape range (or value range) for each named network input.
using OptimizationProfile = std::vector<std::pair<std::string, ShapeRange>>;

struct BuildOptions {
  Precision precision = Precision::FP32;
  // TensorRT 10: build a strongly typed network (types from the model, no precision flags).
  bool strongly_typed = false;
  std::vector<OptimizationProfile> profiles;
  std::optional<std::size_t> workspace;  // bytes; TensorRT's default (all device memory) when unset
  std::string timing_cache;              // a serialized timing cache; empty starts a new one
  std::optional<int> optimization_level;
  bool version_compatible = false;
  // Version-compatible plans embed a lean runtime unless this is set; without it they are smaller
  // but need the lean runtime of the building version at run time.
  bool exclude_lean_runtime = false;
  HardwareCompatibility hardware_compatibility = HardwareCompatibility::None;
  std::vector<std::string> plugins;  // plugin library paths
  int device = 0;
  // Folder that holds the model's external data files; empty when the model has none.
  std::string model_dir;
};

enum class ProgressEvent { Start, Step, End };

// Called as TensorRT's optimizer moves through its phases: `step` counts the steps completed so far
// (0 at Start), `total` is the phase's number of steps. Return false to cancel the build. An
// exception thrown here cancels the build too, and build_plan rethrows it once TensorRT returns.
// Calls are serialized, but may come from TensorRT's worker threads.
using ProgressCallback =
    std::function<bool(ProgressEvent event, const std::string& phase, int step, int total)>;

// Bytes kept alive by an owner (TensorRT's host memory), released with the last copy.
class Blob {
 public:
  Blob() = default;
  Blob(std::shared_ptr<const void> owner, const void* data, std::size_t size)
      : owner_(std::move(owner)), data_(data), size_(size) {}
  const void* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }

 private:
  std::shared_ptr<const void> owner_;
  const void* data_ = nullptr;
  std::size_t size_ = 0;
};

struct IOTensorSpec {
  std::string name;
  std::string dtype;                // numpy's dtype name: "float32", "float16", "bfloat16", ...
  std::vector<std::int64_t> shape;  // -1 for a dynamic dimension
  bool is_input = false;
};

struct BuildResult {
  Blob plan;
  Blob timing_cache;  // the timing cache after the build, to pass to the next one
  std::string tensorrt_version;
  std::vector<IOTensorSpec> inputs;
  std::vector<IOTensorSpec> outputs;
};

// Builds a plan with a full TensorRT library and the ONNX parser beside it. Throws
// TensorRTUnavailableError when the library is lean, the parser or a CUDA device is missing;
// BuildError when the parser rejects the model (with every parser error), the options do not fit
// the network, or TensorRT builds no plan (with TensorRT's logged errors).
BuildResult build_plan(const TensorRTLibrary& library, const void* onnx, std::size_t onnx_size,
                       const BuildOptions& options, const ProgressCallback& progress);

// One timing cache holding the entries of all `caches` (serialized); a cache made by another
// TensorRT version or GPU is skipped with a warning. Lets concurrent builds share a cache file.
Blob combine_timing_caches(const TensorRTLibrary& library, const std::vector<std::string>& caches,
                           int device);

}  // namespace trtfast

#pragma GCC visibility pop
