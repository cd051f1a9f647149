#include <napi.h>

#include "ops.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("blockDeviceSize",
              Napi::Function::New(env, urbd::BlockDeviceSize, "blockDeviceSize"));
  exports.Set("seekData", Napi::Function::New(env, urbd::SeekData, "seekData"));
  exports.Set("seekHole", Napi::Function::New(env, urbd::SeekHole, "seekHole"));
  exports.Set("punchHole", Napi::Function::New(env, urbd::PunchHole, "punchHole"));
  exports.Set("zeroRange", Napi::Function::New(env, urbd::ZeroRange, "zeroRange"));
  exports.Set("discard", Napi::Function::New(env, urbd::Discard, "discard"));
  exports.Set("zeroOut", Napi::Function::New(env, urbd::ZeroOut, "zeroOut"));
  exports.Set("readNowait", Napi::Function::New(env, urbd::ReadNowait, "readNowait"));
  exports.Set("writeBatch", Napi::Function::New(env, urbd::WriteBatch, "writeBatch"));
  exports.Set("notify", Napi::Function::New(env, urbd::Notify, "notify"));
  exports.Set("allocHuge", Napi::Function::New(env, urbd::AllocHuge, "allocHuge"));
  return exports;
}

}  // namespace

NODE_API_MODULE(urbd_native, Init)
