// Calls cheap enough to make on the JS thread: they touch metadata only, never data.
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "args.h"
#include "errno_error.h"
#include "ops.h"

namespace urbd {

namespace {

Napi::Value Seek(const Napi::CallbackInfo& info, int whence, const char* operation) {
  Napi::Env env = info.Env();
  Napi::Error error;
  auto fd = FdArg(info, 0, error);
  if (!fd) {
    error.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto offset = OffsetArg(info, 1, "offset", error);
  if (!offset) {
    error.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  off_t result = lseek(*fd, static_cast<off_t>(*offset), whence);
  if (result < 0) {
    // ENXIO is the normal answer at or past the end, not a failure.
    if (errno == ENXIO) return Napi::Number::New(env, -1);
    ErrnoError(env, errno, "lseek", operation).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(result));
}

}  // namespace

Napi::Value BlockDeviceSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Error error;
  auto fd = FdArg(info, 0, error);
  if (!fd) {
    error.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint64_t size = 0;
  if (ioctl(*fd, BLKGETSIZE64, &size) != 0) {
    ErrnoError(env, errno, "ioctl", "ioctl(BLKGETSIZE64)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(size));
}

Napi::Value SeekData(const Napi::CallbackInfo& info) {
  return Seek(info, SEEK_DATA, "lseek(SEEK_DATA)");
}

Napi::Value SeekHole(const Napi::CallbackInfo& info) {
  return Seek(info, SEEK_HOLE, "lseek(SEEK_HOLE)");
}

}  // namespace urbd
