// Pieces of the TensorRT adapter shared by its source files; compiled only with TensorRT headers.
#pragma once

#include <NvInferRuntime.h>

namespace trtfast {

// The process-wide logger: it feeds LoggedErrors and the log sink. Never destroyed.
nvinfer1::ILogger& tensorrt_logger() noexcept;

}  // namespace trtfast
