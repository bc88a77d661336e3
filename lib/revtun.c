/* Handle lifecycle, the event-loop entry points and the re-entrancy rules.
 *
 * Every public call that changes state goes through rt_enter()/rt_leave().
 * The outermost rt_leave() does the work that must happen once per call:
 * re-arm the host timer, flush buffered access logs, free sockets that died
 * while a callback frame could still see them, and run a deferred
 * revtun_free(). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "revtun_int.h"

/* ------------------------------------------------------------ validation */

int revtun_config_validate(const void *config, size_t len, const revtun_options_t *opts,
                           char *errbuf, size_t errbuf_len) {
  revtun_options_t defaults;
  if (!opts) {
    rt_options_defaults(&defaults);
    opts = &defaults;
  }
  struct rt_config cfg;
  int rc = rt_config_parse(&opts->mem, config, len, &opts->limits, &cfg, errbuf, errbuf_len);
  if (rc)
    return rc;
  rc = rt_loggers_validate(&opts->mem, &cfg, opts, errbuf, errbuf_len);
  if (!rc)
    rc = rt_reporter_validate(&opts->mem, &cfg, opts, errbuf, errbuf_len);
  rt_config_clear(&opts->mem, &cfg);
  if (!rc && errbuf && errbuf_len)
    errbuf[0] = '\0';
  return rc;
}

/* -------------------------------------------------------------- creation */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rt_random(revtun_t *h) { return splitmix64(&h->rng); }

static void destroy(revtun_t *h);

int revtun_new(revtun_t **out, const void *config, size_t len, const revtun_options_t *opts,
               revtun_time_ms_t now, char *errbuf, size_t errbuf_len) {
  if (!out)
    return rt_fail(REVTUN_E_INVAL, errbuf, errbuf_len, "out must not be NULL");
  *out = NULL;
  if (now > RT_MAX_TIME_MS)
    return rt_fail(REVTUN_E_INVAL, errbuf, errbuf_len, "now is beyond 2^62 milliseconds");
  revtun_options_t defaults;
  if (!opts) {
    rt_options_defaults(&defaults);
    opts = &defaults;
  }
  const struct rt_mem *m = &opts->mem;
  revtun_t *h = rt_calloc(m, 1, sizeof(*h));
  if (!h)
    return rt_fail(REVTUN_E_NOMEM, errbuf, errbuf_len, "out of memory");
  h->mem = *m;
  /* Ids are attacker-chosen: tables hash them under a per-handle secret key,
   * drawn apart from the jitter seed (which a host or test may fix). */
  rt_hkey_random(&h->hkey);
  rt_htable_init(&h->nodes, &h->hkey);
  rt_htable_init(&h->clusters, &h->hkey);
  rt_htable_init(&h->strings, &h->hkey);
  rt_heap_init(&h->timers);
  h->armed_deadline = RT_NO_DEADLINE;
  h->last_now = now;

  int rc = rt_options_copy(&h->mem, &h->opts, opts);
  if (rc) {
    rt_fail(rc, errbuf, errbuf_len, "out of memory");
    goto fail;
  }
  rc = rt_config_parse(&h->mem, config, len, &opts->limits, &h->cfg, errbuf, errbuf_len);
  if (rc)
    goto fail;
  rt_stats_init(h);
  struct rt_hkey seed;
  if (opts->seed_set)
    seed.k0 = opts->seed;
  else
    rt_hkey_random(&seed);
  h->rng = seed.k0;
  if ((rc = rt_loggers_create(h, errbuf, errbuf_len)))
    goto fail;
  if ((rc = rt_reporter_create(h, errbuf, errbuf_len)))
    goto fail;
  if (h->n_loggers)
    h->upcalls.record = rt_loggers_log;
  if (h->reporter_factory)
    h->upcalls.report = rt_reporter_event;
  struct revtun_event ev;
  rt_event_init(&ev, h, REVTUN_EV_REPORT_SERVER_INITIALIZED, now);
  rt_report(h, &ev);     /* host reporter callback, then the configured reporter */
  if (h->free_pending) { /* freed by that callback: there is no handle to return */
    destroy(h);
    return rt_fail(REVTUN_E_STATE, errbuf, errbuf_len, "freed during creation");
  }
  if (errbuf && errbuf_len)
    errbuf[0] = '\0';
  *out = h;
  return REVTUN_OK;
fail:
  destroy(h);
  return rc;
}

void *revtun_get_user_data(const revtun_t *h) { return h ? h->opts.user_data : NULL; }

/* ------------------------------------------------------- enter and leave */

