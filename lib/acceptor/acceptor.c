/* The handshake acceptor: drives handshake.c over accepted fds through the
 * handle's io callbacks, answers exactly as Envoy's reverse_tunnel network
 * filter does, and hands accepted sockets to the pool.
 *
 * A connection moves through: [TRANSPORT_HANDSHAKE (a TLS handshake through
 * the acceptor's transport)] -> READ (collect the request) -> either
 * WRITE_OK (answer 200/101, then commit the prepared registration) or
 * WRITE_REJECT -> LINGER (answer, half-close, drain briefly so the reply is
 * not destroyed by a reset, then close). The registration is prepared before
 * the 200 is written and committed only once the whole answer is on the wire,
 * so no RPING can overtake it and a socket that cannot be registered gets a
 * 503 instead of a 200. With a transport, every byte of the exchange goes
 * through the session, which is parked (abandoned without a closing alert)
 * once the answer is out: the tunnel goes on as the raw TCP stream. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acceptor/acceptor_int.h"
#include "base/conn_meta.h"
#include "base/sockaddr.h"
#include "base/text.h"
#include "core/host.h"
#include "core/reentry.h"

#define LINGER_MS 1000u
#define LINGER_DRAIN_MAX 65536u
#define INITIAL_BUF 1024u
#define TRAILER_SLACK 8192u

/* --------------------------------------------------------------- helpers */

static void unlink_conn(revtun_acceptor_t *acc, struct rt_hs_conn *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    acc->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  acc->n_pending--;
}

/* Request buffer bytes beyond the first INITIAL_BUF, which every handshake
 * may use: these count against the acceptor's budget. */
static size_t extra_bytes(size_t cap) { return cap > INITIAL_BUF ? cap - INITIAL_BUF : 0; }

static void free_conn(revtun_t *h, struct rt_hs_conn *c) {
  if (c->tp_conn)
    c->tp.close(c->tp_conn);
  c->acc->buffered -= extra_bytes(c->cap);
  rt_free(&h->mem, c->buf);
  rt_free(&h->mem, c->ids);
  rt_free(&h->mem, c->meta_keys);
  c->acc->buffered -= c->conn_meta_bytes;
  rt_conn_meta_free_copy(&h->mem, c->conn_meta);
  rt_free(&h->mem, c);
}

/* Ends a connection that did not become a tunnel: the library owns the fd. */
static void drop_conn(revtun_t *h, struct rt_hs_conn *c) {
  revtun_acceptor_t *acc = c->acc;
  if (c->prepared)
    rt_pool_abort(h, c->prepared);
  rt_unschedule(h, &c->ent);
  rt_io(h, &c->ent, REVTUN_IO_REMOVE);
  rt_fd_clear(h, c->ent.fd);
  rt_close_fd(h, c->ent.fd, c->ent.sock_user);
  unlink_conn(acc, c);
  free_conn(h, c);
}

/* Asks the host for exactly `events` on the connection's fd, calling it only
 * when that changes; false when the host refused (the caller drops). */
static bool want(revtun_t *h, struct rt_hs_conn *c, int events) {
  if (c->interest == events)
    return true;
  c->interest = (uint8_t)events;
  return rt_io(h, &c->ent, events) == REVTUN_OK;
}

enum io_result { IO_DONE, IO_AGAIN, IO_CLOSED, IO_FAILED };

/* A session status as an io_result, with the interest it needs. */
static enum io_result session_result(revtun_t *h, struct rt_hs_conn *c, int r) {
  switch (r) {
  case REVTUN_TP_DONE: return IO_DONE;
  case REVTUN_TP_WANT_READ: return want(h, c, REVTUN_IO_READ) ? IO_AGAIN : IO_CLOSED;
  case REVTUN_TP_WANT_WRITE:
    return want(h, c, REVTUN_IO_READ | REVTUN_IO_WRITE) ? IO_AGAIN : IO_CLOSED;
  case REVTUN_TP_CLOSED: return IO_CLOSED;
  default: return IO_FAILED;
  }
}

