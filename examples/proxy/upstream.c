/*
 * revtun-upstream-proxy: HTTP/2 client sessions on handed-off tunnels.
 *
 * Per node we keep the sessions opened on its tunnels. A request goes to a
 * session with room (fewer streams than the agent's
 * SETTINGS_MAX_CONCURRENT_STREAMS); only when none has room do we take a new
 * tunnel from the library's pool. Each session sends the HTTP/2 preface
 * right after the handoff, strips late RPING echoes from its first bytes,
 * sends PING keepalives, stops taking streams after the agent's GOAWAY, and
 * tells the library how it ended (revtun_mark_dead) before closing the fd.
 *
 * With --handoff-tls-ca a session first opens TLS on the tunnel as the
 * client (tls.c makes the SSL: late RPING echoes are stripped below it, the
 * agent's certificate must name the node); nghttp2's frames wait until the
 * handshake is done, so when it fails or times out no byte of a request has
 * left and the requests go to another tunnel (exchange.c).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../tls.h"
#include "proxy.h"

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static uint64_t next_session_id; /* shared by the workers: atomic */

/* ---------------------------------------------------------------- nodes */

/* Both fields compared, each with its length: ("t1", "n") and ("", "t1:n")
 * are different nodes whatever the bytes. */
struct node *node_find(struct proxy *p, const char *tenant, size_t tenant_len, const char *id,
                       size_t id_len) {
  for (struct node *n = p->nodes; n; n = n->next)
    if (n->id_len == id_len && n->tenant_len == tenant_len && !memcmp(n->id, id, id_len) &&
        !memcmp(n->tenant, tenant, tenant_len))
      return n;
  return NULL;
}

static struct node *node_get(struct proxy *p, const char *tenant, const char *id,
                             const char *cluster) {
  size_t tl = strlen(tenant), il = strlen(id);
  struct node *n = node_find(p, tenant, tl, id, il);

  if (n)
    return n;
  if (!(n = calloc(1, sizeof(*n))))
    return NULL;
  n->tenant = dup_bytes(tenant, tl);
  n->id = dup_bytes(id, il);
  n->cluster = dup_bytes(cluster ? cluster : "", cluster ? strlen(cluster) : 0);
  n->tenant_len = tl;
  n->id_len = il;
  if (!n->tenant || !n->id || !n->cluster) {
    free(n->tenant);
    free(n->id);
    free(n->cluster);
    free(n);
    return NULL;
  }
  n->next = p->nodes;
  p->nodes = n;
  return n;
}

static void node_release(struct proxy *p, struct node *n) {
  if (n->sessions)
    return;
  for (struct node **pp = n->peer ? &p->peers : &p->nodes; *pp; pp = &(*pp)->next)
    if (*pp == n) {
      *pp = n->next;
      break;
    }
  free(n->tenant);
  free(n->id);
  free(n->cluster);
  free(n);
}

/* The tenant half of the node key: the tenant only when the library keys
 * nodes by tenant, "" otherwise. Filing (from the socket's identity) and
 * lookups (from the request) both go through here. */
static const char *tenant_key(struct proxy *p, const char *tenant) {
  return revtun_config_tenant_isolation(p->h) && tenant ? tenant : "";
}

/* ------------------------------------------------------------- sessions */

static void up_flush(struct upsess *u);
static struct upsess *pick(struct node *n, int overflow);

void up_want_flush(struct upsess *u) {
  if (u->dying || u->flush_pending)
    return;
  u->flush_pending = 1;
  event_active(u->flush_ev, 0, 0);
}

static void arm_keepalive(struct upsess *u, uint32_t ms) {
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
  evtimer_add(u->ka_ev, &tv);
}

/* Ends the session: fails its streams, tells the library, queues the free. */
static void up_close(struct upsess *u, int reason, const char *why) {
  struct proxy *p = u->p;
  struct node *n = u->node;

  if (u->dying)
    return;
  u->dying = 1;
  char id[64];

  logmsg("session %llu (%s %s, fd %d): closed: %s%s", (unsigned long long)u->id,
         u->peer ? "instance at" : "node", log_safe(id, sizeof(id), n->id, n->id_len), u->s.fd, why,
         u->xs ? ", failing its open streams" : "");
  event_del(u->s.rev);
  event_del(u->s.wev);
  evtimer_del(u->ka_ev);
  evtimer_del(u->idle_ev);
  if (u->tls_ev)
    evtimer_del(u->tls_ev);
  while (u->xs) {
    struct xchg *x = u->xs;
    nghttp2_session_set_stream_user_data(u->h2, x->uid, NULL);
    if (u->tls_handshaking) /* nothing of x was sent: it may go elsewhere */
      xchg_handoff_failed(x, why);
    else
      xchg_upstream_done(x, why);
  }
  if (u->prev)
    u->prev->next = u->next;
  else
    n->sessions = u->next;
  if (u->next)
    u->next->prev = u->prev;
  n->n_sessions--;
  u->node = NULL;
  if (!u->peer && p->w)
    workers_note_session(p, n, -1);
  node_release(p, n);
  p->n_sessions--;
  p->st.sessions_closed++;
  /* The library learns first, so its records name the fd while it is ours. */
  if (!u->peer)
    revtun_mark_dead(p->h, u->s.fd, reason, revtun_libevent_now());
  u->next = p->dead_sessions;
  p->dead_sessions = u;
  proxy_schedule_reap(p);
}

