/*
 * revtun-upstream-proxy --workers N (N > 1): N threads, each with its own
 * libevent loop, revtun_t handle, acceptor and tunnel and client listeners
 * (SO_REUSEPORT, so the kernel spreads agents and clients over them). The
 * main thread runs no traffic: it takes the signals and serves the admin
 * port.
 *
 * Who owns what:
 * - a worker's struct proxy (its loop, handle, connections, sessions) is
 *   touched only by its own thread;
 * - the handles share one revtun_directory_t: a request on worker A for a
 *   node parked only on worker B asks it (revtun_handoff_request); B gives
 *   a socket up on its own thread and A's arrival callback receives it;
 * - the session registry (below, under reg_lock) says which workers run
 *   HTTP/2 sessions on which node's and cluster's tunnels. A single worker
 *   whose node has no idle tunnel left queues the request on its least busy
 *   session; with N workers, a worker with no session of its own for that
 *   node sends the request to a worker that has one, as an h2c stream over a
 *   socket pair that the other worker serves as a client connection;
 * - each worker has a mailbox (under its lock) and an eventfd: the main
 *   thread posts commands (stop, stop now, reload TLS, reopen the access
 *   logs, a stats snapshot) and other workers post the socket-pair ends
 *   they want served;
 * - the built-in access-log files of the config are opened once for all
 *   workers: the library's loggers share them through the directory.
 * No lock is held across a system call other than the eventfd write.
 *
 * Restarts (--handover-socket, --takeover) run on the main thread
 * (handover.c), which reaches the workers' pools here: a snapshot asks
 * every worker to export its parked tunnels on its own thread, or to
 * import the ones handed to it; before the threads start (the new
 * instance taking over) the main thread imports into their handles itself.
 * A worker that exits while handing over exports what parked meanwhile
 * (leftover) for the main thread's last sweep.
 *
 * --fleet-redis is refused with --workers: its directory client runs in
 * one loop and follows one handle's events, so N handles would need a
 * publisher that merges them.
 */
#define _GNU_SOURCE /* memrchr */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/listener.h>

#include "handover_wire.h"
#include "proxy.h"

#define INBOX_MAX 256    /* socket-pair ends waiting for a worker to serve them */
#define REG_BUCKETS 4096 /* session registry hash buckets */
#define WAIT_MS 2000     /* how long a request waits for another worker's tunnel */
#define RETRY_MS 5       /* between two looks for a tunnel that is moving... */
#define RETRY_FOR_MS 250 /* ...for at most this long */
#define WORKER_HEADER "x-revtun-worker"

enum {
  CMD_STOP = 1,
  CMD_STOP_NOW = 2,
  CMD_RELOAD = 4,
  CMD_REOPEN_LOGS = 8,
  CMD_HANDING_OVER = 16, /* with CMD_STOP: a new instance serves now */
  CMD_GOAWAY = 32,       /* halfway through a handover's grace period */
};
enum { SNAP_STATS, SNAP_TUNNELS, SNAP_EXPORT, SNAP_IMPORT };

/* One worker's part of an answer (admin, or a handover's). */
struct part {
  struct evbuffer *a, *b, *c; /* stats text; or /tunnels' nodes, clusters, sessions;
                                 SNAP_EXPORT: a has the exported tunnels (struct exported) */
  size_t pending;             /* handshakes in progress */
  int gone;                   /* the worker had stopped */
  struct ho_tunnel **items;   /* SNAP_IMPORT: the tunnels that join this worker */
  size_t n_items;
};

/* An exported tunnel in a part's buffer: this, then len bytes of state. */
struct exported {
  int fd;
  uint32_t len;
  void *user;
};

struct snapshot {
  int kind;
  unsigned flags;
  struct part *parts;
  unsigned answered; /* under workers.snap_lock */
  size_t max;        /* SNAP_EXPORT: tunnels per worker */
};

struct worker_wait {
  struct worker_wait *prev, *next;
  struct xchg *x;
  uint64_t ticket;
  struct event *timer;
};

struct worker {
  struct proxy p;
  struct workers *all;
  unsigned index;
  pthread_t tid;
  int started;
  int wake_fd;
  struct event *wake_ev;
  struct worker_wait *waits; /* this thread's requests waiting for a tunnel */
  /* under lock */
  pthread_mutex_t lock;
  int closed; /* the loop has ended: nothing more is served */
  unsigned cmds;
  struct snapshot *snap;
  int inbox[INBOX_MAX];
  unsigned n_inbox;
  struct evbuffer *leftover; /* set with closed: exported at exit (handing over) */
  /* set before the thread starts */
  int tunnel_fd, client_fd; /* its listeners, for a handover */
};

struct reg_entry {
  struct reg_entry *next;
  uint32_t hash;
  uint32_t sessions[WORKERS_MAX];
  unsigned total;
  size_t len;
  char key[]; /* kind, tenant, NUL, id */
};

struct workers {
  unsigned n;
  struct worker *w;
  revtun_directory_t *dir;
  pthread_mutex_t reg_lock;
  struct reg_entry *reg[REG_BUCKETS];
  pthread_mutex_t snap_lock;
  pthread_cond_t snap_cond;
  const char *stop_why; /* written before CMD_STOP is posted */
  /* the main thread */
  struct event_base *base;
  int done_fd; /* each worker adds 1 when its loop has ended */
  unsigned n_done;
  int stopping;
  int running; /* the threads were started: each handle is its worker's */
};

