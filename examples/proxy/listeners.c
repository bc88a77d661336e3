/*
 * revtun-upstream-proxy: the listening sockets (tunnels, clients, and the
 * admin evhttp's), and what they do when file descriptors run out.
 *
 * accept(2) failing with EMFILE or ENFILE leaves the connection in the
 * backlog, so a listener that stays enabled is woken again at once: the
 * loop spins and logs without end. Instead the listener pauses (100 ms,
 * doubling up to 1 s while it keeps failing) and the proxy sheds one
 * pending connection with a reserve descriptor (/dev/null, opened at start:
 * closed to make room, the connection accepted and closed at once so its
 * client is not left hanging, then reopened). The errors are logged at most
 * once a second with a count of the others.
 *
 * The admin port has a reserve of its own: when its accept fails for lack
 * of descriptors, that reserve is closed and the listener stays enabled,
 * so evhttp accepts the operator's connection with the freed descriptor;
 * the reserve is taken again once a descriptor is free. Client connections
 * are also capped (--max-clients, by default what the descriptor limit
 * leaves after a quarter of it for tunnels and the admin listener), so
 * clients alone cannot starve the admin port.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/listener.h>

#include "handover_wire.h"
#include "proxy.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 1000

static void open_reserve(struct proxy *p) {
  if (p->reserve_fd < 0)
    p->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (p->admin_reserve_fd < 0)
    p->admin_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void pause_for(struct plistener *pl, uint32_t ms) {
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

  evconnlistener_disable(pl->l);
  evtimer_add(pl->resume_ev, &tv);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg) {
  struct plistener *pl = arg;

  (void)fd, (void)what;
  open_reserve(pl->p); /* whichever reserve was given up, if a descriptor is free */
  if (pl == &pl->p->admin_l && pl->p->admin_reserve_fd < 0) {
    struct timeval again = {1, 0};
    evtimer_add(pl->resume_ev, &again); /* none free yet */
  }
  pl->paused_fds = 0;
  if (pl->l && !pl->paused_cap)
    evconnlistener_enable(pl->l);
}

/* The error callback gets the listener's callback argument, which for the
 * admin listener belongs to evhttp: the plistener is found by pointer. */
static struct plistener *find(struct proxy *p, struct evconnlistener *l) {
  if (p->tunnel_l.l == l)
    return &p->tunnel_l;
  if (p->client_l.l == l)
    return &p->client_l;
  if (p->admin_l.l == l)
    return &p->admin_l;
  return NULL;
}

/* for find(): one proxy per thread (--workers: one per worker, and the
 * main thread's admin port) */
static _Thread_local struct proxy *the_proxy;

static void on_accept_error(struct evconnlistener *l, void *arg) {
  int err = EVUTIL_SOCKET_ERROR();
  struct proxy *p = the_proxy;
  struct plistener *pl = find(p, l);

  (void)arg;
  if (!pl)
    return;
  if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
    if (pl == &p->admin_l && p->admin_reserve_fd >= 0) {
      /* evhttp accepts the waiting connection with this descriptor */
      close(p->admin_reserve_fd);
      p->admin_reserve_fd = -1;
      struct timeval again = {1, 0};
      evtimer_add(pl->resume_ev, &again); /* to take it back */
      logmsg_limited(&p->accept_log, "admin: accept: %s: using the admin reserve descriptor",
                     strerror(err));
      return;
    }
    if (p->reserve_fd >= 0) {
      int fd;
      close(p->reserve_fd);
      p->reserve_fd = -1;
      if ((fd = accept(evconnlistener_get_fd(l), NULL, NULL)) >= 0)
        close(fd);
      open_reserve(p);
    }
    pl->backoff_ms = pl->backoff_ms ? pl->backoff_ms * 2 : BACKOFF_FIRST_MS;
    if (pl->backoff_ms > BACKOFF_MAX_MS)
      pl->backoff_ms = BACKOFF_MAX_MS;
    pl->paused_fds = 1;
    p->st.accept_pauses++;
    pause_for(pl, pl->backoff_ms);
    logmsg_limited(&p->accept_log, "%s: accept: %s: not accepting for %u ms", pl->what,
                   strerror(err), pl->backoff_ms);
    return;
  }
  logmsg_limited(&p->accept_log, "%s: accept: %s", pl->what, strerror(err));
}

static void on_tunnel(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg) {
  struct proxy *p = arg;
  int rc = revtun_acceptor_accept(p->acc, fd, NULL, revtun_libevent_now());
  char peer[128];

  (void)l;
  p->tunnel_l.backoff_ms = 0;
  {
    struct timeval quiet = {TRIM_QUIET_S, 0};
    evtimer_add(p->trim_ev, &quiet); /* upstream-proxy.c: trim_cb */
  }
  if (rc != REVTUN_OK) {
    addr_format(sa, (socklen_t)salen, peer, sizeof(peer));
    logmsg_limited(&p->accept_log, "tunnel connection from %s dropped: %s", peer,
                   revtun_strerror(rc));
    evutil_closesocket(fd);
    return;
  }
  if (verbose) {
    addr_format(sa, (socklen_t)salen, peer, sizeof(peer));
    logmsg("tunnel connection from %s: handshake", peer);
  }
}

