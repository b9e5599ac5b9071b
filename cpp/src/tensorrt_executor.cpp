// The execution interface over TensorRT's IExecutionContext; part of each adapter.
#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tensorrt_internal.hpp"
#include "trtfast/cuda.hpp"
#include "trtfast/error.hpp"
#include "trtfast/executor.hpp"
#include "trtfast/tensorrt_runtime.hpp"

static_assert(NV_TENSORRT_MAJOR >= 10, "trtfast needs TensorRT 10 or newer (enqueueV3, Dims64)");

namespace trtfast {

namespace {

Dims from_tensorrt(const nvinfer1::Dims& dims, const char* tensor) {
  if (dims.nbDims < 0 || dims.nbDims > kMaxRank) {
    throw Error(std::string("TensorRT reported no valid shape for tensor '") + tensor + "'");
  }
  Dims result;
  result.rank = dims.nbDims;
  for (int i = 0; i < dims.nbDims; ++i) {
    result.d[static_cast<std::size_t>(i)] = dims.d[i];
  }
  return result;
}

nvinfer1::Dims to_tensorrt(const Dims& dims) {
  nvinfer1::Dims result{};
  result.nbDims = dims.rank;
  for (int i = 0; i < dims.rank; ++i) {
    result.d[i] = dims.d[static_cast<std::size_t>(i)];
  }
  return result;
}

DataType from_tensorrt(nvinfer1::DataType dtype, const char* tensor) {
  switch (static_cast<int>(dtype)) {
    case static_cast<int>(nvinfer1::DataType::kFLOAT):
      return DataType::Float32;
    case static_cast<int>(nvinfer1::DataType::kHALF):
      return DataType::Float16;
    case static_cast<int>(nvinfer1::DataType::kINT8):
      return DataType::Int8;
    case static_cast<int>(nvinfer1::DataType::kINT32):
      return DataType::Int32;
    case static_cast<int>(nvinfer1::DataType::kBOOL):
      return DataType::Bool;
    case static_cast<int>(nvinfer1::DataType::kUINT8):
      return DataType::UInt8;
    case static_cast<int>(nvinfer1::DataType::kFP8):
      return DataType::Float8E4M3;
    case static_cast<int>(nvinfer1::DataType::kBF16):
      return DataType::BFloat16;
    case static_cast<int>(nvinfer1::DataType::kINT64):
      return DataType::Int64;
    case static_cast<int>(nvinfer1::DataType::kINT4):
      return DataType::Int4;
    // Values, not names: older 10.x headers lack these enumerators.
    case 10:
      return DataType::Float4E2M1;
    case 11:
      return DataType::Float8E8M0;
    default:
      throw Error(std::string("tensor '") + tensor + "' has TensorRT data type " +
                  std::to_string(static_cast<int>(dtype)) + ", which trtfast does not know");
  }
}

[[noreturn]] void throw_logged(const std::string& what, const LoggedErrors& errors) {
  throw Error(what + (errors.messages().empty() ? "" : ": " + errors.joined()));
}

// Library versions (getInferLibVersion: major * 10000 + minor * 100 + patch) from which a method
// exists. Calling one through headers newer than the library reads past the end of its table.
constexpr int kAliasedInputTensorSince = 101500;     // ICudaEngine::getAliasedInputTensor
constexpr int kProfileTensorValuesV2Since = 101100;  // ICudaEngine::getProfileTensorValuesV2

const char* format_name(nvinfer1::TensorFormat format) {
  // Values, not names: each header set has its own list.
  static constexpr const char* kNames[] = {"kLINEAR",   "kCHW2",  "kHWC8",   "kCHW4", "kCHW16",
                                           "kCHW32",    "kDHWC8", "kCDHW32", "kHWC",  "kDLA_LINEAR",
                                           "kDLA_HWC4", "kHWC16", "kDHWC"};
  const auto index = static_cast<std::size_t>(format);
  return index < sizeof kNames / sizeof kNames[0] ? kNames[index] : "non-linear";
}

// The first profile whose format for `name` is not kLINEAR (dense row-major), as "kHWC8 in
// profile 1"; empty when every profile is linear. Formats may differ per profile.
std::string nonlinear_format(const nvinfer1::ICudaEngine& engine, const char* name,
                             int num_profiles) {
  for (int profile = 0; profile < num_profiles; ++profile) {
    const nvinfer1::TensorFormat format = engine.getTensorFormat(name, profile);
    if (format != nvinfer1::TensorFormat::kLINEAR) {
      const char* description = engine.getTensorFormatDesc(name, profile);
      return std::string(format_name(format)) + " (" + (description != nullptr ? description : "") +
             ") in profile " + std::to_string(profile);
    }
  }
  return {};
}

// The values a shape-tensor input may take in `profile`: what the builder gave setShapeValuesV2
// (int64), or setShapeValues (int32, 10.x), whichever the engine holds.
Dims profile_values(const nvinfer1::ICudaEngine& engine, const char* name, int profile,
                    nvinfer1::OptProfileSelector select, std::int64_t count, int library_version) {
  if (count < 0 || count > kMaxRank) {
    throw EngineCompatibilityError(std::string("shape tensor '") + name + "' holds " +
                                   (count < 0 ? "a dynamic number of" : std::to_string(count)) +
                                   " values; trtfast reads shape tensors of a fixed shape with at "
                                   "most " +
                                   std::to_string(kMaxRank) + " values");
  }
  Dims values;
  values.rank = static_cast<int>(count);
  const std::int64_t* wide = library_version >= kProfileTensorValuesV2Since
                                 ? engine.getProfileTensorValuesV2(name, profile, select)
                                 : nullptr;
  if (wide != nullptr) {
    for (int k = 0; k < values.rank; ++k) {
      values.d[static_cast<std::size_t>(k)] = wide[k];
    }
    return values;
  }
#if NV_TENSORRT_MAJOR < 11
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  const std::int32_t* narrow = engine.getProfileTensorValues(name, profile, select);
#pragma GCC diagnostic pop
  if (narrow != nullptr) {
    for (int k = 0; k < values.rank; ++k) {
      values.d[static_cast<std::size_t>(k)] = narrow[k];
    }
    return values;
  }
#endif
  std::string message = std::string("TensorRT reports no profile values for shape tensor '") +
                        name + "' in profile " + std::to_string(profile);
#if NV_TENSORRT_MAJOR >= 11
  // getProfileTensorValuesV2 "will return nullptr" for values set with setShapeValues (int32),
  // and TensorRT 11 has no getProfileTensorValues to read those (NvInferRuntime.h, v10.16/v11.1).
  message +=
      ". TensorRT 11 reads only int64 values, set with setShapeValuesV2 (TensorRT 10.11 and "
      "later); an engine whose builder set them with the int32 setShapeValues (a version-"
      "compatible TensorRT 10 engine) has none to read: rebuild it with setShapeValuesV2, as "
      "trtfast's builder does from 10.11";
#endif
  throw EngineCompatibilityError(message);
}

Signature read_signature(const nvinfer1::ICudaEngine& engine, int library_version) {
  const int num_profiles = engine.getNbOptimizationProfiles();
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
  for (int i = 0; i < engine.getNbIOTensors(); ++i) {
    const char* name = engine.getIOTensorName(i);
    TensorInfo info;
    info.name = name;
    info.dtype = from_tensorrt(engine.getTensorDataType(name), name);
    info.shape = from_tensorrt(engine.getTensorShape(name), name);
    const bool is_input = engine.getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
    info.nonlinear_format = nonlinear_format(engine, name, num_profiles);
    const bool on_host = engine.getTensorLocation(name) == nvinfer1::TensorLocation::kHOST;
    // trtexec and Polygraphy find shape tensors with isShapeInferenceIO; the header only says
    // they are "typically" on the host. One in device memory would never get its values here.
    if (is_input && engine.isShapeInferenceIO(name) && !on_host) {
      throw EngineCompatibilityError(
          std::string("input '") + name +
          "' is a shape tensor in device memory; trtfast sessions read shape-tensor inputs from "
          "host memory (TensorLocation::kHOST), where TensorRT puts them by default");
    }
    if (on_host) {
      if (!is_input) {
        throw EngineCompatibilityError(
            std::string("output '") + name +
            "' is a shape tensor in host memory; trtfast sessions return outputs in device "
            "memory. Mark it a plain output (not a shape tensor) when building");
      }
      // A shape tensor: its values, read on the host, decide shapes.
      info.host_memory = true;
      const std::int64_t count = info.shape.volume();
      for (int profile = 0; profile < num_profiles; ++profile) {
        ProfileRange range;
        range.min = profile_values(engine, name, profile, nvinfer1::OptProfileSelector::kMIN, count,
                                   library_version);
        range.opt = profile_values(engine, name, profile, nvinfer1::OptProfileSelector::kOPT, count,
                                   library_version);
        range.max = profile_values(engine, name, profile, nvinfer1::OptProfileSelector::kMAX, count,
                                   library_version);
        info.value_profiles.push_back(range);
      }
    }
    if (!is_input && library_version >= kAliasedInputTensorSince) {
      const char* aliased = engine.getAliasedInputTensor(name);
      info.aliased_input = aliased != nullptr ? aliased : "";
    }
    if (is_input && info.shape.is_dynamic()) {
      for (int profile = 0; profile < num_profiles; ++profile) {
        ProfileRange range;
        range.min = from_tensorrt(
            engine.getProfileShape(name, profile, nvinfer1::OptProfileSelector::kMIN), name);
        range.opt = from_tensorrt(
            engine.getProfileShape(name, profile, nvinfer1::OptProfileSelector::kOPT), name);
        range.max = from_tensorrt(
            engine.getProfileShape(name, profile, nvinfer1::OptProfileSelector::kMAX), name);
        info.profiles.push_back(range);
      }
    }
    (is_input ? inputs : outputs).push_back(std::move(info));
  }
  return Signature(std::move(inputs), std::move(outputs), num_profiles);
}

// Hands TensorRT's requests for data-dependent outputs to the session's allocator.
class OutputAllocatorAdapter final : public nvinfer1::IOutputAllocator {
 public:
  OutputAllocatorAdapter(OutputAllocator* target, int output, const char* name)
      : target_(target), output_(output), name_(name) {}