int workers_check_settings(struct proxy *p) {
  if (p->cfg.workers > 1 && p->cfg.fleet_redis) {
    fprintf(stderr,
            PROG ": --workers %u with --fleet-redis: not supported (the fleet "
                 "directory publishes one handle's tunnels); use --workers 1 or no fleet\n",
            p->cfg.workers);
    return -1;
  }
  return 0;
}

static void wake(int fd) {
  uint64_t one = 1;
  ssize_t n = write(fd, &one, sizeof(one)); /* an eventfd: fails only when it is at its maximum */
  (void)n;
}

/* ------------------------------------------------------ session registry */

static uint32_t reg_hash(const char *k, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++)
    h = (h ^ (uint8_t)k[i]) * 16777619u;
  return h;
}

/* kind 'n' or 'c', then the tenant key, NUL, the id; 0 if it does not fit. */
static size_t reg_key(char *out, size_t cap, char kind, const char *tenant, size_t tl,
                      const char *id, size_t il) {
  if (tl + il + 2 > cap)
    return 0;
  out[0] = kind;
  memcpy(out + 1, tenant, tl);
  out[1 + tl] = '\0';
  memcpy(out + 2 + tl, id, il);
  return tl + il + 2;
}

/* The entry for key; with create, a new one. Under reg_lock. */
static struct reg_entry *reg_find(struct workers *all, const char *key, size_t len, int create) {
  uint32_t h = reg_hash(key, len);
  struct reg_entry **pp = &all->reg[h % REG_BUCKETS], *e;

  for (e = *pp; e; e = e->next)
    if (e->hash == h && e->len == len && !memcmp(e->key, key, len))
      return e;
  if (!create || !(e = calloc(1, sizeof(*e) + len)))
    return NULL;
  e->hash = h;
  e->len = len;
  memcpy(e->key, key, len);
  e->next = *pp;
  *pp = e;
  return e;
}

static void reg_add(struct workers *all, unsigned k, const char *key, size_t len, int delta) {
  struct reg_entry *e = len ? reg_find(all, key, len, delta > 0) : NULL;

  if (!e)
    return;
  if (delta > 0) {
    e->sessions[k]++;
    e->total++;
  } else if (e->sessions[k]) {
    e->sessions[k]--;
    e->total--;
  }
  if (!e->total) {
    struct reg_entry **pp = &all->reg[e->hash % REG_BUCKETS];
    while (*pp != e)
      pp = &(*pp)->next;
    *pp = e->next;
    free(e);
  }
}

/* A tunnel session of node n opened (+1) or closed (-1) on this worker. */
void workers_note_session(struct proxy *p, const struct node *n, int delta) {
  struct workers *all = p->w->all;
  char key[2 * MAX_ID_BYTES + 2];
  size_t nl = reg_key(key, sizeof(key), 'n', n->tenant, n->tenant_len, n->id, n->id_len);

  pthread_mutex_lock(&all->reg_lock);
  reg_add(all, p->w->index, key, nl, delta);
  nl = reg_key(key, sizeof(key), 'c', n->tenant, n->tenant_len, n->cluster, strlen(n->cluster));
  reg_add(all, p->w->index, key, nl, delta);
  pthread_mutex_unlock(&all->reg_lock);
}

/* Another worker with sessions on the node's (or cluster's) tunnels, the
 * next after this one; -1 if none. */
static int reg_other(struct proxy *p, int lookup, const char *tenant, const char *id) {
  struct workers *all = p->w->all;
  const char *tkey = revtun_config_tenant_isolation(p->h) && tenant ? tenant : "";
  char key[2 * MAX_ID_BYTES + 2];
  size_t len = reg_key(key, sizeof(key), lookup == REVTUN_LOOKUP_NODE ? 'n' : 'c', tkey,
                       strlen(tkey), id, strlen(id));
  struct reg_entry *e;
  int found = -1;

  pthread_mutex_lock(&all->reg_lock);
  if ((e = len ? reg_find(all, key, len, 0) : NULL))
    for (unsigned i = 1; i < all->n && found < 0; i++) {
      unsigned k = (p->w->index + i) % all->n;
      if (e->sessions[k])
        found = (int)k;
    }
  pthread_mutex_unlock(&all->reg_lock);
  return found;
}

/* ---------------------------------------------------- cross-worker routes */

static void wait_end(struct worker_wait *ww) {
  struct worker *w = ww->x->p->w;

  if (ww->prev)
    ww->prev->next = ww->next;
  else
    w->waits = ww->next;
  if (ww->next)
    ww->next->prev = ww->prev;
  ww->x->worker_wait = NULL;
  event_free(ww->timer);
  free(ww);
}

static void wait_timeout_cb(evutil_socket_t fd, short what, void *arg) {
  struct worker_wait *ww = arg;
  struct xchg *x = ww->x;
  char why[320];

  (void)fd, (void)what;
  revtun_handoff_cancel(x->p->h, ww->ticket); /* a socket still on its way parks here */
  wait_end(ww);
  if (x->c) {
    snprintf(why, sizeof(why),
             "no reverse tunnel for %s: another worker's did not arrive within %u ms",
             x->target ? x->target : "?", WAIT_MS);
    xchg_local_reply(x, 503, why);
  }
  xchg_release(x);
}

