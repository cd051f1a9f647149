#include "errno_error.h"

#include <string.h>

#include <cerrno>
#include <string>

namespace urbd {

namespace {

std::string ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (const char* name = strerrorname_np(err)) return name;
#endif
  return "E" + std::to_string(err);
}

std::string ErrnoMessage(int err) {
  char buf[256];
  // GNU strerror_r may return a static string instead of filling buf.
  return strerror_r(err, buf, sizeof buf);
}

}  // namespace

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const char* operation) {
  std::string message = std::string(operation) + ": " + ErrnoMessage(err);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

Napi::Error InvalidArgument(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "EINVAL"));
  error.Set("errno", Napi::Number::New(env, EINVAL));
  return error;
}

}  // namespace urbd
