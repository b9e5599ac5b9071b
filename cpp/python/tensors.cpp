#include "tensors.hpp"

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "dlpack.hpp"
#include "trtfast/cuda.hpp"
#include "trtfast/error.hpp"
#include "trtfast/host_memory.hpp"

namespace py = pybind11;

namespace trtfast::python {

namespace {

constexpr std::size_t kNumDTypes = static_cast<std::size_t>(DataType::Float8E8M0) + 1;

std::size_t slot(DataType dtype) { return static_cast<std::size_t>(dtype); }

// Interned attribute names: looked up on every call, created once.
struct Names {
  py::str is_cuda{"is_cuda"};
  py::str data_ptr{"data_ptr"};
  py::str shape{"shape"};
  py::str dtype{"dtype"};
  py::str get_device{"get_device"};
  py::str is_contiguous{"is_contiguous"};
  py::str cuda_array_interface{"__cuda_array_interface__"};
  py::str dlpack{"__dlpack__"};
  py::str dlpack_device{"__dlpack_device__"};
  py::str typestr{"typestr"};
  py::str data{"data"};
  py::str strides{"strides"};
  py::str stream{"stream"};
  py::str mask{"mask"};
  py::str max_version{"max_version"};
  py::tuple dlpack_version{py::make_tuple(dlpack::kMajorVersion, 0)};
};

const Names& names() {
  static auto* value = new Names();  // never destroyed: outlives the interpreter's teardown
  return *value;
}

struct NumpyTypes {
  py::module_ numpy;
  std::array<py::object, kNumDTypes> by_type;
};

const NumpyTypes& numpy_types() {
  static NumpyTypes* value = [] {
    auto* types = new NumpyTypes();
    types->numpy = py::module_::import("numpy");
    py::object ml_dtypes = py::none();
    try {
      ml_dtypes = py::module_::import("ml_dtypes");
    } catch (py::error_already_set&) {
      // Optional: without it bfloat16 and float8 tensors travel only as device arrays.
    }
    for (std::size_t i = 0; i < kNumDTypes; ++i) {
      const char* name = dtype_name(static_cast<DataType>(i));
      types->by_type[i] = py::none();
      if (dtype_size(static_cast<DataType>(i)) == 0) {
        continue;
      }
      try {
        if (py::hasattr(types->numpy, name) && std::string(name) != "bool") {
          types->by_type[i] = types->numpy.attr("dtype")(types->numpy.attr(name));
        } else if (std::string(name) == "bool") {
          types->by_type[i] = types->numpy.attr("dtype")("bool");
        } else if (!ml_dtypes.is_none() && py::hasattr(ml_dtypes, name)) {
          types->by_type[i] = types->numpy.attr("dtype")(ml_dtypes.attr(name));
        }
      } catch (py::error_already_set&) {
        types->by_type[i] = py::none();
      }
    }
    return types;
  }();
  return *value;
}

struct TorchTypes {
  PyTypeObject* tensor = nullptr;
  py::dict dtypes;  // torch.dtype -> DataType
  py::object from_numpy;
  py::object from_dlpack;
};

// torch's Tensor type once torch is imported (never imported here: a caller's tensor means the
// caller imported it).
TorchTypes* torch_types() {
  static TorchTypes* value = nullptr;
  if (value != nullptr) {
    return value;
  }
  PyObject* modules = PyImport_GetModuleDict();
  PyObject* torch = PyDict_GetItemString(modules, "torch");
  if (torch == nullptr || !PyObject_HasAttrString(torch, "Tensor")) {
    return nullptr;
  }
  auto* types = new TorchTypes();
  py::handle module(torch);
  types->tensor = reinterpret_cast<PyTypeObject*>(module.attr("Tensor").ptr());
  types->from_numpy = module.attr("from_numpy");
  types->from_dlpack = module.attr("from_dlpack");
  const std::pair<const char*, DataType> known[] = {
      {"float32", DataType::Float32},
      {"float16", DataType::Float16},
      {"bfloat16", DataType::BFloat16},
      {"int8", DataType::Int8},
      {"uint8", DataType::UInt8},
      {"int32", DataType::Int32},
      {"int64", DataType::Int64},
      {"bool", DataType::Bool},
      {"float8_e4m3fn", DataType::Float8E4M3},
      {"float8_e8m0fnu", DataType::Float8E8M0},
  };
  for (const auto& [name, dtype] : known) {
    if (py::hasattr(module, name)) {
      types->dtypes[module.attr(name)] = static_cast<int>(dtype);
    }
  }
  value = types;
  return value;
}

[[noreturn]] void throw_dtype(const char* role, const TensorInfo& info,
                              const std::string& received) {
  throw InputError(std::string(role) + " '" + info.name + "': expected dtype " +
                   dtype_name(info.dtype) + ", received " + received);
}

const char* role_of(bool is_output) { return is_output ? "output" : "input"; }

bool dtype_from_numpy(const py::dtype& dtype, DataType& out) {
  if (dtype.byteorder() == '>') {
    return false;  // byte-swapped: trtfast's hosts are little-endian
  }
  const auto itemsize = dtype.itemsize();
  switch (dtype.num()) {
    case 0:
      out = DataType::Bool;
      return true;
    case 1:
      out = DataType::Int8;
      return true;
    case 2:
      out = DataType::UInt8;
      return true;
    case 5:
    case 7:
    case 9:
      if (itemsize == 4 || itemsize == 8) {
        out = itemsize == 4 ? DataType::Int32 : DataType::Int64;
        return true;
      }
      return false;
    case 11:
      out = DataType::Float32;
      return true;
    case 23:
      out = DataType::Float16;
      return true;
    default:
      break;
  }
  const NumpyTypes& types = numpy_types();
  for (DataType candidate : {DataType::BFloat16, DataType::Float8E4M3, DataType::Float8E8M0}) {
    const py::object& known = types.by_type[slot(candidate)];
    if (!known.is_none() && dtype.equal(py::reinterpret_borrow<py::dtype>(known))) {
      out = candidate;
      return true;
    }
  }
  return false;
}

void set_shape(const char* role, const TensorInfo& info, int rank, TensorArg& arg) {
  if (rank > kMaxRank || rank < 0) {
    throw InputError(std::string(role) + " '" + info.name + "': expected " +
                     std::to_string(info.shape.rank) +
                     (info.shape.rank == 1 ? " dimension " : " dimensions ") + info.shape.str() +
                     ", received " + std::to_string(rank) + " dimensions");
  }
  arg.shape.rank = rank;
}

// Row-major with no gaps (strides in elements; size-1 dimensions may have any stride).
bool compact(const Dims& shape, const std::int64_t* strides, std::int64_t unit) {
  if (strides == nullptr || shape.volume() == 0) {
    return true;
  }
  std::int64_t expected = unit;
  for (int i = shape.rank - 1; i >= 0; --i) {
    const std::int64_t extent = shape.d[static_cast<std::size_t>(i)];
    if (extent != 1 && strides[i] != expected) {
      return false;
    }
    expected *= extent;
  }
  return true;
}

void read_numpy(py::array array, const TensorInfo& info, bool is_output, TensorArg& arg,
                Keep& keep) {
  const char* role = role_of(is_output);
  auto* proxy = py::detail::array_proxy(array.ptr());
  const py::object& expected = numpy_types().by_type[slot(info.dtype)];
  if (!expected.is_none() && proxy->descr == expected.ptr()) {
    arg.dtype = info.dtype;
  } else {
    const auto dtype = py::reinterpret_borrow<py::dtype>(proxy->descr);
    if (!dtype_from_numpy(dtype, arg.dtype)) {
      throw_dtype(role, info, "numpy " + std::string(py::str(dtype)));
    }
  }
  const bool contiguous = (proxy->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) != 0;
  if (!contiguous && !is_output) {
    // Host arrays are staged anyway: a contiguous copy costs one host copy.
    array = py::reinterpret_steal<py::array>(
        py::detail::npy_api::get().PyArray_NewCopy_(array.ptr(), 0 /* NPY_CORDER */));
    if (!array) {
      throw py::error_already_set();
    }
    keep.hold(array);
    proxy = py::detail::array_proxy(array.ptr());
  }
  set_shape(role, info, proxy->nd, arg);
  for (int i = 0; i < proxy->nd; ++i) {
    arg.shape.d[static_cast<std::size_t>(i)] = proxy->dimensions[i];
  }
  arg.data = proxy->data;
  arg.location = Location::Host;
  arg.device = -1;
  arg.contiguous = contiguous || !is_output;
  arg.writable = (proxy->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_) != 0;
  // Page-locked memory is copied by DMA without staging. Pooled arrays are known by their base;
  // others are looked up when large enough for the lookup to pay.
  const cuda::HostCopyTuning& tuning = cuda::host_copy_tuning();
  arg.pinned = false;
  if (tuning.zero_copy && arg.contiguous) {
    const std::int64_t volume = arg.shape.volume();
    const std::size_t bytes =
        volume > 0 ? static_cast<std::size_t>(volume) * dtype_size(arg.dtype) : 0;
    arg.pinned = is_pooled_pinned(proxy->base) ||
                 (bytes >= tuning.pinned_check_min_bytes && cuda::is_pinned_host(arg.data, bytes));
  }
}

std::int64_t as_int64(PyObject* object) {
  const long long value = PyLong_AsLongLong(object);
  if (value == -1 && PyErr_Occurred()) {
    throw py::error_already_set();
  }
  return value;
}

void read_tuple_shape(const char* role, const TensorInfo& info, py::handle shape, TensorArg& arg) {
  if (!PyTuple_Check(shape.ptr())) {
    throw InputError(std::string(role) + " '" + info.name + "': its shape is not a tuple");
  }
  const auto rank = static_cast<int>(PyTuple_GET_SIZE(shape.ptr()));
  set_shape(role, info, rank, arg);
  for (int i = 0; i < rank; ++i) {
    arg.shape.d[static_cast<std::size_t>(i)] = as_int64(PyTuple_GET_ITEM(shape.ptr(), i));
  }
}

// tensor.name() without creating a bound method object first.
py::object call_method(py::handle tensor, const py::str& name) {
  PyObject* self = tensor.ptr();
  PyObject* result =
      PyObject_VectorcallMethod(name.ptr(), &self, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
  if (result == nullptr) {
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(result);
}

void read_torch(py::handle tensor, const TorchTypes& torch, const TensorInfo& info, bool is_output,
                TensorArg& arg, Keep& keep) {
  const Names& n = names();
  const char* role = role_of(is_output);
  if (!tensor.attr(n.is_cuda).cast<bool>()) {
    py::object array;
    try {
      array = tensor.attr("detach")().attr("numpy")();
    } catch (py::error_already_set& error) {
      throw InputError(std::string(role) + " '" + info.name +
                       "': cannot read this CPU tensor "
                       "as a numpy array (" +
                       error.what() + "); pass a numpy array or a CUDA tensor");
    }
    keep.hold(array);
    read_numpy(py::reinterpret_borrow<py::array>(array), info, is_output, arg, keep);
    if (is_output) {
      keep.hold(py::reinterpret_borrow<py::object>(tensor));
    }
    return;
  }
  // data_ptr() and friends cost well under a microsecond; __cuda_array_interface__ costs several.
  const py::object dtype = tensor.attr(n.dtype);
  PyObject* code = PyDict_GetItemWithError(torch.dtypes.ptr(), dtype.ptr());
  if (code == nullptr) {
    if (PyErr_Occurred()) {
      throw py::error_already_set();
    }
    throw_dtype(role, info, std::string(py::str(dtype)));
  }
  arg.dtype = static_cast<DataType>(as_int64(code));
  read_tuple_shape(role, info, tensor.attr(n.shape), arg);
  arg.data = PyLong_AsVoidPtr(call_method(tensor, n.data_ptr).ptr());
  if (arg.data == nullptr && PyErr_Occurred()) {
    throw py::error_already_set();
  }
  arg.location = Location::Device;
  arg.device = static_cast<int>(as_int64(call_method(tensor, n.get_device).ptr()));
  const int contiguous = PyObject_IsTrue(call_method(tensor, n.is_contiguous).ptr());
  if (contiguous < 0) {
    throw py::error_already_set();
  }
  arg.contiguous = contiguous == 1;
  arg.writable = true;
}

bool dtype_from_typestr(const std::string& typestr, DataType& out) {
  if (typestr.size() < 3 || typestr[0] == '>') {
    return false;
  }
  const std::string kind = typestr.substr(1);
  if (kind == "f4") {
    out = DataType::Float32;
    return true;
  }
  if (kind == "f2") {
    out = DataType::Float16;
    return true;
  }
  if (kind == "i1") {
    out = DataType::Int8;
    return true;
  }
  if (kind == "u1") {
    out = DataType::UInt8;
    return true;
  }
  if (kind == "i4") {
    out = DataType::Int32;
    return true;
  }
  if (kind == "i8") {
    out = DataType::Int64;
    return true;
  }
  if (kind == "b1") {
    out = DataType::Bool;
    return true;
  }
  return false;
}

cudaStream_t stream_from_int(std::int64_t value) {
  if (value == dlpack::kStreamLegacy) {
    return cudaStreamLegacy;
  }
  if (value == dlpack::kStreamPerThread) {
    return cudaStreamPerThread;
  }
  return reinterpret_cast<cudaStream_t>(static_cast<std::uintptr_t>(value));
}

void read_cuda_array_interface(py::handle interface, const TensorInfo& info, bool is_output,
                               TensorArg& arg, Keep& keep, int session_device) {
  const Names& n = names();
  const char* role = role_of(is_output);
  if (!PyDict_Check(interface.ptr())) {
    throw InputError(std::string(role) + " '" + info.name +
                     "': __cuda_array_interface__ is not a dict");
  }
  const auto dict = py::reinterpret_borrow<py::dict>(interface);
  if (dict.contains(n.mask) && !dict[n.mask].is_none()) {
    throw InputError(std::string(role) + " '" + info.name +
                     "': expected an array without a mask, received a masked "
                     "__cuda_array_interface__ array");
  }
  const std::string typestr = py::str(dict[n.typestr]);
  if (!dtype_from_typestr(typestr, arg.dtype)) {
    throw_dtype(role, info, "typestr '" + typestr + "'");
  }
  read_tuple_shape(role, info, dict[n.shape], arg);
  const py::tuple data = dict[n.data];
  arg.data = PyLong_AsVoidPtr(data[0].ptr());
  arg.writable = !data[1].cast<bool>();
  arg.contiguous = true;
  if (dict.contains(n.strides) && !dict[n.strides].is_none()) {
    const py::tuple strides = dict[n.strides];
    std::array<std::int64_t, kMaxRank> values{};
    for (int i = 0; i < arg.shape.rank && i < static_cast<int>(strides.size()); ++i) {
      values[static_cast<std::size_t>(i)] =
          strides[static_cast<std::size_t>(i)].cast<std::int64_t>();
    }
    arg.contiguous =
        compact(arg.shape, values.data(), static_cast<std::int64_t>(dtype_size(arg.dtype)));
  }
  // v3: the consumer waits on the producer's stream before it reads or writes the data.
  cudaStream_t producer = nullptr;
  bool has_producer = false;
  if (dict.contains(n.stream) && !dict[n.stream].is_none()) {
    const auto value = dict[n.stream].cast<std::int64_t>();
    if (value == 0) {
      throw InputError(std::string(role) + " '" + info.name +
                       "': its __cuda_array_interface__ stream is 0, which the protocol "
                       "forbids as ambiguous (1 is the legacy default stream, 2 the per-thread "
                       "one)");
    }
    producer = stream_from_int(value);
    has_producer = true;
  }
  arg.location = Location::Device;
  arg.device = -1;
  if (arg.data == nullptr) {
    if (arg.shape.volume() != 0) {
      throw InputError(std::string(role) + " '" + info.name +
                       "': its __cuda_array_interface__ pointer is null, but its shape " +
                       arg.shape.str() + " holds elements");
    }
    arg.device = session_device;  // an empty array has no memory, so no device of its own
  } else {
    const std::optional<cudaPointerAttributes> found = cuda::pointer_attributes(arg.data);
    const cudaPointerAttributes attributes = found.value_or(cudaPointerAttributes{});
    if (!found || attributes.type == cudaMemoryTypeUnregistered) {
      throw InputError(std::string(role) + " '" + info.name +
                       "': its __cuda_array_interface__ "
                       "pointer is not CUDA memory");
    }
    if (attributes.type == cudaMemoryTypeHost) {
      arg.location = Location::Host;  // page-locked host memory: copied by DMA, unstaged
      arg.pinned = true;
      if (!arg.contiguous) {
        throw InputError(std::string(role) + " '" + info.name +
                         "': expected a contiguous array, received a strided one");
      }
      if (has_producer) {
        keep.add_host_stream(producer);  // the CPU copies it: the CPU waits
      }
      return;
    }
    arg.device = attributes.device;
  }
  if (has_producer) {
    const int device = cuda::stream_device(producer);
    if (device >= 0 && device != arg.device) {
      throw InputError(
          std::string(role) + " '" + info.name +
          "': its __cuda_array_interface__ stream belongs to cuda:" + std::to_string(device) +
          ", the array to cuda:" + std::to_string(arg.device) +
          "; expected a stream of the array's device");
    }
    keep.add_stream(producer);
  }
}

void read_dlpack(py::handle value, const TensorInfo& info, bool is_output, TensorArg& arg,
                 Keep& keep, cudaStream_t consumer) {
  const Names& n = names();
  const char* role = role_of(is_output);
  const py::tuple device = value.attr(n.dlpack_device)();
  const int device_type = device[0].cast<int>();
  if (device_type == dlpack::kCPU || device_type == dlpack::kCUDAHost) {
    py::object array = numpy_types().numpy.attr("from_dlpack")(value);
    keep.hold(array);
    read_numpy(py::reinterpret_borrow<py::array>(array), info, is_output, arg, keep);
    return;
  }
  if (device_type != dlpack::kCUDA && device_type != dlpack::kCUDAManaged) {
    throw InputError(std::string(role) + " '" + info.name + "': DLPack device type " +
                     std::to_string(device_type) + " is neither host nor CUDA memory");
  }
  // The producer orders its pending work before `consumer`; a check that runs no GPU work
  // (no consumer) asks for no ordering: -1, since the array API forbids 0 as ambiguous.
  const py::object stream = consumer == nullptr
                                ? py::object(py::int_(dlpack::kStreamNoSync))
                                : py::object(py::int_(reinterpret_cast<std::uintptr_t>(consumer)));
  py::object capsule;
  try {
    capsule =
        value.attr(n.dlpack)(py::arg("stream") = stream, py::arg("max_version") = n.dlpack_version);
  } catch (py::error_already_set& error) {
    if (!error.matches(PyExc_TypeError)) {
      throw;
    }
    // A producer older than DLPack 1.0 takes no max_version.
    capsule = value.attr(n.dlpack)(py::arg("stream") = stream);
  }
  dlpack::Tensor* tensor = nullptr;
  bool read_only = false;
  if (PyCapsule_IsValid(capsule.ptr(), dlpack::kCapsuleVersioned)) {
    auto* managed = static_cast<dlpack::ManagedTensorVersioned*>(
        PyCapsule_GetPointer(capsule.ptr(), dlpack::kCapsuleVersioned));
    PyCapsule_SetName(capsule.ptr(), dlpack::kCapsuleVersionedUsed);
    keep.hold_dlpack(managed, true);  // deleted by keep, whatever its version
    if (managed->version.major != dlpack::kMajorVersion) {
      throw InputError(std::string(role) + " '" + info.name + "': its DLPack tensor has version " +
                       std::to_string(managed->version.major) + "." +
                       std::to_string(managed->version.minor) + "; expected major version " +
                       std::to_string(dlpack::kMajorVersion));
    }
    tensor = &managed->dl_tensor;
    read_only = (managed->flags & dlpack::kFlagReadOnly) != 0;
  } else if (PyCapsule_IsValid(capsule.ptr(), dlpack::kCapsule)) {
    auto* managed =
        static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), dlpack::kCapsule));
    PyCapsule_SetName(capsule.ptr(), dlpack::kCapsuleUsed);
    keep.hold_dlpack(managed, false);
    tensor = &managed->dl_tensor;
  } else {
    throw InputError(std::string(role) + " '" + info.name +
                     "': __dlpack__ returned something other than a DLPack capsule");
  }
  const dlpack::DataType type = tensor->dtype;
  bool known = type.lanes == 1;
  if (known) {
    if (type.code == dlpack::kFloat && type.bits == 32)
      arg.dtype = DataType::Float32;
    else if (type.code == dlpack::kFloat && type.bits == 16)
      arg.dtype = DataType::Float16;
    else if (type.code == dlpack::kBfloat && type.bits == 16)
      arg.dtype = DataType::BFloat16;
    else if (type.code == dlpack::kInt && type.bits == 8)
      arg.dtype = DataType::Int8;
    else if (type.code == dlpack::kUInt && type.bits == 8)
      arg.dtype = DataType::UInt8;
    else if (type.code == dlpack::kInt && type.bits == 32)
      arg.dtype = DataType::Int32;
    else if (type.code == dlpack::kInt && type.bits == 64)
      arg.dtype = DataType::Int64;
    else if (type.code == dlpack::kBool && type.bits == 8)
      arg.dtype = DataType::Bool;
    else
      known = false;
  }
  if (!known) {
    throw_dtype(role, info,
                "DLPack type (code " + std::to_string(type.code) + ", " +
                    std::to_string(type.bits) + " bits, " + std::to_string(type.lanes) + " lanes)");
  }
  set_shape(role, info, tensor->ndim, arg);
  for (int i = 0; i < tensor->ndim; ++i) {
    arg.shape.d[static_cast<std::size_t>(i)] = tensor->shape[i];
  }
  arg.data = static_cast<char*>(tensor->data) + tensor->byte_offset;
  arg.location = Location::Device;
  arg.device = tensor->device.device_id;
  arg.contiguous = compact(arg.shape, tensor->strides, 1);
  arg.writable = !read_only;
}

}  // namespace

