// The DLPack ABI (v1.0 and the legacy unversioned form), declared from the DLPack specification:
// only the parts trtfast produces and consumes.
#pragma once

#include <cstdint>

namespace trtfast::python::dlpack {

constexpr std::int32_t kCPU = 1;
constexpr std::int32_t kCUDA = 2;
constexpr std::int32_t kCUDAHost = 3;
constexpr std::int32_t kCUDAManaged = 13;

constexpr std::uint8_t kInt = 0;
constexpr std::uint8_t kUInt = 1;
constexpr std::uint8_t kFloat = 2;
constexpr std::uint8_t kBfloat = 4;
constexpr std::uint8_t kBool = 6;

constexpr std::uint64_t kFlagReadOnly = 1;

// The major version trtfast reads; a tensor of another major must not be touched (only deleted).
constexpr std::uint32_t kMajorVersion = 1;

// Stream values of __dlpack__(stream=...) for CUDA besides handles.
constexpr std::int64_t kStreamNoSync = -1;
constexpr std::int64_t kStreamLegacy = 1;
constexpr std::int64_t kStreamPerThread = 2;

constexpr const char* kCapsule = "dltensor";
constexpr const char* kCapsuleVersioned = "dltensor_versioned";
constexpr const char* kCapsuleUsed = "used_dltensor";
constexpr const char* kCapsuleVersionedUsed = "used_dltensor_versioned";

struct Device {
  std::int32_t device_type;
  std::int32_t device_id;
};

struct DataType {
  std::uint8_t code;
  std::uint8_t bits;
  std::uint16_t lanes;
};

struct Tensor {
  void* data;
  Device device;
  std::int32_t ndim;
  DataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;  // in elements; null for a compact row-major tensor
  std::uint64_t byte_offset;
};

struct ManagedTensor {
  Tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);
};

struct Version {
  std::uint32_t major;
  std::uint32_t minor;
};

struct ManagedTensorVersioned {
  Version version;
  void* manager_ctx;
  void (*deleter)(ManagedTensorVersioned* self);
  std::uint64_t flags;
  Tensor dl_tensor;
};

}  // namespace trtfast::python::dlpack
