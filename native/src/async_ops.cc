// Calls that may move or erase a lot of data, so they run on the libuv pool and settle a
// promise instead of blocking the event loop.
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdint>

#include "args.h"
#include "errno_error.h"
#include "ops.h"

namespace urbd {

namespace {

enum class RangeOp { kPunchHole, kZeroRange, kDiscard, kZeroOut };

struct OpInfo {
  const char* syscall;
  const char* operation;
  const char* resource;
};

OpInfo Describe(RangeOp op) {
  switch (op) {
    case RangeOp::kPunchHole:
      return {"fallocate", "fallocate(PUNCH_HOLE)", "urbd:punchHole"};
    case RangeOp::kZeroRange:
      return {"fallocate", "fallocate(ZERO_RANGE)", "urbd:zeroRange"};
    case RangeOp::kDiscard:
      return {"ioctl", "ioctl(BLKDISCARD)", "urbd:discard"};
    case RangeOp::kZeroOut:
      return {"ioctl", "ioctl(BLKZEROOUT)", "urbd:zeroOut"};
  }
  return {"?", "?", "urbd:?"};
}

// Returns 0 or an errno value; runs off the JS thread so it must not touch napi.
int Perform(RangeOp op, int fd, uint64_t offset, uint64_t length) {
  int rc = 0;
  switch (op) {
    case RangeOp::kPunchHole:
      rc = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                     static_cast<off_t>(length));
      break;
    case RangeOp::kZeroRange:
      rc = fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                     static_cast<off_t>(length));
      break;
    case RangeOp::kDiscard: {
      uint64_t range[2] = {offset, length};
      rc = ioctl(fd, BLKDISCARD, range);
      break;
    }
    case RangeOp::kZeroOut: {
      uint64_t range[2] = {offset, length};
      rc = ioctl(fd, BLKZEROOUT, range);
      break;
    }
  }
  return rc == 0 ? 0 : errno;
}

class RangeWorker : public Napi::AsyncWorker {
 public:
  RangeWorker(Napi::Env env, RangeOp op, int fd, uint64_t offset, uint64_t length)
      : Napi::AsyncWorker(env, Describe(op).resource),
        deferred_(Napi::Promise::Deferred::New(env)),
        op_(op),
        fd_(fd),
        offset_(offset),
        length_(length) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override { err_ = Perform(op_, fd_, offset_, length_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_ == 0) {
      deferred_.Resolve(env.Undefined());
    } else {
      OpInfo d = Describe(op_);
      deferred_.Reject(ErrnoError(env, err_, d.syscall, d.operation).Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  RangeOp op_;
  int fd_;
  uint64_t offset_;
  uint64_t length_;
  int err_ = 0;
};

Napi::Value StartRangeOp(const Napi::CallbackInfo& info, RangeOp op) {
  Napi::Env env = info.Env();
  Napi::Error error;
  auto fd = FdArg(info, 0, error);
  auto offset = fd ? OffsetArg(info, 1, "offset", error) : std::nullopt;
  auto length = offset ? OffsetArg(info, 2, "length", error) : std::nullopt;
  if (!length) {
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(error.Value());
    return deferred.Promise();
  }
  // The worker deletes itself after OnOK.
  auto* worker = new RangeWorker(env, op, *fd, *offset, *length);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

Napi::Value PunchHole(const Napi::CallbackInfo& info) {
  return StartRangeOp(info, RangeOp::kPunchHole);
}

Napi::Value ZeroRange(const Napi::CallbackInfo& info) {
  return StartRangeOp(info, RangeOp::kZeroRange);
}

Napi::Value Discard(const Napi::CallbackInfo& info) {
  return StartRangeOp(info, RangeOp::kDiscard);
}

Napi::Value ZeroOut(const Napi::CallbackInfo& info) {
  return StartRangeOp(info, RangeOp::kZeroOut);
}

}  // namespace urbd
