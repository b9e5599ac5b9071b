// The builder half of the TensorRT adapter, compiled only where NVIDIA's headers exist.
#include "trtfast/builder.hpp"

#include <NvInfer.h>
#include <NvOnnxParser.h>
#include <dlfcn.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>

#include "tensorrt_internal.hpp"
#include "trtfast/cuda.hpp"
#include "trtfast/error.hpp"
#include "trtfast/tensorrt_runtime.hpp"

namespace trtfast {

namespace {

using CreateBuilderFn = void* (*)(void* logger, int32_t version);
using CreateParserFn = void* (*)(void* network, void* logger, int version);

const char* const kInstallHint =
    "`pip install tensorrt-cu13` (CUDA 13; `tensorrt-cu12` for CUDA 12) installs the full "
    "library with its ONNX parser";

// --- The ONNX parser library ---------------------------------------------------------------------

struct OnnxParserLibrary {
  std::string path;
  CreateParserFn create = nullptr;
};

OnnxParserLibrary find_onnx_parser(const TensorRTLibrary& library) {
  std::string searched;  // no iostreams in this library: see TensorRTLibrary::find
  const std::optional<CompanionLibrary> found =
      find_companion(library, "libnvonnxparser",
                     {"createNvOnnxParser_INTERNAL", "getNvOnnxParserVersion"}, searched);
  if (!found) {
    throw TensorRTUnavailableError(
        "building engines needs TensorRT's ONNX parser (libnvonnxparser.so." +
        std::to_string(library.major()) + ") of TensorRT " + library.version_string() + " for " +
        library.path() + ", and none fits. Searched:\n" + searched + kInstallHint + ".");
  }
  return OnnxParserLibrary{found->path, reinterpret_cast<CreateParserFn>(
                                            dlsym(found->handle, "createNvOnnxParser_INTERNAL"))};
}

const OnnxParserLibrary& onnx_parser_for(const TensorRTLibrary& library) {
  // Leaked on purpose, the lock too: parsers are used until process exit, like TensorRT itself,
  // and a thread may build while the process exits.
  static auto* mutex = new std::mutex();
  static auto* found = new std::map<std::string, OnnxParserLibrary>();
  std::lock_guard<std::mutex> lock(*mutex);
  auto it = found->find(library.path());
  if (it == found->end()) {
    it = found->emplace(library.path(), find_onnx_parser(library)).first;
  }
  return it->second;
}

// --- Progress ------------------------------------------------------------------------------------

class ProgressMonitor final : public nvinfer1::IProgressMonitor {
 public:
  explicit ProgressMonitor(const ProgressCallback& callback) : callback_(callback) {}

  void phaseStart(const char* phase_name, const char* /*parent_phase*/,
                  int32_t nb_steps) noexcept override {
    std::lock_guard<std::mutex> lock(mutex_);
    try {
      const std::string phase = phase_name != nullptr ? phase_name : "";
      phases_[phase] = Phase{nb_steps, 0};
      report(ProgressEvent::Start, phase, 0, nb_steps);
    } catch (...) {
      fail(std::current_exception());
    }
  }

  bool stepComplete(const char* phase_name, int32_t step) noexcept override {
    std::lock_guard<std::mutex> lock(mutex_);
    try {
      const std::string phase = phase_name != nullptr ? phase_name : "";
      Phase& state = phases_[phase];
      state.done = step + 1;
      report(ProgressEvent::Step, phase, state.done, state.total);
    } catch (...) {
      fail(std::current_exception());
    }
    return !cancelled_;
  }

  void phaseFinish(const char* phase_name) noexcept override {
    std::lock_guard<std::mutex> lock(mutex_);
    try {
      const std::string phase = phase_name != nullptr ? phase_name : "";
      const Phase state = phases_[phase];
      phases_.erase(phase);
      report(ProgressEvent::End, phase, state.done, state.total);
    } catch (...) {
      fail(std::current_exception());
    }
  }

  bool cancelled() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cancelled_;
  }

  std::exception_ptr error() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return error_;
  }

 private:
  struct Phase {
    int total = 0;
    int done = 0;
  };

  // Once cancelled, the callback is not called again.
  void report(ProgressEvent event, const std::string& phase, int step, int total) {
    if (cancelled_ || !callback_) {
      return;
    }
    if (!callback_(event, phase, step, total)) {
      cancelled_ = true;
    }
  }

  void fail(std::exception_ptr error) noexcept {
    if (!error_) {
      error_ = std::move(error);
    }
    cancelled_ = true;
  }

  const ProgressCallback& callback_;
  mutable std::mutex mutex_;
  std::map<std::string, Phase> phases_;
  bool cancelled_ = false;
  std::exception_ptr error_;
};

// --- Network inspection --------------------------------------------------------------------------

