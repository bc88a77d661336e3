/*
 * Header-only libevent adapter for libupstream-revtun.
 *
 * It wires the library's io and timer callbacks to a struct event_base and
 * feeds readiness and timer expiry back through revtun_process_io() and
 * revtun_tick(). The library itself never links libevent; a program using
 * this header adds `pkg-config --cflags --libs libevent` itself.
 *
 *   struct revtun_libevent *le = revtun_libevent_new(base, opts, my_data);
 *   revtun_new(&h, cfg, len, opts, revtun_libevent_now(), err, sizeof err);
 *   revtun_libevent_bind(le, h);
 *   ... event_base_dispatch(base) ...
 *   revtun_free(h);
 *   revtun_libevent_free(le);
 *
 * The adapter takes the options' user_data slot; callbacks receive the
 * adapter, and revtun_libevent_user() gives back the pointer passed to
 * revtun_libevent_new(). Freeing the handle from inside any callback during
 * dispatch is safe: the library defers the free to the end of the current
 * call, removes every fd (each event is deleted, so none fires later) and
 * cancels the timer. See revtun_libevent(3).
 *
 * What it costs per watched fd is one struct event, kept while the library
 * watches the fd and changed in place (no allocation, and no epoll change
 * unless the interest itself changes). Readiness is not handed to the
 * library fd by fd: the fds that became ready in one loop turn are
 * collected and given to revtun_process_io_batch() once, at the end of the
 * turn, with one clock reading, so the library re-arms its timer once per
 * turn instead of once per fd (thousands of parked tunnels answer their
 * RPINGs in the same few turns).
 */
#ifndef REVTUN_ADAPTERS_LIBEVENT_H
#define REVTUN_ADAPTERS_LIBEVENT_H

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <revtun/revtun.h>

struct revtun_libevent {
  struct event_base *base;
  revtun_t *h;
  void *user;
  struct event *timer;
  struct event **fd_events; /* indexed by fd */
  size_t cap;
  /* this loop turn's readiness, for one revtun_process_io_batch() */
  struct event *batch_ev;
  revtun_io_event_t *ready;
  size_t nready, ready_cap;
  int in_batch, free_pending;
  unsigned timer_slack_ms; /* 0: the timer fires when the library asks */
};

/* Monotonic milliseconds, the clock to pass as `now` everywhere. */
static inline revtun_time_ms_t revtun_libevent_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (revtun_time_ms_t)ts.tv_sec * 1000u + (revtun_time_ms_t)(ts.tv_nsec / 1000000);
}

static inline void revtun_libevent__destroy(struct revtun_libevent *le) {
  for (size_t i = 0; i < le->cap; i++)
    if (le->fd_events[i])
      event_free(le->fd_events[i]);
  free(le->fd_events);
  free(le->ready);
  if (le->timer)
    event_free(le->timer);
  if (le->batch_ev)
    event_free(le->batch_ev);
  free(le);
}

/* End of a loop turn: every fd that became ready in it, in one call. */
static inline void revtun_libevent__on_batch(evutil_socket_t fd, short what, void *arg) {
  struct revtun_libevent *le = (struct revtun_libevent *)arg;
  (void)fd;
  (void)what;
  if (le->h && le->nready) {
    le->in_batch = 1;
    revtun_process_io_batch(le->h, le->ready, le->nready, revtun_libevent_now());
    le->in_batch = 0;
  }
  le->nready = 0;
  if (le->free_pending)
    revtun_libevent__destroy(le);
}

static inline void revtun_libevent__on_fd(evutil_socket_t fd, short what, void *arg) {
  struct revtun_libevent *le = (struct revtun_libevent *)arg;
  int events = ((what & EV_READ) ? REVTUN_IO_READ : 0) | ((what & EV_WRITE) ? REVTUN_IO_WRITE : 0);
  if (!le->h)
    return;
  if (le->nready == le->ready_cap) {
    size_t cap = le->ready_cap ? le->ready_cap * 2 : 64;
    revtun_io_event_t *v = (revtun_io_event_t *)realloc(le->ready, cap * sizeof(*v));
    if (!v) { /* no room to collect it: handle it now */
      revtun_process_io(le->h, (int)fd, events, revtun_libevent_now());
      return;
    }
    le->ready = v;
    le->ready_cap = cap;
  }
  le->ready[le->nready].fd = (int)fd;
  le->ready[le->nready].events = events;
  if (le->nready++ == 0)
    event_active(le->batch_ev, 0, 0); /* runs after this turn's other callbacks */
}

static inline void revtun_libevent__on_timer(evutil_socket_t fd, short what, void *arg) {
  struct revtun_libevent *le = (struct revtun_libevent *)arg;
  (void)fd;
  (void)what;
  if (le->h)
    revtun_tick(le->h, revtun_libevent_now());
}

