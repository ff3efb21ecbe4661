#pragma once
// The SDK's status and result<T>, under the engine's namespace.

#include <loopwarden/status.hpp>

namespace loopwarden::core {

using sdk::make_error;
using sdk::result;
using sdk::status;
using sdk::status_code;

}  // namespace loopwarden::core