// --- Keep ----------------------------------------------------------------------------------------

Keep::~Keep() {
  if (!dlpack_.empty() || !objects_.empty()) {
    py::gil_scoped_acquire gil;
    clear();
  }
}

void Keep::reserve(std::size_t count) {
  objects_.reserve(count);
  dlpack_.reserve(count);
  streams_.reserve(count);
  host_streams_.reserve(count);
}

void Keep::hold_dlpack(void* managed, bool versioned) { dlpack_.push_back({managed, versioned}); }

void Keep::clear() {
  for (const Held& held : dlpack_) {
    if (held.versioned) {
      auto* managed = static_cast<dlpack::ManagedTensorVersioned*>(held.managed);
      if (managed->deleter != nullptr) {
        managed->deleter(managed);
      }
    } else {
      auto* managed = static_cast<dlpack::ManagedTensor*>(held.managed);
      if (managed->deleter != nullptr) {
        managed->deleter(managed);
      }
    }
  }
  dlpack_.clear();
  objects_.clear();
  streams_.clear();
  host_streams_.clear();
}

// --- PendingReleases -----------------------------------------------------------------------------

void PendingReleases::defer(cudaStream_t consumer, std::shared_ptr<const void> owner) noexcept {
  try {
    cuda::Event done = [&] {
      std::lock_guard<std::mutex> lock(mutex_);
      if (spare_.empty()) {
        return cuda::Event(device_);
      }
      cuda::Event event = std::move(spare_.back());
      spare_.pop_back();
      return event;
    }();
    {
      // The default streams' handles mean the current device's: make it the blocks' device.
      const cuda::CurrentDevice current(device_);
      done.record(cuda::StreamView(consumer));
    }
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back({std::move(done), std::move(owner)});
    any_.store(true, std::memory_order_release);
  } catch (...) {
    // No event to order by (e.g. a stream of another device): wait here instead.
    cuda::synchronize_quietly(consumer);
  }
}