/* Reads through the session or from the raw socket. */
static enum io_result conn_read(revtun_t *h, struct rt_hs_conn *c, uint8_t *buf, size_t cap,
                                size_t *n) {
  if (c->tp_conn) {
    *n = 0;
    enum io_result r = session_result(h, c, c->tp.read(c->tp_conn, buf, cap, n));
    return r == IO_DONE && *n == 0 ? IO_CLOSED : r;
  }
  for (;;) {
    ssize_t got = recv(c->ent.fd, buf, cap, MSG_DONTWAIT);
    if (got > 0) {
      *n = (size_t)got;
      return IO_DONE;
    }
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return want(h, c, REVTUN_IO_READ) ? IO_AGAIN : IO_CLOSED;
    return IO_CLOSED; /* EOF or an error */
  }
}

/* Writes through the session or to the raw socket. */
static enum io_result conn_write(revtun_t *h, struct rt_hs_conn *c, const char *buf, size_t len,
                                 size_t *n) {
  if (c->tp_conn) {
    *n = 0;
    int r = c->tp.write(c->tp_conn, (const uint8_t *)buf, len, n);
    if (r == REVTUN_TP_WANT_WRITE) /* writable is what it waits for here */
      return want(h, c, REVTUN_IO_WRITE) ? IO_AGAIN : IO_CLOSED;
    return session_result(h, c, r);
  }
  for (;;) {
    ssize_t sent = send(c->ent.fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent > 0) {
      *n = (size_t)sent;
      return IO_DONE;
    }
    if (sent < 0 && errno == EINTR)
      continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return want(h, c, REVTUN_IO_WRITE) ? IO_AGAIN : IO_CLOSED;
    return IO_CLOSED; /* the initiator went away */
  }
}

/* A handshake connection that ends without an answer gets a record saying
 * why, since nothing else tells the operator (Envoy has no such record). */
static void record_failure(revtun_t *h, struct rt_hs_conn *c, const char *why,
                           revtun_time_ms_t now) {
  if (!rt_wants_records(h))
    return;
  struct rt_addr local, remote;
  rt_addr_of_socket(c->ent.fd, &local, &remote);
  struct rt_meta_kv reason = {"failure_reason", why};
  struct revtun_event ev;
  rt_event_init(&ev, h, REVTUN_EV_HANDSHAKE_FAILED, now);
  ev.fd = c->ent.fd;
  ev.sock_user = c->ent.sock_user;
  ev.local = &local;
  ev.remote = &remote;
  ev.extra = &reason;
  ev.n_extra = 1;
  ev.peer = c->tp_conn && c->tp.peer ? &c->peer : NULL;
  rt_emit(h, &ev);
}

/* The session failed: its counter, its record, and the connection ends
 * without an HTTP answer (there is no session to carry one). */
static void session_failed(revtun_t *h, struct rt_hs_conn *c, revtun_time_ms_t now) {
  char why[256] = "transport session failed";
  const revtun_transport_t *tp = &c->tp;
  int kind = tp->failure ? tp->failure(c->tp_conn, why, sizeof(why)) : REVTUN_TP_FAIL_CONNECTION;
  why[sizeof(why) - 1] = '\0';
  rt_count(h, kind == REVTUN_TP_FAIL_NO_PEER_CERT ? RT_C_TP_FAIL_NO_CERT
              : kind == REVTUN_TP_FAIL_VERIFY     ? RT_C_TP_FAIL_VERIFY
                                                  : RT_C_TP_CONNECTION_ERROR);
  rt_log(h, REVTUN_LOG_INFO, "reverse tunnel handshake on fd %d failed: %s", c->ent.fd, why);
  record_failure(h, c, why, now);
  drop_conn(h, c);
}

static void read_request(revtun_t *h, struct rt_hs_conn *c, revtun_time_ms_t now);

