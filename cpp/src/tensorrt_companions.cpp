// The libraries that come with libnvinfer: the ONNX parser and the standard plugins. Each must be
// the same TensorRT version as the library it serves.
#include <dlfcn.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <utility>

#include "dynamic_library.hpp"
#include "tensorrt_internal.hpp"
#include "trtfast/error.hpp"

namespace trtfast {

namespace {

using detail::dl_error_text;
using detail::loaded_path;

// "10.16" from ".../libnvonnxparser.so.10.16.1"; empty where the file name carries only the
// major (pip's wheels), which says nothing more than the soname did.
std::string file_version(const std::string& path) {
  static const std::regex versioned(R"(\.so\.(\d+)\.(\d+)(\.\d+)*$)");
  std::smatch match;
  std::error_code error;
  const std::string real = std::filesystem::canonical(path, error).string();
  const std::string& name = error ? path : real;
  if (std::regex_search(name, match, versioned)) {
    return match[1].str() + "." + match[2].str();
  }
  return {};
}

std::string major_minor(const TensorRTLibrary& library) {
  const std::string full = library.version_string();
  return full.substr(0, full.rfind('.'));
}

// False, with `why` set, when `handle` lacks a symbol or is of another TensorRT version.
bool fits(void* handle, const std::string& path, const TensorRTLibrary& library,
          const std::vector<const char*>& symbols, std::string& why) {
  for (const char* required : symbols) {
    if (dlsym(handle, required) == nullptr) {
      why = "it has no symbol " + std::string(required);
      return false;
    }
  }
  const std::string version = file_version(path);
  if (!version.empty() && version != major_minor(library)) {
    why = "it is TensorRT " + version + "'s, and TensorRT " + library.version_string() + " at " +
          library.path() + " needs " + major_minor(library) + "'s";
    return false;
  }
  return true;
}

}  // namespace

// Beside the TensorRT library first, so both come from one installation; then the loader's path.
// The library links against libnvinfer.so.<major> by soname, which the loader resolves to the
// library already loaded.
std::optional<CompanionLibrary> find_companion(const TensorRTLibrary& library,
                                               const std::string& stem,
                                               const std::vector<const char*>& symbols,
                                               std::string& searched) {
  const std::string name = stem + ".so." + std::to_string(library.major());
  std::string why;
  const std::string beside = (std::filesystem::path(library.folder()) / name).string();
  std::error_code ignored;
  if (!std::filesystem::exists(beside, ignored)) {
    searched += "  - " + beside + ": not found\n";
  } else {
    dlerror();
    void* handle = dlopen(beside.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      searched += "  - " + beside + ": " + dl_error_text() + "\n";
    } else if (fits(handle, beside, library, symbols, why)) {
      return CompanionLibrary{beside, handle};
    } else {
      searched += "  - " + beside + ": " + why + "\n";
    }
  }
  dlerror();
  void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    searched += "  - " + name + " on the system loader path: " + dl_error_text() + "\n";
    return std::nullopt;
  }
  // The libraries stay loaded either way: they link against TensorRT, which is never unloaded.
  const std::string path = loaded_path(handle, name);
  if (fits(handle, path, library, symbols, why)) {
    return CompanionLibrary{path, handle};
  }
  searched += "  - " + path + ": " + why + "\n";
  return std::nullopt;
}

namespace {

using InitPluginsFn = bool (*)(void* logger, const char* name_space);

StandardPlugins register_standard_plugins(const TensorRTLibrary& library) {
  StandardPlugins plugins;
  plugins.expected = "libnvinfer_plugin.so." + std::to_string(library.major()) + " of TensorRT " +
                     library.version_string();
  if (library.kind() != LibraryKind::Full) {
    plugins.missing_because = "the lean runtime (" + library.path() +
                              ") has no standard plugin library; engines that use TensorRT's "
                              "standard plugins need the full library";
    return plugins;
  }
  std::string searched;
  const std::optional<CompanionLibrary> found =
      find_companion(library, "libnvinfer_plugin", {"initLibNvInferPlugins"}, searched);
  if (!found) {
    plugins.missing_because = "TensorRT's standard plugin library (" + plugins.expected +
                              ") was not found. Searched:\n" + searched;
    return plugins;
  }
  // Once per process and library: the plugin registry is process-wide.
  auto init = reinterpret_cast<InitPluginsFn>(dlsym(found->handle, "initLibNvInferPlugins"));
  LoggedErrors errors;
  if (!init(&tensorrt_logger(), "")) {
    plugins.missing_because = "TensorRT's standard plugin library " + found->path +
                              " failed to register its plugins: " +
                              (errors.empty() ? "no reason given" : errors.joined());
    return plugins;
  }
  plugins.path = found->path;
  return plugins;
}

}  // namespace

const StandardPlugins& standard_plugins(const TensorRTLibrary& library) {
  // Used until exit, the lock too: a thread may load an engine while the process exits.
  static auto* mutex = new std::mutex();
  static auto* registered = new std::map<std::string, StandardPlugins>();
  const std::lock_guard<std::mutex> lock(*mutex);
  auto it = registered->find(library.path());
  if (it == registered->end()) {
    it = registered->emplace(library.path(), register_standard_plugins(library)).first;
  }
  return it->second;
}

void load_plugin_libraries(nvinfer1::IPluginRegistry& registry,
                           const std::vector<std::string>& paths) {
  // Leaked, the lock too: registries live until process exit, and so does what was loaded into
  // them.
  static auto* mutex = new std::mutex();
  static auto* loaded = new std::set<std::pair<const void*, std::string>>();
  const std::lock_guard<std::mutex> lock(*mutex);
  for (const std::string& path : paths) {
    if (loaded->count({&registry, path}) != 0) {
      continue;
    }
    LoggedErrors errors;
    if (registry.loadLibrary(path.c_str()) == nullptr) {
      throw TensorRTUnavailableError("TensorRT could not load the plugin library " + path + ": " +
                                     (errors.empty() ? "no reason given" : errors.joined()));
    }
    loaded->insert({&registry, path});
  }
}

std::vector<std::string> resolved_plugin_paths(const std::vector<std::string>& paths) {
  std::vector<std::string> resolved;
  for (const std::string& path : paths) {
    std::error_code error;
    const std::filesystem::path canonical = std::filesystem::canonical(path, error);
    if (error || !std::filesystem::is_regular_file(canonical, error)) {
      throw BuildError("plugin library " + path + " does not exist or is not a file");
    }
    if (std::find(resolved.begin(), resolved.end(), canonical.string()) == resolved.end()) {
      resolved.push_back(canonical.string());
    }
  }
  return resolved;
}

}  // namespace trtfast
