/* Fake sockets for pool sizes beyond RLIMIT_NOFILE (20000 here, 1M needed).
 *
 * The benchmark programs link the library's convenience archive with
 * -Wl,--wrap=fcntl,...: every call the library (or the benchmark) makes to
 * one of these syscalls lands here. Real fds go to the real call; fds at or
 * above BU_FAKE_FD_BASE are always-healthy sockets answered in user space:
 *   fcntl        F_GETFL -> O_RDWR|O_NONBLOCK, anything else -> 0
 *   getsockname  127.0.0.1:port, getpeername 127.0.0.1:port
 *   recv         -1/EAGAIN (nothing to read)
 *   poll         no event (the handoff's liveness check says "alive")
 *   send         len (everything written)
 *   close, shutdown  0
 * So with fake fds the syscall cost is NOT measured; the benchmarks measure
 * it separately on real sockets and say so in their output. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.h"

struct bu_fake_counts bu_fake;

int __real_fcntl(int fd, int cmd, ...);
int __real_fcntl64(int fd, int cmd, ...);
int __real_getsockname(int fd, struct sockaddr *sa, socklen_t *len);
int __real_getpeername(int fd, struct sockaddr *sa, socklen_t *len);
int __real_close(int fd);
int __real_shutdown(int fd, int how);
ssize_t __real_recv(int fd, void *buf, size_t n, int flags);
ssize_t __real___recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __real_send(int fd, const void *buf, size_t n, int flags);
int __real_poll(struct pollfd *fds, nfds_t n, int timeout);

static inline int is_fake(int fd) { return fd >= BU_FAKE_FD_BASE; }

static int fake_fcntl(int cmd) {
  bu_fake.fcntl++;
  return cmd == F_GETFL ? (O_RDWR | O_NONBLOCK) : 0;
}

/* Like glibc's own fcntl, the third argument is read as a pointer-sized word
 * whatever cmd is; that is how the x86-64 and aarch64 ABIs pass int or void*. */
int __wrap_fcntl(int fd, int cmd, ...) {
  if (is_fake(fd))
    return fake_fcntl(cmd);
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return __real_fcntl(fd, cmd, arg);
}

int __wrap_fcntl64(int fd, int cmd, ...) {
  if (is_fake(fd))
    return fake_fcntl(cmd);
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return __real_fcntl64(fd, cmd, arg);
}

static int fake_addr(int fd, struct sockaddr *sa, socklen_t *len) {
  if (!sa || !len) {
    errno = EFAULT;
    return -1;
  }
  struct sockaddr_in in;
  memset(&in, 0, sizeof(in));
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  in.sin_port = htons((uint16_t)(1024 + (unsigned)fd % 60000u));
  size_t n = *len < sizeof(in) ? *len : sizeof(in);
  memcpy(sa, &in, n);
  *len = sizeof(in);
  return 0;
}

int __wrap_getsockname(int fd, struct sockaddr *sa, socklen_t *len) {
  if (!is_fake(fd))
    return __real_getsockname(fd, sa, len);
  bu_fake.getsockname++;
  return fake_addr(fd, sa, len);
}

int __wrap_getpeername(int fd, struct sockaddr *sa, socklen_t *len) {
  if (!is_fake(fd))
    return __real_getpeername(fd, sa, len);
  bu_fake.getpeername++;
  return fake_addr(fd, sa, len);
}

int __wrap_close(int fd) {
  if (!is_fake(fd))
    return __real_close(fd);
  bu_fake.close++;
  return 0;
}

int __wrap_shutdown(int fd, int how) {
  if (!is_fake(fd))
    return __real_shutdown(fd, how);
  bu_fake.shutdown++;
  return 0;
}

ssize_t __wrap_recv(int fd, void *buf, size_t n, int flags) {
  if (!is_fake(fd))
    return __real_recv(fd, buf, n, flags);
  bu_fake.recv++;
  errno = EAGAIN;
  return -1;
}

/* Only referenced when the library is built with _FORTIFY_SOURCE. */
ssize_t __wrap___recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags) {
  if (!is_fake(fd))
    return __real___recv_chk(fd, buf, n, buflen, flags);
  bu_fake.recv++;
  errno = EAGAIN;
  return -1;
}

ssize_t __wrap_send(int fd, const void *buf, size_t n, int flags) {
  if (!is_fake(fd))
    return __real_send(fd, buf, n, flags);
  bu_fake.send++;
  return (ssize_t)n;
}

/* Fake entries have nothing to report: poll(2) skips an entry with a
 * negative fd and gives it revents 0, so they are hidden for the real call. */
int __wrap_poll(struct pollfd *fds, nfds_t n, int timeout) {
  nfds_t fakes = 0;
  for (nfds_t i = 0; i < n; i++)
    if (is_fake(fds[i].fd)) {
      fds[i].fd = -fds[i].fd;
      fakes++;
    }
  if (!fakes)
    return __real_poll(fds, n, timeout);
  bu_fake.poll += fakes;
  int r = fakes == n ? 0 : __real_poll(fds, n, timeout);
  for (nfds_t i = 0; i < n; i++)
    if (fds[i].fd < 0 && is_fake(-fds[i].fd)) {
      fds[i].fd = -fds[i].fd;
      fds[i].revents = 0;
    }
  return r;
}

/* ---------------------------------------------------------- self-check */

int bu_fake_selfcheck(void) {
  revtun_t *h = NULL;
  revtun_reg_t *reg = NULL;
  char err[256];
  struct bu_fake_counts before = bu_fake;
  int fd = BU_FAKE_FD_BASE, out = -1, rc;
  if ((rc = revtun_new(&h, NULL, 0, NULL, 0, err, sizeof(err))) != REVTUN_OK) {
    fprintf(stderr, "self-check: revtun_new: %s (%s)\n", revtun_status_name(rc), err);
    return -1;
  }
  if (revtun_reg_new(h, &reg) != REVTUN_OK) {
    revtun_free(h);
    return -1;
  }
  revtun_reg_set_ids(reg, "selfcheck-node", "selfcheck-cluster", NULL);
  rc = revtun_register_socket(h, fd, reg, 0);
  if (rc == REVTUN_OK)
    rc = revtun_handoff(h, "selfcheck-node", NULL, 1, &out, NULL);
  if (rc == REVTUN_OK)
    rc = revtun_mark_dead(h, out, REVTUN_CLOSE_LOCAL_CLOSE, 2);
  /* an idle fake socket closed by the library: shutdown + close */
  if (rc == REVTUN_OK)
    rc = revtun_register_socket(h, fd, reg, 3);
  if (rc == REVTUN_OK)
    rc = revtun_mark_dead(h, fd, REVTUN_CLOSE_LOCAL_CLOSE, 4);
  revtun_reg_free(reg);
  revtun_free(h);
  int ok = rc == REVTUN_OK && out == fd && bu_fake.fcntl > before.fcntl &&
           bu_fake.getsockname > before.getsockname && bu_fake.getpeername > before.getpeername &&
           bu_fake.poll > before.poll && bu_fake.close > before.close;
  if (!ok) {
    fprintf(stderr,
            "self-check failed (%s): the library's syscalls did not reach the fake-fd wrappers;\n"
            "is the library built with _FORTIFY_SOURCE or a redirected symbol not wrapped?\n",
            revtun_status_name(rc));
    return -1;
  }
  return 0;
}
