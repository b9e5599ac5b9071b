// Which adapter serves a library: the one compiled for its major, loaded on first use. The core's
// side of the types the adapters derive from lives here too (their key functions).
#include "tensorrt_adapter.hpp"

#include <dlfcn.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <utility>

#include "dynamic_library.hpp"
#include "trtfast/error.hpp"
#include "trtfast/executor.hpp"

namespace trtfast {

OutputAllocator::~OutputAllocator() = default;
Executor::~Executor() = default;
Engine::~Engine() = default;
TensorRTAdapter::~TensorRTAdapter() = default;

namespace {

// TRTFAST_TENSORRT_ADAPTERS, set by CMake: "major:headers-version" pairs separated by spaces.
std::map<int, std::string> parse_adapters(const std::string& text) {
  std::map<int, std::string> adapters;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find(' ', start);
    if (end == std::string::npos) {
      end = text.size();
    }
    const std::string pair = text.substr(start, end - start);
    const std::size_t colon = pair.find(':');
    if (colon != std::string::npos) {
      adapters.emplace(std::stoi(pair.substr(0, colon)), pair.substr(colon + 1));
    }
    start = end + 1;
  }
  return adapters;
}

// "10", "10 and 11", "TensorRT10_ROOT and TensorRT11_ROOT": the majors with adapters.
std::string majors_text(const std::string& prefix, const std::string& suffix,
                        const std::string& separator) {
  std::string text;
  for (const auto& [major, version] : compiled_tensorrt_adapters()) {
    text += (text.empty() ? "" : separator) + prefix + std::to_string(major) + suffix;
  }
  return text;
}

[[noreturn]] void throw_no_adapters() {
  throw TensorRTUnavailableError(
      "this trtfast was built without TensorRT headers, so it cannot create TensorRT objects; "
      "rebuild it with TensorRT_ROOT or TensorRT_INCLUDE_DIR pointing at TensorRT's include "
      "folder (for example `TensorRT_ROOT=/usr/local/TensorRT pip install trtfast`; "
      "TensorRT10_ROOT and TensorRT11_ROOT for both majors), or install the release wheel "
      "(`pip install --only-binary trtfast trtfast`), which has adapters for TensorRT 10 and 11");
}

[[noreturn]] void throw_no_adapter_for(const TensorRTLibrary& library) {
  const std::string major = std::to_string(library.major());
  const std::string found = "this installation of trtfast was built without TensorRT " + major +
                            " support (it supports TensorRT " + majors_text("", "", " and ") +
                            " only), and the TensorRT library it found, " + library.path() +
                            ", is TensorRT " + library.version_string() + ". ";
  const std::string other_library = "use a TensorRT " + majors_text("", "", " or ") +
                                    " library instead (TRTFAST_TENSORRT_LIBRARY names one)";
  // The majors the adapters' code is written for (cpp/CMakeLists.txt, TRTFAST_TENSORRT_MAJORS).
  if (library.major() != 10 && library.major() != 11) {
    throw TensorRTUnavailableError(found +
                                   "trtfast is written for TensorRT 10 and 11: " + other_library);
  }
  throw TensorRTUnavailableError(
      found + "To use it, rebuild trtfast with TensorRT " + major + "'s headers too (`TensorRT" +
      major + "_ROOT=/path/to/TensorRT-" + major + " " + majors_text("TensorRT", "_ROOT=...", " ") +
      " pip install trtfast`, each the folder holding include/NvInferRuntime.h), or install the "
      "release wheel (`pip install --only-binary trtfast trtfast`), which supports TensorRT 10 "
      "and 11. Or " +
      other_library);
}

// The folder of libtrtfast_core.so, where the build installs the adapters beside it.
std::filesystem::path core_folder() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&core_folder), &info) == 0 || info.dli_fname == nullptr) {
    throw TensorRTUnavailableError("trtfast cannot tell where its own library is (dladdr failed)");
  }
  return std::filesystem::path(info.dli_fname).parent_path();
}

