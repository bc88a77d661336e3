/* The event-loop entry points: the host reports readiness and timer expiry
 * with its own monotonic time, and each is dispatched to the layer that owns
 * the fd (a handshake to the acceptor, a tunnel to the pool). */
#include "acceptor/acceptor.h"
#include "core/fdtable.h"
#include "core/handle.h"
#include "core/reentry.h"
#include "pool/pool.h"
#include "pool/remote.h"

static void dispatch_io(revtun_t *h, struct rt_fdent *ent, int events, revtun_time_ms_t now) {
  if (ent->kind == RT_FD_HANDSHAKE)
    rt_acceptor_on_io(h, ent, events, now);
  else if (ent->kind == RT_FD_WAKE)
    rt_remote_on_io(h, ent, now);
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

int revtun_process_io_events(revtun_t *h, const revtun_io_event_t *evs, size_t n,
                             revtun_time_ms_t now, size_t *unknown_out) {
  if (unknown_out)
    *unknown_out = 0;
  if (n && !evs)
    return REVTUN_E_INVAL;
  int rc = rt_enter(h, now);
  if (rc)
    return rc;
  size_t unknown = 0;
  for (size_t i = 0; i < n && !h->free_pending; i++) {
    /* looked up when reached: an entry before it may have closed it */
    struct rt_fdent *ent = rt_fd_get(h, evs[i].fd);
    if (ent)
      dispatch_io(h, ent, evs[i].events, now);
    else
      unknown++; /* as revtun_process_io: a stale event after REMOVE is harmless */
  }
  rt_leave(h); /* may free h */
  if (unknown_out)
    *unknown_out = unknown;
  return unknown ? REVTUN_E_NOT_FOUND : REVTUN_OK;
}

/* The batch of 0.1 skips unknown fds silently. */
int revtun_process_io_batch(revtun_t *h, const revtun_io_event_t *evs, size_t n,
                            revtun_time_ms_t now) {
  int rc = revtun_process_io_events(h, evs, n, now, NULL);
  return rc == REVTUN_E_NOT_FOUND ? REVTUN_OK : rc;
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

int revtun_next_timeout(const revtun_t *h, revtun_time_ms_t now, int64_t *timeout_ms) {
  if (!h || !timeout_ms)
    return REVTUN_E_INVAL;
  uint64_t d = rt_next_deadline(h);
  if (d == RT_NO_DEADLINE)
    *timeout_ms = -1;
  else /* deadlines are at most 2^62 plus an hour: the difference fits */
    *timeout_ms = d > now ? (int64_t)(d - now) : 0;
  return REVTUN_OK;
}

/* The form of 0.1: a NULL handle gives REVTUN_E_INVAL, which is -1, the
 * same as "no deadline". */
int64_t revtun_next_timeout_ms(const revtun_t *h, revtun_time_ms_t now) {
  int64_t t;
  return revtun_next_timeout(h, now, &t) ? REVTUN_E_INVAL : t;
}
