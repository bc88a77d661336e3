/* A buffered, never-blocking log writer for one file or stream (stdout,
 * stderr). Records are appended whole or not at all; flushing writes what
 * the descriptor takes now and keeps the rest, so a record is never lost or
 * torn by a short write, a full pipe or a failed write. */
#ifndef REVTUN_OBSERVE_LOGFILE_H
#define REVTUN_OBSERVE_LOGFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/mem.h"

#define RT_LOGFILE_FLUSH_BYTES 65536u /* flush at the end of a call from this much on */

enum rt_logfile_sink {
  RT_SINK_FILE = 1, /* regular file: write(2) takes everything, no need to poll */
  RT_SINK_SOCKET,   /* send(MSG_DONTWAIT | MSG_NOSIGNAL) */
  RT_SINK_STREAM    /* pipe, tty, character device: poll first, PIPE_BUF at a time */
};

struct rt_logfile {
  int fd;
  bool owned;   /* opened from path (closed on free/reopen); false for fds 1 and 2 */
  uint8_t sink; /* enum rt_logfile_sink, from fstat at open */
  char *path;
  char *buf;
  size_t off, len, cap; /* pending bytes are buf[off..len) */
  size_t limit;         /* most bytes pending at once */
};

/* Opens path O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC, 0644. Returns 0 or errno. */
int rt_logfile_open(const struct rt_mem *m, struct rt_logfile *lf, const char *path, size_t limit);
/* Uses an fd the process already has (1 or 2); never closes it. */
void rt_logfile_use_fd(struct rt_logfile *lf, int fd, size_t limit);

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
 * the new descriptor. On an open failure the old one is kept; returns errno. */
int rt_logfile_reopen(const struct rt_mem *m, struct rt_logfile *lf);

void rt_logfile_close(const struct rt_mem *m, struct rt_logfile *lf);

#endif
