/*
 * revtun-upstream-proxy: client connections. The first bytes decide the
 * protocol: the 24-byte HTTP/2 preface means h2c with prior knowledge
 * (client_h2.c), anything else is HTTP/1.1, handled here one request at a
 * time (pipelined requests wait in the input buffer).
 */
#include <ctype.h>
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

enum h1_state {
  H1_HEAD,
  H1_BODY,
  H1_CHUNK_SIZE,
  H1_CHUNK_DATA,
  H1_CHUNK_END,
  H1_TRAILERS,
  H1_DONE
};

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
  free(c);
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
  n = sock_read_evbuffer(&c->s, c->in, READ_BUDGET);
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
  struct conn *c = calloc(1, sizeof(*c));
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
      free(c);
    }
    evutil_closesocket(fd);
    return;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  c->p = p;
  c->next = p->conns;
  if (p->conns)
    p->conns->prev = c;
  p->conns = c;
  p->n_conns++;
}

/* Shutdown: idle HTTP/1.1 connections close now, busy ones after their
 * response; h2c connections get GOAWAY and finish their streams. */
void proxy_drain_clients(struct proxy *p) {
  struct conn *c, *next;

  for (c = p->conns; c; c = next) {
    next = c->next;
    if (c->mode == C_H2)
      h2c_drain(c);
    else if (c->mode == C_DETECT || !c->cur)
      conn_kill(c, "proxy shutting down");
    else
      c->keepalive = 0;
  }
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

static int is_tchar(int ch) { return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch)); }

static int has_token(const char *list, const char *token) {
  size_t tl = strlen(token);

  while (*list) {
    while (*list == ' ' || *list == '\t' || *list == ',')
      list++;
    const char *end = list;
    while (*end && *end != ',')
      end++;
    const char *e = end;
    while (e > list && (e[-1] == ' ' || e[-1] == '\t'))
      e--;
    if ((size_t)(e - list) == tl && !strncasecmp(list, token, tl))
      return 1;
    list = end;
  }
  return 0;
}

/* Puts the four pseudo-headers, added last, in front. */
static int add_pseudo(struct hdrs *h, const char *method, const char *authority, const char *path) {
  nghttp2_nv tmp[4];

  if (hdrs_add(h, ":method", 7, method, strlen(method)) < 0 ||
      hdrs_add(h, ":scheme", 7, "http", 4) < 0 ||
      hdrs_add(h, ":authority", 10, authority, strlen(authority)) < 0 ||
      hdrs_add(h, ":path", 5, path, strlen(path)) < 0)
    return -1;
  memcpy(tmp, h->v + h->n - 4, sizeof(tmp));
  memmove(h->v + 4, h->v, (h->n - 4) * sizeof(*h->v));
  memcpy(h->v, tmp, sizeof(tmp));
  return 0;
}

/* Parses a request head (NUL-terminated, ends with CRLFCRLF) into x->req.
 * Returns 0, or the HTTP status to answer with. */