void PendingReleases::poll() {
  if (!any_.load(std::memory_order_acquire)) {
    return;
  }
  std::vector<std::shared_ptr<const void>> released;
  std::lock_guard<std::mutex> lock(mutex_);
  auto kept = pending_.begin();
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->done.query()) {
      released.push_back(std::move(it->owner));
      spare_.push_back(std::move(it->done));
    } else {
      *kept++ = std::move(*it);
    }
  }
  pending_.erase(kept, pending_.end());
  any_.store(!pending_.empty(), std::memory_order_release);
}

// --- TensorReader --------------------------------------------------------------------------------

TensorReader::TensorReader(const Signature& signature, int device)
    : signature_(&signature), device_(device) {
  for (std::size_t i = 0; i < signature.inputs().size(); ++i) {
    input_indices_[py::str(signature.inputs()[i].name)] = i;
    input_dtypes_.push_back(numpy_dtype(signature.inputs()[i].dtype));
  }
  for (std::size_t j = 0; j < signature.outputs().size(); ++j) {
    output_names_.emplace_back(signature.outputs()[j].name);
    output_indices_[output_names_.back()] = j;
    output_dtypes_.push_back(numpy_dtype(signature.outputs()[j].dtype));
  }
}

void TensorReader::read(py::handle value, const TensorInfo& info, bool is_output, TensorArg& arg,
                        Keep& keep, cudaStream_t consumer) const {
  const Names& n = names();
  // Whatever the caller does with its mapping or its names meanwhile, the memory this call (or
  // binding) reads and writes stays alive: one reference, no allocation (keep is reserved).
  keep.hold(py::reinterpret_borrow<py::object>(value));
  auto& api = py::detail::npy_api::get();
  if (api.PyArray_Check_(value.ptr())) {
    read_numpy(py::reinterpret_borrow<py::array>(value), info, is_output, arg, keep);
    return;
  }
  if (py::isinstance<DeviceArray>(value)) {
    const auto& array = value.cast<const DeviceArray&>();
    arg.data = array.data;
    arg.dtype = array.dtype;
    arg.shape = array.shape;
    arg.location = Location::Device;
    arg.device = array.device;
    arg.contiguous = true;
    arg.writable = true;
    return;
  }
  if (TorchTypes* torch = torch_types();
      torch != nullptr && PyObject_TypeCheck(value.ptr(), torch->tensor)) {
    read_torch(value, *torch, info, is_output, arg, keep);
    return;
  }
  if (PyObject* interface = PyObject_GetAttr(value.ptr(), n.cuda_array_interface.ptr())) {
    read_cuda_array_interface(py::reinterpret_steal<py::object>(interface), info, is_output, arg,
                              keep, device_);
    return;
  }
  PyErr_Clear();
  if (py::hasattr(value, n.dlpack) && py::hasattr(value, n.dlpack_device)) {
    read_dlpack(value, info, is_output, arg, keep, consumer);
    return;
  }
  if (is_output) {
    throw InputError("output '" + info.name +
                     "': expected a numpy array or a device array, "
                     "received " +
                     std::string(py::str(py::type::handle_of(value))));
  }
  // Lists, scalars, and other array-likes.
  py::object array = numpy_types().numpy.attr("asarray")(value);
  keep.hold(array);
  read_numpy(py::reinterpret_borrow<py::array>(array), info, is_output, arg, keep);
}