static inline int revtun_libevent__io_cb(revtun_t *h, int fd, int events, void *sock_user,
                                         void *user_data) {
  struct revtun_libevent *le = (struct revtun_libevent *)user_data;
  (void)h;
  (void)sock_user;
  if (fd < 0)
    return -1;
  if ((size_t)fd >= le->cap) {
    if (events & REVTUN_IO_REMOVE)
      return 0;
    size_t cap = le->cap ? le->cap : 64;
    while (cap <= (size_t)fd)
      cap *= 2;
    struct event **v = (struct event **)realloc(le->fd_events, cap * sizeof(*v));
    if (!v)
      return -1;
    memset(v + le->cap, 0, (cap - le->cap) * sizeof(*v));
    le->fd_events = v;
    le->cap = cap;
  }
  struct event *ev = le->fd_events[fd];
  if (events & REVTUN_IO_REMOVE) {
    if (ev) {
      event_free(ev);
      le->fd_events[fd] = NULL;
    }
    return 0;
  }
  short what = (short)(EV_PERSIST | ((events & REVTUN_IO_READ) ? EV_READ : 0) |
                       ((events & REVTUN_IO_WRITE) ? EV_WRITE : 0));
  if (ev) {
    if (event_get_events(ev) == what && event_pending(ev, EV_READ | EV_WRITE, NULL))
      return 0; /* the interest is already this: no epoll change */
    /* the same struct event, changed in place */
    event_del(ev);
    if (event_assign(ev, le->base, fd, what, revtun_libevent__on_fd, le) != 0 ||
        event_add(ev, NULL) != 0) {
      event_free(ev);
      le->fd_events[fd] = NULL;
      return -1;
    }
    return 0;
  }
  ev = event_new(le->base, fd, what, revtun_libevent__on_fd, le);
  if (!ev || event_add(ev, NULL) != 0) {
    if (ev)
      event_free(ev);
    return -1;
  }
  le->fd_events[fd] = ev;
  return 0;
}

static inline int revtun_libevent__timer_cb(revtun_t *h, int64_t timeout_ms, void *user_data) {
  struct revtun_libevent *le = (struct revtun_libevent *)user_data;
  (void)h;
  if (timeout_ms < 0)
    return event_del(le->timer) == 0 ? 0 : -1;
  if (le->timer_slack_ms > 1 && timeout_ms > 0) {
    /* Round the deadline up to a multiple of the slack on the monotonic
     * clock: deadlines that fall in the same window share one tick. */
    revtun_time_ms_t now = revtun_libevent_now(), slack = le->timer_slack_ms;
    revtun_time_ms_t due = now + (revtun_time_ms_t)timeout_ms;
    due = (due + slack - 1) / slack * slack;
    timeout_ms = (int64_t)(due - now);
  }
  struct timeval tv;
  tv.tv_sec = (time_t)(timeout_ms / 1000);
  tv.tv_usec = (suseconds_t)((timeout_ms % 1000) * 1000);
  return event_add(le->timer, &tv) == 0 ? 0 : -1;
}

/* Creates the adapter and installs its callbacks and user_data in opts. */
static inline struct revtun_libevent *revtun_libevent_new(struct event_base *base,
                                                          revtun_options_t *opts, void *user) {
  struct revtun_libevent *le = (struct revtun_libevent *)calloc(1, sizeof(*le));
  if (!le)
    return NULL;
  le->base = base;
  le->user = user;
  le->timer = evtimer_new(base, revtun_libevent__on_timer, le);
  le->batch_ev = event_new(base, -1, 0, revtun_libevent__on_batch, le);
  if (!le->timer || !le->batch_ev ||
      revtun_options_set_io_cb(opts, revtun_libevent__io_cb) != REVTUN_OK ||
      revtun_options_set_timer_cb(opts, revtun_libevent__timer_cb) != REVTUN_OK ||
      revtun_options_set_user_data(opts, le) != REVTUN_OK) {
    if (le->timer)
      event_free(le->timer);
    if (le->batch_ev)
      event_free(le->batch_ev);
    free(le);
    return NULL;
  }
  return le;
}

/* Tells the adapter which handle its events drive; NULL detaches it. */
static inline void revtun_libevent_bind(struct revtun_libevent *le, revtun_t *h) { le->h = h; }

static inline void *revtun_libevent_user(const struct revtun_libevent *le) { return le->user; }

/* Lets the library's timer fire up to ms late, on multiples of ms of the
 * monotonic clock, so that the deadlines of many sockets (RPINGs due,
 * replies awaited) that fall in one window are handled in one tick: one
 * wake-up for the process, and for the agents whose pings go out together.
 * 0 (the default): the timer fires when the library asks. */
static inline void revtun_libevent_set_timer_slack(struct revtun_libevent *le, unsigned ms) {
  le->timer_slack_ms = ms;
}

/* After revtun_free(): releases the timer and any event still registered.
 * Called from inside the library's callbacks, it waits for the end of the
 * current batch. */
static inline void revtun_libevent_free(struct revtun_libevent *le) {
  if (!le)
    return;
  if (le->in_batch) {
    le->h = NULL;
    le->free_pending = 1;
    return;
  }
  revtun_libevent__destroy(le);
}

#endif
