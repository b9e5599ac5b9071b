#include "trtfast/tensorrt_library.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <utility>

#include "dynamic_library.hpp"
#include "trtfast/error.hpp"
#include "trtfast/tensorrt_runtime.hpp"

namespace trtfast {

namespace {

using GetVersionFn = int (*)();

using detail::dl_error_text;
using detail::loaded_path;

// The majors this build has adapters for, newest first; the others too, so a library of a major
// without an adapter is found and reported as such instead of as missing.
std::vector<int> majors_to_try() {
  std::vector<int> majors;
  for (auto adapter = compiled_tensorrt_adapters().rbegin();
       adapter != compiled_tensorrt_adapters().rend(); ++adapter) {
    majors.push_back(adapter->first);
  }
  for (int major : {11, 10}) {
    if (std::find(majors.begin(), majors.end(), major) == majors.end()) {
      majors.push_back(major);
    }
  }
  return majors;
}

std::string file_name(LibraryKind kind, int major) {
  return std::string(kind == LibraryKind::Full ? "libnvinfer.so." : "libnvinfer_lean.so.") +
         std::to_string(major);
}

std::string install_hint() {
  return "Install TensorRT with `pip install tensorrt-cu13` (CUDA 13; `tensorrt-cu12` for CUDA "
         "12), or set TRTFAST_TENSORRT_LIBRARY to the path of libnvinfer.so.";
}

}  // namespace

const char* to_string(LibraryKind kind) noexcept {
  return kind == LibraryKind::Full ? "full" : "lean";
}

TensorRTLibrary::TensorRTLibrary(void* handle, std::string path, std::string origin)
    : handle_(handle), path_(std::move(path)), origin_(std::move(origin)) {
  version_ = reinterpret_cast<GetVersionFn>(symbol("getInferLibVersion"))();
  kind_ = symbol("createInferBuilder_INTERNAL") != nullptr ? LibraryKind::Full : LibraryKind::Lean;
}

std::shared_ptr<TensorRTLibrary> TensorRTLibrary::open(const std::string& path,
                                                       const std::string& origin) {
  std::error_code ignored;
  if (!std::filesystem::exists(path, ignored)) {
    throw TensorRTUnavailableError("no such file: " + path);
  }
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    throw TensorRTUnavailableError("cannot load " + path + ": " + dl_error_text());
  }
  for (const char* required : {"getInferLibVersion", "createInferRuntime_INTERNAL"}) {
    if (dlsym(handle, required) == nullptr) {
      dlclose(handle);  // not TensorRT, so unloading it is safe
      throw TensorRTUnavailableError(path + " is not a TensorRT library: it has no symbol " +
                                     required);
    }
  }
  std::shared_ptr<TensorRTLibrary> library(
      new TensorRTLibrary(handle, loaded_path(handle, path), origin));
  return library;
}

std::shared_ptr<TensorRTLibrary> TensorRTLibrary::find(
    const std::vector<PackageFolder>& package_folders) {
  if (const char* explicit_path = std::getenv("TRTFAST_TENSORRT_LIBRARY");
      explicit_path != nullptr && explicit_path[0] != '\0') {
    try {
      return open(explicit_path, "TRTFAST_TENSORRT_LIBRARY");
    } catch (const TensorRTUnavailableError& error) {
      throw TensorRTUnavailableError(std::string("TRTFAST_TENSORRT_LIBRARY=") + explicit_path +
                                     " is unusable: " + error.what());
    }
  }

  // No iostreams in this library: with a string stream alive in this frame, the static
  // initializers of libnvinfer_lean 11.4 crashed inside dlopen on a GPU host.
  std::vector<std::string> searched{"TRTFAST_TENSORRT_LIBRARY: not set"};
  for (const PackageFolder& package : package_folders) {
    if (package.folder.empty()) {
      searched.push_back("pip package " + package.package + ": not installed");
      continue;
    }
    for (int major : majors_to_try()) {
      const std::string path =
          (std::filesystem::path(package.folder) / file_name(package.kind, major)).string();
      std::error_code ignored;
      if (!std::filesystem::exists(path, ignored)) {
        searched.push_back(path + " (pip package " + package.package + "): not found");
        continue;
      }
      try {
        return open(path, "pip package " + package.package);
      } catch (const TensorRTUnavailableError& error) {
        searched.push_back(path + ": " + error.what());
      }
    }
  }
  for (int major : majors_to_try()) {
    for (LibraryKind kind : {LibraryKind::Full, LibraryKind::Lean}) {
      const std::string name = file_name(kind, major);
      dlerror();
      void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle == nullptr) {
        searched.push_back(name + " on the system loader path: " + dl_error_text());
        continue;
      }
      // The reference stays: TensorRT is never unloaded once loaded.
      const std::string path = loaded_path(handle, name);
      try {
        return open(path, "system loader path");
      } catch (const TensorRTUnavailableError& error) {
        searched.push_back(path + ": " + error.what());
      }
    }
  }
  std::string message = "TensorRT was not found. Searched:\n";
  for (const std::string& place : searched) {
    message += "  - " + place + "\n";
  }
  throw TensorRTUnavailableError(message + install_hint());
}

std::string TensorRTLibrary::version_string() const {
  return std::to_string(version_ / 10000) + "." + std::to_string((version_ / 100) % 100) + "." +
         std::to_string(version_ % 100);
}

std::string TensorRTLibrary::folder() const {
  return std::filesystem::path(path_).parent_path().string();
}

void* TensorRTLibrary::symbol(const char* name) const noexcept { return dlsym(handle_, name); }

}  // namespace trtfast
