/* The event-loop entry points: the host reports readiness and timer expiry
 * with its own monotonic time, and each is dispatched to the layer that owns
 * the fd (a handshake to the acceptor, a tunnel to the pool). */
#include "acceptor/acceptor.h"
#include "core/fdtable.h"
#include "core/handle.h"
#include "core/reentry.h"
#include "pool/pool.h"

static void dispatch_io(revtun_t *h, struct rt_fdent *ent, int events, revtun_time_ms_t now) {
  if (ent->kind == RT_FD_HANDSHAKE)
    rt_acceptor_on_io(h, ent, events, now);
  else
    rt_pool_on_io(h, ent, events, now);
}

int revtun_process_io(revtun_t *h, int fd, int events, revtun_time_ms_t now) {
  int rc = rt_enter(h, now);
  if (rc)
    return rc;
  struct rt_fdent *ent = rt_fd_get(h, fd);
  if (!ent)
    rc = REVTUN_E_NOT_FOUND; /* a stale event after REMOVE is harmless */
  else
    dispatch_io(h, ent, events, now);
  rt_leave(h);
  return rc;
}

int revtun_process_io_batch(revtun_t *h, const revtun_io_event_t *evs, size_t n,
                            revtun_time_ms_t now) {
  if (n && !evs)
    return REVTUN_E_INVAL;
  int rc = rt_enter(h, now);
  if (rc)
    return rc;
  for (size_t i = 0; i < n && !h->free_pending; i++) {
    struct rt_fdent *ent = rt_fd_get(h, evs[i].fd);
    if (ent)
      dispatch_io(h, ent, evs[i].events, now);
  }
  rt_leave(h);
  return REVTUN_OK;
}

int revtun_tick(revtun_t *h, revtun_time_ms_t now) {
  int rc = rt_enter(h, now);
  if (rc)
    return rc;
  h->armed_deadline = RT_NO_DEADLINE; /* the host's one-shot timer has been consumed */
  struct rt_fdent *ent;
  while (!h->free_pending && (ent = rt_schedule_first(h)) && ent->tm.deadline <= now) {
    if (ent->kind == RT_FD_HANDSHAKE) {
      rt_unschedule(h, ent); /* the handler frees the connection */
      rt_acceptor_on_deadline(h, ent, now);
      continue;
    }
    /* A socket's handler re-arms its deadline in place (one sift instead of
     * a pop and a push) or kills it, which unschedules it; dead sockets stay
     * readable until the outermost call returns. */
    rt_pool_on_deadline(h, ent, now);
    if (ent->tm.idx != RT_TIMER_IDLE && ent->tm.deadline <= now)
      rt_unschedule(h, ent);
  }
  if (h->log_flush_due && h->log_flush_due <= now)
    h->upcalls.flush(h, true);
  rt_leave(h);
  return REVTUN_OK;
}

int64_t revtun_next_timeout_ms(const revtun_t *h, revtun_time_ms_t now) {
  if (!h)
    return REVTUN_E_INVAL;
  uint64_t d = rt_next_deadline(h);
  if (d == RT_NO_DEADLINE)
    return -1;
  return d > now ? (int64_t)(d - now) : 0;
}