/* Advances the transport's handshake; on success the request is read. */
static void transport_handshake(revtun_t *h, struct rt_hs_conn *c, revtun_time_ms_t now) {
  switch (session_result(h, c, c->tp.handshake(c->tp_conn))) {
  case IO_DONE:
    rt_count(h, RT_C_TP_HANDSHAKE);
    c->phase = READ_REQUEST;
    if (!want(h, c, REVTUN_IO_READ)) {
      drop_conn(h, c);
      return;
    }
    read_request(h, c, now); /* the request may be in the session already */
    return;
  case IO_AGAIN: return;
  case IO_CLOSED: drop_conn(h, c); return; /* gone before the handshake ended */
  case IO_FAILED: session_failed(h, c, now); return;
  }
}

/* ------------------------------------------------------------ responding */

static void start_linger(revtun_t *h, struct rt_hs_conn *c, revtun_time_ms_t now) {
  if (c->tp_conn)
    c->tp.park(c->tp_conn); /* the answer is out; what follows is raw */
  shutdown(c->ent.fd, SHUT_WR);
  c->phase = LINGER;
  rt_schedule(h, &c->ent, now + LINGER_MS);
  if (!want(h, c, REVTUN_IO_READ))
    drop_conn(h, c);
}

static void commit(revtun_t *h, struct rt_hs_conn *c, revtun_time_ms_t now);

/* Writes what is left of the answer; false when the connection was dropped
 * or must wait for writability. */
static void write_response(revtun_t *h, struct rt_hs_conn *c, revtun_time_ms_t now) {
  while (c->resp_off < c->resp_len) {
    size_t n = 0;
    switch (conn_write(h, c, c->resp + c->resp_off, c->resp_len - c->resp_off, &n)) {
    case IO_DONE: c->resp_off += n; continue;
    case IO_AGAIN: return;
    case IO_CLOSED: drop_conn(h, c); return; /* the initiator went away */
    case IO_FAILED: session_failed(h, c, now); return;
    }
  }
  if (c->phase == WRITE_OK)
    commit(h, c, now);
  else
    start_linger(h, c, now);
}

/* Answers with status and body (Envoy's local reply) and closes after it. */
static void reject_as(revtun_t *h, struct rt_hs_conn *c, int status, const char *body,
                      enum rt_counter counter, unsigned flags, revtun_time_ms_t now) {
  if (counter != RT_C_COUNT)
    rt_count(h, counter);
  rt_log(h, REVTUN_LOG_INFO, "reverse tunnel handshake on fd %d rejected: %d %s", c->ent.fd, status,
         body);
  if (c->prepared) {
    rt_pool_abort(h, c->prepared);
    c->prepared = NULL;
  }
  c->resp_len = rt_hs_response_reject(c->resp, status, body, flags);
  c->resp_off = 0;
  c->phase = WRITE_REJECT;
  if (!c->resp_len) { /* cannot happen with the library's own bodies */
    drop_conn(h, c);
    return;
  }
  write_response(h, c, now);
}

static void reject(revtun_t *h, struct rt_hs_conn *c, int status, const char *body,
                   enum rt_counter counter, revtun_time_ms_t now) {
  reject_as(h, c, status, body, counter, status == 426 ? RT_HS_REPLY_UPGRADE_HEADER : 0, now);
}

/* What Envoy's HTTP/1 codec answers before the filter sees a request: the
 * reason phrase as the body, and no reverse_tunnel.handshake counter. */
static void reject_http(revtun_t *h, struct rt_hs_conn *c, int status, unsigned flags,
                        revtun_time_ms_t now) {
  reject_as(h, c, status, rt_hs_reason_phrase(status), RT_C_COUNT, flags, now);
}

/* ------------------------------------------------------------ the request */

static void process_request(revtun_t *h, struct rt_hs_conn *c, const struct rt_hs_request *req,
                            revtun_time_ms_t now) {
  struct rt_acc_verdict v;
  if (!rt_acc_validate(h, c, req, &v)) {
    reject(h, c, v.status, v.body, v.counter, now);
    return;
  }
  int rc = rt_pool_prepare(h, c->ent.fd, &c->args, &c->prepared);
  if (rc) {
    rt_log(h, REVTUN_LOG_WARN, "cannot prepare registration of fd %d: %s", c->ent.fd,
           revtun_strerror(rc));
    reject(h, c, 503, "Reverse tunnel registration unavailable", RT_C_HS_REGISTRATION_FAILED, now);
    return;
  }
  if (c->acc->cfg.emit_metadata)
    rt_acc_attach_metadata(h, c);
  c->consumed = req->consumed;
  c->resp_len = rt_hs_response_ok(c->resp, c->acc->cfg.use_upgrade);
  c->resp_off = 0;
  c->phase = WRITE_OK;
  write_response(h, c, now);
}