static void up_free(struct upsess *u) {
  nghttp2_session_del(u->h2);
  sock_close(&u->s);
  tls_free(u->ssl); /* the session ends with its socket: no alert */
  close(u->s.fd);
  event_free(u->flush_ev);
  event_free(u->ka_ev);
  event_free(u->idle_ev);
  if (u->tls_ev)
    event_free(u->tls_ev);
  recycle_free(u);
}

void up_reap(struct proxy *p) {
  while (p->dead_sessions) {
    struct upsess *u = p->dead_sessions;
    p->dead_sessions = u->next;
    up_free(u);
  }
}

void up_close_all(struct proxy *p) {
  /* a node lives exactly as long as it has a session */
  while (p->nodes)
    up_close(p->nodes->sessions, REVTUN_CLOSE_LOCAL_CLOSE, "proxy shutting down");
  while (p->peers)
    up_close(p->peers->sessions, REVTUN_CLOSE_LOCAL_CLOSE, "proxy shutting down");
  up_reap(p);
}

/* ------------------------------------------------ TLS after the handoff */

/* The handshake failed or timed out: the session ends, its requests go to
 * another tunnel (up_close). */
static void up_tls_failed(struct upsess *u, const char *why) {
  char id[64];

  u->p->st.handoff_tls_failures++;
  logmsg("session %llu (node %s, fd %d): TLS after the handoff failed: %s",
         (unsigned long long)u->id, log_safe(id, sizeof(id), u->node->id, u->node->id_len), u->s.fd,
         why);
  up_close(u, REVTUN_CLOSE_LOCAL_CLOSE, "TLS after the handoff failed");
}

/* One step of the handshake; once it is done, the frames queued meanwhile
 * (the preface, SETTINGS, requests) go out. */
static void up_tls_step(struct upsess *u) {
  char why[384], id[64];
  int r = tls_handshake(u->ssl, why, sizeof(why));

  if (r == 2) {
    sock_want_write(&u->s);
    return;
  }
  if (u->s.writing) { /* no longer waiting for room */
    event_del(u->s.wev);
    u->s.writing = 0;
  }
  if (r == 0)
    return;
  if (r < 0) {
    up_tls_failed(u, why);
    return;
  }
  u->tls_handshaking = 0;
  evtimer_del(u->tls_ev);
  u->p->st.handoff_tls_handshakes++;
  logmsg("session %llu: %s with the agent of node %s (ALPN %s), speaking HTTP/2",
         (unsigned long long)u->id, tls_version(u->ssl),
         log_safe(id, sizeof(id), u->node->id, u->node->id_len),
         tls_alpn_is_h2(u->ssl) ? "h2" : "none");
  up_flush(u);
}

static void tls_timeout_cb(evutil_socket_t fd, short what, void *arg) {
  struct upsess *u = arg;

  (void)fd, (void)what;
  if (u->dying || !u->tls_handshaking)
    return;
  u->p->st.handoff_tls_timeouts++;
  up_tls_failed(u, "TLS handshake timed out");
}

/* Opens TLS on a tunnel session (--handoff-tls-ca): 0, or -1. */
static int up_tls_begin(struct upsess *u, revtun_strip_t strip) {
  struct proxy *p = u->p;
  uint32_t ms = p->cfg.handoff_timeout_ms;
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

  if (!(u->tls_ev = evtimer_new(p->base, tls_timeout_cb, u)) ||
      !(u->ssl = proxy_handoff_ssl(p, u->s.fd, strip, u->node->id)))
    return -1;
  sock_set_filter(&u->s, &tls_filter, u->ssl);
  u->tls_handshaking = 1;
  evtimer_add(u->tls_ev, &tv);
  return 0;
}