/* x waits on ww (a cross-worker answer, or a look again): listed on this
 * worker so a stop can answer it, the exchange held until the wait ends. */
static void wait_start(struct proxy *p, struct xchg *x, struct worker_wait *ww,
                       const struct timeval *tv) {
  ww->x = x;
  ww->next = p->w->waits;
  if (ww->next)
    ww->next->prev = ww;
  p->w->waits = ww;
  x->worker_wait = ww;
  xchg_hold(x);
  evtimer_add(ww->timer, tv);
}

/* revtun_handoff_request(): a tunnel now, or REVTUN_E_PENDING with x
 * waiting (x->worker_wait) for the arrival callback, at most WAIT_MS. */
int workers_handoff(struct xchg *x, int lookup, const char *id, const char *tenant, int *fd,
                    revtun_strip_t *strip) {
  struct proxy *p = x->p;
  struct worker_wait *ww;
  uint64_t ticket = 0;
  struct timeval tv = {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000};
  int rc;

  if (x->worker_asked) /* the directory answered once: this worker's pool only */
    return lookup == REVTUN_LOOKUP_NODE
               ? revtun_handoff(p->h, id, tenant, revtun_libevent_now(), fd, strip)
               : revtun_handoff_by_cluster(p->h, id, tenant, revtun_libevent_now(), fd, strip);
  rc = revtun_handoff_request(p->h, lookup, id, tenant, x, revtun_libevent_now(), fd, strip,
                              &ticket);
  if (rc != REVTUN_E_PENDING)
    return rc;
  x->worker_asked = 1;
  if (!(ww = calloc(1, sizeof(*ww))) || !(ww->timer = evtimer_new(p->base, wait_timeout_cb, ww))) {
    free(ww);
    revtun_handoff_cancel(p->h, ticket);
    return REVTUN_E_NOMEM;
  }
  ww->ticket = ticket;
  wait_start(p, x, ww, &tv);
  return REVTUN_E_PENDING;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg) {
  struct worker_wait *ww = arg;
  struct xchg *x = ww->x;

  (void)fd, (void)what;
  wait_end(ww);
  if (x->c) {
    x->worker_asked = 0;
    xchg_route(x);
    if (x->c && !x->worker_wait)
      xchg_request_data(x);
  }
  xchg_release(x);
}

/*
 * No tunnel for x anywhere: none idle in any worker's pool, no session on
 * one. A tunnel can be between two workers for a moment (given up by one,
 * not yet a session at the other), or between sessions of the agent, so a
 * worker looks again every RETRY_MS for up to RETRY_FOR_MS before the 503.
 * 1 when x waits (x->worker_wait), 0 when the caller answers.
 */
int workers_retry(struct xchg *x) {
  struct proxy *p = x->p;
  struct worker_wait *ww;
  struct timeval tv = {0, RETRY_MS * 1000};
  revtun_time_ms_t now = revtun_libevent_now();

  if (!x->target || !x->c)
    return 0;
  if (!x->worker_since)
    x->worker_since = now;
  if (now - x->worker_since >= RETRY_FOR_MS || !(ww = calloc(1, sizeof(*ww))))
    return 0;
  if (!(ww->timer = evtimer_new(p->base, retry_cb, ww))) {
    free(ww);
    return 0;
  }
  wait_start(p, x, ww, &tv);
  return 1;
}

/* The answer to workers_handoff()'s REVTUN_E_PENDING, on this thread. */
static void on_arrival(revtun_t *h, uint64_t ticket, int status, int fd, revtun_strip_t strip,
                       void *request_user, void *user) {
  struct proxy *p = revtun_libevent_user(user);
  struct xchg *x = request_user;
  struct upsess *u = NULL;

  (void)h, (void)ticket;
  if (x->worker_wait)
    wait_end(x->worker_wait);
  if (status == REVTUN_OK)
    u = up_open(p, fd, strip); /* the tunnel stays for the next requests even without x */
  if (x->c) {
    if (status != REVTUN_OK)
      xchg_route(x); /* gone meanwhile: queue where the node's sessions are, or 503 */
    else if (!u || up_submit(u, x) < 0)
      xchg_local_reply(x, 503, "cannot open a stream on the reverse tunnel");
    if (x->c && !x->worker_wait)
      xchg_request_data(x); /* the body waited: on its way, or drained */
  }
  xchg_release(x);
}

/* Every tunnel of the node (cluster) is in use and this worker runs none
 * of its sessions: send x to a worker that does, where it queues as it
 * would on a single worker. NULL if no worker does, or x came from one. */
struct upsess *workers_forward(struct xchg *x, int lookup, const char *id, const char *tenant) {
  struct proxy *p = x->p;
  char name[16], why[128];
  struct upsess *u;
  int k;

  if (x->worker_fwd || hdrs_find(&x->req, WORKER_HEADER) ||
      (k = reg_other(p, lookup, tenant, id)) < 0)
    return NULL;
  snprintf(name, sizeof(name), "%u", p->w->index);
  if (hdrs_add(&x->req, WORKER_HEADER, strlen(WORKER_HEADER), name, strlen(name)) < 0 ||
      (x->auth && hdrs_add(&x->req, "authorization", 13, x->auth, x->auth_len) < 0))
    return NULL;
  x->worker_fwd = 1; /* x->target still names the key the request rendered */
  if (!(u = up_for_worker(p, (unsigned)k, why, sizeof(why))))
    VLOG("%s: cannot send to worker %d: %s", x->target, k, why);
  return u;
}