static void commit(revtun_t *h, struct rt_hs_conn *c, revtun_time_ms_t now) {
  revtun_acceptor_t *acc = c->acc;
  struct rt_sock *s = c->prepared;
  c->prepared = NULL;
  /* Bytes read past the request (an early echo, pipelined data) belong to
   * the tunnel: the keepalive reader sees them first. Inside a session they
   * are not tunnel bytes (echoes travel raw): they are dropped, as Envoy
   * stops reading the handshake connection once it answered. */
  c->args.early_bytes = c->buf + c->consumed;
  c->args.n_early = c->tp_conn ? 0 : c->len - c->consumed;
  if (c->tp_conn) {
    c->tp.park(c->tp_conn);
    c->args.peer = c->tp.peer ? &c->peer : NULL; /* valid until free_conn below */
  }
  rt_unschedule(h, &c->ent);
  rt_fd_clear(h, c->ent.fd);
  int rc = rt_pool_commit(h, s, &c->args, now);
  if (rc) {
    rt_count(h, RT_C_HS_REGISTRATION_FAILED);
    rt_io(h, &c->ent, REVTUN_IO_REMOVE);
    rt_close_fd(h, c->ent.fd, c->ent.sock_user);
  } else {
    rt_count(h, RT_C_HS_ACCEPTED);
  }
  unlink_conn(acc, c);
  free_conn(h, c);
}

/* Doubles the request buffer up to the header limit, within the budget all
 * pending handshakes share, so that many slow, large requests cannot hold
 * unbounded memory. */
static bool grow(revtun_t *h, struct rt_hs_conn *c) {
  revtun_acceptor_t *acc = c->acc;
  size_t limit = acc->max_header_bytes + TRAILER_SLACK;
  if (c->cap >= limit)
    return false;
  size_t cap = c->cap ? c->cap * 2 : INITIAL_BUF;
  if (cap > limit)
    cap = limit;
  size_t more = extra_bytes(cap) - extra_bytes(c->cap);
  if (more > acc->max_buffered - acc->buffered)
    return false;
  uint8_t *b = rt_realloc(&h->mem, c->buf, cap);
  if (!b)
    return false;
  acc->buffered += more;
  c->buf = b;
  c->cap = cap;
  return true;
}

static void read_request(revtun_t *h, struct rt_hs_conn *c, revtun_time_ms_t now) {
  for (bool more = true; more;) {
    if (c->len == c->cap && !grow(h, c))
      break; /* full: the parser decides below */
    size_t n = 0;
    switch (conn_read(h, c, c->buf + c->len, c->cap - c->len, &n)) {
    case IO_DONE: c->len += n; break;
    case IO_AGAIN: more = false; break;
    case IO_CLOSED:
      drop_conn(h, c); /* EOF or error before a complete request: nobody to answer */
      return;
    case IO_FAILED: session_failed(h, c, now); return;
    }
  }
  struct rt_hs_limits lim = {c->acc->max_header_bytes, c->acc->max_headers};
  struct rt_hs_request *req = rt_malloc(&h->mem, sizeof(*req));
  if (!req) {
    drop_conn(h, c);
    return;
  }
  enum rt_hs_result r = rt_hs_parse(c->buf, c->len, &lim, &c->scan, req);
  if (r == RT_HS_NEED_MORE && c->len == c->cap)
    r = RT_HS_TOO_LARGE;
  if ((r == RT_HS_DONE || r == RT_HS_BODY) && req->minor_version == 0) {
    /* The codec refuses HTTP/1.0 once its headers are in (426), and the
     * reply cannot be chunked for such a client. */
    reject_http(h, c, 426, RT_HS_REPLY_HTTP10, now);
  } else {
    switch (r) {
    case RT_HS_NEED_MORE: break;
    case RT_HS_DONE: process_request(h, c, req, now); break;
    case RT_HS_BODY:
      reject(h, c, 400, "Reverse tunnel handshake must not carry a body", RT_C_HS_BODY_REJECTED,
             now);
      break;
    case RT_HS_TOO_LARGE: reject_http(h, c, 431, 0, now); break;
    case RT_HS_MALFORMED: reject_http(h, c, 400, 0, now); break;
    }
  }
  rt_free(&h->mem, req);
}