struct LoadedAdapter {
  const TensorRTAdapter* adapter = nullptr;
  std::string path;
};

LoadedAdapter load_adapter(int major) {
  const std::string path =
      (core_folder() / ("libtrtfast_trt" + std::to_string(major) + ".so")).string();
  dlerror();
  // RTLD_LOCAL: each adapter's copies of NVIDIA's inline code stay its own. Never unloaded:
  // TensorRT holds its logger until the process ends.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    throw TensorRTUnavailableError("trtfast's TensorRT " + std::to_string(major) +
                                   " adapter cannot be loaded: " + detail::dl_error_text() +
                                   "; reinstall trtfast");
  }
  using EntryPoint = const TensorRTAdapter* (*)();
  auto entry = reinterpret_cast<EntryPoint>(dlsym(handle, TRTFAST_ADAPTER_ENTRY_POINT));
  const TensorRTAdapter* adapter = entry != nullptr ? entry() : nullptr;
  if (adapter == nullptr || adapter->major() != major) {
    throw TensorRTUnavailableError(path + " is not trtfast's TensorRT " + std::to_string(major) +
                                   " adapter of this build; reinstall trtfast");
  }
  return LoadedAdapter{adapter, path};
}

const LoadedAdapter& loaded_adapter(const TensorRTLibrary& library) {
  const auto& compiled = compiled_tensorrt_adapters();
  if (compiled.empty()) {
    throw_no_adapters();
  }
  if (compiled.count(library.major()) == 0) {
    throw_no_adapter_for(library);
  }
  // Reached when runtimes are made and builds start, never per inference call. Never destroyed:
  // a thread without the GIL may still make a runtime while the process exits.
  static auto* mutex = new std::mutex();
  static auto* loaded = new std::map<int, LoadedAdapter>();
  const std::lock_guard<std::mutex> lock(*mutex);
  auto found = loaded->find(library.major());
  if (found == loaded->end()) {
    found = loaded->emplace(library.major(), load_adapter(library.major())).first;
  }
  return found->second;
}

}  // namespace

const std::map<int, std::string>& compiled_tensorrt_adapters() {
  static const auto* adapters =  // never destroyed, as above
      new std::map<int, std::string>(parse_adapters(TRTFAST_TENSORRT_ADAPTERS));
  return *adapters;
}

bool tensorrt_adapter_available() noexcept { return !compiled_tensorrt_adapters().empty(); }

const TensorRTAdapter& tensorrt_adapter_for(const TensorRTLibrary& library) {
  return *loaded_adapter(library).adapter;
}

std::string tensorrt_adapter_path(const TensorRTLibrary& library) {
  return loaded_adapter(library).path;
}

// --- What the adapters' objects derive from ------------------------------------------------------

std::shared_ptr<Runtime> Runtime::create(std::shared_ptr<const TensorRTLibrary> library,
                                         int device) {
  const TensorRTAdapter& adapter = tensorrt_adapter_for(*library);
  return adapter.create_runtime(std::move(library), device);
}

Runtime::Runtime(std::shared_ptr<const TensorRTLibrary> library, int device)
    : library_(std::move(library)), device_(device) {}

Runtime::~Runtime() = default;

DeserializedEngine::DeserializedEngine(std::shared_ptr<Runtime> runtime)
    : runtime_(std::move(runtime)) {}

DeserializedEngine::~DeserializedEngine() = default;

BuildResult build_plan(const TensorRTLibrary& library, const void* onnx, std::size_t onnx_size,
                       const BuildOptions& options, const ProgressCallback& progress) {
  return tensorrt_adapter_for(library).build_plan(library, onnx, onnx_size, options, progress);
}

Blob combine_timing_caches(const TensorRTLibrary& library, const std::vector<std::string>& caches,
                           int device) {
  return tensorrt_adapter_for(library).combine_timing_caches(library, caches, device);
}

}  // namespace trtfast