std::string dtype_name(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT:
      return "float32";
    case nvinfer1::DataType::kHALF:
      return "float16";
    case nvinfer1::DataType::kBF16:
      return "bfloat16";
    case nvinfer1::DataType::kINT8:
      return "int8";
    case nvinfer1::DataType::kUINT8:
      return "uint8";
    case nvinfer1::DataType::kINT32:
      return "int32";
    case nvinfer1::DataType::kINT64:
      return "int64";
    case nvinfer1::DataType::kBOOL:
      return "bool";
    case nvinfer1::DataType::kFP8:
      return "float8_e4m3fn";
    default:
      break;
  }
  // By value: these enumerators are absent from older TensorRT 10 headers.
  switch (static_cast<int>(type)) {
    case 9:
      return "int4";
    case 10:
      return "float4_e2m1fn";
    case 11:
      return "float8_e8m0fnu";
    default:
      return "unknown(" + std::to_string(static_cast<int>(type)) + ")";
  }
}

std::vector<std::int64_t> shape_of(const nvinfer1::Dims& dims) {
  return std::vector<std::int64_t>(dims.d, dims.d + std::max<int32_t>(dims.nbDims, 0));
}

std::string format_shape(const std::vector<std::int64_t>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    text += (i == 0 ? "" : ", ") + std::to_string(shape[i]);
  }
  return text + (shape.size() == 1 ? ",)" : ")");
}

bool is_dynamic(const std::vector<std::int64_t>& shape) {
  return std::find(shape.begin(), shape.end(), -1) != shape.end();
}

IOTensorSpec spec_of(const nvinfer1::ITensor& tensor, bool is_input) {
  return IOTensorSpec{tensor.getName(), dtype_name(tensor.getType()),
                      shape_of(tensor.getDimensions()), is_input};
}

std::vector<IOTensorSpec> network_inputs(const nvinfer1::INetworkDefinition& network) {
  std::vector<IOTensorSpec> specs;
  for (int32_t i = 0; i < network.getNbInputs(); ++i) {
    specs.push_back(spec_of(*network.getInput(i), true));
  }
  return specs;
}

std::vector<IOTensorSpec> network_outputs(const nvinfer1::INetworkDefinition& network) {
  std::vector<IOTensorSpec> specs;
  for (int32_t i = 0; i < network.getNbOutputs(); ++i) {
    specs.push_back(spec_of(*network.getOutput(i), false));
  }
  return specs;
}

// --- Parsing -------------------------------------------------------------------------------------

void parse_model(nvonnxparser::IParser& parser, const void* onnx, std::size_t onnx_size,
                 const std::string& model_dir) {
  // The parser resolves external data files next to the model path it is given; only the
  // folder part of that path is used.
  std::string model_path;
  if (!model_dir.empty()) {
    model_path = (std::filesystem::absolute(model_dir) / "model.onnx").string();
  }
  LoggedErrors logged;
  if (parser.parse(onnx, onnx_size, model_path.empty() ? nullptr : model_path.c_str())) {
    return;
  }
  std::vector<ParserError> errors;
  std::string message = "TensorRT's ONNX parser rejected the model:";
  for (int i = 0; i < parser.getNbErrors(); ++i) {
    const nvonnxparser::IParserError* error = parser.getError(i);
    if (error == nullptr) {
      continue;
    }
    ParserError entry;
    entry.message = error->desc() != nullptr ? error->desc() : "";
    entry.node_name = error->nodeName() != nullptr ? error->nodeName() : "";
    entry.op_type = error->nodeOperator() != nullptr ? error->nodeOperator() : "";
    entry.node_index = error->node();
    message += "\n  - ";
    if (entry.node_index >= 0) {
      message += "node " + std::to_string(entry.node_index);
      if (!entry.node_name.empty()) {
        message += " '" + entry.node_name + "'";
      }
      if (!entry.op_type.empty()) {
        message += " (" + entry.op_type + ")";
      }
      message += ": ";
    }
    message += entry.message;
    errors.push_back(std::move(entry));
  }
  if (errors.empty()) {
    message += " " + (logged.empty() ? std::string("no reason given") : logged.joined());
  }
  throw BuildError(message, std::move(errors));
}

// --- Configuration -------------------------------------------------------------------------------

bool strongly_typed(const BuildOptions& options) {
#if NV_TENSORRT_MAJOR >= 11
  (void)options;  // every network is strongly typed
  return true;
#else
  return options.strongly_typed;
#endif
}

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::FP32:
      return "fp32";
    case Precision::FP16:
      return "fp16";
    case Precision::BF16:
      return "bf16";
    case Precision::INT8:
      return "int8";
    case Precision::FP8:
      return "fp8";
  }
  return "unknown";
}