static void linger_read(revtun_t *h, struct rt_hs_conn *c) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(c->ent.fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      c->drained += (size_t)n;
      if (c->drained > LINGER_DRAIN_MAX)
        break;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    break;
  }
  drop_conn(h, c);
}

/* ------------------------------------------------ called by the core loop */

void rt_acceptor_on_io(revtun_t *h, struct rt_fdent *ent, int events, revtun_time_ms_t now) {
  struct rt_hs_conn *c = (struct rt_hs_conn *)ent;
  /* A session may wait for the other direction than the phase suggests
   * (TLS reads while writing and the reverse): any readiness it asked for
   * retries the step. */
  bool go = (events & c->interest) != 0;
  switch (c->phase) {
  case TRANSPORT_HANDSHAKE:
    if (go)
      transport_handshake(h, c, now);
    break;
  case READ_REQUEST:
    if (go)
      read_request(h, c, now);
    break;
  case WRITE_OK:
  case WRITE_REJECT:
    if (go)
      write_response(h, c, now);
    break;
  case LINGER:
    if (events & REVTUN_IO_READ)
      linger_read(h, c);
    break;
  }
}

void rt_acceptor_on_deadline(revtun_t *h, struct rt_fdent *ent, revtun_time_ms_t now) {
  struct rt_hs_conn *c = (struct rt_hs_conn *)ent;
  if (c->phase != LINGER) {
    rt_count(h, RT_C_HS_TIMEOUT); /* closed silently, no reply */
    rt_log(h, REVTUN_LOG_INFO, "reverse tunnel handshake on fd %d timed out", c->ent.fd);
    record_failure(h, c,
                   c->phase == TRANSPORT_HANDSHAKE ? "timeout during the transport handshake"
                                                   : "timeout",
                   now);
  }
  drop_conn(h, c);
}

/* ------------------------------------------------------------ public API */

int revtun_acceptor_new(revtun_acceptor_t **out, revtun_t *h, const void *config, size_t len,
                        char *errbuf, size_t errbuf_len) {
  if (!out || !h)
    return rt_fail(REVTUN_E_INVAL, errbuf, errbuf_len, "out and h must not be NULL");
  *out = NULL;
  if (h->freeing || h->free_pending || h->failed)
    return rt_fail(REVTUN_E_STATE, errbuf, errbuf_len, "the handle is being freed or unusable");
  revtun_acceptor_t *acc = rt_calloc(&h->mem, 1, sizeof(*acc));
  if (!acc)
    return rt_fail(REVTUN_E_NOMEM, errbuf, errbuf_len, "out of memory");
  int rc = rt_acc_config_parse(&h->mem, config, len, h->opts.limits.config_bytes, &acc->cfg, errbuf,
                               errbuf_len);
  if (rc) {
    rt_free(&h->mem, acc);
    return rc;
  }
  acc->h = h;
  acc->timeout_ms = 10000;
  acc->max_header_bytes = RT_ACC_DEFAULT_HEADER_BYTES;
  acc->max_headers = 100;
  acc->max_pending = 65536;
  acc->max_buffered = RT_ACC_DEFAULT_BUFFERED;
  strcpy(acc->prefix, "x-envoy");
  acc->next = h->acceptors;
  h->acceptors = acc;
  h->stats.handshake_seen = true;
  if (errbuf && errbuf_len)
    errbuf[0] = '\0';
  *out = acc;
  return REVTUN_OK;
}

static void free_acceptor(revtun_t *h, revtun_acceptor_t *acc) {
  while (acc->conns)
    drop_conn(h, acc->conns);
  rt_acc_config_clear(&h->mem, &acc->cfg);
  rt_free(&h->mem, acc);
}

