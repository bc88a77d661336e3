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
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "observe/logfile.h"
#include "pool/directory.h"

#define MIN_BUFFER 4096u
#define KEEP_BUFFER (4u * RT_LOGFILE_FLUSH_BYTES) /* larger idle buffers are given back */

/* Where records go (logfile.h). Private to one logger, or shared through a
 * process directory by the loggers of every handle that name the same file
 * or standard stream. */
struct rt_logtarget {
  struct rt_logtarget *next; /* in the directory's list */
  revtun_directory_t *dir;   /* NULL: one logger's own */
  struct rt_mem mem;         /* what allocated it */
  unsigned refs;             /* loggers using it; under the directory's lock */
  /* Held for a write or a reopen: with one writer at a time the records of
   * different handles cannot interleave inside one write. It is held across
   * that write(2), which never waits (see the top of the file) except in
   * revtun_free, up to FREE_WAIT_MS of accesslog.c for a full pipe. */
  pthread_mutex_t lock;
  int fd;
  bool owned; /* opened from path (closed on free/reopen); false for fds 1 and 2 */
  uint8_t sink;
  char *path; /* NULL for fds 1 and 2 */
  /* A short write (a full pipe, a full disk) left part of this logger's
   * pending bytes, perhaps half a record, unwritten: the other loggers wait
   * until it has written the rest, so that their records do not land inside
   * it. */
  const struct rt_logfile *torn_by;
};

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

static void target_destroy(struct rt_logtarget *t) {
  struct rt_mem m = t->mem;
  if (t->owned && t->fd >= 0)
    close(t->fd);
  pthread_mutex_destroy(&t->lock);
  rt_free(&m, t->path);
  rt_free(&m, t);
}

/* A new target on path (opened here) or on fd; 0 or errno. */
static int target_new(const struct rt_mem *m, const char *path, int fd, struct rt_logtarget **out) {
  struct rt_logtarget *t = rt_calloc(m, 1, sizeof(*t));
  if (!t)
    return ENOMEM;
  t->mem = *m;
  t->fd = -1;
  if (pthread_mutex_init(&t->lock, NULL)) {
    rt_free(m, t);
    return ENOMEM;
  }
  if (path) {
    if (!(t->path = rt_strdup(m, path))) {
      target_destroy(t);
      return ENOMEM;
    }
    if ((t->fd = open_path(path)) < 0) {
      int err = errno;
      target_destroy(t);
      return err;
    }
    t->owned = true;
  } else {
    t->fd = fd;
  }
  t->sink = sink_of(t->fd);
  *out = t;
  return 0;
}

static struct rt_logtarget *find_shared(struct rt_logtarget *t, const char *path, int fd) {
  for (; t; t = t->next)
    if (path ? t->path && strcmp(t->path, path) == 0 : !t->path && t->fd == fd)
      return t;
  return NULL;
}

/* The target for path or fd: dir's shared one if there is one, else a new
 * one (shared when dir is given). The file is opened outside the
 * directory's lock; of two handles opening it at once, one keeps its
 * target and the other joins it. */
static int target_get(const struct rt_mem *m, revtun_directory_t *dir, const char *path, int fd,
                      struct rt_logtarget **out) {
  if (!dir)
    return target_new(m, path, fd, out);
  const struct rt_mem *dmem;
  struct rt_logtarget **head = (struct rt_logtarget **)rt_dir_lock_logs(dir, &dmem);
  struct rt_logtarget *t = find_shared(*head, path, fd);
  if (t)
    t->refs++;
  rt_dir_unlock_logs(dir);
  if (t) {
    *out = t;
    return 0;
  }
  struct rt_mem shared_mem = *dmem;
  struct rt_logtarget *fresh;
  int err = target_new(&shared_mem, path, fd, &fresh);
  if (err)
    return err;
  head = (struct rt_logtarget **)rt_dir_lock_logs(dir, &dmem);
  if ((t = find_shared(*head, path, fd))) {
    t->refs++;
  } else {
    t = fresh;
    fresh = NULL;
    t->dir = dir;
    t->refs = 1;
    t->next = *head;
    *head = t;
    rt_dir_retain(dir);
  }
  rt_dir_unlock_logs(dir);
  if (fresh)
    target_destroy(fresh);
  *out = t;
  return 0;
}