// A strongly typed network takes its types from the model: a reduced precision the model does not
// carry would silently give an fp32 engine, so it is an error instead.
void check_precision_in_network(const nvinfer1::INetworkDefinition& network,
                                const BuildOptions& options) {
  if (!strongly_typed(options) || options.precision == Precision::FP32) {
    return;
  }
  nvinfer1::DataType wanted = nvinfer1::DataType::kHALF;
  switch (options.precision) {
    case Precision::FP32:
    case Precision::FP16:
      break;
    case Precision::BF16:
      wanted = nvinfer1::DataType::kBF16;
      break;
    case Precision::INT8:
      wanted = nvinfer1::DataType::kINT8;
      break;
    case Precision::FP8:
      wanted = nvinfer1::DataType::kFP8;
      break;
  }
  for (int32_t i = 0; i < network.getNbInputs(); ++i) {
    if (network.getInput(i)->getType() == wanted) {
      return;
    }
  }
  for (int32_t i = 0; i < network.getNbLayers(); ++i) {
    const nvinfer1::ILayer* layer = network.getLayer(i);
    for (int32_t j = 0; j < layer->getNbOutputs(); ++j) {
      if (layer->getOutput(j)->getType() == wanted) {
        return;
      }
    }
  }
#if NV_TENSORRT_MAJOR >= 11
  const char* const remedy =
      " (TensorRT 11 networks always are strongly typed), so the model "
      "must be converted to that precision before the build";
#else
  const char* const remedy =
      ", so convert the model to that precision or build without "
      "strongly_typed";
#endif
  throw BuildError(std::string("precision ") + precision_name(options.precision) +
                   " was asked for, but the network has no " + dtype_name(wanted) +
                   " tensor, so the engine would run in fp32: a strongly typed network takes its "
                   "types from the ONNX model" +
                   remedy);
}

nvinfer1::NetworkDefinitionCreationFlags network_flags(const BuildOptions& options) {
#if NV_TENSORRT_MAJOR >= 11
  (void)options;  // the flag is deprecated: every network is strongly typed
  return 0U;
#else
  return options.strongly_typed
             ? 1U << static_cast<uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED)
             : 0U;
#endif
}

void set_precision_flags(nvinfer1::IBuilderConfig& config, const BuildOptions& options) {
#if NV_TENSORRT_MAJOR >= 11
  (void)config;  // the precision was applied to the ONNX model; the network's types rule
  (void)options;
#else
  if (strongly_typed(options)) {
    return;  // types come from the model; precision flags are an error on strongly typed networks
  }
// TensorRT 10 deprecates these flags in favour of strongly typed networks, yet weakly typed
// builds need them.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  switch (options.precision) {
    case Precision::FP32:
      break;
    case Precision::FP16:
      config.setFlag(nvinfer1::BuilderFlag::kFP16);
      break;
    case Precision::BF16:
      config.setFlag(nvinfer1::BuilderFlag::kBF16);
      break;
    // Layers without quantization scales fall back to fp16 rather than fp32.
    case Precision::INT8:
      config.setFlag(nvinfer1::BuilderFlag::kINT8);
      config.setFlag(nvinfer1::BuilderFlag::kFP16);
      break;
    case Precision::FP8:
      config.setFlag(nvinfer1::BuilderFlag::kFP8);
      config.setFlag(nvinfer1::BuilderFlag::kFP16);
      break;
  }
#pragma GCC diagnostic pop
#endif
}

// HardwareCompatibilityLevel::kSAME_COMPUTE_CAPABILITY first appears in NvInfer.h of v10.9: an
// older library does not know the value, so the option is refused by name before it is passed.
constexpr int kSameComputeCapabilitySince = 100900;

void require_hardware_level(HardwareCompatibility level, const TensorRTLibrary& library) {
  if (level == HardwareCompatibility::SameComputeCapability &&
      library.version() < kSameComputeCapabilitySince) {
    throw BuildOptionError(
        "hardware_compatibility='same_compute_capability' needs TensorRT 10.9 or later; this is "
        "TensorRT " +
        library.version_string() + " at " + library.path());
  }
}

nvinfer1::HardwareCompatibilityLevel hardware_level(HardwareCompatibility level) {
  switch (level) {
    case HardwareCompatibility::AmperePlus:
      return nvinfer1::HardwareCompatibilityLevel::kAMPERE_PLUS;
    case HardwareCompatibility::SameComputeCapability:
      return nvinfer1::HardwareCompatibilityLevel::kSAME_COMPUTE_CAPABILITY;
    case HardwareCompatibility::None:
      break;
  }
  return nvinfer1::HardwareCompatibilityLevel::kNONE;
}

nvinfer1::Dims to_dims(const std::vector<std::int64_t>& shape) {
  nvinfer1::Dims dims{};
  dims.nbDims = static_cast<int32_t>(shape.size());
  std::copy(shape.begin(), shape.end(), dims.d);
  return dims;
}