bool is_mapping(py::handle value) {
  static auto* mapping_type =  // never destroyed: outlives the interpreter's teardown
      new py::object(py::module_::import("collections.abc").attr("Mapping"));
  const int result = PyObject_IsInstance(value.ptr(), mapping_type->ptr());
  if (result < 0) {
    throw py::error_already_set();
  }
  return result == 1;
}

namespace {

bool is_identifier(const std::string& name) {
  return py::str(name).attr("isidentifier")().cast<bool>();
}

}  // namespace

void TensorReader::throw_not_by_name(py::handle value) const {
  const std::vector<TensorInfo>& inputs = signature_->inputs();
  std::string as_dict;
  std::string as_keywords;
  bool identifiers = true;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const std::string& name = inputs[i].name;
    as_dict += (i == 0 ? "{'" : ", '") + name + "': array";
    as_keywords += (i == 0 ? "" : ", ") + name + "=array";
    identifiers = identifiers && is_identifier(name);
  }
  as_dict += "}";
  const std::string received = py::str(py::type::of(value).attr("__name__")).cast<std::string>();
  std::string message = inputs.size() == 1
                            ? "inputs are passed by name or as one array, not as a " + received
                            : "this engine has " + std::to_string(inputs.size()) +
                                  " inputs, so they are passed by name, not as a " + received;
  message += ": run(" + as_dict + ")";
  if (identifiers) {
    message += " or run(" + as_keywords + ")";
  }
  message += "; the engine's inputs are ";
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    message += (i == 0 ? "" : ", ") + signature_->describe(inputs[i]);
  }
  throw InputError(message);
}

