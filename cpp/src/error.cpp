// The key functions of the exception types: their type information and vtables live here alone.
#include "trtfast/error.hpp"

namespace trtfast {

Error::~Error() = default;
TensorRTUnavailableError::~TensorRTUnavailableError() = default;
EngineFormatError::~EngineFormatError() = default;
EngineCompatibilityError::~EngineCompatibilityError() = default;
BuildError::~BuildError() = default;
BuildOptionError::~BuildOptionError() = default;
InputError::~InputError() = default;
Interrupted::~Interrupted() = default;
CudaError::~CudaError() = default;

}  // namespace trtfast