// Checks one input's range against the network, so a mistake is named before TensorRT sees it.
void check_range(std::size_t profile_index, const IOTensorSpec& input, const ShapeRange& range) {
  const std::string where =
      "optimization profile " + std::to_string(profile_index) + ", input '" + input.name + "'";
  const std::pair<const char*, const std::vector<std::int64_t>*> shapes[] = {
      {"min", &range.min}, {"opt", &range.opt}, {"max", &range.max}};
  for (const auto& [label, shape] : shapes) {
    if (shape->size() != input.shape.size()) {
      throw BuildError(where + ": the " + label + " shape " + format_shape(*shape) + " has " +
                       std::to_string(shape->size()) + " dimensions, but the model's input " +
                       format_shape(input.shape) + " has " + std::to_string(input.shape.size()));
    }
    for (std::size_t axis = 0; axis < input.shape.size(); ++axis) {
      if (input.shape[axis] != -1 && (*shape)[axis] != input.shape[axis]) {
        throw BuildError(where + ": the " + label + " shape " + format_shape(*shape) +
                         " differs from the model's input " + format_shape(input.shape) +
                         " in dimension " + std::to_string(axis) + ", which the model fixes at " +
                         std::to_string(input.shape[axis]));
      }
    }
  }
  for (std::size_t axis = 0; axis < input.shape.size(); ++axis) {
    if (!(range.min[axis] <= range.opt[axis] && range.opt[axis] <= range.max[axis]) ||
        range.min[axis] < 0) {
      throw BuildError(where + ": dimension " + std::to_string(axis) +
                       " must satisfy 0 <= min <= opt <= max, but the shapes are min " +
                       format_shape(range.min) + ", opt " + format_shape(range.opt) + ", max " +
                       format_shape(range.max));
    }
  }
}

std::string input_list(const std::vector<IOTensorSpec>& inputs) {
  std::string text;
  for (const IOTensorSpec& input : inputs) {
    text += (text.empty() ? "" : ", ") + ("'" + input.name + "' " + format_shape(input.shape));
  }
  return text.empty() ? "none" : text;
}

std::string shape_tensor_hint(const std::string& name) {
  return "; give the range of its values: shapes={'" + name +
         "': {'values': (min, opt, max)}} or --shapes " + name + ":values=MIN,OPT,MAX";
}

#if NV_TENSORRT_MAJOR < 11
// IOptimizationProfile::setShapeValuesV2 is "Added in TensorRT 10.11" (NvInferImpl.h, v10.16): an
// older 10.x library's virtual table has no such entry, so it takes the int32 setShapeValues.
constexpr int kShapeValuesV2Since = 101100;

bool set_int32_shape_values(nvinfer1::IOptimizationProfile& profile, const std::string& where,
                            const std::string& name, nvinfer1::OptProfileSelector select,
                            const std::vector<std::int64_t>& values) {
  std::vector<std::int32_t> narrow;
  for (const std::int64_t value : values) {
    if (value < std::numeric_limits<std::int32_t>::min() ||
        value > std::numeric_limits<std::int32_t>::max()) {
      throw BuildError(where + ": the value " + std::to_string(value) +
                       " does not fit in int32, and TensorRT libraries before 10.11 take shape-"
                       "tensor values as int32");
    }
    narrow.push_back(static_cast<std::int32_t>(value));
  }
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  return profile.setShapeValues(name.c_str(), select, narrow.data(),
                                static_cast<int32_t>(narrow.size()));
#pragma GCC diagnostic pop
}
#endif

// A shape-tensor input's values decide shapes, so TensorRT needs their range in every profile
// (NvInferRuntime.h, IOptimizationProfile::setShapeValuesV2: one value per element, row-major,
// at least one element).
void set_shape_values(nvinfer1::IOptimizationProfile& profile, std::size_t index,
                      const IOTensorSpec& input, const ShapeRange& range, int library_version) {
  const std::string where =
      "optimization profile " + std::to_string(index) + ", input '" + input.name + "'";
  if (is_dynamic(input.shape) || input.shape.size() > 1 ||
      (input.shape.size() == 1 && input.shape[0] < 1)) {
    throw BuildError(where + " is a shape tensor of shape " + format_shape(input.shape) +
                     "; only shape tensors of a fixed shape with at most one dimension and at "
                     "least one value are supported");
  }
  const std::size_t count = input.shape.empty() ? 1 : static_cast<std::size_t>(input.shape[0]);
  for (const auto* values : {&range.min, &range.opt, &range.max}) {
    if (values->size() != count) {
      throw BuildError(where + ": a shape tensor of shape " + format_shape(input.shape) +
                       " holds " + std::to_string(count) + " values, but the range gives " +
                       format_shape(*values));
    }
  }
  for (std::size_t i = 0; i < count; ++i) {
    if (!(range.min[i] <= range.opt[i] && range.opt[i] <= range.max[i])) {
      throw BuildError(where + ": value " + std::to_string(i) +
                       " must satisfy min <= opt <= max, but the values are min " +
                       format_shape(range.min) + ", opt " + format_shape(range.opt) + ", max " +
                       format_shape(range.max));
    }
  }
  const std::pair<nvinfer1::OptProfileSelector, const std::vector<std::int64_t>*> selections[] = {
      {nvinfer1::OptProfileSelector::kMIN, &range.min},
      {nvinfer1::OptProfileSelector::kOPT, &range.opt},
      {nvinfer1::OptProfileSelector::kMAX, &range.max}};
  LoggedErrors errors;
  bool accepted = true;
  for (const auto& [select, values] : selections) {
#if NV_TENSORRT_MAJOR < 11
    if (library_version < kShapeValuesV2Since) {
      accepted = accepted && set_int32_shape_values(profile, where, input.name, select, *values);
      continue;
    }
#else
    (void)library_version;  // every 11.x library has setShapeValuesV2
#endif
    accepted = accepted && profile.setShapeValuesV2(input.name.c_str(), select, values->data(),
                                                    static_cast<int32_t>(count));
  }
  if (!accepted || !errors.empty()) {
    throw BuildError("TensorRT refused the values of shape-tensor input '" + input.name +
                     "' in optimization profile " + std::to_string(index) + ": " +
                     (errors.empty() ? "no reason given" : errors.joined()));
  }
}

