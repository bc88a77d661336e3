/* A buffered, never-blocking log writer for one file or stream (stdout,
 * stderr). Records are appended whole or not at all; flushing writes what
 * the descriptor takes now and keeps the rest, so a record is never lost or
 * torn by a short write, a full pipe or a failed write. */
#ifndef REVTUN_OBSERVE_LOGFILE_H
#define REVTUN_OBSERVE_LOGFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/mem.h"
#include "revtun/revtun.h"

#define RT_LOGFILE_FLUSH_BYTES 65536u /* flush at the end of a call from this much on */

enum rt_logfile_sink {
  RT_SINK_FILE = 1, /* regular file: write(2) takes everything, no need to poll */
  RT_SINK_SOCKET,   /* send(MSG_DONTWAIT | MSG_NOSIGNAL) */
  RT_SINK_STREAM    /* pipe, tty, character device: poll first, PIPE_BUF at a time */
};

/* Where records go: a descriptor, its kind, and the lock that keeps one
 * writer at a time on it. A logger has its own, unless its handle has a
 * process directory: then the loggers of all its handles that name the same
 * file (or stdout, or stderr) share one target, so the file is opened once,
 * reopened once per rotation, and no record of one handle lands inside
 * another's (logfile.c). */
struct rt_logtarget;

struct rt_logfile {
  struct rt_logtarget *t;
  char *buf;
  size_t off, len, cap; /* pending bytes are buf[off..len) */
  size_t limit;         /* most bytes pending at once */
};

/* Opens path O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC, 0644, or joins the target
 * of dir's other loggers of the same path (dir may be NULL). Returns 0 or
 * errno. */
int rt_logfile_open(const struct rt_mem *m, struct rt_logfile *lf, const char *path, size_t limit,
                    revtun_directory_t *dir);
/* Uses an fd the process already has (1 or 2); never closes it. Returns 0
 * or ENOMEM. */
int rt_logfile_use_fd(const struct rt_mem *m, struct rt_logfile *lf, int fd, size_t limit,
                      revtun_directory_t *dir);
/* The file's path (NULL for fds 1 and 2). */
const char *rt_logfile_path(const struct rt_logfile *lf);

/* Room for one record of up to `want` bytes after the pending ones, made by
 * compacting or growing the buffer but never past the limit. Returns the
 * room (at most want; 0 when the buffer is full or memory ran out) and where
 * it starts. A record rendered there is kept by rt_logfile_commit(). */
size_t rt_logfile_reserve(const struct rt_mem *m, struct rt_logfile *lf, size_t want, char **at);
static inline void rt_logfile_commit(struct rt_logfile *lf, size_t n) { lf->len += n; }

/* Writes pending bytes while the descriptor takes them without blocking.
 * wait_ms > 0 lets a stream wait for room (only when the handle is freed).
 * Returns 0 or the errno of a failed write (the bytes stay pending). */
int rt_logfile_flush(const struct rt_mem *m, struct rt_logfile *lf, int wait_ms);

static inline size_t rt_logfile_pending(const struct rt_logfile *lf) { return lf->len - lf->off; }

/* Rotation: flushes to the old file, then opens path again and switches to
 * the new descriptor -- unless path still names the file already open (not
 * moved, or another handle sharing the target reopened it first). On an
 * open failure the old one is kept; returns errno. */
int rt_logfile_reopen(const struct rt_mem *m, struct rt_logfile *lf);

void rt_logfile_close(const struct rt_mem *m, struct rt_logfile *lf);

#endif
