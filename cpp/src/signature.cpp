#include "trtfast/signature.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "trtfast/error.hpp"

namespace trtfast {

namespace {

struct DTypeEntry {
  DataType dtype;
  const char* name;
  std::size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DataType::Float32, "float32", 4},
    {DataType::Float16, "float16", 2},
    {DataType::BFloat16, "bfloat16", 2},
    {DataType::Int8, "int8", 1},
    {DataType::UInt8, "uint8", 1},
    {DataType::Int32, "int32", 4},
    {DataType::Int64, "int64", 8},
    {DataType::Bool, "bool", 1},
    {DataType::Float8E4M3, "float8_e4m3fn", 1},
    {DataType::Int4, "int4", 0},
    {DataType::Float4E2M1, "float4_e2m1fn", 0},
    {DataType::Float8E8M0, "float8_e8m0fnu", 1},
};

const DTypeEntry* find_dtype(DataType dtype) noexcept {
  for (const DTypeEntry& entry : kDTypes) {
    if (entry.dtype == dtype) {
      return &entry;
    }
  }
  return nullptr;
}

bool within(const Dims& shape, const ProfileRange& range) noexcept {
  if (shape.rank != range.min.rank || shape.rank != range.max.rank) {
    return false;
  }
  for (int i = 0; i < shape.rank; ++i) {
    if (shape.d[i] < range.min.d[i] || shape.d[i] > range.max.d[i]) {
      return false;
    }
  }
  return true;
}

std::string dimensions(int count) {
  return std::to_string(count) + (count == 1 ? " dimension" : " dimensions");
}

std::string range_text(const ProfileRange& range) {
  return range.min.str() + " to " + range.max.str();
}

// The values of a shape-tensor input (host memory, int32 or int64) as Dims; rank -1 when they
// do not fit one.
Dims shape_values(const TensorArg& arg) {
  Dims values;
  const std::int64_t count = std::max<std::int64_t>(arg.shape.volume(), 0);
  if (count > kMaxRank || (count > 0 && arg.data == nullptr)) {
    values.rank = -1;
    return values;
  }
  values.rank = static_cast<int>(count);
  for (std::size_t k = 0; k < static_cast<std::size_t>(count); ++k) {
    if (arg.dtype == DataType::Int32) {
      std::int32_t value = 0;
      std::memcpy(&value, static_cast<const char*>(arg.data) + k * sizeof(value), sizeof(value));
      values.d[k] = value;
    } else {
      std::memcpy(&values.d[k], static_cast<const char*>(arg.data) + k * sizeof(std::int64_t),
                  sizeof(std::int64_t));
    }
  }
  return values;
}

// True when a shape tensor's values lie in the profile's range (no range known: any values).
bool values_within(const TensorInfo& info, const TensorArg& arg, int profile) {
  if (!info.host_memory || info.value_profiles.empty()) {
    return true;
  }
  return within(shape_values(arg), info.value_profiles[static_cast<std::size_t>(profile)]);
}

}  // namespace

const char* dtype_name(DataType dtype) noexcept {
  const DTypeEntry* entry = find_dtype(dtype);
  return entry != nullptr ? entry->name : "unknown";
}

DataType dtype_from_name(std::string_view name) {
  for (const DTypeEntry& entry : kDTypes) {
    if (name == entry.name) {
      return entry.dtype;
    }
  }
  throw InputError("unknown dtype '" + std::string(name) + "'");
}

std::size_t dtype_size(DataType dtype) noexcept {
  const DTypeEntry* entry = find_dtype(dtype);
  return entry != nullptr ? entry->size : 0;
}

// --- Dims ----------------------------------------------------------------------------------------

Dims::Dims(std::initializer_list<std::int64_t> dims)
    : Dims(Dims::from(std::vector<std::int64_t>(dims))) {}

Dims Dims::from(const std::vector<std::int64_t>& dims) {
  if (dims.size() > static_cast<std::size_t>(kMaxRank)) {
    throw InputError("a shape has at most " + std::to_string(kMaxRank) + " dimensions, not " +
                     std::to_string(dims.size()));
  }
  Dims result;
  result.rank = static_cast<int>(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i) {
    result.d[i] = dims[i];
  }
  return result;
}

std::vector<std::int64_t> Dims::to_vector() const {
  return std::vector<std::int64_t>(d.begin(), d.begin() + rank);
}

std::int64_t Dims::volume() const noexcept {
  std::int64_t product = 1;
  for (int i = 0; i < rank; ++i) {
    if (d[i] < 0) {
      return -1;
    }
    product *= d[i];
  }
  return product;
}

bool Dims::is_dynamic() const noexcept {
  for (int i = 0; i < rank; ++i) {
    if (d[i] < 0) {
      return true;
    }
  }
  return false;
}

std::string Dims::str() const {
  std::string text = "[";
  for (int i = 0; i < rank; ++i) {
    text += (i == 0 ? "" : ", ") + std::to_string(d[i]);
  }
  return text + "]";
}

