// The exception types of the C++ core. Each maps to one Python class of trtfast.errors.
// Each has its destructor (its key function) in error.cpp, so its type information exists once,
// in the core: an exception thrown in an adapter is caught as its type in the bindings.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

// Exported from libtrtfast_core.so to the bindings and the adapters, which hide their own symbols.
#pragma GCC visibility push(default)

namespace trtfast {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~Error() override;
};

// TensorRT (or a CUDA device it needs) cannot be used on this machine.
class TensorRTUnavailableError : public Error {
 public:
  using Error::Error;
  ~TensorRTUnavailableError() override;
};

// An engine file is truncated, corrupt or not an engine at all.
class EngineFormatError : public Error {
 public:
  using Error::Error;
  ~EngineFormatError() override;
};

// A well-formed engine made for another TensorRT version, edition or GPU.
class EngineCompatibilityError : public Error {
 public:
  using Error::Error;
  ~EngineCompatibilityError() override;
};

// One error reported by TensorRT's ONNX parser.
struct ParserError {
  std::string message;
  std::string node_name;
  std::string op_type;
  long node_index = -1;
};

class BuildError : public Error {
 public:
  BuildError(const std::string& message, std::vector<ParserError> parser_errors = {})
      : Error(message), parser_errors_(std::move(parser_errors)) {}
  ~BuildError() override;
  const std::vector<ParserError>& parser_errors() const noexcept { return parser_errors_; }

 private:
  std::vector<ParserError> parser_errors_;
};

// A build option, or a pair of them, that TensorRT refuses: raised before any build work.
class BuildOptionError : public BuildError {
 public:
  explicit BuildOptionError(const std::string& message) : BuildError(message) {}
  ~BuildOptionError() override;
};

// A caller's tensor does not match what the engine expects.
class InputError : public Error {
 public:
  using Error::Error;
  ~InputError() override;
};

// A wait for the GPU was cut short because the caller asked for it (SessionOptions::interrupted:
// Ctrl-C in Python). Not an Error, as KeyboardInterrupt is no Exception: a handler for failures
// does not swallow it. The GPU work of the call may still be running (see Session).
class Interrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~Interrupted() override;
};

// A CUDA runtime call failed; the message names the call and carries CUDA's text.
class CudaError : public Error {
 public:
  CudaError(const std::string& message, int code) : Error(message), code_(code) {}
  ~CudaError() override;
  int code() const noexcept { return code_; }

 private:
  int code_;
};

}  // namespace trtfast

#pragma GCC visibility pop
