/* See fdtable.h. */
#include <string.h>

#include "base/macros.h"
#include "core/fdtable.h"
#include "core/handle.h"

struct rt_fdent *rt_fd_get(const revtun_t *h, int fd) {
  return fd >= 0 && (size_t)fd < h->fds_cap ? h->fds[fd] : NULL;
}

int rt_fd_set(revtun_t *h, int fd, struct rt_fdent *ent) {
  if ((size_t)fd >= h->fds_cap) {
    size_t cap = h->fds_cap ? h->fds_cap : 256;
    while (cap <= (size_t)fd)
      cap *= 2;
    struct rt_fdent **v = rt_realloc(&h->mem, h->fds, cap * sizeof(*v));
    if (!v)
      return REVTUN_E_NOMEM;
    memset(v + h->fds_cap, 0, (cap - h->fds_cap) * sizeof(*v));
    h->fds = v;
    h->fds_cap = cap;
  }
  h->fds[fd] = ent;
  return REVTUN_OK;
}

void rt_fd_clear(revtun_t *h, int fd) {
  if (fd >= 0 && (size_t)fd < h->fds_cap)
    h->fds[fd] = NULL;
}

void rt_fdtable_free(revtun_t *h) {
  rt_free(&h->mem, h->fds);
  h->fds = NULL;
  h->fds_cap = 0;
  rt_heap_free(&h->mem, &h->timers);
}

void rt_schedule(revtun_t *h, struct rt_fdent *ent, revtun_time_ms_t deadline) {
  rt_heap_set(&h->timers, &ent->tm, deadline);
}

void rt_unschedule(revtun_t *h, struct rt_fdent *ent) { rt_heap_remove(&h->timers, &ent->tm); }

int rt_schedule_reserve(revtun_t *h, size_t n) {
  return rt_heap_reserve(&h->mem, &h->timers, h->timers.n + n) ? REVTUN_E_NOMEM : REVTUN_OK;
}

struct rt_fdent *rt_schedule_first(const revtun_t *h) {
  struct rt_timer *t = rt_heap_top(&h->timers);
  return t ? RT_CONTAINER_OF(t, struct rt_fdent, tm) : NULL;
}

uint64_t rt_next_deadline(const revtun_t *h) {
  uint64_t d = RT_NO_DEADLINE;
  const struct rt_timer *t = rt_heap_top(&h->timers);
  if (t)
    d = t->deadline;
  if (h->log_flush_due && h->log_flush_due < d)
    d = h->log_flush_due;
  return d;
}