bool operator==(const Dims& a, const Dims& b) noexcept {
  if (a.rank != b.rank) {
    return false;
  }
  for (int i = 0; i < a.rank; ++i) {
    if (a.d[i] != b.d[i]) {
      return false;
    }
  }
  return true;
}

// --- Signature -----------------------------------------------------------------------------------

Signature::Signature(std::vector<TensorInfo> inputs, std::vector<TensorInfo> outputs,
                     int num_profiles)
    : inputs_(std::move(inputs)), outputs_(std::move(outputs)), num_profiles_(num_profiles) {
  if (num_profiles_ < 1) {
    throw Error("an engine has at least one optimization profile, not " +
                std::to_string(num_profiles_));
  }
  for (TensorInfo& input : inputs_) {
    if (input.profiles.empty() && !input.shape.is_dynamic()) {
      input.profiles.assign(static_cast<std::size_t>(num_profiles_),
                            ProfileRange{input.shape, input.shape, input.shape});
    }
    if (input.profiles.size() != static_cast<std::size_t>(num_profiles_)) {
      throw Error("input '" + input.name + "' has " + std::to_string(input.profiles.size()) +
                  " profile ranges for an engine of " + std::to_string(num_profiles_) +
                  " profiles");
    }
    if (!input.value_profiles.empty() &&
        input.value_profiles.size() != static_cast<std::size_t>(num_profiles_)) {
      throw Error("shape tensor '" + input.name + "' has " +
                  std::to_string(input.value_profiles.size()) + " value ranges for an engine of " +
                  std::to_string(num_profiles_) + " profiles");
    }
    for (const ProfileRange& range : input.profiles) {
      if (range.min.rank != input.shape.rank || range.opt.rank != input.shape.rank ||
          range.max.rank != input.shape.rank) {
        throw Error("input '" + input.name + "' of shape " + input.shape.str() +
                    " has a profile range of another rank: " + range_text(range));
      }
    }
  }
  for (const auto* tensors : {&inputs_, &outputs_}) {
    for (const TensorInfo& tensor : *tensors) {
      if (!tensor.nonlinear_format.empty()) {
        throw EngineCompatibilityError(
            "tensor '" + tensor.name + "' uses TensorRT's format " + tensor.nonlinear_format +
            "; trtfast sessions read and write inputs and outputs as dense row-major "
            "tensors (TensorRT's kLINEAR) only. Rebuild the engine with linear IO: leave the "
            "IO formats at their default (trtfast build does), or with trtexec give "
            "--inputIOFormats/--outputIOFormats as <type>:chw, or in TensorRT's Python API set "
            "tensor.allowed_formats = 1 << int(trt.TensorFormat.LINEAR)");
      }
    }
  }
  aliased_inputs_.assign(outputs_.size(), -1);
  for (std::size_t j = 0; j < outputs_.size(); ++j) {
    const TensorInfo& output = outputs_[j];
    if (output.aliased_input.empty()) {
      continue;
    }
    const int input = input_index(output.aliased_input);
    if (input < 0 || inputs_[static_cast<std::size_t>(input)].dtype != output.dtype) {
      throw Error("output '" + output.name + "' shares memory with '" + output.aliased_input +
                  "', which is no input of the same dtype");
    }
    aliased_inputs_[j] = input;
  }
}