void revtun_acceptor_free(revtun_acceptor_t *acc) {
  if (!acc)
    return;
  revtun_t *h = acc->h;
  if (h->depth || h->cb_depth) {
    /* A callback frame may be processing one of its connections. */
    acc->free_pending = true;
    h->acceptor_free_pending = true;
    return;
  }
  revtun_acceptor_t **pp = &h->acceptors;
  while (*pp && *pp != acc)
    pp = &(*pp)->next;
  if (*pp)
    *pp = acc->next;
  free_acceptor(h, acc);
}

void rt_acceptors_free_pending(revtun_t *h) {
  h->acceptor_free_pending = false;
  revtun_acceptor_t **pp = &h->acceptors;
  while (*pp) {
    revtun_acceptor_t *acc = *pp;
    if (acc->free_pending) {
      *pp = acc->next;
      free_acceptor(h, acc);
    } else {
      pp = &acc->next;
    }
  }
}

void rt_acceptors_free_all(revtun_t *h) {
  while (h->acceptors) {
    revtun_acceptor_t *acc = h->acceptors;
    h->acceptors = acc->next;
    free_acceptor(h, acc);
  }
}

int revtun_acceptor_set_limit(revtun_acceptor_t *acc, int limit, uint64_t value) {
  if (!acc || value == 0)
    return REVTUN_E_INVAL;
  switch (limit) {
  case REVTUN_ACCEPTOR_HANDSHAKE_TIMEOUT_MS:
    if (value > RT_ACC_MAX_TIMEOUT_MS)
      return REVTUN_E_INVAL;
    acc->timeout_ms = value;
    return REVTUN_OK;
  case REVTUN_ACCEPTOR_MAX_HEADER_BYTES:
    if (value < 64 || value > (1u << 20))
      return REVTUN_E_INVAL;
    acc->max_header_bytes = value;
    return REVTUN_OK;
  case REVTUN_ACCEPTOR_MAX_HEADERS:
    if (value > RT_HS_MAX_HEADERS_CAP)
      return REVTUN_E_INVAL;
    acc->max_headers = value;
    return REVTUN_OK;
  case REVTUN_ACCEPTOR_MAX_PENDING:
    if (value > RT_ACC_MAX_PENDING_CAP)
      return REVTUN_E_INVAL;
    acc->max_pending = value;
    return REVTUN_OK;
  case REVTUN_ACCEPTOR_MAX_BUFFERED_BYTES:
    if (value > RT_ACC_MAX_BUFFERED_CAP || value < acc->buffered)
      return REVTUN_E_INVAL;
    acc->max_buffered = value;
    return REVTUN_OK;
  default: return REVTUN_E_INVAL;
  }
}

int revtun_acceptor_set_header_prefix(revtun_acceptor_t *acc, const char *prefix) {
  if (!acc || !prefix || !*prefix || strlen(prefix) >= sizeof(acc->prefix))
    return REVTUN_E_INVAL;
  for (const char *p = prefix; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
          (*p >= 'A' && *p <= 'Z')))
      return REVTUN_E_INVAL;
  strcpy(acc->prefix, prefix);
  return REVTUN_OK;
}

size_t revtun_acceptor_pending(const revtun_acceptor_t *acc) { return acc ? acc->n_pending : 0; }

uint32_t revtun_acceptor_ping_interval_ms(const revtun_acceptor_t *acc) {
  return acc ? acc->cfg.ping_interval_ms : 0;
}

/* Keeps a copy of the host's metadata when a validation format reads it;
 * the copy counts against the bytes all pending handshakes may hold. */
static int copy_conn_meta(revtun_t *h, revtun_acceptor_t *acc, struct rt_hs_conn *c,
                          const revtun_conn_meta_t *meta) {
  if (!meta || !acc->cfg.reads_conn_meta)
    return REVTUN_OK;
  size_t size = 0;
  c->conn_meta = rt_conn_meta_copy(&h->mem, meta, &size);
  if (!c->conn_meta)
    return REVTUN_E_NOMEM;
  if (size > acc->max_buffered - acc->buffered) {
    rt_conn_meta_free_copy(&h->mem, c->conn_meta);
    c->conn_meta = NULL;
    return REVTUN_E_LIMIT;
  }
  acc->buffered += size;
  c->conn_meta_bytes = size;
  return REVTUN_OK;
}

