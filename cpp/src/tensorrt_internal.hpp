// What the adapter's source files share about TensorRT objects; included only where NVIDIA's
// headers are.
#pragma once

#include <NvInferRuntime.h>

#include <mutex>

#include "trtfast/signature.hpp"
#include "trtfast/tensorrt_runtime.hpp"

namespace trtfast {

struct Runtime::Impl {
  nvinfer1::IRuntime* runtime = nullptr;
};

struct DeserializedEngine::Impl {
  nvinfer1::ICudaEngine* engine = nullptr;
  std::once_flag signature_once;
  Signature signature;
};

}  // namespace trtfast