/* One end of a socket pair for worker k to serve as a client connection;
 * -1 when k has stopped or has too many waiting. */
int workers_connect(struct proxy *p, unsigned k) {
  struct worker *to = &p->w->all->w[k];
  int sv[2], ok;

  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
    return -1;
  pthread_mutex_lock(&to->lock);
  if ((ok = !to->closed && to->n_inbox < INBOX_MAX))
    to->inbox[to->n_inbox++] = sv[1];
  pthread_mutex_unlock(&to->lock);
  if (!ok) {
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  wake(to->wake_fd);
  return sv[0];
}

int workers_set_options(struct proxy *p, revtun_options_t *opts, revtun_directory_t *dir) {
  char name[32];

  snprintf(name, sizeof(name), "worker_%u", p->w->index);
  return revtun_options_set_directory(opts, dir) == REVTUN_OK &&
                 revtun_options_set_arrival_cb(opts, on_arrival) == REVTUN_OK &&
                 revtun_options_set_worker_name(opts, name) == REVTUN_OK
             ? 0
             : -1;
}

/* --------------------------------------------------------- worker thread */

static void snapshot_answered(struct workers *all, struct snapshot *s) {
  pthread_mutex_lock(&all->snap_lock);
  s->answered++;
  pthread_cond_signal(&all->snap_cond);
  pthread_mutex_unlock(&all->snap_lock);
}

/* This worker's parked tunnels leave its pool into b (struct exported
 * records), at most max. */
static void export_pool(struct proxy *p, struct evbuffer *b, size_t max) {
  uint8_t st[REVTUN_SOCKET_STATE_MAX];
  struct exported e;
  size_t len;

  for (size_t n = 0; n < max; n++) {
    if (revtun_export_next(p->h, revtun_libevent_now(), &e.fd, st, sizeof(st), &len, &e.user) !=
        REVTUN_OK)
      break;
    e.len = (uint32_t)len;
    if (evbuffer_add(b, &e, sizeof(e)) < 0 || evbuffer_add(b, st, len) < 0) {
      /* out of memory: this one stays here */
      if (revtun_import_socket(p->h, e.fd, st, len, e.user, revtun_libevent_now()) != REVTUN_OK)
        close(e.fd);
      break;
    }
  }
}

static void import_items(struct proxy *p, struct ho_tunnel **t, size_t n) {
  for (size_t i = 0; i < n; i++)
    t[i]->rc = revtun_import_socket(p->h, t[i]->fd, t[i]->state, t[i]->len, t[i]->user,
                                    revtun_libevent_now());
}

static void render(struct worker *w, struct snapshot *s) {
  struct part *part = &s->parts[w->index];

  if (s->kind == SNAP_EXPORT) {
    export_pool(&w->p, part->a, s->max);
  } else if (s->kind == SNAP_IMPORT) {
    import_items(&w->p, part->items, part->n_items);
  } else if (s->kind == SNAP_STATS) {
    admin_stats(&w->p, part->a, s->flags);
  } else {
    admin_tunnel_lines(&w->p, (int)w->index, part->a, part->b, part->c);
    part->pending = revtun_acceptor_pending(w->p.acc);
  }
  snapshot_answered(w->all, s);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg) {
  struct worker *w = arg;
  struct proxy *p = &w->p;
  int inbox[INBOX_MAX];
  unsigned n, cmds;
  struct snapshot *snap;
  uint64_t v;

  (void)what;
  if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
    logmsg("worker %u: eventfd: %s", w->index, strerror(errno));
  pthread_mutex_lock(&w->lock);
  n = w->n_inbox;
  memcpy(inbox, w->inbox, n * sizeof(inbox[0]));
  w->n_inbox = 0;
  cmds = w->cmds;
  w->cmds = 0;
  snap = w->snap;
  w->snap = NULL;
  pthread_mutex_unlock(&w->lock);
  for (unsigned i = 0; i < n; i++)
    if (p->stopping)
      close(inbox[i]);
    else
      client_accept(p, inbox[i]);
  if (snap)
    render(w, snap);
  if (cmds & CMD_RELOAD)
    proxy_tls_reload(p);
  if (cmds & CMD_REOPEN_LOGS) /* the first worker reopens a shared file, the others find it done */
    proxy_reopen_logs(p);
  if ((cmds & CMD_STOP) && !p->stopping) {
    p->handing_over = (cmds & CMD_HANDING_OVER) != 0;
    proxy_begin_shutdown(p, w->all->stop_why);
  }
  if (cmds & CMD_GOAWAY)
    proxy_goaway(p);
  if (cmds & CMD_STOP_NOW)
    event_base_loopbreak(p->base);
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct proxy *p = &w->p;
  struct snapshot *snap;
  struct evbuffer *leftover = NULL;
  int inbox[INBOX_MAX];
  unsigned n;

  listeners_bind_thread(p);
  event_base_dispatch(p->base);
  /* handed over: the tunnels that parked while draining go to the new
   * instance (the main thread's last sweep), not closed with the pool */
  if (p->handing_over && (leftover = evbuffer_new()))
    export_pool(p, leftover, SIZE_MAX);
  /* nothing more is served: what is still posted is answered or closed */
  pthread_mutex_lock(&w->lock);
  w->closed = 1;
  w->leftover = leftover;
  n = w->n_inbox;
  memcpy(inbox, w->inbox, n * sizeof(inbox[0]));
  w->n_inbox = 0;
  snap = w->snap;
  w->snap = NULL;
  pthread_mutex_unlock(&w->lock);
  for (unsigned i = 0; i < n; i++)
    close(inbox[i]);
  if (snap) {
    snap->parts[w->index].gone = 1;
    snapshot_answered(w->all, snap);
  }
  while (w->waits) {
    struct xchg *x = w->waits->x;
    if (w->waits->ticket)
      revtun_handoff_cancel(p->h, w->waits->ticket);
    wait_end(w->waits);
    xchg_release(x);
  }
  proxy_close(p);
  recycle_release_thread();
  wake(w->all->done_fd);
  return NULL;
}

/* ------------------------------------------------------------ admin side */

/* Asks the workers (all, or only one) for their part of s and waits for
 * every answer: a worker answers from its loop, or from its exit path. */
static void ask(struct workers *all, struct snapshot *s, int only) {
  struct part *parts = s->parts;
  unsigned expected = 0;

  for (unsigned k = 0; k < all->n; k++) {
    struct worker *w = &all->w[k];
    int posted = 0;
    if ((only >= 0 && k != (unsigned)only) || parts[k].gone)
      continue;
    pthread_mutex_lock(&w->lock);
    if (!w->closed) {
      w->snap = s;
      posted = 1;
    }
    pthread_mutex_unlock(&w->lock);
    if (posted) {
      expected++;
      wake(w->wake_fd);
    } else {
      parts[k].gone = 1;
    }
  }
  pthread_mutex_lock(&all->snap_lock);
  while (s->answered < expected)
    pthread_cond_wait(&all->snap_cond, &all->snap_lock);
  pthread_mutex_unlock(&all->snap_lock);
}

/* ask() for an admin answer: each part gets its buffers. */
static struct part *gather(struct workers *all, int kind, unsigned flags, int only) {
  struct part *parts = calloc(all->n, sizeof(*parts));
  struct snapshot s = {kind, flags, parts, 0, 0};

  if (!parts)
    return NULL;
  for (unsigned k = 0; k < all->n; k++) {
    if (only >= 0 && k != (unsigned)only)
      continue;
    if (!(parts[k].a = evbuffer_new()) || !(parts[k].b = evbuffer_new()) ||
        !(parts[k].c = evbuffer_new()))
      parts[k].gone = 1;
  }
  ask(all, &s, only);
  return parts;
}

static void parts_free(struct workers *all, struct part *parts) {
  for (unsigned k = 0; parts && k < all->n; k++) {
    if (parts[k].a)
      evbuffer_free(parts[k].a);
    if (parts[k].b)
      evbuffer_free(parts[k].b);
    if (parts[k].c)
      evbuffer_free(parts[k].c);
  }
  free(parts);
}

/*
 * Summing the workers' /stats texts: every sample line ("series value",
 * Prometheus or plain) is added to the same series of the other workers;
 * histograms merge the same way (cumulative buckets, _sum and _count are
 * sums). A series one worker lacks goes after the last series of its
 * family (the "# TYPE" line above it), so families stay together.
 */
struct series {
  struct series *next, *hnext;
  struct series *family_last; /* on a "# TYPE" line: the last line of its family */
  int is_float;
  uint64_t u;
  double d;
  size_t len;
  char line[]; /* the series (or the whole comment line) */
};

struct merged {
  struct series *head, *tail;
  struct series *buckets[REG_BUCKETS];
};

static struct series *merged_find(struct merged *m, const char *s, size_t len) {
  for (struct series *e = m->buckets[reg_hash(s, len) % REG_BUCKETS]; e; e = e->hnext)
    if (e->len == len && !memcmp(e->line, s, len))
      return e;
  return NULL;
}

static struct series *merged_add(struct merged *m, const char *s, size_t len,
                                 struct series *after) {
  struct series *e = calloc(1, sizeof(*e) + len + 1);
  uint32_t b = reg_hash(s, len) % REG_BUCKETS;

  if (!e)
    return NULL;
  memcpy(e->line, s, len);
  e->len = len;
  e->hnext = m->buckets[b];
  m->buckets[b] = e;
  if (!after)
    after = m->tail;
  if (after) {
    e->next = after->next;
    after->next = e;
  } else {
    m->head = e;
  }
  if (after == m->tail)
    m->tail = e;
  return e;
}

static void merge_line(struct merged *m, const char *l, size_t len, struct series **family) {
  const char *sp;
  struct series *e;
  uint64_t u = 0;
  int is_float = 0;
  double d;

  if (len && l[0] == '#') {
    if (!(e = merged_find(m, l, len)) &&
        !(e = merged_add(m, l, len, *family ? (*family)->family_last : NULL)))
      return;
    if (len > 7 && !memcmp(l, "# TYPE ", 7)) {
      *family = e;
      if (!e->family_last)
        e->family_last = e;
    }
    return;
  }
  if (!(sp = memrchr(l, ' ', len)) || sp == l)
    return;
  {
    char num[64];
    size_t nl = (size_t)(l + len - sp - 1);
    if (nl == 0 || nl >= sizeof(num))
      return;
    memcpy(num, sp + 1, nl);
    num[nl] = '\0';
    if (parse_u64(num, UINT64_MAX, &u) < 0) {
      char *end;
      d = strtod(num, &end);
      if (*end)
        return;
      is_float = 1;
    }
  }
  len = (size_t)(sp - l);
  if (!(e = merged_find(m, l, len))) {
    if (!(e = merged_add(m, l, len, *family ? (*family)->family_last : NULL)))
      return;
    if (*family)
      (*family)->family_last = e;
  }
  if (is_float || e->is_float) {
    if (!e->is_float)
      e->d = (double)e->u;
    e->is_float = 1;
    e->d += is_float ? d : (double)u;
  } else {
    e->u += u;
  }
}

static void merge_text(struct merged *m, struct evbuffer *text) {
  size_t len = evbuffer_get_length(text);
  const char *t = (const char *)evbuffer_pullup(text, -1);
  struct series *family = NULL;

  for (size_t pos = 0; t && pos < len;) {
    const char *nl = memchr(t + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - t) : len;
    merge_line(m, t + pos, end - pos, &family);
    pos = end + 1;
  }
}

int workers_admin_stats(struct workers *all, struct evbuffer *b, unsigned flags, int worker) {
  struct part *parts = gather(all, SNAP_STATS, flags, worker);
  struct merged *m;

  if (!parts)
    return -1;
  if (worker >= 0) {
    if (parts[worker].gone)
      evbuffer_add_printf(b, "# worker %d has stopped\n", worker);
    else
      evbuffer_add_buffer(b, parts[worker].a);
  } else if ((m = calloc(1, sizeof(*m)))) {
    for (unsigned k = 0; k < all->n; k++)
      if (!parts[k].gone)
        merge_text(m, parts[k].a);
    for (struct series *e = m->head, *next; e; e = next) {
      next = e->next;
      if (e->line[0] == '#')
        evbuffer_add_printf(b, "%s\n", e->line);
      else if (e->is_float)
        evbuffer_add_printf(b, "%s %.17g\n", e->line, e->d);
      else
        evbuffer_add_printf(b, "%s %" PRIu64 "\n", e->line, e->u);
      free(e);
    }
    free(m);
  }
  parts_free(all, parts);
  return 0;
}

void workers_admin_tunnels(struct workers *all, struct evbuffer *b) {
  struct part *parts = gather(all, SNAP_TUNNELS, 0, -1);
  struct evbuffer *l[3] = {evbuffer_new(), evbuffer_new(), evbuffer_new()};
  size_t pending = 0;

  if (parts && l[0] && l[1] && l[2]) {
    for (unsigned k = 0; k < all->n; k++) {
      if (parts[k].gone)
        continue;
      evbuffer_add_buffer(l[0], parts[k].a);
      evbuffer_add_buffer(l[1], parts[k].b);
      evbuffer_add_buffer(l[2], parts[k].c);
      pending += parts[k].pending;
    }
    admin_tunnels_join(b, l[0], l[1], l[2], pending);
  }
  for (int i = 0; i < 3; i++)
    if (l[i])
      evbuffer_free(l[i]);
  parts_free(all, parts);
}

/* ------------------------------------------------- restarts (handover.c) */

struct proxy *workers_proxy(struct workers *all, unsigned k) {
  return &all->w[k].p;
}

size_t workers_listener_fds(struct workers *all, int *fds, uint8_t *kinds) {
  size_t n = 0;

  for (unsigned k = 0; k < all->n; k++) {
    fds[n] = all->w[k].tunnel_fd;
    kinds[n++] = HO_L_TUNNEL;
    fds[n] = all->w[k].client_fd;
    kinds[n++] = HO_L_CLIENT;
  }
  return n;
}

/* Hands each record of b to take, for worker k. */
static void take_exported(struct evbuffer *b, unsigned k,
                          void (*take)(void *, unsigned, int, void *, const uint8_t *, size_t),
                          void *arg) {
  uint8_t st[REVTUN_SOCKET_STATE_MAX];
  struct exported e;

  while (evbuffer_remove(b, &e, sizeof(e)) == (int)sizeof(e)) {
    /* written by export_pool, never more than the buffer it came from */
    if (e.len > sizeof(st) || evbuffer_remove(b, st, e.len) != (int)e.len) {
      close(e.fd);
      continue;
    }
    take(arg, k, e.fd, e.user, st, e.len);
  }
}

void workers_export(struct workers *all, size_t max,
                    void (*take)(void *arg, unsigned worker, int fd, void *user,
                                 const uint8_t *state, size_t len),
                    void *arg) {
  struct part *parts = calloc(all->n, sizeof(*parts));
  struct snapshot s = {SNAP_EXPORT, 0, parts, 0, max};

  if (!parts)
    return;
  for (unsigned k = 0; k < all->n; k++) {
    struct worker *w = &all->w[k];
    if (!all->running) { /* the main thread's, until the threads start */
      if ((parts[k].a = evbuffer_new()))
        export_pool(&w->p, parts[k].a, max);
      parts[k].gone = 1;
      continue;
    }
    pthread_mutex_lock(&w->lock);
    if (w->closed) { /* what parked while it drained */
      parts[k].a = w->leftover;
      w->leftover = NULL;
      parts[k].gone = 1;
    }
    pthread_mutex_unlock(&w->lock);
    if (!parts[k].gone && !(parts[k].a = evbuffer_new()))
      parts[k].gone = 1;
  }
  if (all->running)
    ask(all, &s, -1);
  for (unsigned k = 0; k < all->n; k++)
    if (parts[k].a) {
      take_exported(parts[k].a, k, take, arg);
      evbuffer_free(parts[k].a);
    }
  free(parts);
}

void workers_import(struct workers *all, struct ho_tunnel *t, size_t n) {
  struct part *parts = calloc(all->n, sizeof(*parts));
  struct ho_tunnel **items = calloc(n ? n : 1, sizeof(*items));
  struct snapshot s = {SNAP_IMPORT, 0, parts, 0, 0};
  size_t at = 0;

  for (size_t i = 0; i < n; i++)
    t[i].rc = REVTUN_E_NOMEM;
  if (!parts || !items)
    goto out;
  /* items, grouped by worker: parts[k].items points at worker k's */
  for (unsigned k = 0; k < all->n; k++) {
    parts[k].items = items + at;
    for (size_t i = 0; i < n; i++)
      if (t[i].worker == k)
        items[at++] = &t[i];
    parts[k].n_items = (size_t)(items + at - parts[k].items);
    if (!parts[k].n_items)
      parts[k].gone = 1; /* nothing to ask */
  }
  for (size_t i = 0; i < n; i++)
    t[i].rc = REVTUN_E_STATE; /* until its worker imports it: stopped, or no such worker */
  if (!all->running) {
    for (unsigned k = 0; k < all->n; k++)
      import_items(&all->w[k].p, parts[k].items, parts[k].n_items);
  } else {
    ask(all, &s, -1);
  }
out:
  free(items);
  free(parts);
}

int workers_stopping(struct workers *all) { return all->stopping; }

static void post(struct workers *all, unsigned cmd);

void workers_shutdown(struct proxy *ctl, const char *why, int handing_over) {
  struct workers *all = ctl->all;

  if (all->stopping)
    return;
  all->stopping = 1;
  all->stop_why = why;
  admin_stop(ctl); /* the port is free again at once (or the new instance's) */
  post(all, CMD_STOP | (handing_over ? CMD_HANDING_OVER : 0));
}

void workers_stop_now(struct workers *all) { post(all, CMD_STOP_NOW); }

void workers_goaway(struct workers *all) { post(all, CMD_GOAWAY); }

/* ------------------------------------------------------------ main thread */

static void post(struct workers *all, unsigned cmd) {
  for (unsigned k = 0; k < all->n; k++) {
    struct worker *w = &all->w[k];
    if (!w->started)
      continue;
    pthread_mutex_lock(&w->lock);
    w->cmds |= cmd;
    pthread_mutex_unlock(&w->lock);
    wake(w->wake_fd);
  }
}

struct main_ctx {
  struct workers *all;
  struct proxy *ctl; /* the admin port's */
};

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
  struct main_ctx *m = arg;
  struct workers *all = m->all;

  (void)what;
  if (sig == SIGHUP) {
    post(all, CMD_RELOAD);
    return;
  }
  if (sig == SIGUSR1) {
    logmsg("SIGUSR1: reopening the access logs");
    post(all, CMD_REOPEN_LOGS);
    return;
  }
  if (all->stopping) {
    logmsg("second signal: exiting now");
    post(all, CMD_STOP_NOW);
    return;
  }
  if (handover_on_signal(m->ctl, sig == SIGTERM ? "SIGTERM" : "SIGINT"))
    return;
  workers_shutdown(m->ctl, sig == SIGTERM ? "SIGTERM" : "SIGINT", 0);
}