void add_profiles(nvinfer1::IBuilder& builder, nvinfer1::IBuilderConfig& config,
                  const nvinfer1::INetworkDefinition& network,
                  const std::vector<IOTensorSpec>& inputs, const BuildOptions& options,
                  int library_version) {
  auto is_shape_tensor = [&](const IOTensorSpec& input) {
    const auto position = static_cast<int32_t>(&input - inputs.data());
    return network.getInput(position)->isShapeTensor();
  };
  if (options.profiles.empty()) {
    for (const IOTensorSpec& input : inputs) {
      if (is_shape_tensor(input)) {
        throw BuildError("input '" + input.name + "' is a shape tensor (its values decide shapes)" +
                         shape_tensor_hint(input.name));
      }
      if (is_dynamic(input.shape)) {
        throw BuildError("input '" + input.name + "' has the dynamic shape " +
                         format_shape(input.shape) +
                         "; give its min, opt and max shapes in an optimization profile");
      }
    }
    return;
  }
  for (std::size_t index = 0; index < options.profiles.size(); ++index) {
    const OptimizationProfile& ranges = options.profiles[index];
    nvinfer1::IOptimizationProfile* profile = builder.createOptimizationProfile();
    if (profile == nullptr) {
      throw BuildError("TensorRT could not create optimization profile " + std::to_string(index));
    }
    std::set<std::string> covered;
    for (const auto& [name, range] : ranges) {
      auto input =
          std::find_if(inputs.begin(), inputs.end(),
                       [&name = name](const IOTensorSpec& spec) { return spec.name == name; });
      if (input == inputs.end()) {
        throw BuildError("optimization profile " + std::to_string(index) + " gives shapes for '" +
                         name + "', which is not an input of the network; its inputs are " +
                         input_list(inputs));
      }
      if (is_shape_tensor(*input) != range.values) {
        throw BuildError(
            "optimization profile " + std::to_string(index) + ", input '" + name + "': " +
            (range.values ? "values are given, but it is not a shape tensor; give its shapes"
                          : "shapes are given, but it is a shape tensor (its values decide "
                            "shapes)" +
                                shape_tensor_hint(name)));
      }
      covered.insert(name);
      if (range.values) {
        set_shape_values(*profile, index, *input, range, library_version);
        continue;
      }
      check_range(index, *input, range);
      LoggedErrors errors;
      const bool accepted = profile->setDimensions(name.c_str(), nvinfer1::OptProfileSelector::kMIN,
                                                   to_dims(range.min)) &&
                            profile->setDimensions(name.c_str(), nvinfer1::OptProfileSelector::kOPT,
                                                   to_dims(range.opt)) &&
                            profile->setDimensions(name.c_str(), nvinfer1::OptProfileSelector::kMAX,
                                                   to_dims(range.max));
      if (!accepted || !errors.empty()) {
        throw BuildError("TensorRT refused the shapes of input '" + name +
                         "' in optimization profile " + std::to_string(index) + ": " +
                         (errors.empty() ? "no reason given" : errors.joined()));
      }
    }
    for (const IOTensorSpec& input : inputs) {
      if (covered.count(input.name) != 0) {
        continue;
      }
      if (is_shape_tensor(input)) {
        throw BuildError("optimization profile " + std::to_string(index) +
                         " gives no values for the shape-tensor input '" + input.name + "'" +
                         shape_tensor_hint(input.name));
      }
      if (is_dynamic(input.shape)) {
        throw BuildError("optimization profile " + std::to_string(index) +
                         " gives no shapes for the dynamic input '" + input.name + "' " +
                         format_shape(input.shape));
      }
    }
    LoggedErrors errors;
    if (config.addOptimizationProfile(profile) < 0) {
      throw BuildError("TensorRT refused optimization profile " + std::to_string(index) + ": " +
                       (errors.empty() ? "no reason given" : errors.joined()));
    }
  }
}