int rt_enter(revtun_t *h, revtun_time_ms_t now) {
  if (!h || now > RT_MAX_TIME_MS)
    return REVTUN_E_INVAL;
  if (h->cb_depth)
    return REVTUN_E_RECURSIVE;
  if (h->free_pending || h->freeing || h->failed)
    return REVTUN_E_STATE;
  h->depth++;
  if (now > h->last_now)
    h->last_now = now;
  return REVTUN_OK;
}

static uint64_t earliest_deadline(const revtun_t *h) {
  uint64_t d = RT_NO_DEADLINE;
  const struct rt_timer *t = rt_heap_top(&h->timers);
  if (t)
    d = t->deadline;
  if (h->log_flush_due && h->log_flush_due < d)
    d = h->log_flush_due;
  return d;
}

/* Keeps the host's one-shot timer pointing at our earliest deadline. */
static void rearm_timer(revtun_t *h) {
  if (!h->opts.timer_cb || h->freeing)
    return;
  uint64_t d = earliest_deadline(h);
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

void rt_free_deferred(revtun_t *h, void *block, struct rt_deferred *link) {
  if (!h->depth) {
    rt_free(&h->mem, block);
    return;
  }
  link->block = block;
  link->next = h->deferred;
  h->deferred = link;
}

static void free_deferred(revtun_t *h) {
  while (h->deferred) {
    struct rt_deferred *d = h->deferred;
    h->deferred = d->next; /* read before d, which lives in the block, is freed */
    rt_free(&h->mem, d->block);
  }
}

void rt_finish_deferred(revtun_t *h) {
  if (h->depth || h->cb_depth)
    return;
  if (h->acceptor_free_pending)
    rt_acceptors_free_pending(h);
  if (h->free_pending)
    destroy(h);
}

/* A walk calls host callbacks over the pool's own structures: nothing may
 * change them meanwhile (pool calls see `iterating`, loop calls see a
 * callback), and a free asked for from inside happens when the walk ends. */
revtun_t *rt_walk_begin(const revtun_t *ch) {
  revtun_t *h = (revtun_t *)ch; /* only the guard counters change */
  h->iterating++;
  h->cb_depth++;
  return h;
}

void rt_walk_end(revtun_t *h) {
  h->iterating--;
  h->cb_depth--;
  rt_finish_deferred(h); /* may free h */
}

int rt_enter_nestable(revtun_t *h, revtun_time_ms_t now) {
  if (!h || now > RT_MAX_TIME_MS)
    return REVTUN_E_INVAL;
  if (h->free_pending || h->freeing || h->failed)
    return REVTUN_E_STATE;
  if (h->iterating)
    return REVTUN_E_RECURSIVE; /* the pool is being walked by a foreach callback */
  h->depth++;
  if (now > h->last_now)
    h->last_now = now;
  return REVTUN_OK;
}

void rt_leave_nestable(revtun_t *h) {
  if (h->cb_depth) { /* nested in a callback: the outer call finishes up */
    h->depth--;
    return;
  }
  rt_leave(h);
}

void rt_leave(revtun_t *h) {
  if (--h->depth)
    return;
  free_deferred(h);
  if (!h->free_pending) {
    rt_loggers_flush(h, false);
    rearm_timer(h); /* its callback, too, may free the handle or an acceptor */
  }
  rt_finish_deferred(h);
}

/* ---------------------------------------------------------- host hooks */

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

/* ------------------------------------------------------------- fd table */

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

void rt_schedule(revtun_t *h, struct rt_fdent *ent, revtun_time_ms_t deadline) {
  rt_heap_set(&h->timers, &ent->tm, deadline);
}

void rt_unschedule(revtun_t *h, struct rt_fdent *ent) { rt_heap_remove(&h->timers, &ent->tm); }

/* ------------------------------------------------------------ the loop */

static void dispatch_io(revtun_t *h, int fd, int events, revtun_time_ms_t now) {
  struct rt_fdent *ent = rt_fd_get(h, fd);
  if (!ent)
    return;
  if (ent->kind == RT_FD_HANDSHAKE)
    rt_acceptor_on_io(h, ent, events, now);
  else
    rt_pool_on_io(h, ent, events, now);
}

int revtun_process_io(revtun_t *h, int fd, int events, revtun_time_ms_t now) {
  int rc = rt_enter(h, now);
  if (rc)
    return rc;
  if (!rt_fd_get(h, fd))
    rc = REVTUN_E_NOT_FOUND; /* a stale event after REMOVE is harmless */
  else
    dispatch_io(h, fd, events, now);
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
  for (size_t i = 0; i < n && !h->free_pending; i++)
    dispatch_io(h, evs[i].fd, evs[i].events, now);
  rt_leave(h);
  return REVTUN_OK;
}

int revtun_tick(revtun_t *h, revtun_time_ms_t now) {
  int rc = rt_enter(h, now);
  if (rc)
    return rc;
  h->armed_deadline = RT_NO_DEADLINE; /* the host's one-shot timer has been consumed */
  struct rt_timer *t;
  while (!h->free_pending && (t = rt_heap_top(&h->timers)) && t->deadline <= now) {
    struct rt_fdent *ent = RT_CONTAINER_OF(t, struct rt_fdent, tm);
    if (ent->kind == RT_FD_HANDSHAKE) {
      rt_heap_remove(&h->timers, t); /* the handler frees the connection */
      rt_acceptor_on_deadline(h, ent, now);
      continue;
    }
    /* A socket's handler re-arms its timer in place (one sift instead of a
     * pop and a push) or kills it, which unschedules it; dead sockets stay
     * readable until the outermost call returns. */
    rt_pool_on_deadline(h, ent, now);
    if (t->idx != RT_TIMER_IDLE && t->deadline <= now)
      rt_heap_remove(&h->timers, t);
  }
  if (h->log_flush_due && h->log_flush_due <= now)
    rt_loggers_flush(h, true);
  rt_leave(h);
  return REVTUN_OK;
}

int64_t revtun_next_timeout_ms(const revtun_t *h, revtun_time_ms_t now) {
  if (!h)
    return REVTUN_E_INVAL;
  uint64_t d = earliest_deadline(h);
  if (d == RT_NO_DEADLINE)
    return -1;
  return d > now ? (int64_t)(d - now) : 0;
}

/* ------------------------------------------------------------- freeing */

static void destroy(revtun_t *h) {
  h->free_pending = false;
  h->freeing = true;
  /* Tunnels first: their closing callbacks may still free an acceptor
   * (deferred), which the line after then finishes. */
  rt_pool_free_all(h);
  rt_acceptors_free_all(h);
  free_deferred(h);
  rt_reporter_free(h);
  rt_loggers_free(h);
  if (h->opts.timer_cb && h->armed_deadline != RT_NO_DEADLINE) {
    h->cb_depth++;
    h->opts.timer_cb(h, -1, h->opts.user_data);
    h->cb_depth--;
  }
  rt_stats_free(h);
  rt_htable_free(&h->mem, &h->nodes);
  rt_htable_free(&h->mem, &h->clusters);
  rt_htable_free(&h->mem, &h->strings);
  rt_heap_free(&h->mem, &h->timers);
  rt_free(&h->mem, h->fds);
  rt_config_clear(&h->mem, &h->cfg);
  struct rt_mem m = h->mem;
  rt_options_clear(&m, &h->opts);
  rt_free(&m, h);
}

void revtun_free(revtun_t *h) {
  if (!h || h->freeing)
    return;
  if (h->depth || h->cb_depth) {
    h->free_pending = true; /* the outermost rt_leave() finishes the job */
    return;
  }
  destroy(h);
}

/* ------------------------------------------------------- config getters */

const char *revtun_config_stat_prefix(const revtun_t *h) { return h ? h->cfg.stat_prefix : NULL; }
uint32_t revtun_config_ping_failure_threshold(const revtun_t *h) {
  return h ? h->cfg.ping_failure_threshold : 0;
}
int revtun_config_detailed_stats(const revtun_t *h) { return h ? h->cfg.detailed_stats : 0; }
int revtun_config_tenant_isolation(const revtun_t *h) { return h ? h->cfg.tenant_isolation : 0; }
uint32_t revtun_config_max_connections_per_node(const revtun_t *h) {
  return h ? h->cfg.max_connections_per_node : 0;
}

static int get_entry(const struct rt_ext_entry *e, const char **name, const char **type_url,
                     const uint8_t **value, size_t *value_len) {
  if (name)
    *name = e->name;
  if (type_url)
    *type_url = e->type_url;
  if (value)
    *value = e->value;
  if (value_len)
    *value_len = e->value_len;
  return REVTUN_OK;
}

int revtun_config_reporter(const revtun_t *h, const char **name, const char **type_url,
                           const uint8_t **value, size_t *value_len) {
  if (!h)
    return REVTUN_E_INVAL;
  if (!h->cfg.has_reporter)
    return REVTUN_E_NOT_FOUND;
  return get_entry(&h->cfg.reporter, name, type_url, value, value_len);
}

size_t revtun_config_access_log_count(const revtun_t *h) { return h ? h->cfg.n_access_logs : 0; }

int revtun_config_access_log(const revtun_t *h, size_t i, const char **name, const char **type_url,
                             const uint8_t **value, size_t *value_len) {
  if (!h)
    return REVTUN_E_INVAL;
  if (i >= h->cfg.n_access_logs)
    return REVTUN_E_NOT_FOUND;
  return get_entry(&h->cfg.access_logs[i], name, type_url, value, value_len);
}