  void* reallocateOutputAsync(char const* /*tensorName*/, void* /*currentMemory*/,
                              std::uint64_t size, std::uint64_t alignment,
                              cudaStream_t stream) noexcept override {
    refusal_.clear();
    void* memory = target_->reallocate(output_, static_cast<std::size_t>(size), stream);
    // TensorRT fails the enqueue without saying why: the reason is kept for its error.
    try {
      if (memory == nullptr) {
        refusal_ = std::string("the session gave no memory for output '") + name_ + "' (" +
                   std::to_string(size) + " bytes)";
      } else if (alignment > 1 && reinterpret_cast<std::uintptr_t>(memory) % alignment != 0) {
        refusal_ = std::string("output '") + name_ + "' needs " + std::to_string(alignment) +
                   "-byte aligned memory, which the session's allocator does not give";
        return nullptr;
      }
    } catch (...) {
      // Without the reason, the enqueue still fails.
    }
    return memory;
  }

  // Why the last reallocation was refused (empty when it was not), once: a refusal fails the
  // enqueue that asked, which takes it.
  std::string take_refusal() noexcept { return std::exchange(refusal_, std::string()); }

  void notifyShape(char const* tensorName, nvinfer1::Dims const& dims) noexcept override {
    try {
      target_->notify_shape(output_, from_tensorrt(dims, tensorName));
    } catch (...) {
      // An invalid shape is left unreported; the session then fails the call.
    }
  }

