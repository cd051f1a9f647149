#pragma once

#include <napi.h>

namespace urbd {

Napi::Value BlockDeviceSize(const Napi::CallbackInfo& info);
Napi::Value SeekData(const Napi::CallbackInfo& info);
Napi::Value SeekHole(const Napi::CallbackInfo& info);

Napi::Value PunchHole(const Napi::CallbackInfo& info);
Napi::Value ZeroRange(const Napi::CallbackInfo& info);
Napi::Value Discard(const Napi::CallbackInfo& info);
Napi::Value ZeroOut(const Napi::CallbackInfo& info);

Napi::Value ReadNowait(const Napi::CallbackInfo& info);
Napi::Value WriteBatch(const Napi::CallbackInfo& info);

Napi::Value Notify(const Napi::CallbackInfo& info);

Napi::Value AllocHuge(const Napi::CallbackInfo& info);

}  // namespace urbd