/* nghttp2's frames to the socket, until one of them is full. */
static void up_flush(struct upsess *u) {
  struct evbuffer *out = u->s.out;
  int rv, wr;

  u->flush_pending = 0;
  if (u->tls_handshaking && !u->dying) {
    up_tls_step(u); /* calls us again once the session is up */
    return;
  }
  for (;;) {
    size_t before, produced;
    if (u->dying)
      return;
    before = evbuffer_get_length(out);
    if ((rv = nghttp2_session_send(u->h2)) != 0) {
      up_close(u, REVTUN_CLOSE_LOCAL_CLOSE, nghttp2_strerror(rv));
      return;
    }
    produced = evbuffer_get_length(out) - before;
    if ((wr = sock_write(&u->s)) < 0) {
      up_close(u, REVTUN_CLOSE_REMOTE_CLOSE, strerror(errno));
      return;
    }
    /* the kernel is full (EV_WRITE resumes us), or nghttp2 has nothing more */
    if (wr > 0 || produced == 0 || !nghttp2_session_want_write(u->h2))
      break;
  }
  if (evbuffer_get_length(out) > 0)
    return;
  if (!nghttp2_session_want_read(u->h2) && !nghttp2_session_want_write(u->h2))
    up_close(u, REVTUN_CLOSE_LOCAL_CLOSE, "session finished");
  else if (u->goaway && u->active == 0)
    up_close(u, REVTUN_CLOSE_LOCAL_CLOSE, "drained after the agent's GOAWAY");
}

static void flush_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  up_flush(arg);
}

/* The first bytes after handoff may still carry late RPING echoes. */
static int feed(struct upsess *u, const uint8_t *data, size_t len) {
  static _Thread_local uint8_t stripped[16384 + 4]; /* one per --workers thread */
  ssize_t rv;

  while (!u->peer && !u->ssl && revtun_rping_strip_active(u->strip) && len > 0) {
    size_t take = len < 16384 ? len : 16384, out = 0, pings = 0;
    if (revtun_rping_strip(&u->strip, data, take, stripped, &out, &pings) != REVTUN_OK) {
      up_close(u, REVTUN_CLOSE_REMOTE_CLOSE, "RPING echo flood after handoff");
      return -1;
    }
    if (pings)
      VLOG("session %llu: stripped %zu late RPING echo(es)", (unsigned long long)u->id, pings);
    data += take;
    len -= take;
    if (out && (rv = nghttp2_session_mem_recv(u->h2, stripped, out)) < 0) {
      up_close(u, REVTUN_CLOSE_LOCAL_CLOSE, nghttp2_strerror((int)rv));
      return -1;
    }
  }
  if (len > 0 && !u->dying && (rv = nghttp2_session_mem_recv(u->h2, data, len)) < 0) {
    up_close(u, REVTUN_CLOSE_LOCAL_CLOSE, nghttp2_strerror((int)rv));
    return -1;
  }
  return u->dying ? -1 : 0;
}

static void read_cb(evutil_socket_t fd, short what, void *arg) {
  static _Thread_local uint8_t buf[READ_CHUNK]; /* one per --workers thread */
  struct upsess *u = arg;
  size_t budget = READ_BUDGET;

  (void)fd, (void)what;
  if (u->tls_handshaking && !u->dying) {
    up_tls_step(u);
    if (u->tls_handshaking)
      return;
  }
  while (!u->dying && budget > 0) {
    ssize_t n = sock_read(&u->s, buf, sizeof(buf));
    if (n == 0) {
      up_close(u, REVTUN_CLOSE_REMOTE_CLOSE,
               u->peer ? "closed by the peer" : "closed by the agent");
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      up_close(u, REVTUN_CLOSE_REMOTE_CLOSE, strerror(errno));
      return;
    }
    if (feed(u, buf, (size_t)n) < 0)
      return;
    if ((size_t)n < sizeof(buf) && !(u->ssl && tls_has_pending(u->ssl)))
      break; /* drained (TLS returns a record at a time, more may be held) */
    budget -= (size_t)n < budget ? (size_t)n : budget;
  }
  up_flush(u);
}

static void write_cb(evutil_socket_t fd, short what, void *arg) {
  struct upsess *u = arg;

  (void)fd, (void)what;
  if (u->tls_handshaking && !u->dying) {
    up_tls_step(u);
    return;
  }
  if (sock_write(&u->s) < 0)
    up_close(u, REVTUN_CLOSE_REMOTE_CLOSE, strerror(errno));
  else if (evbuffer_get_length(u->s.out) <= OUT_LOW)
    up_flush(u);
}

