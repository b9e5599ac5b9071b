// An engine's IO signature (names, dtypes, shapes with -1, profile ranges) and the checks a
// caller's tensors must pass before anything runs. No CUDA, no TensorRT: testable anywhere.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

// Exported from libtrtfast_core.so to the bindings and the adapters, which hide their own symbols.
#pragma GCC visibility push(default)

namespace trtfast {

// Element types, named as numpy (or ml_dtypes) names them.
enum class DataType : std::int32_t {
  Float32,
  Float16,
  BFloat16,
  Int8,
  UInt8,
  Int32,
  Int64,
  Bool,
  Float8E4M3,
  Int4,
  Float4E2M1,
  Float8E8M0,
};

const char* dtype_name(DataType dtype) noexcept;
// Throws InputError for a name that is not one of dtype_name's.
DataType dtype_from_name(std::string_view name);
// Bytes per element; 0 for the packed sub-byte types (int4, float4), which sessions refuse.
std::size_t dtype_size(DataType dtype) noexcept;

// TensorRT's limit on dimensions; shapes live inline so the hot path never allocates.
constexpr int kMaxRank = 8;

struct Dims {
  int rank = 0;
  std::array<std::int64_t, kMaxRank> d{};

  Dims() = default;
  Dims(std::initializer_list<std::int64_t> dims);
  static Dims from(const std::vector<std::int64_t>& dims);  // throws InputError past kMaxRank
  std::vector<std::int64_t> to_vector() const;

  // Product of the dimensions; 0 for an empty tensor, 1 for a scalar; -1 when any is dynamic.
  std::int64_t volume() const noexcept;
  bool is_dynamic() const noexcept;
  std::string str() const;  // "[2, -1, 4]"

  friend bool operator==(const Dims& a, const Dims& b) noexcept;
  friend bool operator!=(const Dims& a, const Dims& b) noexcept { return !(a == b); }
};

struct ProfileRange {
  Dims min;
  Dims opt;
  Dims max;
};

struct TensorInfo {
  std::string name;
  DataType dtype = DataType::Float32;
  Dims shape;                          // -1 for a dynamic dimension
  std::vector<ProfileRange> profiles;  // one per optimization profile; empty for outputs
  // Inputs: a shape tensor that TensorRT reads from host memory (TensorLocation::kHOST); its
  // values decide output shapes.
  bool host_memory = false;
  // Shape-tensor inputs: one range of values per profile (min, opt, max; `rank` values each).
  std::vector<ProfileRange> value_profiles;
  // A layout other than dense row-major (TensorRT's kLINEAR), as "kHWC8 in profile 1"; empty
  // when linear. Sessions size and copy tensors as row-major, so the Signature refuses these.
  std::string nonlinear_format;
  // Outputs: the input whose memory this output shares (TensorRT's getAliasedInputTensor);
  // empty when none.
  std::string aliased_input;
};

enum class Location { Host, Device };

// A caller's tensor as the session sees it: memory, type and shape, nothing owned.
struct TensorArg {
  void* data = nullptr;
  DataType dtype = DataType::Float32;
  Dims shape;
  Location location = Location::Host;
  int device = -1;         // the CUDA device holding it, for Location::Device
  bool contiguous = true;  // row-major without gaps
  bool writable = true;    // matters for outputs only
  // Host memory that is page-locked: copied by DMA straight from and to the caller's memory.
  bool pinned = false;
};

class Signature {
 public:
  Signature() = default;
  // Inputs carry one ProfileRange per profile; static inputs get their shape as the range.
  // Throws EngineCompatibilityError for a tensor of a non-linear format, Error for an alias
  // naming no input of the same dtype.
  Signature(std::vector<TensorInfo> inputs, std::vector<TensorInfo> outputs, int num_profiles);

  const std::vector<TensorInfo>& inputs() const noexcept { return inputs_; }
  const std::vector<TensorInfo>& outputs() const noexcept { return outputs_; }
  int num_profiles() const noexcept { return num_profiles_; }
  int input_index(std::string_view name) const noexcept;   // -1 when absent
  int output_index(std::string_view name) const noexcept;  // -1 when absent
  // The input output `output` shares memory with; -1 when none.
  int aliased_input(int output) const noexcept {
    return aliased_inputs_[static_cast<std::size_t>(output)];
  }

  [[noreturn]] void throw_unknown_input(std::string_view name) const;
  [[noreturn]] void throw_unknown_output(std::string_view name) const;
  // `present` has one flag per input.
  [[noreturn]] void throw_missing_input(const std::vector<bool>& present) const;

  // Checks one input's dtype, rank, fixed dimensions, and (for device memory) device and layout.
  // `device` is the session's device.
  void check_input(int index, const TensorArg& arg, int device) const;
  // True when profile `profile` accepts every input shape.
  bool profile_accepts(int profile, const TensorArg* inputs) const noexcept;
  // The profile to run: `preferred` when it accepts the shapes (no switch), else the first that
  // does. Throws InputError naming, for each profile, the input it rejects and its range.
  int select_profile(const TensorArg* inputs, int preferred) const;
  // All of check_input, then select_profile: what a call's inputs must pass.
  int check_inputs(const TensorArg* inputs, int device, int preferred) const;
  // Checks a caller's output buffer against the shape the engine will produce.
  void check_output(int index, const TensorArg& arg, const Dims& expected, int device) const;

  std::string describe(const TensorInfo& tensor) const;  // "'x' (float32, [-1, 4])"

 private:
  std::vector<TensorInfo> inputs_;
  std::vector<TensorInfo> outputs_;
  std::vector<int> aliased_inputs_;
  int num_profiles_ = 1;
};

}  // namespace trtfast

#pragma GCC visibility pop