bool TensorReader::read_inputs(py::handle mapping, py::handle named, std::vector<TensorArg>& args,
                               std::vector<bool>& present, Keep& keep,
                               cudaStream_t consumer) const {
  std::fill(present.begin(), present.end(), false);
  TorchTypes* torch = torch_types();
  bool any_torch = false;
  const auto note_torch = [&](PyObject* value) {
    any_torch = any_torch || (torch != nullptr && PyObject_TypeCheck(value, torch->tensor));
  };
  const auto read_all = [&](py::handle dict) {
    PyObject* key = nullptr;
    PyObject* value = nullptr;
    Py_ssize_t position = 0;
    while (PyDict_Next(dict.ptr(), &position, &key, &value)) {
      PyObject* index = PyDict_GetItemWithError(input_indices_.ptr(), key);
      if (index == nullptr) {
        if (PyErr_Occurred()) {
          throw py::error_already_set();
        }
        signature_->throw_unknown_input(std::string(py::str(key)));
      }
      const auto i = static_cast<std::size_t>(as_int64(index));
      if (present[i]) {
        throw InputError("input '" + signature_->inputs()[i].name + "' is given twice");
      }
      present[i] = true;
      read(value, signature_->inputs()[i], false, args[i], keep, consumer);
      note_torch(value);
    }
  };
  if (!mapping.is_none()) {
    if (PyDict_Check(mapping.ptr())) {
      read_all(mapping);
    } else if (is_mapping(mapping)) {
      const py::dict copy(py::reinterpret_borrow<py::object>(mapping));
      keep.hold(copy);
      read_all(copy);
    } else if (signature_->inputs().size() == 1 && !PyList_Check(mapping.ptr()) &&
               !PyTuple_Check(mapping.ptr())) {
      // One input: one array passed positionally, as onnxruntime users and torch modules do.
      present[0] = true;
      read(mapping, signature_->inputs()[0], false, args[0], keep, consumer);
      note_torch(mapping.ptr());
    } else {
      throw_not_by_name(mapping);
    }
  }
  if (named && !named.is_none()) {
    read_all(named);
  }
  for (const bool given : present) {
    if (!given) {
      signature_->throw_missing_input(present);
    }
  }
  return any_torch;
}