/* PING every interval; no ACK within the timeout ends the session. */
static void keepalive_cb(evutil_socket_t fd, short what, void *arg) {
  struct upsess *u = arg;
  struct proxy *p = u->p;

  (void)fd;
  (void)what;
  if (u->dying)
    return;
  if (u->ping_outstanding) {
    p->st.keepalive_timeouts++;
    if (!u->peer)
      revtun_note_keepalive_timeout(p->h, u->s.fd, revtun_libevent_now());
    up_close(u, REVTUN_CLOSE_HTTP2_PING_TIMEOUT, "HTTP/2 PING keepalive timeout");
    return;
  }
  if (nghttp2_submit_ping(u->h2, NGHTTP2_FLAG_NONE, NULL) != 0) {
    up_close(u, REVTUN_CLOSE_LOCAL_CLOSE, "cannot send PING");
    return;
  }
  u->ping_outstanding = 1;
  arm_keepalive(u, p->cfg.ka_timeout_ms);
  up_flush(u);
}

/* A session without a stream for --session-idle-timeout goes away, so the
 * tunnels taken under load go back to the agent (which parks new ones). */
static void arm_idle(struct upsess *u) {
  uint32_t ms = u->p->cfg.session_idle_ms;
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

  if (ms && !u->dying)
    evtimer_add(u->idle_ev, &tv);
}

static void idle_cb(evutil_socket_t fd, short what, void *arg) {
  struct upsess *u = arg;

  (void)fd, (void)what;
  if (u->dying || u->active)
    return;
  u->p->st.idle_sessions_closed++;
  nghttp2_submit_goaway(u->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(u->h2),
                        NGHTTP2_NO_ERROR, NULL, 0);
  up_flush(u); /* the GOAWAY goes out while the socket is ours */
  up_close(u, REVTUN_CLOSE_LOCAL_CLOSE, "idle");
}

/* Opens an HTTP/2 client session on fd for n: a socket revtun_handoff*()
 * gave us (peer 0), or a connection to another instance (peer 1, connect
 * maybe in progress). On failure fd is closed (and, for a tunnel, reported
 * to the library) and n released if it has no session. */