// A cache made by another TensorRT version or GPU is replaced by a new one, with a warning: a
// stale cache must slow the build down, not fail it.
std::unique_ptr<nvinfer1::ITimingCache> attach_timing_cache(nvinfer1::IBuilderConfig& config,
                                                            const std::string& serialized) {
  if (!serialized.empty()) {
    LoggedErrors problems;  // collected here so they do not count as build errors
    std::unique_ptr<nvinfer1::ITimingCache> cache(
        config.createTimingCache(serialized.data(), serialized.size()));
    if (cache && config.setTimingCache(*cache, false)) {
      return cache;
    }
    tensorrt_logger().log(
        nvinfer1::ILogger::Severity::kWARNING,
        ("trtfast: the timing cache given does not fit this TensorRT version or GPU, so a new one "
         "is used" +
         (problems.empty() ? std::string() : ": " + problems.joined()))
            .c_str());
  }
  LoggedErrors errors;
  std::unique_ptr<nvinfer1::ITimingCache> cache(config.createTimingCache(nullptr, 0));
  if (!cache || !config.setTimingCache(*cache, false)) {
    throw BuildError("TensorRT could not create a timing cache: " +
                     (errors.empty() ? "no reason given" : errors.joined()));
  }
  return cache;
}

// Any error TensorRT logs while configuring means an option was refused, even where the setter
// returns nothing: the build fails naming the option, before any build work.
void configure(nvinfer1::IBuilderConfig& config, const BuildOptions& options,
               const std::vector<std::string>& plugins_to_serialize) {
  auto refused = [](const std::string& option, const LoggedErrors& errors) {
    return BuildOptionError("TensorRT refused " + option + ": " + errors.joined());
  };
  {
    LoggedErrors errors;
    set_precision_flags(config, options);
    if (!errors.empty()) {
      throw refused("precision=" + std::string(precision_name(options.precision)), errors);
    }
  }
  if (options.workspace) {
    LoggedErrors errors;
    config.setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, *options.workspace);
    if (!errors.empty() ||
        config.getMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE) != *options.workspace) {
      throw BuildOptionError("TensorRT refused workspace=" + std::to_string(*options.workspace) +
                             " bytes" +
                             (errors.empty() ? std::string(" (it kept a limit of ") +
                                                   std::to_string(config.getMemoryPoolLimit(
                                                       nvinfer1::MemoryPoolType::kWORKSPACE)) +
                                                   " bytes)"
                                             : ": " + errors.joined()));
    }
  }
  if (options.optimization_level) {
    LoggedErrors errors;
    config.setBuilderOptimizationLevel(*options.optimization_level);
    if (!errors.empty()) {
      throw refused("optimization_level=" + std::to_string(*options.optimization_level), errors);
    }
  }
  LoggedErrors errors;
  if (options.version_compatible) {
    config.setFlag(nvinfer1::BuilderFlag::kVERSION_COMPATIBLE);
    if (options.exclude_lean_runtime) {
      config.setFlag(nvinfer1::BuilderFlag::kEXCLUDE_LEAN_RUNTIME);
    }
    // A version-compatible plan carries its plugins so a later runtime can load them.
    if (!plugins_to_serialize.empty()) {
      std::vector<const char*> paths;
      for (const std::string& path : plugins_to_serialize) {
        paths.push_back(path.c_str());
      }
      config.setPluginsToSerialize(paths.data(), static_cast<int32_t>(paths.size()));
    }
  }
  if (!errors.empty()) {
    throw refused("version_compatible", errors);
  }
  config.setHardwareCompatibilityLevel(hardware_level(options.hardware_compatibility));
  if (!errors.empty()) {
    throw refused("hardware_compatibility", errors);
  }
}

void check_options(const BuildOptions& options) {
#if NV_TENSORRT_MAJOR < 11
  // NvInfer.h (10.x), BuilderFlag::kFP8: "not supported when HardwareCompatibilityLevel::
  // kAMPERE_PLUS is enabled".
  if (options.precision == Precision::FP8 &&
      options.hardware_compatibility == HardwareCompatibility::AmperePlus) {
    throw BuildOptionError(
        "precision='fp8' and hardware_compatibility='ampere_plus' cannot be combined in TensorRT "
        "10: choose another precision, or hardware_compatibility='same_compute_capability' or "
        "'none'");
  }
#endif
  if (options.exclude_lean_runtime && !options.version_compatible) {
    throw std::invalid_argument(
        "exclude_lean_runtime applies to version-compatible builds only; "
        "set version_compatible too");
  }
  if (options.optimization_level && *options.optimization_level < 0) {
    throw std::invalid_argument("optimization_level must not be negative, not " +
                                std::to_string(*options.optimization_level));
  }
  std::error_code error;
  if (!options.model_dir.empty() && !std::filesystem::is_directory(options.model_dir, error)) {
    throw std::invalid_argument("model_dir " + options.model_dir + " is not a folder");
  }
}

