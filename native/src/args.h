#pragma once

#include <napi.h>

#include <cstdint>
#include <optional>

namespace urbd {

// Each returns nullopt after recording the reason in `error`; callers decide whether it is
// thrown or becomes a rejected promise.
std::optional<int> FdArg(const Napi::CallbackInfo& info, size_t index, Napi::Error& error);
std::optional<uint64_t> OffsetArg(const Napi::CallbackInfo& info, size_t index, const char* name,
                                  Napi::Error& error);

}  // namespace urbd
