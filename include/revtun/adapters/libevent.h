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
};

/* Monotonic milliseconds, the clock to pass as `now` everywhere. */
static inline revtun_time_ms_t revtun_libevent_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (revtun_time_ms_t)ts.tv_sec * 1000u + (revtun_time_ms_t)(ts.tv_nsec / 1000000);
}

static inline void revtun_libevent__on_fd(evutil_socket_t fd, short what, void *arg) {
  struct revtun_libevent *le = (struct revtun_libevent *)arg;
  int events = ((what & EV_READ) ? REVTUN_IO_READ : 0) | ((what & EV_WRITE) ? REVTUN_IO_WRITE : 0);
  if (le->h)
    revtun_process_io(le->h, (int)fd, events, revtun_libevent_now());
  /* le and the handle may both be gone now: touch nothing. */
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
  if (le->fd_events[fd]) {
    event_free(le->fd_events[fd]);
    le->fd_events[fd] = NULL;
  }
  if (events & REVTUN_IO_REMOVE)
    return 0;
  short what = (short)(EV_PERSIST | ((events & REVTUN_IO_READ) ? EV_READ : 0) |
                       ((events & REVTUN_IO_WRITE) ? EV_WRITE : 0));
  struct event *ev = event_new(le->base, fd, what, revtun_libevent__on_fd, le);
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
  if (!le->timer || revtun_options_set_io_cb(opts, revtun_libevent__io_cb) != REVTUN_OK ||
      revtun_options_set_timer_cb(opts, revtun_libevent__timer_cb) != REVTUN_OK ||
      revtun_options_set_user_data(opts, le) != REVTUN_OK) {
    if (le->timer)
      event_free(le->timer);
    free(le);
    return NULL;
  }
  return le;
}

/* Tells the adapter which handle its events drive; NULL detaches it. */
static inline void revtun_libevent_bind(struct revtun_libevent *le, revtun_t *h) { le->h = h; }

static inline void *revtun_libevent_user(const struct revtun_libevent *le) { return le->user; }

/* After revtun_free(): releases the timer and any event still registered. */
static inline void revtun_libevent_free(struct revtun_libevent *le) {
  if (!le)
    return;
  for (size_t i = 0; i < le->cap; i++)
    if (le->fd_events[i])
      event_free(le->fd_events[i]);
  free(le->fd_events);
  if (le->timer)
    event_free(le->timer);
  free(le);
}

#endif
