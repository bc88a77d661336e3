/*
 * revtun-upstream-proxy: client connections. The first bytes decide the
 * protocol: the 24-byte HTTP/2 preface means h2c with prior knowledge
 * (client_h2.c), anything else is HTTP/1.1, handled here one request at a
 * time (pipelined requests wait in the input buffer).
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy.h"

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN 24

enum h1_state { H1_HEAD, H1_BODY, H1_CHUNKED, H1_DONE };

static void h1_process(struct conn *c);
static void h1_pump(struct conn *c);

/* ------------------------------------------------------- the connection */

static void work_cb(evutil_socket_t fd, short what, void *arg) {
  struct conn *c = arg;

  (void)fd, (void)what;
  c->work_pending = 0;
  if (c->dying)
    return;
  if (c->mode == C_H2) {
    h2c_work(c);
  } else {
    if (c->mode == C_H1)
      h1_process(c);
    conn_write(c);
    /* the socket took it all: more of the response may go now */
    if (c->mode == C_H1 && !c->dying && !c->s.writing)
      h1_pump(c);
  }
}

/* Deferred to the end of this loop iteration: one write(2) for many changes. */
void conn_want_work(struct conn *c) {
  if (c->dying || c->work_pending)
    return;
  c->work_pending = 1;
  event_active(c->work_ev, 0, 0);
}

/* Closes now: the exchanges still open are cancelled upstream. */
void conn_kill(struct conn *c, const char *why) {
  struct proxy *p = c->p;

  if (c->dying)
    return;
  c->dying = 1;
  VLOG("client connection closed: %s", why);
  event_del(c->s.rev);
  event_del(c->s.wev);
  evtimer_del(c->linger_ev);
  while (c->xs) {
    struct xchg *x = c->xs;
    if (c->h2)
      nghttp2_session_set_stream_user_data(c->h2, x->cid, NULL);
    xchg_client_done(x);
  }
  c->cur = NULL;
  if (c->prev)
    c->prev->next = c->next;
  else
    p->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  p->n_conns--;
  listeners_client_count_changed(p);
  c->next = p->dead_conns;
  p->dead_conns = c;
  proxy_schedule_reap(p);
  proxy_check_done(p);
}

void conn_free(struct conn *c) {
  if (c->h2)
    nghttp2_session_del(c->h2);
  sock_close(&c->s);
  close(c->s.fd);
  evbuffer_free(c->in);
  event_free(c->work_ev);
  event_free(c->linger_ev);
  recycle_free(c);
}

void conn_reap(struct proxy *p) {
  while (p->dead_conns) {
    struct conn *c = p->dead_conns;
    p->dead_conns = c->next;
    conn_free(c);
  }
}

static void linger_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  conn_kill(arg, "done");
}

/* Writes what is queued. A closing connection, once its last byte is out,
 * half-closes and reads until the client's FIN (or LINGER_MS): closing with
 * unread bytes would send a RST that can destroy the response in flight. */
void conn_write(struct conn *c) {
  int rc;

  if (c->dying)
    return;
  if ((rc = sock_write(&c->s)) < 0) {
    conn_kill(c, "write error");
    return;
  }
  if (rc == 0 && c->close_when_flushed && !c->lingering) {
    struct timeval tv = {LINGER_MS / 1000, (LINGER_MS % 1000) * 1000};
    c->lingering = 1;
    shutdown(c->s.fd, SHUT_WR);
    sock_pause_read(&c->s, 0);
    evtimer_add(c->linger_ev, &tv);
  }
}

void conn_close_when_flushed(struct conn *c) {
  c->close_when_flushed = 1;
  conn_want_work(c);
}

static void detect(struct conn *c) {
  size_t n = evbuffer_get_length(c->in);
  const unsigned char *data;

  if (n > PREFACE_LEN)
    n = PREFACE_LEN;
  data = evbuffer_pullup(c->in, (ev_ssize_t)n);
  if (memcmp(data, PREFACE, n) != 0) {
    c->mode = C_H1;
    c->keepalive = 1;
    h1_process(c);
  } else if (n == PREFACE_LEN) {
    c->mode = C_H2;
    if (h2c_start(c) < 0)
      conn_kill(c, "cannot start an HTTP/2 session");
  }
}