int revtun_acceptor_accept(revtun_acceptor_t *acc, int fd, void *sock_user, revtun_time_ms_t now) {
  return revtun_acceptor_accept_with_meta(acc, fd, sock_user, NULL, now);
}

int revtun_acceptor_accept_with_meta(revtun_acceptor_t *acc, int fd, void *sock_user,
                                     const revtun_conn_meta_t *meta, revtun_time_ms_t now) {
  if (!acc || fd < 0)
    return REVTUN_E_INVAL;
  if (acc->free_pending)
    return REVTUN_E_STATE;
  revtun_t *h = acc->h;
  int rc = rt_enter(h, now);
  if (rc)
    return rc;
  struct rt_hs_conn *c = NULL;
  int fl = -1;
  if (rt_fd_get(h, fd))
    rc = REVTUN_E_EXISTS;
  else if (acc->n_pending >= acc->max_pending)
    rc = REVTUN_E_LIMIT;
  else if ((fl = fcntl(fd, F_GETFL)) < 0)
    rc = REVTUN_E_IO;
  else if (!(c = rt_calloc(&h->mem, 1, sizeof(*c))) || rt_pool_reserve_deadline(h) != REVTUN_OK ||
           rt_fd_set(h, fd, NULL))
    rc = REVTUN_E_NOMEM;
  else if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    rc = REVTUN_E_IO;
  if (!rc)
    rc = copy_conn_meta(h, acc, c, meta);
  if (!rc) {
    c->ent.fd = fd;
    c->ent.kind = RT_FD_HANDSHAKE;
    c->ent.sock_user = sock_user;
    c->ent.tm.idx = RT_TIMER_IDLE;
    c->acc = acc;
    c->phase = acc->has_tp ? TRANSPORT_HANDSHAKE : READ_REQUEST;
    if (acc->has_tp) {
      c->tp = acc->tp;
      if (c->tp.open(c->tp.user, fd, &c->tp_conn) != REVTUN_OK || !c->tp_conn) {
        c->tp_conn = NULL; /* nothing to close */
        rc = REVTUN_E_NOMEM;
      }
    }
    c->peer = (struct rt_peer){c->tp.peer, c->tp_conn};
  }
  if (!rc) {
    c->interest = REVTUN_IO_READ;
    rc = rt_io(h, &c->ent, REVTUN_IO_READ);
  }
  if (rc) {
    if (c && fl >= 0 && !(fl & O_NONBLOCK))
      fcntl(fd, F_SETFL, fl); /* refused: the caller gets the fd back as it was */
    if (c && c->tp_conn)
      c->tp.close(c->tp_conn);
    if (c) {
      acc->buffered -= c->conn_meta_bytes;
      rt_conn_meta_free_copy(&h->mem, c->conn_meta);
    }
    rt_free(&h->mem, c);
    rt_leave(h);
    return rc;
  }
  rt_fd_set(h, fd, &c->ent);
  c->next = acc->conns;
  if (acc->conns)
    acc->conns->prev = c;
  acc->conns = c;
  acc->n_pending++;
  rt_schedule(h, &c->ent, now + acc->timeout_ms);
  if (c->tp_conn)
    transport_handshake(h, c, now); /* the ClientHello is often already there */
  else
    read_request(h, c, now); /* as is the request */
  rt_leave(h);
  return REVTUN_OK;
}

int revtun_acceptor_set_transport(revtun_acceptor_t *acc, const revtun_transport_t *t) {
  if (!acc || (t && !rt_transport_complete(t)))
    return REVTUN_E_INVAL;
  if (acc->free_pending)
    return REVTUN_E_STATE;
  acc->has_tp = t != NULL;
  if (t) {
    acc->tp = *t;
    acc->h->stats.transport_seen = true;
  }
  return REVTUN_OK;
}
