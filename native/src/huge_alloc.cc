// Memory for long-lived buffers backed by transparent huge pages where the kernel allows it.
//
// Faulting in fresh memory page by page is what made the first payloads of a resync slow
// on this project's VMs (about 3 ms per MiB for the first write into 4 KiB pages, and as
// much again for the kernel's first copy into them; docs/performance.md). One 2 MiB page
// costs a fraction of that, so slabs are mapped on a 2 MiB boundary and advised
// MADV_HUGEPAGE (the default THP mode on Debian is "madvise"). Where huge pages are off or
// unavailable, the mapping is plain anonymous memory and works the same, only slower to
// touch the first time.
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>

#include "args.h"
#include "errno_error.h"
#include "ops.h"

namespace urbd {

namespace {

constexpr uint64_t kHugePage = 2u << 20;
constexpr uint64_t kMaxBytes = 1u << 30;

void Unmap(Napi::Env env, uint8_t* data, uint64_t* length) {
  munmap(data, static_cast<size_t>(*length));
  Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(*length));
  delete length;
}

}  // namespace

Napi::Value AllocHuge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Error error;
  auto bytes = OffsetArg(info, 0, "bytes", error);
  if (!bytes) {
    error.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (*bytes == 0 || *bytes > kMaxBytes) {
    InvalidArgument(env, "bytes must be between 1 and 1 GiB").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const uint64_t length = (*bytes + kHugePage - 1) / kHugePage * kHugePage;
  // Map one huge page more than needed and trim both ends, so the buffer starts on a 2 MiB
  // boundary: a huge page can only back a naturally aligned 2 MiB range.
  const size_t span = static_cast<size_t>(length + kHugePage);
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    ErrnoError(env, errno, "mmap", "mmap(anonymous)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) & ~(kHugePage - 1);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = aligned + length;
  const uintptr_t spanEnd = start + span;
  if (spanEnd > end) munmap(reinterpret_cast<void*>(end), spanEnd - end);
  uint8_t* data = reinterpret_cast<uint8_t*>(aligned);
  // Advice only: without THP the memory is simply faulted in 4 KiB at a time.
  madvise(data, static_cast<size_t>(length), MADV_HUGEPAGE);
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(length));
  return Napi::Buffer<uint8_t>::New(env, data, static_cast<size_t>(*bytes), Unmap,
                                    new uint64_t(length));
}

}  // namespace urbd