 private:
  OutputAllocator* target_;
  int output_;
  const char* name_;  // the executor's copy of the name, which outlives this adapter
  std::string refusal_;
};

class TensorRTExecutor final : public Executor {
 public:
  TensorRTExecutor(std::shared_ptr<DeserializedEngine> engine, nvinfer1::IExecutionContext* context)
      : engine_(std::move(engine)), context_(context), signature_(engine_->signature()) {
    for (const TensorInfo& input : signature_.inputs()) {
      input_names_.push_back(input.name.c_str());
    }
    for (const TensorInfo& output : signature_.outputs()) {
      output_names_.push_back(output.name.c_str());
    }
    allocators_.resize(output_names_.size());
  }

  ~TensorRTExecutor() override {
    const cuda::CurrentDevice current(engine_->device());  // TensorRT frees on its own device
    delete context_;
  }

  TensorRTExecutor(const TensorRTExecutor&) = delete;
  TensorRTExecutor& operator=(const TensorRTExecutor&) = delete;

  const Signature& signature() const noexcept override { return signature_; }

  void select_profile(int profile, cudaStream_t stream) override {
    LoggedErrors errors;
    if (!context_->setOptimizationProfileAsync(profile, stream) || !errors.messages().empty()) {
      throw_logged("TensorRT could not select optimization profile " + std::to_string(profile),
                   errors);
    }
  }

