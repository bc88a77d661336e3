/* See logfile.h. The host's loop must never wait on a log: a regular file
 * takes a write at once (the page cache), a socket is written with
 * MSG_DONTWAIT, and a pipe or terminal -- typically stdout -- is polled first
 * and written at most PIPE_BUF bytes at a time, which a pipe that polled
 * writable accepts without blocking. Whatever is not taken stays pending for
 * the next flush. Writes to a pipe keep SIGPIPE away from the host: a log
 * reader going away must not kill the proxy. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "observe/logfile.h"

#define MIN_BUFFER 4096u
#define KEEP_BUFFER (4u * RT_LOGFILE_FLUSH_BYTES) /* larger idle buffers are given back */

static uint8_t sink_of(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return RT_SINK_STREAM;
  if (S_ISREG(st.st_mode))
    return RT_SINK_FILE;
  if (S_ISSOCK(st.st_mode))
    return RT_SINK_SOCKET;
  return RT_SINK_STREAM;
}

static int open_path(const char *path) {
  int fd;
  do
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  while (fd < 0 && errno == EINTR);
  return fd;
}

int rt_logfile_open(const struct rt_mem *m, struct rt_logfile *lf, const char *path, size_t limit) {
  memset(lf, 0, sizeof(*lf));
  lf->fd = -1;
  lf->limit = limit;
  if (!(lf->path = rt_strdup(m, path)))
    return ENOMEM;
  lf->fd = open_path(path);
  if (lf->fd < 0)
    return errno;
  lf->owned = true;
  lf->sink = sink_of(lf->fd);
  return 0;
}

void rt_logfile_use_fd(struct rt_logfile *lf, int fd, size_t limit) {
  memset(lf, 0, sizeof(*lf));
  lf->fd = fd;
  lf->limit = limit;
  lf->sink = sink_of(fd);
}

size_t rt_logfile_reserve(const struct rt_mem *m, struct rt_logfile *lf, size_t want, char **at) {
  size_t pending = rt_logfile_pending(lf);
  size_t room = lf->limit > pending ? lf->limit - pending : 0;
  if (want > room)
    want = room;
  if (!want)
    return 0;
  if (lf->len + want > lf->cap && lf->off) { /* reuse the space already written */
    memmove(lf->buf, lf->buf + lf->off, pending);
    lf->off = 0;
    lf->len = pending;
  }
  if (lf->len + want > lf->cap) {
    size_t cap = lf->cap ? lf->cap : MIN_BUFFER;
    while (cap < lf->len + want)
      cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
    if (cap > lf->limit)
      cap = lf->limit;
    char *b = rt_realloc(m, lf->buf, cap);
    if (!b)
      return 0;
    lf->buf = b;
    lf->cap = cap;
  }
  *at = lf->buf + lf->len;
  return want;
}

/* write(2) on a pipe with SIGPIPE blocked for this thread; a SIGPIPE the
 * write raised is consumed, one that was already pending is left alone. */
static ssize_t write_no_sigpipe(int fd, const void *p, size_t n) {
  sigset_t pipe_set, old, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigemptyset(&pending);
  sigpending(&pending);
  bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  ssize_t r = write(fd, p, n);
  int e = errno;
  if (r < 0 && e == EPIPE && !was_pending) {
    static const struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
      ;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = e;
  return r;
}

/* One attempt; >0 bytes taken, 0 = no room now, -1 = error (errno). */
static ssize_t write_some(struct rt_logfile *lf, int wait_ms) {
  const char *p = lf->buf + lf->off;
  size_t n = rt_logfile_pending(lf);
  ssize_t r;
  switch (lf->sink) {
  case RT_SINK_FILE: r = write(lf->fd, p, n); break;
  case RT_SINK_SOCKET: r = send(lf->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL); break;
  default: {
    struct pollfd pfd = {.fd = lf->fd, .events = POLLOUT};
    int pr = poll(&pfd, 1, wait_ms);
    if (pr < 0)
      return errno == EINTR ? 0 : -1;
    if (pr == 0)
      return 0;
    if (pfd.revents & POLLNVAL) {
      errno = EBADF;
      return -1;
    }
    r = write_no_sigpipe(lf->fd, p, n < PIPE_BUF ? n : PIPE_BUF);
  }
  }
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return 0;
  return r;
}

int rt_logfile_flush(const struct rt_mem *m, struct rt_logfile *lf, int wait_ms) {
  int err = 0;
  while (rt_logfile_pending(lf) && lf->fd >= 0) {
    ssize_t r = write_some(lf, wait_ms);
    if (r < 0) {
      err = errno ? errno : EIO;
      break;
    }
    if (r == 0) {
      if (lf->sink == RT_SINK_FILE) /* a regular file wrote nothing: treat as full disk */
        err = ENOSPC;
      break;
    }
    lf->off += (size_t)r;
  }
  if (lf->fd < 0 && rt_logfile_pending(lf))
    err = EBADF;
  if (!rt_logfile_pending(lf)) {
    lf->off = lf->len = 0;
    if (lf->cap > KEEP_BUFFER) { /* a burst should not pin its peak memory */
      rt_free(m, lf->buf);
      lf->buf = NULL;
      lf->cap = 0;
    }
  }
  return err;
}

int rt_logfile_reopen(const struct rt_mem *m, struct rt_logfile *lf) {
  if (!lf->owned)
    return rt_logfile_flush(m, lf, 0);
  rt_logfile_flush(m, lf, 0); /* everything written so far belongs to the old file */
  int fd = open_path(lf->path);
  if (fd < 0)
    return errno;
  if (lf->fd >= 0)
    close(lf->fd);
  lf->fd = fd;
  lf->sink = sink_of(fd);
  return 0;
}

void rt_logfile_close(const struct rt_mem *m, struct rt_logfile *lf) {
  if (lf->owned && lf->fd >= 0)
    close(lf->fd);
  rt_free(m, lf->buf);
  rt_free(m, lf->path);
  memset(lf, 0, sizeof(*lf));
  lf->fd = -1;
}