py::object to_torch(py::handle result) {
  TorchTypes* torch = torch_types();
  if (torch == nullptr) {
    throw Error("torch results need torch imported");
  }
  if (py::isinstance<DeviceArray>(result)) {
    return torch->from_dlpack(result);
  }
  // torch.from_numpy knows no ml_dtypes types: their bits, viewed as torch's type.
  const std::string dtype = py::str(result.attr("dtype").attr("name"));
  for (const auto& [name, bits] : {std::pair{"bfloat16", "int16"}, {"float8_e4m3fn", "uint8"}}) {
    if (dtype == name) {
      return torch->from_numpy(result.attr("view")(bits))
          .attr("view")(py::module_::import("torch").attr(name));
    }
  }
  return torch->from_numpy(result);
}

int TensorReader::output_index(py::handle name) const {
  PyObject* index = PyDict_GetItemWithError(output_indices_.ptr(), name.ptr());
  if (index == nullptr) {
    if (PyErr_Occurred()) {
      throw py::error_already_set();
    }
    signature_->throw_unknown_output(std::string(py::str(name)));
  }
  return static_cast<int>(as_int64(index));
}

py::object numpy_dtype(DataType dtype) { return numpy_types().by_type[slot(dtype)]; }

py::array new_numpy(const py::object& dtype, const Dims& shape, void* data) {
  auto& api = py::detail::npy_api::get();
  std::array<Py_intptr_t, kMaxRank> dims{};
  for (int i = 0; i < shape.rank; ++i) {
    dims[static_cast<std::size_t>(i)] =
        static_cast<Py_intptr_t>(shape.d[static_cast<std::size_t>(i)]);
  }
  Py_INCREF(dtype.ptr());  // PyArray_NewFromDescr steals the descriptor
  const int flags = data == nullptr ? 0
                                    : py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                                          py::detail::npy_api::NPY_ARRAY_ALIGNED_ |
                                          py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  PyObject* array = api.PyArray_NewFromDescr_(api.PyArray_Type_, dtype.ptr(), shape.rank,
                                              dims.data(), nullptr, data, flags, nullptr);
  if (array == nullptr) {
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::array>(array);
}

// --- DeviceArray ---------------------------------------------------------------------------------

std::size_t DeviceArray::nbytes() const noexcept {
  const std::int64_t volume = shape.volume();
  return volume <= 0 ? 0 : static_cast<std::size_t>(volume) * dtype_size(dtype);
}

namespace {

// What a DLPack consumer holds: the tensor description and a reference keeping memory alive.
template <typename Managed>
struct Export {
  Managed managed{};
  std::shared_ptr<const void> owner;
  std::array<std::int64_t, kMaxRank> shape{};
  // A pooled block, and the stream the consumer named: its release waits for that stream's work.
  std::shared_ptr<PendingReleases> releases;
  cudaStream_t consumer = nullptr;

  static void deleter(Managed* self) {
    auto* exported = static_cast<Export*>(self->manager_ctx);
    if (exported->releases) {
      exported->releases->defer(exported->consumer, std::move(exported->owner));
    }
    delete exported;
  }
};

dlpack::DataType to_dlpack(DataType dtype) {
  switch (dtype) {
    case DataType::Float32:
      return {dlpack::kFloat, 32, 1};
    case DataType::Float16:
      return {dlpack::kFloat, 16, 1};
    case DataType::BFloat16:
      return {dlpack::kBfloat, 16, 1};
    case DataType::Int8:
      return {dlpack::kInt, 8, 1};
    case DataType::UInt8:
      return {dlpack::kUInt, 8, 1};
    case DataType::Int32:
      return {dlpack::kInt, 32, 1};
    case DataType::Int64:
      return {dlpack::kInt, 64, 1};
    case DataType::Bool:
      return {dlpack::kBool, 8, 1};
    default:
      throw py::buffer_error(std::string("DLPack has no type for ") + dtype_name(dtype));
  }
}

const char* typestr(DataType dtype) {
  switch (dtype) {
    case DataType::Float32:
      return "<f4";
    case DataType::Float16:
      return "<f2";
    case DataType::Int8:
      return "|i1";
    case DataType::UInt8:
      return "|u1";
    case DataType::Int32:
      return "<i4";
    case DataType::Int64:
      return "<i8";
    case DataType::Bool:
      return "|b1";
    default:
      return nullptr;
  }
}

template <typename Managed>
void fill_tensor(Export<Managed>& exported, const DeviceArray& array, const py::object& stream) {
  for (int i = 0; i < array.shape.rank; ++i) {
    exported.shape[static_cast<std::size_t>(i)] = array.shape.d[static_cast<std::size_t>(i)];
  }
  dlpack::Tensor& tensor = exported.managed.dl_tensor;
  tensor.data = array.data;
  tensor.device = {dlpack::kCUDA, array.device};
  tensor.ndim = array.shape.rank;
  tensor.dtype = to_dlpack(array.dtype);
  tensor.shape = exported.shape.data();
  tensor.strides = nullptr;  // compact row-major
  tensor.byte_offset = 0;
  exported.owner = array.owner;
  // DLPack's CUDA streams: None and 1 the legacy default stream, 2 the per-thread one, -1 none
  // named (the consumer orders its work itself), anything else a handle.
  const std::int64_t value = stream.is_none() ? dlpack::kStreamLegacy : stream.cast<std::int64_t>();
  if (array.releases && value != dlpack::kStreamNoSync) {
    exported.releases = array.releases;
    exported.consumer = value == 0 ? cudaStreamLegacy : stream_from_int(value);
  }
  exported.managed.manager_ctx = &exported;
  exported.managed.deleter = &Export<Managed>::deleter;
}

// A capsule nobody consumed still owns its tensor.
template <typename Managed>
void release_unconsumed(PyObject* capsule, const char* name) {
  if (PyCapsule_IsValid(capsule, name)) {
    auto* managed = static_cast<Managed*>(PyCapsule_GetPointer(capsule, name));
    if (managed != nullptr && managed->deleter != nullptr) {
      managed->deleter(managed);
    }
  }
}

py::object to_capsule(const DeviceArray& array, bool versioned, const py::object& stream) {
  if (versioned) {
    auto exported = std::make_unique<Export<dlpack::ManagedTensorVersioned>>();
    fill_tensor(*exported, array, stream);
    exported->managed.version = {1, 0};
    exported->managed.flags = 0;
    PyObject* capsule =
        PyCapsule_New(&exported->managed, dlpack::kCapsuleVersioned, [](PyObject* c) {
          release_unconsumed<dlpack::ManagedTensorVersioned>(c, dlpack::kCapsuleVersioned);
        });
    if (capsule == nullptr) {
      throw py::error_already_set();
    }
    exported.release();
    return py::reinterpret_steal<py::object>(capsule);
  }
  auto exported = std::make_unique<Export<dlpack::ManagedTensor>>();
  fill_tensor(*exported, array, stream);
  PyObject* capsule = PyCapsule_New(&exported->managed, dlpack::kCapsule, [](PyObject* c) {
    release_unconsumed<dlpack::ManagedTensor>(c, dlpack::kCapsule);
  });
  if (capsule == nullptr) {
    throw py::error_already_set();
  }
  exported.release();
  return py::reinterpret_steal<py::object>(capsule);
}

py::array host_copy(const DeviceArray& a) {
  py::object dtype = numpy_dtype(a.dtype);
  if (dtype.is_none()) {
    throw InputError(std::string("numpy has no ") + dtype_name(a.dtype) +
                     " type; install ml_dtypes");
  }
  py::array result = new_numpy(dtype, a.shape);
  if (a.nbytes() > 0) {
    void* destination = result.mutable_data();
    py::gil_scoped_release release;
    cuda::copy_to_host(destination, a.data, a.nbytes());
  }
  return result;
}

py::tuple shape_tuple(const Dims& shape) {
  py::tuple result(static_cast<std::size_t>(shape.rank));
  for (int i = 0; i < shape.rank; ++i) {
    result[static_cast<std::size_t>(i)] = shape.d[static_cast<std::size_t>(i)];
  }
  return result;
}

}  // namespace

void bind_device_array(py::module_& module) {
  py::class_<DeviceArray>(module, "DeviceArray",
                          "CUDA device memory holding a result. torch.from_dlpack(a), "
                          "cupy.asarray(a) and cupy.from_dlpack(a) take it without a copy; "
                          "a.numpy() copies it to the host. A pooled result returns to its "
                          "session's pool with its last reference; a DLPack consumer's reference "
                          "waits for the work queued on the stream it named. Work reading it on "
                          "another stream must finish before the last reference goes.")
      .def_property_readonly("shape", [](const DeviceArray& a) { return shape_tuple(a.shape); })
      .def_property_readonly(
          "dtype", [](const DeviceArray& a) { return dtype_name(a.dtype); },
          "numpy's name for the element type.")
      .def_property_readonly("device", [](const DeviceArray& a) { return a.device; })
      .def_property_readonly(
          "ptr", [](const DeviceArray& a) { return reinterpret_cast<std::uintptr_t>(a.data); })
      .def_property_readonly("nbytes", &DeviceArray::nbytes)
      .def_property_readonly("ndim", [](const DeviceArray& a) { return a.shape.rank; })
      .def_property_readonly(
          "size", [](const DeviceArray& a) { return std::max<std::int64_t>(a.shape.volume(), 0); })
      .def_property_readonly(
          "__cuda_array_interface__",
          [](const DeviceArray& a) {
            const char* type = typestr(a.dtype);
            if (type == nullptr) {
              throw py::attribute_error(std::string("__cuda_array_interface__ has no type for ") +
                                        dtype_name(a.dtype) + "; use __dlpack__");
            }
            py::dict interface;
            interface["shape"] = shape_tuple(a.shape);
            interface["typestr"] = type;
            interface["data"] = py::make_tuple(reinterpret_cast<std::uintptr_t>(a.data), false);
            interface["strides"] = py::none();
            interface["version"] = 3;
            interface["stream"] = py::none();  // complete: the session synchronized
            return interface;
          })
      .def(
          "__dlpack__",
          [](const DeviceArray& a, const py::object& stream, const py::object& max_version,
             const py::object& dl_device, const py::object& copy) {
            // The data is complete (the session synchronized), so no stream needs ordering
            // before the consumer's work; `stream` orders the block's reuse after it.
            if (!dl_device.is_none()) {
              const py::tuple wanted = dl_device;
              if (wanted[0].cast<int>() != dlpack::kCUDA || wanted[1].cast<int>() != a.device) {
                throw py::buffer_error("this array lives on cuda:" + std::to_string(a.device) +
                                       " and is never copied to another device");
              }
            }
            if (!copy.is_none() && copy.cast<bool>()) {
              throw py::buffer_error("__dlpack__(copy=True) is not supported; copy after import");
            }
            const bool versioned =
                !max_version.is_none() && py::tuple(max_version)[0].cast<int>() >= 1;
            return to_capsule(a, versioned, stream);
          },
          py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
          py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack_device__",
           [](const DeviceArray& a) { return py::make_tuple(dlpack::kCUDA, a.device); })
      .def("numpy", &host_copy, "A host copy as a numpy array.")
      .def(
          "__array__",
          [](const DeviceArray& a, const py::object& dtype, const py::object& copy) {
            // numpy asks for no copy with copy=False; GPU memory has no host view to give.
            if (!copy.is_none() && !copy.cast<bool>()) {
              throw py::value_error(
                  "this DeviceArray lives in GPU memory, so numpy cannot view it without a "
                  "copy; a.numpy() (or np.asarray(a)) copies it to the host");
            }
            py::object result = host_copy(a);
            if (!dtype.is_none()) {
              result = result.attr("astype")(dtype, py::arg("copy") = false);
            }
            return result;
          },
          py::arg("dtype") = py::none(), py::kw_only(), py::arg("copy") = py::none(),
          "np.asarray(a): a host copy, as a.numpy() makes.")
      .def("__len__",
           [](const DeviceArray& a) {
             if (a.shape.rank == 0) {
               throw py::type_error("len() of a 0-d array");
             }
             return a.shape.d[0];
           })
      .def("__repr__", [](const DeviceArray& a) {
        return "DeviceArray(shape=" + a.shape.str() + ", dtype=" + dtype_name(a.dtype) +
               ", device=cuda:" + std::to_string(a.device) + ")";
      });
}

}  // namespace trtfast::python
