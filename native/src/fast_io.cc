// The data path's syscalls, shaped to avoid a trip through the libuv pool per request.
//
// A 4 KiB read served from the page cache costs about a microsecond in the kernel, but a
// thread-pool hop costs several (queue lock, futex wake-up, eventfd back to the loop). So a
// read is first tried right here with RWF_NOWAIT, which the kernel answers only if no I/O is
// needed; and writes issued in the same turn of the event loop go to the pool as one job.
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <vector>

#include "args.h"
#include "errno_error.h"
#include "ops.h"

namespace urbd {

namespace {

bool BufferArg(const Napi::CallbackInfo& info, size_t index, Napi::Error& error) {
  if (info.Length() > index && info[index].IsBuffer()) return true;
  error = InvalidArgument(info.Env(), "argument " + std::to_string(index + 1) + " must be a Buffer");
  return false;
}

struct WriteOp {
  const uint8_t* data;
  size_t length;
  uint64_t offset;
  int err;
};

// Writes all of each op, looping on short writes; one errno per op (0 when it succeeded).
class WriteBatchWorker : public Napi::AsyncWorker {
 public:
  WriteBatchWorker(Napi::Env env, int fd, std::vector<WriteOp> ops, Napi::Array keep)
      : Napi::AsyncWorker(env, "urbd:writeBatch"),
        deferred_(Napi::Promise::Deferred::New(env)),
        fd_(fd),
        ops_(std::move(ops)),
        keep_(Napi::Persistent(keep)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    for (WriteOp& op : ops_) {
      size_t done = 0;
      op.err = 0;
      while (done < op.length) {
        ssize_t n = pwrite(fd_, op.data + done, op.length - done, static_cast<off_t>(op.offset + done));
        if (n < 0) {
          if (errno == EINTR) continue;
          op.err = errno;
          break;
        }
        if (n == 0) {
          op.err = ENOSPC;
          break;
        }
        done += static_cast<size_t>(n);
      }
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array results = Napi::Array::New(env, ops_.size());
    for (size_t i = 0; i < ops_.size(); i++) {
      if (ops_[i].err == 0) {
        results.Set(i, env.Null());
      } else {
        results.Set(i, ErrnoError(env, ops_[i].err, "pwrite", "pwrite").Value());
      }
    }
    keep_.Reset();
    deferred_.Resolve(results);
  }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  std::vector<WriteOp> ops_;
  // The Buffers stay referenced until the kernel is done with their memory.
  Napi::Reference<Napi::Array> keep_;
};

}  // namespace

// readNowait(fd, buf, offset): bytes read (possibly short), or -1 when the data is not cached.
Napi::Value ReadNowait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Error error;
  auto fd = FdArg(info, 0, error);
  if (!fd || !BufferArg(info, 1, error)) {
    error.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto offset = OffsetArg(info, 2, "offset", error);
  if (!offset) {
    error.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto buf = info[1].As<Napi::Buffer<uint8_t>>();
  struct iovec iov = {buf.Data(), buf.Length()};
  ssize_t n;
  do {
    n = preadv2(*fd, &iov, 1, static_cast<off_t>(*offset), RWF_NOWAIT);
  } while (n < 0 && errno == EINTR);
  if (n >= 0) return Napi::Number::New(env, static_cast<double>(n));
  if (errno == EAGAIN) return Napi::Number::New(env, -1);
  ErrnoError(env, errno, "preadv2", "preadv2(RWF_NOWAIT)").ThrowAsJavaScriptException();
  return env.Undefined();
}

// writeBatch(fd, buffers[], offsets[]): Promise<(Error|null)[]>, one job on the pool.
Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Error error;
  auto fd = FdArg(info, 0, error);
  if (!fd) {
    error.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsArray()) {
    InvalidArgument(env, "writeBatch(fd, buffers, offsets) needs two arrays").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array bufs = info[1].As<Napi::Array>();
  Napi::Array offsets = info[2].As<Napi::Array>();
  uint32_t count = bufs.Length();
  if (offsets.Length() != count) {
    InvalidArgument(env, "writeBatch: buffers and offsets differ in length").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<WriteOp> ops;
  ops.reserve(count);
  for (uint32_t i = 0; i < count; i++) {
    Napi::Value b = bufs.Get(i);
    Napi::Value o = offsets.Get(i);
    if (!b.IsBuffer() || !o.IsNumber()) {
      InvalidArgument(env, "writeBatch: entry " + std::to_string(i) + " is not a Buffer and a number")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    double off = o.As<Napi::Number>().DoubleValue();
    if (!(off >= 0) || off > 9007199254740992.0) {
      InvalidArgument(env, "writeBatch: bad offset").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto buf = b.As<Napi::Buffer<uint8_t>>();
    ops.push_back({buf.Data(), buf.Length(), static_cast<uint64_t>(off), 0});
  }
  auto* worker = new WriteBatchWorker(env, *fd, std::move(ops), bufs);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace urbd