Blob blob_of(nvinfer1::IHostMemory* memory) {
  std::shared_ptr<nvinfer1::IHostMemory> owner(memory);
  return Blob(owner, owner->data(), owner->size());
}

std::unique_ptr<nvinfer1::IBuilder> create_builder(const TensorRTLibrary& library) {
  auto factory = reinterpret_cast<CreateBuilderFn>(library.symbol("createInferBuilder_INTERNAL"));
  LoggedErrors errors;
  void* created = factory(&tensorrt_logger(), factory_version(library));
  if (created == nullptr || !errors.empty()) {
    // A builder created while TensorRT logged an error is invalid: it is leaked, not used.
    throw TensorRTUnavailableError("TensorRT " + library.version_string() + " at " +
                                   library.path() + " could not create a builder: " +
                                   (errors.empty() ? "no object returned" : errors.joined()));
  }
  return std::unique_ptr<nvinfer1::IBuilder>(static_cast<nvinfer1::IBuilder*>(created));
}

std::unique_ptr<nvinfer1::INetworkDefinition> create_network(nvinfer1::IBuilder& builder,
                                                             const BuildOptions& options) {
  LoggedErrors errors;
  std::unique_ptr<nvinfer1::INetworkDefinition> network(
      builder.createNetworkV2(network_flags(options)));
  if (!network || !errors.empty()) {
    throw BuildError("TensorRT could not create a network definition: " +
                     (errors.empty() ? "no object returned" : errors.joined()));
  }
  return network;
}

// The parser owns the weights the network refers to (NvInferRuntime.h, Weights: held by reference
// until the engine is built), so the caller keeps it until the plan is taken.
std::unique_ptr<nvonnxparser::IParser> parse_into(nvinfer1::INetworkDefinition& network,
                                                  const OnnxParserLibrary& parser_library,
                                                  const void* onnx, std::size_t onnx_size,
                                                  const BuildOptions& options) {
  std::unique_ptr<nvonnxparser::IParser> parser(static_cast<nvonnxparser::IParser*>(
      parser_library.create(&network, &tensorrt_logger(), NV_ONNX_PARSER_VERSION)));
  if (!parser) {
    throw TensorRTUnavailableError("TensorRT's ONNX parser at " + parser_library.path +
                                   " could not create a parser");
  }
  parse_model(*parser, onnx, onnx_size, options.model_dir);
  return parser;
}

// As trtexec does: the plugin libraries a version-compatible network needs (NvOnnxParser.h,
// getUsedVCPluginLibraries) are loaded for the build and, unless the lean runtime is left out of
// the plan, serialized with it.
std::vector<std::string> used_vc_plugin_libraries(const nvonnxparser::IParser& parser) {
  int64_t count = 0;
  const char* const* libraries = parser.getUsedVCPluginLibraries(count);
  if (count < 0) {
    throw BuildError(
        "TensorRT's ONNX parser could not say which plugin libraries the version-compatible "
        "engine needs");
  }
  std::vector<std::string> paths;
  for (int64_t i = 0; i < count; ++i) {
    paths.emplace_back(libraries[i]);
  }
  return paths;
}

void require_standard_plugins(const TensorRTLibrary& library) {
  const StandardPlugins& plugins = standard_plugins(library);
  if (plugins.path.empty()) {
    throw TensorRTUnavailableError("building engines needs " + plugins.expected + ": " +
                                   plugins.missing_because + kInstallHint + ".");
  }
}

void require_full_library(const TensorRTLibrary& library) {
  if (library.kind() != LibraryKind::Full) {
    throw TensorRTUnavailableError(
        "TensorRT " + library.version_string() + " at " + library.path() +
        " is the lean runtime, which runs engines but cannot build them; building needs the full "
        "library: " +
        kInstallHint + " (or set TRTFAST_TENSORRT_LIBRARY to libnvinfer.so." +
        std::to_string(library.major()) + ")");
  }
}

void require_device() {
  if (cuda::device_count() == 0) {
    throw TensorRTUnavailableError(
        "building a TensorRT engine needs a CUDA device, and none is "
        "usable: " +
        cuda::unavailable_reason());
  }
}

}  // namespace