static struct upsess *session_open(struct proxy *p, struct node *n, int fd, revtun_strip_t strip,
                                   int peer) {
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, p->cfg.max_header_list},
  };
  struct upsess *u = n ? recycle_calloc(1, sizeof(*u)) : NULL;
  int one = 1;

  if (!u || sock_init(&u->s, p->base, fd, read_cb, write_cb, u) < 0 ||
      nghttp2_session_client_new3(&u->h2, callbacks, u, options, recycle_nghttp2_mem()) != 0 ||
      !(u->flush_ev = event_new(p->base, -1, 0, flush_cb, u)) ||
      !(u->ka_ev = evtimer_new(p->base, keepalive_cb, u)) ||
      !(u->idle_ev = evtimer_new(p->base, idle_cb, u)) ||
      nghttp2_submit_settings(u->h2, NGHTTP2_FLAG_NONE, settings,
                              sizeof(settings) / sizeof(settings[0])) != 0 ||
      nghttp2_session_set_local_window_size(u->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0) {
    logmsg("cannot set up a session on fd %d: out of memory", fd);
    if (u) {
      if (u->h2)
        nghttp2_session_del(u->h2);
      sock_close(&u->s);
      if (u->flush_ev)
        event_free(u->flush_ev);
      if (u->ka_ev)
        event_free(u->ka_ev);
      if (u->idle_ev)
        event_free(u->idle_ev);
      recycle_free(u);
    }
    if (n)
      node_release(p, n);
    if (!peer)
      revtun_mark_dead(p->h, fd, REVTUN_CLOSE_LOCAL_CLOSE, revtun_libevent_now());
    close(fd);
    return NULL;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  u->p = p;
  u->peer = peer;
  u->hb.limit = (size_t)p->cfg.max_header_list * HEADER_CONN_BUDGET_FACTOR;
  u->id = __atomic_add_fetch(&next_session_id, 1, __ATOMIC_RELAXED);
  u->strip = strip;
  u->node = n;
  u->next = n->sessions;
  if (n->sessions)
    n->sessions->prev = u;
  n->sessions = u;
  n->n_sessions++;
  p->n_sessions++;
  if (!peer)
    p->st.handoffs++;
  if (!peer && p->w)
    workers_note_session(p, n, 1); /* other workers may send this node's requests here */
  p->st.sessions_opened++;
  {
    char id[64], cl[64];
    logmsg(peer ? "session %llu: fd %d to instance at %s (id %s), speaking h2c"
                : "session %llu: tunnel fd %d of node %s (cluster %s) taken from the pool, "
                  "speaking HTTP/2",
           (unsigned long long)u->id, fd, log_safe(id, sizeof(id), n->id, n->id_len),
           log_safe(cl, sizeof(cl), n->cluster, strlen(n->cluster)));
  }
  if (!peer && p->handoff_ctx && up_tls_begin(u, strip) < 0) {
    up_close(u, REVTUN_CLOSE_LOCAL_CLOSE, "cannot start TLS after the handoff");
    return NULL;
  }
  arm_keepalive(u, p->cfg.ka_interval_ms);
  arm_idle(u);
  /* The client preface and SETTINGS go out now; with TLS the ClientHello
   * goes out on the next loop turn instead: the agent's whole answer may be
   * in by the time OpenSSL reads after sending it, and a handshake that
   * ended here would end before the caller gave the session its request. */
  if (u->tls_handshaking)
    up_want_flush(u);
  else
    up_flush(u);
  return u->dying ? NULL : u;
}

/* Opens an HTTP/2 client session on a socket revtun_handoff*() gave us. */
struct upsess *up_open(struct proxy *p, int fd, revtun_strip_t strip) {
  const char *node_id = "", *cluster = "", *tenant = "";

  revtun_socket_identity(p->h, fd, &node_id, &cluster, &tenant);
  return session_open(p, node_get(p, tenant_key(p, tenant), node_id, cluster), fd, strip, 0);
}

/* A peer: another instance of the fleet (id its address, cluster its
 * instance id) or another worker of this process (both "worker:K"). */
static struct node *peer_new(struct proxy *p, const char *id, size_t il, const char *cluster,
                             size_t cl) {
  struct node *n = calloc(1, sizeof(*n));

  if (!n || !(n->tenant = dup_bytes("", 0)) || !(n->id = dup_bytes(id, il)) ||
      !(n->cluster = dup_bytes(cluster, cl))) {
    if (n) {
      free(n->tenant);
      free(n->id);
      free(n);
    }
    return NULL;
  }
  n->id_len = il;
  n->peer = 1;
  n->next = p->peers;
  p->peers = n;
  return n;
}

/* A session to the instance at addr (validated, NUL-terminated; sa its
 * numeric form): one with room, or a new connection. */
struct upsess *up_for_peer(struct proxy *p, const char *instance, const char *addr,
                           const struct sockaddr *sa, socklen_t salen, char *why, size_t whylen) {
  size_t al = strlen(addr), il = strlen(instance);
  struct node *n = NULL;
  struct upsess *u;
  int fd;

  for (n = p->peers; n; n = n->next)
    if (n->id_len == al && !memcmp(n->id, addr, al) && strlen(n->cluster) == il &&
        !memcmp(n->cluster, instance, il))
      break;
  if ((u = pick(n, 0)))
    return u;
  if ((fd = sock_dial(sa, salen, NULL, 0)) < 0) {
    snprintf(why, whylen, "cannot connect: %s", strerror(errno));
    return pick(n, 1);
  }
  if (!n && !(n = peer_new(p, addr, al, instance, il))) {
    close(fd);
    snprintf(why, whylen, "out of memory");
    return NULL;
  }
  if (!(u = session_open(p, n, fd, 0, 1)))
    snprintf(why, whylen, "cannot open a session");
  return u;
}

/* ------------------------------------------------------------- routing */

/* A session takes new streams unless it is going away or its PING is
 * unanswered: an agent that stopped answering is not given more requests
 * while the keepalive timeout runs. */
static int usable(const struct upsess *u) {
  return !u->dying && !u->goaway && !u->ping_outstanding;
}

static int has_room(const struct upsess *u) {
  uint32_t limit = ASSUMED_PEER_STREAMS;

  if (!usable(u))
    return 0;
  if (u->got_settings)
    limit = nghttp2_session_get_remote_settings(u->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  if (u->p->cfg.max_streams && u->p->cfg.max_streams < limit)
    limit = u->p->cfg.max_streams;
  return u->active < limit;
}

/* A session with room; with overflow, the least busy usable one (nghttp2
 * queues the stream until the agent allows it). */
static struct upsess *pick(struct node *n, int overflow) {
  struct upsess *best = NULL;

  for (struct upsess *u = n ? n->sessions : NULL; u; u = u->next) {
    if (!usable(u))
      continue;
    if (!overflow && has_room(u))
      return u;
    if (overflow && (!best || u->active < best->active))
      best = u;
  }
  return best;
}

/* A tunnel for x from the pool: this handle's, or with --workers another
 * worker's through the directory (then maybe later: x->worker_wait). */
static int take_tunnel(struct proxy *p, struct xchg *x, int lookup, const char *id,
                       const char *tenant, int *fd, revtun_strip_t *strip) {
  if (p->w)
    return workers_handoff(x, lookup, id, tenant, fd, strip);
  return lookup == REVTUN_LOOKUP_NODE
             ? revtun_handoff(p->h, id, tenant, revtun_libevent_now(), fd, strip)
             : revtun_handoff_by_cluster(p->h, id, tenant, revtun_libevent_now(), fd, strip);
}

/* tenant is the request's (NULL without the header); ids are validated
 * C strings (access_check). */
static struct upsess *for_node(struct proxy *p, struct xchg *x, const char *node_id,
                               const char *tenant) {
  const char *tkey = tenant_key(p, tenant);
  struct node *n = node_find(p, tkey, strlen(tkey), node_id, strlen(node_id));
  struct upsess *u;
  int fd;
  revtun_strip_t strip = 0;

  if ((u = pick(n, 0)))
    return u;
  if (take_tunnel(p, x, REVTUN_LOOKUP_NODE, node_id, tenant, &fd, &strip) == REVTUN_OK &&
      (u = up_open(p, fd, strip)))
    return u;
  if (x->worker_wait)
    return NULL;
  n = node_find(p, tkey, strlen(tkey), node_id, strlen(node_id)); /* up_open may have failed */
  if ((u = pick(n, 1)) || !p->w)
    return u;
  /* every tunnel of the node is busy in another worker's sessions: queue
   * there, as a single worker queues on its own busiest-but-one session */
  return workers_forward(x, REVTUN_LOOKUP_NODE, node_id, tenant);
}

static struct upsess *for_cluster(struct proxy *p, struct xchg *x, const char *cluster,
                                  const char *tenant) {
  const char *member;
  char *node_id;
  struct upsess *u;
  int fd;
  revtun_strip_t strip = 0;

  /* Round robin over the cluster's member nodes, then that node's sessions.
   * The member id is copied: for_node may change the library's tables. */
  if (revtun_lookup_cluster(p->h, cluster, tenant, &member) == REVTUN_OK &&
      (node_id = strdup(member))) {
    u = for_node(p, x, node_id, tenant);
    free(node_id);
    if (u || x->worker_wait)
      return u;
  }
  if (take_tunnel(p, x, REVTUN_LOOKUP_CLUSTER, cluster, tenant, &fd, &strip) == REVTUN_OK &&
      (u = up_open(p, fd, strip)))
    return u;
  if (x->worker_wait || !p->w)
    return NULL;
  return workers_forward(x, REVTUN_LOOKUP_CLUSTER, cluster, tenant);
}

/* This worker parks or runs sessions on the node. */
static int node_here(struct proxy *p, const char *node_id, const char *tenant) {
  const char *tkey = tenant_key(p, tenant);
  return revtun_idle_count(p->h, node_id, tenant) > 0 ||
         node_find(p, tkey, strlen(tkey), node_id, strlen(node_id)) != NULL;
}

/* The key select_render() gave x, tried as a cluster first and then as a
 * node, as revtun_handoff_select(3) tries it. */
struct upsess *up_route(struct proxy *p, struct xchg *x, char *why, size_t whylen) {
  const char *tenant = x->key_tenant[0] ? x->key_tenant : NULL;
  struct upsess *u;

  x->key_is_cluster = 0;
  if (!x->key_ok) {
    select_miss(p, x, why, whylen);
    return NULL;
  }
  x->target = x->key;
  x->key_is_cluster = revtun_cluster_node_count(p->h, x->key, tenant) > 0;
  if (!x->key_is_cluster && p->w && !node_here(p, x->key, tenant)) {
    /* This worker knows neither a cluster nor a node by that name, but
     * another may park the cluster: it is asked for first, as a cluster,
     * before the key is taken for a node. */
    x->key_is_cluster = 1;
    if ((u = for_cluster(p, x, x->key, tenant)) || x->worker_wait)
      return u;
    x->key_is_cluster = 0;
  }
  u = x->key_is_cluster ? for_cluster(p, x, x->key, tenant) : for_node(p, x, x->key, tenant);
  if (!u && !x->worker_wait)
    select_miss(p, x, why, whylen);
  return u;
}

/* A session to worker k of this process (workers.c): one with room, or a
 * new h2c connection over a socket pair whose other end k serves as a
 * client connection. */
struct upsess *up_for_worker(struct proxy *p, unsigned k, char *why, size_t whylen) {
  char name[32];
  struct node *n;
  struct upsess *u;
  int fd;

  snprintf(name, sizeof(name), "worker:%u", k);
  for (n = p->peers; n; n = n->next)
    if (!strcmp(n->id, name))
      break;
  if ((u = pick(n, 0)))
    return u;
  if ((fd = workers_connect(p, k)) < 0) {
    snprintf(why, whylen, "worker %u is not taking connections", k);
    return pick(n, 1);
  }
  if (!n && !(n = peer_new(p, name, strlen(name), name, strlen(name)))) {
    close(fd);
    snprintf(why, whylen, "out of memory");
    return NULL;
  }
  if (!(u = session_open(p, n, fd, 0, 1)))
    snprintf(why, whylen, "cannot open a session");
  return u;
}

/* ------------------------------------------------------------- streams */

static ssize_t body_read_cb(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *user_data) {
  struct xchg *x = source->ptr;
  size_t avail = evbuffer_get_length(x->req_body);
  size_t n = avail < length ? avail : length;

  (void)session, (void)id, (void)buf, (void)user_data;
  if (n == 0 && !x->req_done) {
    x->up_deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  if (n > 0)
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (x->req_done && n == avail)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

int up_submit(struct upsess *u, struct xchg *x) {
  nghttp2_data_provider prd;
  int32_t id;

  prd.source.ptr = x;
  prd.read_callback = body_read_cb;
  id = nghttp2_submit_request(u->h2, NULL, x->req.v, x->req.n, x->req_has_body ? &prd : NULL, x);
  if (id < 0)
    return -1;
  x->u = u;
  x->uid = id;
  x->uprev = NULL;
  x->unext = u->xs;
  if (u->xs)
    u->xs->uprev = x;
  u->xs = x;
  u->active++;
  evtimer_del(u->idle_ev);
  if (verbose) {
    const char *m = hdrs_get(&x->req, ":method"), *path = hdrs_get(&x->req, ":path");
    char nid[64];
    logmsg("%s %s -> session %llu stream %d (node %s)", m ? m : "-", path ? path : "-",
           (unsigned long long)u->id, id, log_safe(nid, sizeof(nid), u->node->id, u->node->id_len));
  }
  up_want_flush(u);
  return 0;
}

void up_resume(struct xchg *x) {
  if (x->u && x->up_deferred) {
    x->up_deferred = 0;
    nghttp2_session_resume_data(x->u->h2, x->uid);
    up_want_flush(x->u);
  }
}

void up_cancel(struct xchg *x) {
  if (x->u && !x->u->dying) {
    nghttp2_submit_rst_stream(x->u->h2, NGHTTP2_FLAG_NONE, x->uid, NGHTTP2_CANCEL);
    up_want_flush(x->u);
  }
}

void up_consumed(struct xchg *x, size_t n) {
  if (n > x->resp_unconsumed)
    n = x->resp_unconsumed;
  if (!x->u || x->u->dying || !n)
    return;
  x->resp_unconsumed -= n;
  nghttp2_session_consume(x->u->h2, x->uid, n);
  up_want_flush(x->u);
}

/* ----------------------------------------------------- nghttp2 callbacks */

static ssize_t send_cb(nghttp2_session *session, const uint8_t *data, size_t len, int flags,
                       void *user_data) {
  (void)session, (void)flags;
  return sock_h2_send(&((struct upsess *)user_data)->s, data, len);
}

/* Request bodies move from the exchange's buffer to the socket's without copying. */
static int send_data_cb(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *user_data) {
  struct upsess *u = user_data;
  struct xchg *x = source->ptr;

  (void)session, (void)frame;
  int rv = sock_h2_send_data(&u->s, framehd, x->req_body, length);
  if (rv == 0)
    xchg_sent_upstream(x, length);
  return rv;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  struct xchg *x = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

  (void)user_data;
  if (!x || frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  x->in_trailers = x->resp_head_ready;
  if (!x->in_trailers) {
    hdrs_free(&x->resp);
    x->resp_status = 0;
  }
  return 0;
}

/* Response fields (interim heads and trailers included) count against the
 * stream's limits; kept ones also against the session's, the client
 * connection's and the process's budgets. Past any of them the stream is
 * reset (nghttp2 answers the failed callback with RST_STREAM) and the
 * client gets 502. */
static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data) {
  struct xchg *x = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  struct upsess *u = user_data;
  struct proxy *p = u->p;
  size_t cost = namelen + valuelen + HEADER_FIELD_OVERHEAD;

  (void)flags;
  if (!x || frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  x->resp_cost += cost;
  if (x->resp_cost > p->cfg.max_header_list || x->resp.n >= p->cfg.max_headers ||
      (!x->in_trailers && hbudget_charge(x, cost, 1) < 0)) {
    x->resp_too_large = 1;
    p->st.header_limit_resets++;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  if (x->in_trailers)
    return 0; /* trailers are dropped */
  if (namelen == 7 && !memcmp(name, ":status", 7)) {
    x->resp_status = valuelen == 3 && value[0] >= '1' && value[0] <= '9' && value[1] >= '0' &&
                             value[1] <= '9' && value[2] >= '0' && value[2] <= '9'
                         ? (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0')
                         : 0;
    return 0;
  }
  if (name[0] == ':' || is_hop_by_hop((const char *)name, namelen))
    return 0;
  if (hdrs_add(&x->resp, (const char *)name, namelen, (const char *)value, valuelen) < 0)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  struct upsess *u = user_data;
  struct proxy *p = u->p;
  struct xchg *x;

  if (u->dying)
    return 0;
  switch (frame->hd.type) {
  case NGHTTP2_SETTINGS:
    if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
      u->got_settings = 1;
    return 0;
  case NGHTTP2_PING:
    if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && u->ping_outstanding) {
      u->ping_outstanding = 0;
      arm_keepalive(u, p->cfg.ka_interval_ms);
    }
    return 0;
  case NGHTTP2_GOAWAY:
    if (!u->goaway) {
      u->goaway = 1;
      p->st.goaways++;
      char nid[64];
      logmsg("session %llu (node %s): GOAWAY from the agent (last stream %d): no new streams",
             (unsigned long long)u->id, log_safe(nid, sizeof(nid), u->node->id, u->node->id_len),
             frame->goaway.last_stream_id);
      if (!u->peer)
        revtun_note_goaway(p->h, u->s.fd, revtun_libevent_now());
      /* the agent is leaving: no more PINGs, only the streams it finishes */
      evtimer_del(u->ka_ev);
      u->ping_outstanding = 0;
    }
    return 0;
  case NGHTTP2_HEADERS:
    x = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!x)
      return 0;
    if (!x->in_trailers) {
      if (x->resp_status >= 100 && x->resp_status < 200) {
        hdrs_free(&x->resp); /* interim response: the final one follows */
        return 0;
      }
      if (x->resp_status < 200 || x->resp_status > 999) {
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_PROTOCOL_ERROR);
        return 0;
      }
      x->resp_head_ready = 1;
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        x->resp_done = 1;
      if (x->c)
        conn_response_head(x);
      if (x->resp_done && x->c)
        conn_response_data(x);
    } else if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
      x->resp_done = 1; /* trailers are dropped */
      if (x->c)
        conn_response_data(x);
    }
    return 0;
  case NGHTTP2_DATA:
    x = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (x && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      x->resp_done = 1;
      if (x->c)
        conn_response_data(x);
    }
    return 0;
  default: return 0;
  }
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user_data) {
  struct xchg *x = nghttp2_session_get_stream_user_data(session, id);

  (void)flags, (void)user_data;
  if (!x || !x->c || !x->resp_head_ready) {
    nghttp2_session_consume(session, id, len); /* nobody reads it */
    return 0;
  }
  evbuffer_add(x->resp_body, data, len);
  x->resp_unconsumed += len;
  conn_response_data(x);
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code,
                           void *user_data) {
  struct upsess *u = user_data;
  struct xchg *x = nghttp2_session_get_stream_user_data(session, id);
  char why[96];

  if (u->active && --u->active == 0)
    arm_idle(u);
  if (!x)
    return 0;
  if (x->resp_unconsumed)
    nghttp2_session_consume_connection(session, x->resp_unconsumed);
  x->resp_unconsumed = 0;
  if (error_code == NGHTTP2_REFUSED_STREAM && xchg_retry(x) == 0)
    return 0;
  if (x->resp_too_large)
    snprintf(why, sizeof(why), "response header section over the limits");
  else
    snprintf(why, sizeof(why), "stream reset by the agent (%s)",
             nghttp2_http2_strerror(error_code));
  xchg_upstream_done(x, error_code ? why : NULL);
  return 0;
}

int up_setup(void) {
  nghttp2_session_callbacks *cb;

  if (nghttp2_session_callbacks_new(&cb) != 0)
    return -1;
  if (nghttp2_option_new(&options) != 0) {
    nghttp2_session_callbacks_del(cb);
    return -1;
  }
  nghttp2_session_callbacks_set_send_callback(cb, send_cb);
  nghttp2_session_callbacks_set_send_data_callback(cb, send_data_cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  /* Window updates follow what the client took, not what we buffered. */
  nghttp2_option_set_no_auto_window_update(options, 1);
  /* Closed streams are kept only for the priority tree, which nobody uses:
   * up to SETTINGS_MAX_CONCURRENT_STREAMS of them per session, memory and
   * tree upkeep for nothing. */
  nghttp2_option_set_no_closed_streams(options, 1);
  callbacks = cb;
  return 0;
}

void up_teardown(void) {
  nghttp2_session_callbacks_del(callbacks);
  nghttp2_option_del(options);
}
