// TCP ping-pong over loopback between two processes, in C: the least a round trip between two
// daemons costs on this machine (a physical reference for QD1 on the pair; docs/performance.md).
//   cc -O2 -o /tmp/pingpong scripts/bench/pingpong.c && /tmp/pingpong [ROUND_TRIPS] [BYTES]
// The parent sends BYTES and waits for BYTES back; the child echoes. TCP_NODELAY on both ends,
// blocking reads: each round trip is two wake-ups across processes, as a replicated write's
// request and ack are.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int read_full(int fd, char *buf, int size) {
  int got = 0;
  while (got < size) {
    int r = read(fd, buf + got, size - got);
    if (r <= 0) return -1;
    got += r;
  }
  return 0;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 20000;
  int size = argc > 2 ? atoi(argv[2]) : 32;
  static char buf[1 << 20];
  if (size < 1 || size > (int)sizeof buf || n < 1) {
    fprintf(stderr, "usage: pingpong [ROUND_TRIPS >= 1] [BYTES 1..1048576]\n");
    return 2;
  }
  memset(buf, 1, sizeof buf);
  int one = 1;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(ls, (void *)&a, sizeof a) || listen(ls, 1) || getsockname(ls, (void *)&a, &len)) {
    perror("listen on 127.0.0.1");
    return 1;
  }
  pid_t child = fork();
  if (child == 0) {
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (void *)&a, sizeof a)) _exit(1);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (int i = 0; i < n; i++) {
      if (read_full(c, buf, size) || write(c, buf, size) != size) _exit(1);
    }
    _exit(0);
  }
  int s = accept(ls, 0, 0);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  double t0 = now_us();
  for (int i = 0; i < n; i++) {
    if (write(s, buf, size) != size || read_full(s, buf, size)) {
      fprintf(stderr, "the echo stopped after %d round trips\n", i);
      return 1;
    }
  }
  double t = now_us() - t0;
  int status = 0;
  waitpid(child, &status, 0);
  printf("%d round trips of %d bytes: %.1f us each\n", n, size, t / n);
  return 0;
}