int Signature::input_index(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < inputs_.size(); ++i) {
    if (inputs_[i].name == name) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

int Signature::output_index(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < outputs_.size(); ++i) {
    if (outputs_[i].name == name) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

std::string Signature::describe(const TensorInfo& tensor) const {
  return "'" + tensor.name + "' (" + dtype_name(tensor.dtype) + ", " + tensor.shape.str() + ")";
}

void Signature::throw_unknown_input(std::string_view name) const {
  std::string message = "unknown input '" + std::string(name) + "'; the engine's inputs are ";
  for (std::size_t i = 0; i < inputs_.size(); ++i) {
    message += (i == 0 ? "" : ", ") + describe(inputs_[i]);
  }
  throw InputError(message);
}

void Signature::throw_unknown_output(std::string_view name) const {
  std::string message = "unknown output '" + std::string(name) + "'; the engine's outputs are ";
  for (std::size_t i = 0; i < outputs_.size(); ++i) {
    message += (i == 0 ? "" : ", ") + describe(outputs_[i]);
  }
  throw InputError(message);
}

void Signature::throw_missing_input(const std::vector<bool>& present) const {
  std::string missing;
  int count = 0;
  for (std::size_t i = 0; i < inputs_.size(); ++i) {
    if (i >= present.size() || !present[i]) {
      missing += (count++ == 0 ? "" : ", ") + describe(inputs_[i]);
    }
  }
  throw InputError(std::string(count == 1 ? "missing input " : "missing inputs ") + missing);
}

void Signature::check_input(int index, const TensorArg& arg, int device) const {
  const TensorInfo& info = inputs_[static_cast<std::size_t>(index)];
  if (arg.dtype != info.dtype) {
    throw InputError("input '" + info.name + "': expected dtype " + dtype_name(info.dtype) +
                     ", received " + dtype_name(arg.dtype));
  }
  if (arg.shape.rank != info.shape.rank) {
    throw InputError("input '" + info.name + "': expected " + dimensions(info.shape.rank) + " " +
                     info.shape.str() + ", received " + dimensions(arg.shape.rank) + " " +
                     arg.shape.str());
  }
  for (int i = 0; i < info.shape.rank; ++i) {
    if (arg.shape.d[i] < 0 || (info.shape.d[i] >= 0 && arg.shape.d[i] != info.shape.d[i])) {
      throw InputError("input '" + info.name + "': expected shape " + info.shape.str() +
                       ", received " + arg.shape.str() + " (dimension " + std::to_string(i) +
                       " must be " +
                       (info.shape.d[i] >= 0 ? std::to_string(info.shape.d[i]) : ">= 0") + ")");
    }
  }
  if (info.host_memory && arg.location == Location::Device) {
    throw InputError("input '" + info.name +
                     "' is a shape tensor that TensorRT reads from host memory: expected a "
                     "host array (numpy), received a device array");
  }
  if (arg.location == Location::Device) {
    if (arg.device != device) {
      throw InputError("input '" + info.name +
                       "': expected a tensor on cuda:" + std::to_string(device) +
                       " (the session's device) or in host memory, "
                       "received one on cuda:" +
                       std::to_string(arg.device));
    }
    if (!arg.contiguous) {
      throw InputError("input '" + info.name +
                       "': expected a contiguous (row-major) device "
                       "array, received a strided one of shape " +
                       arg.shape.str() + "; make it contiguous first (e.g. tensor.contiguous())");
    }
  }
}

bool Signature::profile_accepts(int profile, const TensorArg* inputs) const noexcept {
  for (std::size_t i = 0; i < inputs_.size(); ++i) {
    if (!within(inputs[i].shape, inputs_[i].profiles[static_cast<std::size_t>(profile)]) ||
        !values_within(inputs_[i], inputs[i], profile)) {
      return false;
    }
  }
  return true;
}

int Signature::select_profile(const TensorArg* inputs, int preferred) const {
  if (preferred >= 0 && preferred < num_profiles_ && profile_accepts(preferred, inputs)) {
    return preferred;
  }
  for (int profile = 0; profile < num_profiles_; ++profile) {
    if (profile_accepts(profile, inputs)) {
      return profile;
    }
  }
  // Strings only: no iostreams in this library (see TensorRTLibrary::find).
  std::string message = num_profiles_ == 1
                            ? "input shapes are outside the engine's optimization profile: "
                            : "input shapes are outside every optimization profile of the engine: ";
  for (int profile = 0; profile < num_profiles_; ++profile) {
    for (std::size_t i = 0; i < inputs_.size(); ++i) {
      const ProfileRange& range = inputs_[i].profiles[static_cast<std::size_t>(profile)];
      const bool shape_fits = within(inputs[i].shape, range);
      if (!shape_fits || !values_within(inputs_[i], inputs[i], profile)) {
        message += profile == 0 ? "" : "; ";
        if (num_profiles_ > 1) {
          message += "profile " + std::to_string(profile) + ": ";
        }
        message += "input '" + inputs_[i].name + "' has ";
        message +=
            shape_fits
                ? "values " + shape_values(inputs[i]).str() + ", allowed " +
                      range_text(inputs_[i].value_profiles[static_cast<std::size_t>(profile)])
                : "shape " + inputs[i].shape.str() + ", allowed " + range_text(range);
        break;
      }
    }
  }
  throw InputError(message);
}

int Signature::check_inputs(const TensorArg* inputs, int device, int preferred) const {
  for (std::size_t i = 0; i < inputs_.size(); ++i) {
    check_input(static_cast<int>(i), inputs[i], device);
  }
  return select_profile(inputs, preferred);
}

void Signature::check_output(int index, const TensorArg& arg, const Dims& expected,
                             int device) const {
  const TensorInfo& info = outputs_[static_cast<std::size_t>(index)];
  if (expected.is_dynamic()) {
    throw InputError("output '" + info.name +
                     "': its shape depends on the data, so no buffer "
                     "can be given for it");
  }
  if (arg.dtype != info.dtype || arg.shape != expected) {
    throw InputError("output '" + info.name + "': expected a buffer of dtype " +
                     dtype_name(info.dtype) + " and shape " + expected.str() + ", received " +
                     dtype_name(arg.dtype) + " " + arg.shape.str());
  }
  if (!arg.contiguous) {
    throw InputError("output '" + info.name +
                     "': expected a contiguous (row-major) buffer, "
                     "received a strided one");
  }
  if (!arg.writable) {
    throw InputError("output '" + info.name + "': the buffer given is read-only");
  }
  if (arg.location == Location::Device && arg.device != device) {
    throw InputError("output '" + info.name +
                     "': expected a buffer on cuda:" + std::to_string(device) +
                     " or in host memory, received one on cuda:" + std::to_string(arg.device));
  }
}

}  // namespace trtfast
