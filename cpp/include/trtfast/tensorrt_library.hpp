// Finds and dlopens TensorRT at run time, so trtfast imports on machines without it and says
// exactly what is missing where TensorRT is needed.
#pragma once

#include <memory>
#include <string>
#include <vector>

// Exported from libtrtfast_core.so to the bindings and the adapters, which hide their own symbols.
#pragma GCC visibility push(default)

namespace trtfast {

enum class LibraryKind { Full, Lean };

const char* to_string(LibraryKind kind) noexcept;

// A folder of a pip package that ships TensorRT libraries (tensorrt_libs, tensorrt_lean_libs).
struct PackageFolder {
  std::string package;
  std::string folder;
  LibraryKind kind;
};

class TensorRTLibrary {
 public:
  // Search order: the file named by TRTFAST_TENSORRT_LIBRARY, the package folders in order,
  // then the system loader path; in each place the majors this build has adapters for first.
  // Throws TensorRTUnavailableError listing every place tried. The adapter of the library's
  // major is loaded when it is first needed (tensorrt_runtime.hpp).
  static std::shared_ptr<TensorRTLibrary> find(const std::vector<PackageFolder>& package_folders);
  // Opens one file; throws TensorRTUnavailableError saying why it is unusable.
  static std::shared_ptr<TensorRTLibrary> open(const std::string& path, const std::string& origin);

  // Never dlclosed: TensorRT's static state must outlive every object made through it.
  ~TensorRTLibrary() = default;
  TensorRTLibrary(const TensorRTLibrary&) = delete;
  TensorRTLibrary& operator=(const TensorRTLibrary&) = delete;

  const std::string& path() const noexcept { return path_; }
  const std::string& origin() const noexcept { return origin_; }
  LibraryKind kind() const noexcept { return kind_; }
  // TensorRT's integer: major * 10000 + minor * 100 + patch.
  int version() const noexcept { return version_; }
  int major() const noexcept { return version_ / 10000; }
  std::string version_string() const;
  // The folder holding the library, where a matching ONNX parser is looked for first.
  std::string folder() const;
  // Null when the symbol is absent.
  void* symbol(const char* name) const noexcept;

 private:
  TensorRTLibrary(void* handle, std::string path, std::string origin);
  void* handle_;
  std::string path_;
  std::string origin_;
  LibraryKind kind_ = LibraryKind::Lean;
  int version_ = 0;
};

}  // namespace trtfast

#pragma GCC visibility pop
