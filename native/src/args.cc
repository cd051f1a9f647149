#include "args.h"

#include <climits>
#include <cmath>
#include <string>

#include "errno_error.h"

namespace urbd {

namespace {

// Beyond 2^53 a JS number can no longer name every byte, so the caller's arithmetic is
// already unreliable.
constexpr double kMaxSafe = 9007199254740992.0;

}  // namespace

std::optional<int> FdArg(const Napi::CallbackInfo& info, size_t index, Napi::Error& error) {
  Napi::Value v = info[index];
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    // Negative values are passed on: the kernel's EBADF says it better than we would.
    if (std::trunc(d) == d && d >= INT_MIN && d <= INT_MAX) return static_cast<int>(d);
  }
  error = InvalidArgument(info.Env(), "fd must be an integer file descriptor");
  return std::nullopt;
}

std::optional<uint64_t> OffsetArg(const Napi::CallbackInfo& info, size_t index, const char* name,
                                  Napi::Error& error) {
  Napi::Value v = info[index];
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && std::trunc(d) == d && d >= 0 && d <= kMaxSafe) {
      return static_cast<uint64_t>(d);
    }
  }
  error = InvalidArgument(
      info.Env(), std::string(name) + " must be a non-negative integer no greater than 2^53");
  return std::nullopt;
}

}  // namespace urbd