static void done_cb(evutil_socket_t fd, short what, void *arg) {
  struct workers *all = arg;
  uint64_t v = 0;

  (void)what;
  if (read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
    all->n_done += (unsigned)v;
  if (all->n_done >= all->n)
    event_base_loopbreak(all->base);
}

static int worker_init(struct workers *all, unsigned k, const struct proxy *tmpl,
                       const uint8_t *conf, size_t conf_len, const uint8_t *aconf,
                       size_t aconf_len) {
  struct worker *w = &all->w[k];

  w->p = *tmpl; /* the settings and the shared, read-only client tokens */
  w->p.w = w;
  w->all = all;
  w->index = k;
  w->wake_fd = -1;
  w->tunnel_fd = w->client_fd = -1;
  pthread_mutex_init(&w->lock, NULL);
  if (proxy_open(&w->p, conf, conf_len, aconf, aconf_len, all->dir) < 0)
    return -1;
  if ((w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
      !(w->wake_ev = event_new(w->p.base, w->wake_fd, EV_READ | EV_PERSIST, wake_cb, w)) ||
      event_add(w->wake_ev, NULL)) {
    logmsg("worker %u: cannot set up its wake-up: %s", k, strerror(errno));
    return -1;
  }
  return 0;
}

int workers_run(struct proxy *tmpl, const uint8_t *conf, size_t conf_len, const uint8_t *aconf,
                size_t aconf_len) {
  struct workers *all = calloc(1, sizeof(*all));
  static struct proxy ctl; /* zeroed: only the admin port */
  struct main_ctx mc = {all, &ctl};
  struct event *sigs[4] = {NULL, NULL, NULL, NULL};
  struct event *done_ev = NULL;
  const int signos[4] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1};
  sigset_t all_sigs, old;
  unsigned n = tmpl->cfg.workers;
  int rc = 1, fatal = 0;

  if (!all || !(all->w = calloc(n, sizeof(*all->w))) ||
      revtun_directory_new(&all->dir) != REVTUN_OK) {
    fprintf(stderr, PROG ": out of memory\n");
    goto out;
  }
  all->n = n;
  all->done_fd = -1;
  pthread_mutex_init(&all->reg_lock, NULL);
  pthread_mutex_init(&all->snap_lock, NULL);
  pthread_cond_init(&all->snap_cond, NULL);
  for (unsigned k = 0; k < n; k++)
    all->w[k].wake_fd = -1;
  ctl.cfg = tmpl->cfg;
  for (size_t k = 0; k < sizeof(ctl.inherited_fd) / sizeof(ctl.inherited_fd[0]); k++)
    ctl.inherited_fd[k] = -1;
  ctl.all = all;
  ctl.reserve_fd = ctl.admin_reserve_fd = -1;
  if (!(all->base = event_base_new()) ||
      (all->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
      !(done_ev = event_new(all->base, all->done_fd, EV_READ | EV_PERSIST, done_cb, all)) ||
      event_add(done_ev, NULL)) {
    fprintf(stderr, PROG ": initialisation failed\n");
    goto out;
  }
  ctl.base = all->base;
  for (unsigned k = 0; k < n; k++)
    if (worker_init(all, k, tmpl, conf, conf_len, aconf, aconf_len) < 0)
      goto out;
  /* a takeover (handover.c) brings each worker's listeners and parks the
   * tunnels in the workers' handles, before their threads start */
  if (handover_takeover(&ctl) < 0)
    goto out;
  for (unsigned k = 0; k < n; k++) {
    struct worker *w = &all->w[k];
    if (listeners_start(&w->p) < 0)
      goto out;
    w->tunnel_fd = evconnlistener_get_fd(w->p.tunnel_l.l);
    w->client_fd = evconnlistener_get_fd(w->p.client_l.l);
  }
  if (tmpl->cfg.admin_listen && admin_start(&ctl, tmpl->cfg.admin_listen) < 0)
    goto out;
  /* says SERVING to the instance taken over, or listens for the next one */
  if (handover_start(&ctl) < 0)
    goto out;
  for (int i = 0; i < 4; i++)
    if (!(sigs[i] = evsignal_new(all->base, signos[i], signal_cb, &mc)) || event_add(sigs[i], NULL))
      goto out;
  if (!tmpl->auth)
    logmsg("clients are not authenticated (no --client-auth): anyone who reaches the client "
           "port reaches every node");
  /* the workers take no signals: the main thread's loop handles them once */
  sigfillset(&all_sigs);
  pthread_sigmask(SIG_BLOCK, &all_sigs, &old);
  all->running = 1;
  for (unsigned k = 0; k < n; k++) {
    if (pthread_create(&all->w[k].tid, NULL, worker_main, &all->w[k]) != 0) {
      logmsg("cannot start worker %u: %s", k, strerror(errno));
      break;
    }
    all->w[k].started = 1;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  for (unsigned k = 0; k < n; k++)
    if (!all->w[k].started) {
      fatal = 1;
      all->n_done++; /* never ran: nothing to wait for (closed below) */
    }
  if (fatal) {
    all->stop_why = "a worker failed to start";
    all->stopping = 1;
    post(all, CMD_STOP_NOW);
  } else {
    logmsg("ready: %u workers; RPING every %u ms on idle tunnels, HTTP/2 PING every %u ms "
           "(timeout %u ms) on used ones; routing by %s, then %s",
           n, revtun_acceptor_ping_interval_ms(all->w[0].p.acc), tmpl->cfg.ka_interval_ms,
           tmpl->cfg.ka_timeout_ms, tmpl->cfg.node_header, tmpl->cfg.cluster_header);
  }
  if (all->n_done < n)
    event_base_dispatch(all->base);
  for (unsigned k = 0; k < n; k++)
    if (all->w[k].started)
      pthread_join(all->w[k].tid, NULL);
  rc = fatal ? 1 : 0;
out:
  handover_free(&ctl); /* after the workers: the tunnels they left while draining */
  admin_stop(&ctl);
  listeners_free(&ctl);
  for (int i = 0; i < 4; i++)
    if (sigs[i])
      event_free(sigs[i]);
  if (done_ev)
    event_free(done_ev);
  if (all && all->w) {
    for (unsigned k = 0; k < n; k++) {
      struct worker *w = &all->w[k];
      if (!w->started) /* set up, but the thread never ran (or failed) */
        proxy_close(&w->p);
      if (w->wake_ev)
        event_free(w->wake_ev);
      if (w->wake_fd >= 0)
        close(w->wake_fd);
      if (w->p.base)
        event_base_free(w->p.base);
    }
    for (unsigned b = 0; b < REG_BUCKETS; b++)
      while (all->reg[b]) {
        struct reg_entry *e = all->reg[b];
        all->reg[b] = e->next;
        free(e);
      }
  }
  if (all) {
    if (all->base)
      event_base_free(all->base);
    if (all->done_fd >= 0)
      close(all->done_fd);
    revtun_directory_free(all->dir);
    free(all->w);
    free(all);
  }
  return rc;
}
