// Page-locked numpy arrays from the process's pool (trtfast.empty, pooled host results), and
// the settings of host copies, which benchmarks compare in one process.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <pybind11/typing.h>

#include <memory>
#include <string>
#include <utility>

#include "bindings.hpp"
#include "tensors.hpp"
#include "trtfast/host_memory.hpp"

namespace py = pybind11;

namespace trtfast::python {

namespace {

// The owner (numpy's base) of every array over a pooled block, a capsule of this name holding
// the block (its size as context): the block returns to the pool when the last array or view
// over it is gone. A capsule costs a fraction of a class instance, on every large host result.
constexpr const char* kPinnedBlock = "trtfast.PinnedBlock";

void release_block(PyObject* capsule) {
  const cuda::PinnedPool::Block block{PyCapsule_GetPointer(capsule, kPinnedBlock),
                                      reinterpret_cast<std::size_t>(PyCapsule_GetContext(capsule))};
  cuda::PinnedPool::instance().release(block);
}

}  // namespace

bool is_pooled_pinned(PyObject* base) noexcept {
  // numpy points a view's base at the array that its memory came from, whose base is the block.
  if (base != nullptr && py::detail::npy_api::get().PyArray_Check_(base)) {
    base = py::detail::array_proxy(base)->base;
  }
  // The name's address identifies trtfast's capsules: GetName returns the pointer given to New.
  return base != nullptr && PyCapsule_CheckExact(base) && PyCapsule_GetName(base) == kPinnedBlock;
}

py::object pinned_numpy(const py::object& dtype, const Dims& shape, std::size_t bytes,
                        std::string* why_not) {
  const cuda::PinnedPool::Block block = cuda::PinnedPool::instance().acquire(bytes, why_not);
  if (block.data == nullptr) {
    return py::object();
  }
  PyObject* owner = PyCapsule_New(block.data, kPinnedBlock, release_block);
  if (owner == nullptr || PyCapsule_SetContext(owner, reinterpret_cast<void*>(block.size)) != 0) {
    Py_XDECREF(owner);
    cuda::PinnedPool::instance().release(block);
    throw py::error_already_set();
  }
  py::array array;
  try {
    array = new_numpy(dtype, shape, block.data);
  } catch (...) {
    Py_DECREF(owner);  // gives the block back
    throw;
  }
  // Steals the owner: the block lives as long as the array and every view of it.
  if (py::detail::npy_api::get().PyArray_SetBaseObject_(array.ptr(), owner) != 0) {
    throw py::error_already_set();
  }
  return std::move(array);
}

void bind_host_memory(py::module_& module) {
  module.def(
      "empty_pinned",
      [](const py::dtype& dtype, const std::vector<std::int64_t>& shape) {
        Dims dims;
        if (shape.size() > static_cast<std::size_t>(kMaxRank)) {
          throw InputError("trtfast.empty: at most " + std::to_string(kMaxRank) +
                           " dimensions, received " + std::to_string(shape.size()));
        }
        if (dtype.attr("hasobject").cast<bool>()) {
          // Pooled memory is never cleared: Python references in it would be garbage.
          throw InputError("trtfast.empty takes numeric dtypes, not " +
                           std::string(py::str(dtype)) + ", which holds Python objects");
        }
        dims.rank = static_cast<int>(shape.size());
        std::size_t bytes = static_cast<std::size_t>(dtype.itemsize());
        for (std::size_t i = 0; i < shape.size(); ++i) {
          if (shape[i] < 0) {
            throw InputError("trtfast.empty: negative dimension " + std::to_string(shape[i]));
          }
          dims.d[i] = shape[i];
          if (shape[i] != 0 &&
              bytes > (std::size_t{1} << 62) / static_cast<std::size_t>(shape[i])) {
            throw InputError("trtfast.empty: the shape's size overflows");
          }
          bytes *= static_cast<std::size_t>(shape[i]);
        }
        std::string why_not;
        py::object array = pinned_numpy(dtype, dims, bytes == 0 ? 1 : bytes, &why_not);
        if (!array) {
          array = new_numpy(dtype, dims);
        }
        return py::make_tuple(array, why_not);
      },
      py::arg("dtype"), py::arg("shape"),
      "(array, why_not): a C-contiguous array in pooled page-locked memory, or a plain one with "
      "the reason pinning failed.");
  module.def(
      "is_pinned_host",
      [](const py::array& array) {
        return is_pooled_pinned(py::detail::array_proxy(array.ptr())->base) ||
               cuda::is_pinned_host(array.data(), static_cast<std::size_t>(array.nbytes()));
      },
      py::arg("array"), "True when the array's memory is page-locked (copied by DMA).");
  module.def(
      "pinned_pool_stats",
      []() -> py::typing::Dict<py::str, py::int_> {
        const cuda::PinnedPool& pool = cuda::PinnedPool::instance();
        const cuda::PinnedPool::Stats stats = pool.stats();
        py::dict result;
        result["live_bytes"] = stats.live_bytes;
        result["idle_bytes"] = stats.idle_bytes;
        result["hits"] = stats.hits;
        result["misses"] = stats.misses;
        result["refusals"] = stats.refusals;
        result["limit"] = pool.limit();
        result["idle_limit"] = pool.idle_limit();
        return result;
      },
      "The page-locked pool: bytes in use and idle, acquires served, pinned anew and refused.");
  module.def(
      "trim_pinned_pool", [] { cuda::PinnedPool::instance().trim(); },
      "Frees the pool's idle page-locked blocks.");

  module.def(
      "host_copy",
      [](py::array destination, const py::array& source) {
        const auto contiguous = py::array::c_style;
        if ((destination.flags() & contiguous) == 0 || (source.flags() & contiguous) == 0 ||
            !destination.writeable() || destination.nbytes() != source.nbytes()) {
          throw InputError(
              "host_copy takes two C-contiguous arrays of the same size in bytes, "
              "the first writable; received " +
              std::to_string(destination.nbytes()) + " and " + std::to_string(source.nbytes()) +
              " bytes");
        }
        void* to = destination.mutable_data();
        const void* from = source.data();
        const auto bytes = static_cast<std::size_t>(source.nbytes());
        const py::gil_scoped_release release;
        cuda::host_copy(to, from, bytes, cuda::NextReader::Device);
      },
      py::arg("destination"), py::arg("source"),
      "Copies bytes as sessions stage pageable arrays for the GPU: by several threads when "
      "large, with streaming stores from streaming_min_bytes.");
  module.def(
      "host_copy_tuning",
      []() -> py::typing::Dict<py::str, py::object> {
        const cuda::HostCopyTuning& t = cuda::host_copy_tuning();
        py::dict result;
        result["threads"] = t.threads;
        result["parallel_min_bytes"] = t.parallel_min_bytes;
        result["chunk_bytes"] = t.chunk_bytes;
        result["pipeline_min_bytes"] = t.pipeline_min_bytes;
        result["zero_copy"] = t.zero_copy;
        result["pooled_outputs"] = t.pooled_outputs;
        result["pooled_output_min_bytes"] = t.pooled_output_min_bytes;
        result["pinned_check_min_bytes"] = t.pinned_check_min_bytes;
        result["streaming_min_bytes"] = t.streaming_min_bytes;
        return result;
      },
      "How host arrays are copied (see set_host_copy_tuning).");
  module.def(
      "set_host_copy_tuning",
      [](const py::kwargs& changes) {
        cuda::HostCopyTuning t = cuda::host_copy_tuning();
        for (const auto& [key, value] : changes) {
          const std::string name = py::str(key);
          if (name == "threads") {
            t.threads = value.cast<unsigned>();
          } else if (name == "parallel_min_bytes") {
            t.parallel_min_bytes = value.cast<std::size_t>();
          } else if (name == "chunk_bytes") {
            t.chunk_bytes = value.cast<std::size_t>();
          } else if (name == "pipeline_min_bytes") {
            t.pipeline_min_bytes = value.cast<std::size_t>();
          } else if (name == "zero_copy") {
            t.zero_copy = value.cast<bool>();
          } else if (name == "pooled_outputs") {
            t.pooled_outputs = value.cast<bool>();
          } else if (name == "pooled_output_min_bytes") {
            t.pooled_output_min_bytes = value.cast<std::size_t>();
          } else if (name == "pinned_check_min_bytes") {
            t.pinned_check_min_bytes = value.cast<std::size_t>();
          } else if (name == "streaming_min_bytes") {
            t.streaming_min_bytes = value.cast<std::size_t>();
          } else {
            throw py::type_error("set_host_copy_tuning() got an unexpected setting '" + name + "'");
          }
        }
        cuda::set_host_copy_tuning(t);
      },
      "Changes how host arrays are copied, for benchmarks comparing settings in one process. "
      "Not safe while calls run.");
}

}  // namespace trtfast::python
