/* See host.h. */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "core/fdtable.h"
#include "core/handle.h"
#include "core/host.h"

void rt_log(revtun_t *h, int level, const char *fmt, ...) {
  if (!h->opts.log_cb || level > h->opts.log_level)
    return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  h->cb_depth++;
  h->opts.log_cb(h, level, msg, h->opts.user_data);
  h->cb_depth--;
}

int rt_io(revtun_t *h, struct rt_fdent *ent, int events) {
  if (!h->opts.io_cb)
    return REVTUN_OK;
  h->cb_depth++;
  int rc = h->opts.io_cb(h, ent->fd, events, ent->sock_user, h->opts.user_data);
  h->cb_depth--;
  if (rc) {
    rt_log(h, REVTUN_LOG_ERROR, "io callback failed (%d) for fd %d", rc, ent->fd);
    return REVTUN_E_HOST;
  }
  return REVTUN_OK;
}

void rt_close_fd(revtun_t *h, int fd, void *sock_user) {
  if (h->opts.close_cb) {
    h->cb_depth++;
    h->opts.close_cb(h, fd, sock_user, h->opts.user_data);
    h->cb_depth--;
  } else {
    close(fd);
  }
}

void rt_rearm_timer(revtun_t *h) {
  if (!h->opts.timer_cb || h->freeing)
    return;
  uint64_t d = rt_next_deadline(h);
  if (d == h->armed_deadline)
    return;
  int64_t ms = d == RT_NO_DEADLINE ? -1 : (d > h->last_now ? (int64_t)(d - h->last_now) : 0);
  h->armed_deadline = d;
  h->cb_depth++;
  int rc = h->opts.timer_cb(h, ms, h->opts.user_data);
  h->cb_depth--;
  if (rc) {
    h->failed = true;
    rt_log(h, REVTUN_LOG_ERROR, "timer callback failed (%d); the handle is now unusable", rc);
  }
}

void rt_disarm_timer(revtun_t *h) {
  if (!h->opts.timer_cb || h->armed_deadline == RT_NO_DEADLINE)
    return;
  h->cb_depth++;
  h->opts.timer_cb(h, -1, h->opts.user_data);
  h->cb_depth--;
  h->armed_deadline = RT_NO_DEADLINE;
}
