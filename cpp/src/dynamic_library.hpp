// dlopen helpers shared by the TensorRT and ONNX parser loaders.
#pragma once

#include <dlfcn.h>
#include <link.h>

#include <string>

namespace trtfast::detail {

inline std::string dl_error_text() {
  const char* text = dlerror();
  return text != nullptr ? text : "unknown dlopen error";
}

// The file the loader actually opened for `handle` (resolves sonames and symlinks).
inline std::string loaded_path(void* handle, const std::string& fallback) {
  link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr &&
      map->l_name[0] != '\0') {
    return map->l_name;
  }
  return fallback;
}

}  // namespace trtfast::detail
