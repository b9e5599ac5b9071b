// Built where no TensorRT headers were found: the same interface, failing with the fix.
#include "adapter_unavailable.hpp"
#include "trtfast/error.hpp"
#include "trtfast/tensorrt_runtime.hpp"

namespace trtfast {

namespace {
[[noreturn]] void throw_unavailable() {
  throw TensorRTUnavailableError(
      "this trtfast was built without TensorRT headers, so it cannot create TensorRT objects; "
      "rebuild it with TensorRT_ROOT or TensorRT_INCLUDE_DIR pointing at TensorRT's include "
      "folder (for example `TensorRT_ROOT=/usr/local/TensorRT pip install trtfast`)");
}
}  // namespace

void throw_adapter_unavailable() { throw_unavailable(); }

int compiled_tensorrt_major() noexcept { return 0; }

std::string compiled_tensorrt_version() { return {}; }

bool tensorrt_adapter_available() noexcept { return false; }

void set_log_sink(LogSink) {}

LoggedErrors::LoggedErrors(Scope scope) : outer_(nullptr), scope_(scope) {}

LoggedErrors::~LoggedErrors() = default;

std::vector<std::string> LoggedErrors::messages() const { return {}; }

bool LoggedErrors::empty() const { return true; }

std::string LoggedErrors::joined() const { return {}; }

struct Runtime::Impl {};
struct DeserializedEngine::Impl {};

std::shared_ptr<Runtime> Runtime::create(std::shared_ptr<const TensorRTLibrary>, int) {
  throw_unavailable();
}

Runtime::~Runtime() = default;

std::shared_ptr<DeserializedEngine> Runtime::deserialize(const void*, std::size_t, bool,
                                                         const std::vector<std::string>&) {
  throw_unavailable();
}

DeserializedEngine::~DeserializedEngine() = default;

int DeserializedEngine::num_io_tensors() const { throw_unavailable(); }

}  // namespace trtfast