static void read_cb(evutil_socket_t fd, short what, void *arg) {
  struct conn *c = arg;
  ssize_t n;

  (void)fd, (void)what;
  if (c->dying)
    return;
  if (c->mode == C_H2 && !c->close_when_flushed) {
    h2c_read(c);
    return;
  }
  n = sock_read_evbuffer(&c->s, c->in, READ_CHUNK, READ_BUDGET);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
    conn_kill(c, n == 0 ? "closed by the client" : strerror(errno));
    return;
  }
  if (c->close_when_flushed) { /* nothing more is read: drop it */
    evbuffer_drain(c->in, evbuffer_get_length(c->in));
    return;
  }
  if (c->mode == C_DETECT)
    detect(c);
  else
    h1_process(c);
  /* pipelined requests and big bodies wait in the kernel, not here */
  if (!c->dying && evbuffer_get_length(c->in) >= BODY_HIGH)
    sock_pause_read(&c->s, 1);
}

static void write_cb(evutil_socket_t fd, short what, void *arg) {
  struct conn *c = arg;

  (void)fd, (void)what;
  conn_write(c);
  if (c->dying || c->close_when_flushed || evbuffer_get_length(c->s.out) > OUT_LOW)
    return;
  if (c->mode == C_H2)
    h2c_work(c);
  else if (c->mode == C_H1)
    h1_pump(c);
}

