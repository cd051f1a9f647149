// sd_notify(3) without libsystemd: one datagram to the socket systemd names in NOTIFY_SOCKET.
// Node has no AF_UNIX datagram sockets, so this is the only way to tell systemd "READY=1"
// from the daemon's own PID (which NotifyAccess=main requires).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errno_error.h"
#include "ops.h"

namespace urbd {

Napi::Value Notify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    InvalidArgument(env, "notify(socketPath, message) takes two strings")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string message = info[1].As<Napi::String>().Utf8Value();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path) || (path[0] != '/' && path[0] != '@')) {
    InvalidArgument(env, "NOTIFY_SOCKET must be an absolute path or @abstract name")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  // A leading '@' names a socket in the abstract namespace, which starts with a NUL byte.
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ErrnoError(env, errno, "socket", "socket(AF_UNIX, SOCK_DGRAM)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ssize_t sent = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL,
                        reinterpret_cast<sockaddr*>(&addr), len);
  int err = errno;
  close(fd);
  if (sent < 0) {
    ErrnoError(env, err, "sendto", "sendto(NOTIFY_SOCKET)").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

}  // namespace urbd
