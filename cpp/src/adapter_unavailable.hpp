// Shared by the stand-ins compiled where no TensorRT headers were found.
#pragma once

namespace trtfast {

// Throws TensorRTUnavailableError saying how to rebuild trtfast with TensorRT headers.
[[noreturn]] void throw_adapter_unavailable();

}  // namespace trtfast