static int h1_parse_head(struct conn *c, struct xchg *x, char *head) {
  char *line = head, *eol, *sp1, *sp2, *te = NULL;
  const char *path, *host = NULL;
  char authority[256];
  int64_t clen = -1;
  int chunked = 0;

  eol = strstr(line, "\r\n");
  *eol = '\0';
  sp1 = strchr(line, ' ');
  sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (!sp1 || !sp2 || sp1 == line || sp2 == sp1 + 1 || strchr(sp2 + 1, ' '))
    return 400;
  *sp1 = *sp2 = '\0';
  for (char *m = line; *m; m++)
    if (!is_tchar((unsigned char)*m))
      return 400;
  if (!strcmp(sp2 + 1, "HTTP/1.0"))
    c->http10 = 1, c->keepalive = 0;
  else if (!strcmp(sp2 + 1, "HTTP/1.1"))
    c->http10 = 0, c->keepalive = 1;
  else
    return strncmp(sp2 + 1, "HTTP/", 5) ? 400 : 505;
  path = sp1 + 1;
  x->is_head = !strcmp(line, "HEAD");

  for (char *h = eol + 2; *h && !(h[0] == '\r' && h[1] == '\n'); h = eol + 2) {
    char *colon, *v, *ve;
    eol = strstr(h, "\r\n");
    *eol = '\0';
    colon = strchr(h, ':');
    if (!colon || colon == h)
      return 400;
    for (char *q = h; q < colon; q++) {
      if (!is_tchar((unsigned char)*q))
        return 400; /* also refuses obs-fold and space before the colon */
      *q = (char)tolower((unsigned char)*q);
    }
    for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
      ;
    for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
      ;
    *ve = '\0';
    size_t nlen = (size_t)(colon - h);
    if (nlen == 4 && !memcmp(h, "host", 4)) {
      if (host && strcmp(host, v))
        return 400;
      host = v;
    } else if (nlen == 14 && !memcmp(h, "content-length", 14)) {
      char *end;
      if (!*v || !isdigit((unsigned char)*v))
        return 400;
      long long n = strtoll(v, &end, 10);
      if (*end || n < 0 || (clen >= 0 && clen != n))
        return 400;
      clen = n;
    } else if (nlen == 17 && !memcmp(h, "transfer-encoding", 17)) {
      te = v;
    } else if (nlen == 10 && !memcmp(h, "connection", 10)) {
      if (has_token(v, "close"))
        c->keepalive = 0;
      else if (has_token(v, "keep-alive"))
        c->keepalive = 1;
    } else if (nlen == 6 && !memcmp(h, "expect", 6)) {
      if (strcasecmp(v, "100-continue"))
        return 417;
      x->expect_continue = !c->http10;
    }
    if (is_hop_by_hop(h, nlen))
      continue;
    if (hdrs_add(&x->req, h, nlen, v, strlen(v)) < 0)
      return 500;
  }
  if (te) {
    if (strcasecmp(te, "chunked") || c->http10)
      return 501;
    if (clen >= 0)
      return 400;
    chunked = 1;
  }
  if (!strncasecmp(path, "http://", 7)) { /* absolute form */
    const char *a = path + 7, *slash = strchr(a, '/');
    size_t al = slash ? (size_t)(slash - a) : strlen(a);
    if (al == 0 || al >= sizeof(authority))
      return 400;
    memcpy(authority, a, al);
    authority[al] = '\0';
    host = authority;
    path = slash ? slash : "/";
  }
  if (!host) {
    if (!c->http10)
      return 400;
    host = "localhost";
  }
  if (*path != '/' && strcmp(path, "*"))
    return 400;
  if (add_pseudo(&x->req, line, host, path) < 0)
    return 500;
  if (chunked) {
    x->req_has_body = 1;
    c->h1_state = H1_CHUNK_SIZE;
  } else if (clen > 0) {
    x->req_has_body = 1;
    c->remaining = (uint64_t)clen;
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

/* Reads a new request head: 0 to go on, -1 to wait for bytes. */
static int h1_read_head(struct conn *c) {
  struct evbuffer *in = c->in;
  struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
  size_t len;
  char *head;
  struct xchg *x;
  int status;

  if (end.pos < 0) {
    if (evbuffer_get_length(in) <= MAX_HEAD)
      return -1;
    len = 0;
  } else {
    len = (size_t)end.pos + 4;
  }
  if (!(x = xchg_new(c, 0))) {
    conn_kill(c, "out of memory");
    return -1;
  }
  c->cur = x;
  if (len == 0 || len > MAX_HEAD) {
    h1_reject(c, x, 431);
    return -1;
  }
  if (!(head = malloc(len + 1))) {
    h1_reject(c, x, 500);
    return -1;
  }
  evbuffer_remove(in, head, len);
  head[len] = '\0';
  status = h1_parse_head(c, x, head);
  free(head);
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
    char *line;
    size_t len;

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
    case H1_CHUNK_SIZE:
      if (!(line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF_STRICT))) {
        if (evbuffer_get_length(in) > 1024)
          conn_kill(c, "chunk size line too long");
        return;
      }
      {
        char *end;
        unsigned long long size = strtoull(line, &end, 16);
        int bad = end == line || (*end && *end != ';' && *end != ' ' && *end != '\t');
        free(line);
        if (bad) {
          conn_kill(c, "malformed chunked request body");
          return;
        }
        c->remaining = size;
        c->h1_state = size ? H1_CHUNK_DATA : H1_TRAILERS;
      }
      break;
    case H1_CHUNK_DATA:
      if (h1_body_bytes(c, x) < 0)
        return;
      if (c->remaining == 0)
        c->h1_state = H1_CHUNK_END;
      xchg_request_data(x);
      break;
    case H1_CHUNK_END: {
      char crlf[2];
      if (evbuffer_get_length(in) < 2)
        return;
      evbuffer_remove(in, crlf, 2);
      if (crlf[0] != '\r' || crlf[1] != '\n') {
        conn_kill(c, "malformed chunked request body");
        return;
      }
      c->h1_state = H1_CHUNK_SIZE;
      break;
    }
    case H1_TRAILERS:
      if (!(line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF_STRICT))) {
        if (evbuffer_get_length(in) > MAX_HEAD)
          conn_kill(c, "trailers too long");
        return;
      }
      free(line); /* trailers are dropped */
      if (len == 0) {
        x->req_done = 1;
        c->h1_state = H1_DONE;
        xchg_request_data(x);
      }
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