static void on_client(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg) {
  struct proxy *p = arg;

  (void)l, (void)sa, (void)salen;
  p->client_l.backoff_ms = 0;
  client_accept(p, fd);
}

static int plistener_init(struct proxy *p, struct plistener *pl, const char *what) {
  pl->p = p;
  pl->what = what;
  return (pl->resume_ev = evtimer_new(p->base, resume_cb, pl)) ? 0 : -1;
}

static int listen_on(struct proxy *p, struct plistener *pl, const char *spec, int inherited,
                     const char *what, evconnlistener_cb cb) {
  struct sockaddr_storage ss;
  socklen_t len;
  char name[128];

  if (plistener_init(p, pl, what) < 0)
    return -1;
  if (inherited >= 0) {
    /* taken over from the previous instance (handover.c): the same socket,
     * with the connections already in its accept queue */
    evutil_make_socket_nonblocking(inherited);
    pl->l = evconnlistener_new(p->base, cb, p, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
                               inherited);
    if (!pl->l)
      close(inherited);
  } else if (addr_resolve(spec, 1, &ss, &len) < 0) {
    logmsg("bad address '%s' for %s", spec, what);
    return -1;
  } else
    /* --workers: every worker listens on the same port, and the kernel
     * spreads the connections over them */
    pl->l = evconnlistener_new_bind(p->base, cb, p,
                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                        LEV_OPT_CLOSE_ON_EXEC | (p->w ? LEV_OPT_REUSEABLE_PORT : 0),
                                    1024, (struct sockaddr *)&ss, (int)len);
  if (!pl->l) {
    logmsg("cannot listen on %s (%s): %s", spec, what, strerror(errno));
    return -1;
  }
  evconnlistener_set_error_cb(pl->l, on_accept_error);
  len = sizeof(ss);
  if (getsockname(evconnlistener_get_fd(pl->l), (struct sockaddr *)&ss, &len) == 0)
    addr_format((struct sockaddr *)&ss, len, name, sizeof(name));
  else
    snprintf(name, sizeof(name), "%s", spec);
  logmsg("%s on %s", what, name);
  return 0;
}

int listeners_start(struct proxy *p) {
  the_proxy = p;
  p->reserve_fd = p->admin_reserve_fd = -1;
  open_reserve(p);
  if (p->reserve_fd < 0)
    logmsg("warning: cannot open /dev/null as a reserve descriptor: %s", strerror(errno));
  if (listen_on(p, &p->tunnel_l, p->cfg.tunnel_listen, p->inherited_fd[HO_L_TUNNEL],
                "tunnels (agents)", on_tunnel) < 0 ||
      listen_on(p, &p->client_l, p->cfg.listen, p->inherited_fd[HO_L_CLIENT],
                "clients (HTTP/1.1, h2c)", on_client) < 0)
    return -1;
  p->inherited_fd[HO_L_TUNNEL] = p->inherited_fd[HO_L_CLIENT] = -1; /* owned by the listeners */
  logmsg("at most %u client connections at once", p->cfg.max_clients);
  return 0;
}

/* A worker's thread: its listeners' errors are its proxy's (listeners_start
 * ran on the main thread). */
void listeners_bind_thread(struct proxy *p) { the_proxy = p; }

/* The admin evhttp's own listener gets the same error handling. */
int listeners_watch_admin(struct proxy *p, struct evconnlistener *l) {
  the_proxy = p; /* with --workers, the main thread's admin port */
  open_reserve(p);
  if (plistener_init(p, &p->admin_l, "admin") < 0)
    return -1;
  p->admin_l.l = l;
  evconnlistener_set_error_cb(l, on_accept_error);
  return 0;
}

/* Client connections at the cap: stop accepting until one closes (the
 * kernel's backlog holds the newcomers meanwhile). */
void listeners_client_count_changed(struct proxy *p) {
  struct plistener *pl = &p->client_l;
  int full = p->n_conns >= p->cfg.max_clients;

  if (!pl->l || full == pl->paused_cap)
    return;
  pl->paused_cap = full;
  if (full)
    evconnlistener_disable(pl->l);
  else if (!pl->paused_fds)
    evconnlistener_enable(pl->l);
}

/* Shutdown: no new tunnels or clients. The admin listener belongs to
 * evhttp and goes with admin_stop(). */
void listeners_stop(struct proxy *p) {
  struct plistener *pls[2] = {&p->tunnel_l, &p->client_l};

  for (int i = 0; i < 2; i++) {
    if (pls[i]->l)
      evconnlistener_free(pls[i]->l);
    pls[i]->l = NULL;
    if (pls[i]->resume_ev)
      evtimer_del(pls[i]->resume_ev);
  }
  p->admin_l.l = NULL;
  if (p->admin_l.resume_ev)
    evtimer_del(p->admin_l.resume_ev);
}

void listeners_free(struct proxy *p) {
  struct plistener *pls[3] = {&p->tunnel_l, &p->client_l, &p->admin_l};

  listeners_stop(p);
  for (int i = 0; i < 3; i++)
    if (pls[i]->resume_ev) {
      event_free(pls[i]->resume_ev);
      pls[i]->resume_ev = NULL;
    }
  if (p->reserve_fd >= 0)
    close(p->reserve_fd);
  if (p->admin_reserve_fd >= 0)
    close(p->admin_reserve_fd);
  p->reserve_fd = p->admin_reserve_fd = -1;
}