static void target_put(struct rt_logtarget *t) {
  revtun_directory_t *dir = t->dir;
  if (!dir) {
    target_destroy(t);
    return;
  }
  const struct rt_mem *dmem;
  struct rt_logtarget **p = (struct rt_logtarget **)rt_dir_lock_logs(dir, &dmem);
  bool last = --t->refs == 0;
  if (last) {
    while (*p != t)
      p = &(*p)->next;
    *p = t->next;
  }
  rt_dir_unlock_logs(dir);
  if (last) {
    target_destroy(t);
    rt_dir_release(dir);
  }
}

int rt_logfile_open(const struct rt_mem *m, struct rt_logfile *lf, const char *path, size_t limit,
                    revtun_directory_t *dir) {
  memset(lf, 0, sizeof(*lf));
  lf->limit = limit;
  return target_get(m, dir, path, -1, &lf->t);
}

int rt_logfile_use_fd(const struct rt_mem *m, struct rt_logfile *lf, int fd, size_t limit,
                      revtun_directory_t *dir) {
  memset(lf, 0, sizeof(*lf));
  lf->limit = limit;
  return target_get(m, dir, NULL, fd, &lf->t);
}

const char *rt_logfile_path(const struct rt_logfile *lf) { return lf->t ? lf->t->path : NULL; }

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
static ssize_t write_some(struct rt_logtarget *t, const char *p, size_t n, int wait_ms) {
  ssize_t r;
  switch (t->sink) {
  case RT_SINK_FILE: r = write(t->fd, p, n); break;
  case RT_SINK_SOCKET: r = send(t->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL); break;
  default: {
    struct pollfd pfd = {.fd = t->fd, .events = POLLOUT};
    int pr = poll(&pfd, 1, wait_ms);
    if (pr < 0)
      return errno == EINTR ? 0 : -1;
    if (pr == 0)
      return 0;
    if (pfd.revents & POLLNVAL) {
      errno = EBADF;
      return -1;
    }
    r = write_no_sigpipe(t->fd, p, n < PIPE_BUF ? n : PIPE_BUF);
  }
  }
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return 0;
  return r;
}

int rt_logfile_flush(const struct rt_mem *m, struct rt_logfile *lf, int wait_ms) {
  int err = 0;
  struct rt_logtarget *t = lf->t;
  if (rt_logfile_pending(lf) && t) {
    pthread_mutex_lock(&t->lock);
    if (t->torn_by && t->torn_by != lf) { /* another's record is half written */
      pthread_mutex_unlock(&t->lock);
      return 0;
    }
    while (rt_logfile_pending(lf) && t->fd >= 0) {
      ssize_t r = write_some(t, lf->buf + lf->off, rt_logfile_pending(lf), wait_ms);
      if (r < 0) {
        err = errno ? errno : EIO;
        break;
      }
      if (r == 0) {
        if (t->sink == RT_SINK_FILE) /* a regular file wrote nothing: treat as full disk */
          err = ENOSPC;
        break;
      }
      lf->off += (size_t)r;
    }
    if (t->fd < 0 && rt_logfile_pending(lf))
      err = EBADF;
    t->torn_by = rt_logfile_pending(lf) ? lf : NULL;
    pthread_mutex_unlock(&t->lock);
  }
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

/* path still names the file open on t's descriptor. */
static bool still_current(const struct rt_logtarget *t) {
  struct stat at_path, open_one;
  return t->fd >= 0 && stat(t->path, &at_path) == 0 && fstat(t->fd, &open_one) == 0 &&
         at_path.st_dev == open_one.st_dev && at_path.st_ino == open_one.st_ino;
}

int rt_logfile_reopen(const struct rt_mem *m, struct rt_logfile *lf) {
  struct rt_logtarget *t = lf->t;
  int err = rt_logfile_flush(m, lf, 0); /* everything written so far belongs to the old file */
  if (!t || !t->owned)
    return err;
  err = 0;
  pthread_mutex_lock(&t->lock);
  if (!still_current(t)) {
    int fd = open_path(t->path);
    if (fd < 0) {
      err = errno;
    } else {
      if (t->fd >= 0)
        close(t->fd);
      t->fd = fd;
      t->sink = sink_of(fd);
    }
  }
  pthread_mutex_unlock(&t->lock);
  return err;
}

void rt_logfile_close(const struct rt_mem *m, struct rt_logfile *lf) {
  struct rt_logtarget *t = lf->t;
  if (t) {
    pthread_mutex_lock(&t->lock);
    if (t->torn_by == lf)
      t->torn_by = NULL;
    pthread_mutex_unlock(&t->lock);
    target_put(t);
  }
  rt_free(m, lf->buf);
  memset(lf, 0, sizeof(*lf));
}