BuildResult build_plan_with_tensorrt(const TensorRTLibrary& library, const void* onnx,
                                     std::size_t onnx_size, const BuildOptions& options,
                                     const ProgressCallback& progress) {
  check_options(options);
  const std::vector<std::string> plugin_paths = resolved_plugin_paths(options.plugins);
  require_full_library(library);
  require_hardware_level(options.hardware_compatibility, library);
  const OnnxParserLibrary& parser_library = onnx_parser_for(library);
  // Registering plugins needs no device (trtexec does it first thing), so a missing plugin library
  // is named even where no GPU is.
  require_standard_plugins(library);
  require_device();
  const cuda::DeviceScope device_scope(options.device);

  // Declared before the builder so it outlives every TensorRT object that uses it.
  ProgressMonitor monitor(progress);
  // Errors that TensorRT's worker threads log during the build reach its BuildError too.
  LoggedErrors build_errors(LoggedErrors::Scope::AnyThread);

  // As in trtexec's BuildEnvironment, factories outlive what they made: builder, then config,
  // network and parser, destroyed in reverse order (the parser before the network).
  std::unique_ptr<nvinfer1::IBuilder> builder = create_builder(library);
  load_plugin_libraries(builder->getPluginRegistry(), plugin_paths);
  std::unique_ptr<nvinfer1::IBuilderConfig> config = [&] {
    LoggedErrors errors;
    std::unique_ptr<nvinfer1::IBuilderConfig> created(builder->createBuilderConfig());
    if (!created || !errors.empty()) {
      throw BuildError("TensorRT could not create a builder configuration: " +
                       (errors.empty() ? "no object returned" : errors.joined()));
    }
    return created;
  }();
  std::unique_ptr<nvinfer1::INetworkDefinition> network = create_network(*builder, options);
  std::unique_ptr<nvonnxparser::IParser> parser =
      parse_into(*network, parser_library, onnx, onnx_size, options);
  check_precision_in_network(*network, options);

  std::vector<std::string> plugins_to_serialize = plugin_paths;
  if (options.version_compatible) {
    // Resolved as the caller's are, so no library is listed (or loaded) twice under two names:
    // setPluginsToSerialize needs each entry once.
    const std::vector<std::string> needed =
        resolved_plugin_paths(used_vc_plugin_libraries(*parser));
    load_plugin_libraries(builder->getPluginRegistry(), needed);
    if (!options.exclude_lean_runtime) {
      for (const std::string& path : needed) {
        if (std::find(plugins_to_serialize.begin(), plugins_to_serialize.end(), path) ==
            plugins_to_serialize.end()) {
          plugins_to_serialize.push_back(path);
        }
      }
    }
  }

  BuildResult result;
  result.tensorrt_version = library.version_string();
  result.inputs = network_inputs(*network);
  result.outputs = network_outputs(*network);

  configure(*config, options, plugins_to_serialize);
  add_profiles(*builder, *config, *network, result.inputs, options, library.version());
  // Made by the config, so destroyed before it.
  std::unique_ptr<nvinfer1::ITimingCache> timing_cache =
      attach_timing_cache(*config, options.timing_cache);
  config->setProgressMonitor(&monitor);

  std::unique_ptr<nvinfer1::IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
  config->setProgressMonitor(nullptr);
  if (std::exception_ptr error = monitor.error()) {
    std::rethrow_exception(error);
  }
  if (monitor.cancelled()) {
    throw BuildError("the build was cancelled by its progress callback");
  }
  if (!plan || plan->size() == 0) {
    throw BuildError("TensorRT " + library.version_string() + " built no engine: " +
                     (build_errors.empty() ? "no reason given" : build_errors.joined()));
  }
  result.plan = blob_of(plan.release());
  if (nvinfer1::IHostMemory* cache = timing_cache->serialize()) {
    result.timing_cache = blob_of(cache);
  }
  return result;
}

Blob combine_timing_caches_with_tensorrt(const TensorRTLibrary& library,
                                         const std::vector<std::string>& caches, int device) {
  require_full_library(library);
  require_device();
  const cuda::DeviceScope device_scope(device);
  std::unique_ptr<nvinfer1::IBuilder> builder = create_builder(library);
  std::unique_ptr<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
  LoggedErrors errors;
  std::unique_ptr<nvinfer1::ITimingCache> combined(config ? config->createTimingCache(nullptr, 0)
                                                          : nullptr);
  if (!combined) {
    throw BuildError("TensorRT could not create a timing cache: " +
                     (errors.empty() ? "no reason given" : errors.joined()));
  }
  for (std::size_t index = 0; index < caches.size(); ++index) {
    LoggedErrors problems;  // a stale cache is skipped, not a failure
    std::unique_ptr<nvinfer1::ITimingCache> cache(
        config->createTimingCache(caches[index].data(), caches[index].size()));
    if (!cache || !combined->combine(*cache, false)) {
      tensorrt_logger().log(nvinfer1::ILogger::Severity::kWARNING,
                            ("trtfast: timing cache " + std::to_string(index) +
                             " does not fit this TensorRT version or GPU and was left out" +
                             (problems.empty() ? std::string() : ": " + problems.joined()))
                                .c_str());
    }
  }
  nvinfer1::IHostMemory* serialized = combined->serialize();
  if (serialized == nullptr) {
    throw BuildError("TensorRT could not serialize the combined timing cache");
  }
  return blob_of(serialized);
}

}  // namespace trtfast