  void set_input_shape(int input, const Dims& shape) override {
    LoggedErrors errors;
    const char* name = input_names_[static_cast<std::size_t>(input)];
    if (!context_->setInputShape(name, to_tensorrt(shape)) || !errors.messages().empty()) {
      throw_logged(
          std::string("TensorRT refused shape ") + shape.str() + " for input '" + name + "'",
          errors);
    }
  }

  // setInputTensorAddress and setOutputTensorAddress are the calls that promise to return false
  // on an address that is not 256-byte aligned (NvInferRuntime.h).
  void set_input_address(int input, void* address) override {
    const char* name = input_names_[static_cast<std::size_t>(input)];
    LoggedErrors errors;
    if (!context_->setInputTensorAddress(name, address) || !errors.messages().empty()) {
      throw_logged(std::string("TensorRT refused the address of input '") + name + "'", errors);
    }
  }

  void set_output_address(int output, void* address) override {
    const char* name = output_names_[static_cast<std::size_t>(output)];
    LoggedErrors errors;
    if (!context_->setOutputTensorAddress(name, address) || !errors.messages().empty()) {
      throw_logged(std::string("TensorRT refused the address of output '") + name + "'", errors);
    }
  }

  Dims output_shape(int output) override {
    const char* name = output_names_[static_cast<std::size_t>(output)];
    LoggedErrors errors;
    const nvinfer1::Dims dims = context_->getTensorShape(name);
    if (dims.nbDims < 0 || !errors.messages().empty()) {
      throw_logged(std::string("TensorRT could not infer the shape of output '") + name + "'",
                   errors);
    }
    return from_tensorrt(dims, name);
  }

  void set_output_allocator(int output, OutputAllocator* allocator) override {
    const auto j = static_cast<std::size_t>(output);
    // TensorRT keeps using the adapter it holds until it accepts another: free that one only then.
    auto adapter = std::make_unique<OutputAllocatorAdapter>(allocator, output, output_names_[j]);
    LoggedErrors errors;
    if (!context_->setOutputAllocator(output_names_[j], adapter.get()) ||
        !errors.messages().empty()) {
      throw_logged(
          std::string("TensorRT refused an output allocator for '") + output_names_[j] + "'",
          errors);
    }
    allocators_[j] = std::move(adapter);
  }

  void enqueue(cudaStream_t stream) override {
    LoggedErrors errors;
    if (!context_->enqueueV3(stream) || !errors.messages().empty()) {
      std::string what = "TensorRT enqueueV3 failed";
      for (const auto& allocator : allocators_) {
        if (allocator) {
          const std::string refusal = allocator->take_refusal();
          if (!refusal.empty()) {
            what += " (" + refusal + ")";
          }
        }
      }
      throw_logged(what, errors);
    }
  }

 private:
  std::shared_ptr<DeserializedEngine> engine_;  // a context must not outlive its engine
  nvinfer1::IExecutionContext* context_;
  const Signature& signature_;
  std::vector<const char*> input_names_;
  std::vector<const char*> output_names_;
  std::vector<std::unique_ptr<OutputAllocatorAdapter>> allocators_;
};

}  // namespace

const Signature& TensorRTEngine::signature() const {
  std::call_once(signature_once_,
                 [this] { signature_ = read_signature(*engine_, runtime().library().version()); });
  return signature_;
}

std::unique_ptr<Executor> TensorRTEngine::create_executor() {
  signature();  // refuses engines sessions cannot drive before a context is made
  const cuda::DeviceScope scope(device());
  LoggedErrors errors;
  nvinfer1::IExecutionContext* context = engine_->createExecutionContext();
  if (context == nullptr || !errors.messages().empty()) {
    delete context;
    throw_logged("TensorRT could not create an execution context (out of device memory?)", errors);
  }
  return std::make_unique<TensorRTExecutor>(shared_from_this(), context);
}

}  // namespace trtfast
