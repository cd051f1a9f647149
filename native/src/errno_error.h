#pragma once

#include <napi.h>

namespace urbd {

// An Error shaped like Node's own system errors (code/errno/syscall) so callers can treat
// addon failures and fs failures the same way.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const char* operation);

// Argument problems are reported with an errno name too: the storage layer only ever looks
// at `code`.
Napi::Error InvalidArgument(Napi::Env env, const std::string& message);

}  // namespace urbd
