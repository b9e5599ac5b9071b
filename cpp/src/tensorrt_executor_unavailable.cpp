// Built where no TensorRT headers were found: no DeserializedEngine can exist, so these are never
// reached; they throw the same fix as the rest of the adapter.
#include "trtfast/error.hpp"
#include "trtfast/tensorrt_runtime.hpp"

namespace trtfast {

namespace {
[[noreturn]] void throw_unavailable() {
  throw TensorRTUnavailableError(
      "this trtfast was built without TensorRT headers, so it cannot run TensorRT engines; "
      "rebuild it with TensorRT_ROOT or TensorRT_INCLUDE_DIR pointing at TensorRT's include "
      "folder");
}
}  // namespace

const Signature& DeserializedEngine::signature() const { throw_unavailable(); }

int DeserializedEngine::device() const noexcept { return runtime_ ? runtime_->device() : 0; }

std::unique_ptr<Executor> DeserializedEngine::create_executor() { throw_unavailable(); }

}  // namespace trtfast