void client_accept(struct proxy *p, int fd) {
  struct conn *c = recycle_calloc(1, sizeof(*c));
  int one = 1;

  if (!c || !(c->in = evbuffer_new()) || !(c->work_ev = event_new(p->base, -1, 0, work_cb, c)) ||
      !(c->linger_ev = evtimer_new(p->base, linger_cb, c)) ||
      sock_init(&c->s, p->base, fd, read_cb, write_cb, c) < 0) {
    if (c) {
      if (c->in)
        evbuffer_free(c->in);
      if (c->work_ev)
        event_free(c->work_ev);
      if (c->linger_ev)
        event_free(c->linger_ev);
      recycle_free(c);
    }
    evutil_closesocket(fd);
    return;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  c->p = p;
  c->hb.limit = (size_t)p->cfg.max_header_list * HEADER_CONN_BUDGET_FACTOR;
  c->next = p->conns;
  if (p->conns)
    p->conns->prev = c;
  p->conns = c;
  p->n_conns++;
  listeners_client_count_changed(p);
}

/* Shutdown: idle HTTP/1.1 connections close now, busy ones after their
 * response; h2c connections get GOAWAY and finish their streams. After a
 * handover (handover.c) no connection is cut: a client may be sending its
 * next request on an idle one right now, and a close without
 * "connection: close" fails that request; each HTTP/1.1 connection closes
 * after its next response instead (h1_response_head: p->stopping), and
 * h2c ones get their GOAWAY from handover.c. */
void proxy_drain_clients(struct proxy *p) {
  struct conn *c, *next;

  for (c = p->conns; c; c = next) {
    next = c->next;
    if (c->mode == C_H2) {
      if (!p->handing_over)
        h2c_drain(c);
    } else if (!p->handing_over && (c->mode == C_DETECT || !c->cur))
      conn_kill(c, "proxy shutting down");
    else
      c->keepalive = 0;
  }
}

/* Halfway through a handover's grace period: h2c clients get GOAWAY. */
void proxy_goaway(struct proxy *p) {
  for (struct conn *c = p->conns; c; c = c->next)
    if (c->mode == C_H2)
      h2c_drain(c);
}

/* ----------------------------------------------- dispatch by protocol */

void conn_response_head(struct xchg *x);
static void h1_response_head(struct xchg *x);

void conn_response_head(struct xchg *x) {
  if (!x->c || x->c->dying)
    return;
  if (x->c->mode == C_H2)
    h2c_response_head(x);
  else
    h1_response_head(x);
}

void conn_response_data(struct xchg *x) {
  if (!x->c || x->c->dying || !x->resp_started)
    return;
  if (x->c->mode == C_H2)
    h2c_response_data(x);
  else if (x->c->cur == x)
    h1_pump(x->c);
}

void conn_response_abort(struct xchg *x) {
  if (!x->c || x->c->dying)
    return;
  if (x->c->mode == C_H2)
    h2c_response_abort(x);
  else
    conn_kill(x->c, "the upstream stream failed mid-response");
}

void conn_request_drained(struct xchg *x, size_t n) {
  if (!x->c || x->c->dying)
    return;
  if (x->c->mode == C_H2)
    h2c_request_drained(x, n);
  else if (evbuffer_get_length(x->req_body) < BODY_LOW)
    conn_want_work(x->c);
}

/* ------------------------------------------------------- HTTP/1.1 in */

/* Adds the four pseudo-headers, last, then moves them in front. */
static int add_pseudo(struct hdrs *h, struct h1_str method, const char *authority, size_t alen,
                      struct h1_str path) {
  nghttp2_nv tmp[4];

  if (hdrs_add(h, ":method", 7, method.p, method.n) < 0 ||
      hdrs_add(h, ":scheme", 7, "http", 4) < 0 ||
      hdrs_add(h, ":authority", 10, authority, alen) < 0 ||
      hdrs_add(h, ":path", 5, path.p, path.n) < 0)
    return -1;
  memcpy(tmp, h->v + h->n - 4, sizeof(tmp));
  memmove(h->v + 4, h->v, (h->n - 4) * sizeof(*h->v));
  memcpy(h->v, tmp, sizeof(tmp));
  return 0;
}

/* Turns a parsed request head into x->req (names lowercased, hop-by-hop
 * fields dropped, pseudo-headers first) and sets up the body. Returns 0,
 * or the HTTP status to answer with. */
static int h1_build_request(struct conn *c, struct xchg *x, const struct h1_head *h) {
  struct proxy *p = c->p;
  struct h1_str host = {NULL, 0}, path = h->target;

  c->http10 = h->minor == 0;
  c->keepalive = c->http10 ? h->conn_keepalive && !h->conn_close : !h->conn_close;
  x->is_head = h->method.n == 4 && !memcmp(h->method.p, "HEAD", 4);
  if (h->expect_other)
    return 417;
  x->expect_continue = h->expect_continue && !c->http10;
  if (h->te_present && c->http10)
    return 501;
  for (size_t i = 0; i < h->nfields; i++) {
    const struct h1_field *f = &h->fields[i];
    size_t cost = f->name.n + f->value.n + HEADER_FIELD_OVERHEAD;
    x->req_cost += cost;
    if (x->req_cost > p->cfg.max_header_list)
      return 431;
    if (h1_str_ieq(f->name, "host")) {
      host = f->value;
      continue; /* becomes :authority */
    }
    if (p->auth && h1_str_ieq(f->name, "authorization")) {
      if (xchg_take_auth(x, f->value.p, f->value.n) < 0)
        return 400;
      continue; /* checked here, never forwarded */
    }
    if (is_hop_by_hop(f->name.p, f->name.n))
      continue;
    if (hdrs_add(&x->req, f->name.p, f->name.n, f->value.p, f->value.n) < 0)
      return 500;
    for (size_t k = 0; k < f->name.n; k++) { /* HTTP/2 names are lowercase */
      uint8_t *ch = &x->req.v[x->req.n - 1].name[k];
      if (*ch >= 'A' && *ch <= 'Z')
        *ch = (uint8_t)(*ch + 32);
    }
  }
  if (hbudget_charge(x, x->req_cost, 0) < 0)
    return 431;
  if (path.n >= 7 && h1_str_ieq((struct h1_str){path.p, 7}, "http://")) { /* absolute form */
    const char *a = path.p + 7, *slash = memchr(a, '/', path.n - 7);
    size_t al = slash ? (size_t)(slash - a) : path.n - 7;
    if (al == 0)
      return 400;
    host = (struct h1_str){a, al};
    path = slash ? (struct h1_str){slash, path.n - 7 - al} : (struct h1_str){"/", 1};
  }
  if (!host.p) {
    if (!c->http10)
      return 400;
    host = (struct h1_str){"localhost", 9};
  }
  if (path.p[0] != '/' && !(path.n == 1 && path.p[0] == '*'))
    return 400;
  if (add_pseudo(&x->req, h->method, host.p, host.n, path) < 0)
    return 500;
  if (h->chunked) {
    x->req_has_body = 1;
    memset(&c->chunk, 0, sizeof(c->chunk));
    c->h1_state = H1_CHUNKED;
  } else if (h->content_length > 0) {
    x->req_has_body = 1;
    c->remaining = (uint64_t)h->content_length;
    c->h1_state = H1_BODY;
  } else {
    x->req_done = 1;
    c->h1_state = H1_DONE;
  }
  return 0;
}

static void h1_reject(struct conn *c, struct xchg *x, int status) {
  const char *text = status == 431   ? "request header section too large"
                     : status == 501 ? "transfer coding not supported"
                     : status == 505 ? "HTTP version not supported"
                     : status == 417 ? "unsupported expectation"
                     : status == 500 ? "out of memory"
                                     : "malformed HTTP/1.1 request";
  c->keepalive = 0;
  c->h1_state = H1_DONE;
  x->req_done = 1; /* nothing more will be read */
  xchg_local_reply(x, status, text);
}

/* Reads a new request head: 0 to go on, -1 to wait for bytes. At most
 * max_header_list bytes are looked at (and copied into one piece). */
static int h1_read_head(struct conn *c) {
  struct proxy *p = c->p;
  struct evbuffer *in = c->in;
  size_t avail = evbuffer_get_length(in), max = p->cfg.max_header_list;
  size_t look = avail < max ? avail : max;
  const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
  struct h1_head h;
  struct xchg *x;
  int rc, status;

  if (!data) {
    conn_kill(c, "out of memory");
    return -1;
  }
  rc = h1_parse_request(data, look, max, p->h1_fields, p->cfg.max_headers, &h);
  if (rc == H1_INCOMPLETE)
    return -1;
  if (!(x = xchg_new(c, 0))) {
    conn_kill(c, "out of memory");
    return -1;
  }
  c->cur = x;
  status = rc == H1_OK                               ? h1_build_request(c, x, &h)
           : rc == H1_TOO_LARGE || rc == H1_TOO_MANY ? 431
           : rc == H1_BAD_VERSION                    ? 505
                                                     : 400;
  if (rc == H1_OK)
    evbuffer_drain(in, h.head_len);
  if (status) {
    h1_reject(c, x, status);
    return -1;
  }
  xchg_dispatch(x); /* may answer (and finish x) at once */
  if (c->cur == x && x->u && x->expect_continue) {
    evbuffer_add(c->s.out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    conn_want_work(c);
  }
  return 0;
}

/* Chunked request body bytes from the socket to the exchange. */
static int h1_chunked_bytes(struct conn *c, struct xchg *x) {
  struct evbuffer *in = c->in;
  size_t n = evbuffer_get_contiguous_space(in), off, len;
  const char *d;
  ssize_t used;

  if (n == 0 || evbuffer_get_length(x->req_body) >= BODY_HIGH)
    return -1;
  d = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
  used = h1_chunked_decode(&c->chunk, d, n, BODY_HIGH, &off, &len);
  if (used < 0) {
    conn_kill(c, "malformed chunked request body");
    return -1;
  }
  if (len) {
    evbuffer_drain(in, off);
    evbuffer_remove_buffer(in, x->req_body, len);
    evbuffer_drain(in, (size_t)used - off - len);
  } else {
    evbuffer_drain(in, (size_t)used);
  }
  if (h1_chunked_done(&c->chunk)) {
    x->req_done = 1;
    c->h1_state = H1_DONE;
  }
  if (len || x->req_done)
    xchg_request_data(x);
  return used > 0 ? 0 : -1;
}

/* Moves up to c->remaining body bytes from the socket to the exchange. */
static int h1_body_bytes(struct conn *c, struct xchg *x) {
  struct evbuffer *in = c->in;
  size_t n = evbuffer_get_length(in);

  if (n == 0 || evbuffer_get_length(x->req_body) >= BODY_HIGH)
    return -1;
  if (n > c->remaining)
    n = (size_t)c->remaining;
  evbuffer_remove_buffer(in, x->req_body, n);
  c->remaining -= n;
  return 0;
}

static void h1_process(struct conn *c) {
  struct evbuffer *in = c->in;

  if (c->s.read_paused && evbuffer_get_length(in) < BODY_HIGH)
    sock_pause_read(&c->s, 0);
  while (!c->dying && !c->close_when_flushed) {
    struct xchg *x = c->cur;

    if (c->h1_state != H1_HEAD && !x) {
      conn_kill(c, "request state lost");
      return;
    }
    switch (c->h1_state) {
    case H1_HEAD:
      if (c->cur || evbuffer_get_length(in) == 0 || h1_read_head(c) < 0)
        return;
      break;
    case H1_BODY:
      if (h1_body_bytes(c, x) < 0)
        return;
      if (c->remaining == 0) {
        x->req_done = 1;
        c->h1_state = H1_DONE;
      }
      xchg_request_data(x);
      break;
    case H1_CHUNKED:
      if (h1_chunked_bytes(c, x) < 0)
        return;
      break;
    case H1_DONE: return; /* the response is on its way; later requests wait */
    }
  }
}

/* ------------------------------------------------------ HTTP/1.1 out */

static void h1_response_head(struct xchg *x) {
  struct conn *c = x->c;
  struct evbuffer *out = c->s.out;
  int status = x->resp_status;
  const char *cl = hdrs_get(&x->resp, "content-length");

  x->resp_started = 1;
  c->no_body = x->is_head || status == 204 || status == 304;
  c->chunked_out = 0;
  c->close_delimited = 0;
  if (c->p->stopping)
    c->keepalive = 0;
  if (!c->no_body && !cl) {
    if (c->http10)
      c->close_delimited = 1, c->keepalive = 0;
    else
      c->chunked_out = 1;
  }
  evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
  for (size_t i = 0; i < x->resp.n; i++) {
    const nghttp2_nv *nv = &x->resp.v[i];
    if (nv->name[0] == ':' || is_hop_by_hop((const char *)nv->name, nv->namelen))
      continue;
    evbuffer_add(out, nv->name, nv->namelen);
    evbuffer_add(out, ": ", 2);
    evbuffer_add(out, nv->value, nv->valuelen);
    evbuffer_add(out, "\r\n", 2);
  }
  if (c->chunked_out)
    evbuffer_add(out, "transfer-encoding: chunked\r\n", 28);
  if (!c->keepalive)
    evbuffer_add(out, "connection: close\r\n", 19);
  else if (c->http10)
    evbuffer_add(out, "connection: keep-alive\r\n", 24);
  evbuffer_add(out, "\r\n", 2);
  conn_want_work(c);
}

/* The response is out: next request, or close. */
static void h1_finish(struct conn *c) {
  struct xchg *x = c->cur;
  int close =
      !c->keepalive || c->close_delimited || !x->req_done || x->resp_failed || c->p->stopping;

  if (c->chunked_out)
    evbuffer_add(c->s.out, "0\r\n\r\n", 5);
  c->cur = NULL;
  c->h1_state = H1_HEAD;
  xchg_client_done(x);
  if (close)
    conn_close_when_flushed(c);
  else
    conn_want_work(c); /* writes, and parses a pipelined request */
}

/* Response body bytes to the socket, while its buffer has room. */
static void h1_pump(struct conn *c) {
  struct xchg *x = c->cur;
  struct evbuffer *out = c->s.out;
  size_t n;

  if (!x || !x->resp_started || c->dying)
    return;
  n = evbuffer_get_length(x->resp_body);
  if (n > 0 && evbuffer_get_length(out) < OUT_HIGH) {
    if (c->no_body) {
      evbuffer_drain(x->resp_body, n);
    } else if (c->chunked_out) {
      evbuffer_add_printf(out, "%zx\r\n", n);
      evbuffer_remove_buffer(x->resp_body, out, n);
      evbuffer_add(out, "\r\n", 2);
    } else {
      evbuffer_remove_buffer(x->resp_body, out, n);
    }
    xchg_sent_to_client(x, n);
    conn_want_work(c);
  }
  if (c->cur == x && x->resp_done && evbuffer_get_length(x->resp_body) == 0)
    h1_finish(c);
}
