/*
 * revtun-downstream-agent: the backend side. A pool of idle HTTP/1.1
 * keep-alive connections to --backend; each stream from the tunnel becomes
 * one HTTP/1.1 exchange on one of them: the request translated from HTTP/2
 * (stream_dispatch), the response head parsed with the common parser
 * (bounded: MAX_HEAD bytes, MAX_HEADERS fields) and turned into HTTP/2
 * HEADERS, the body relayed as it comes (Content-Length, chunked or until
 * close) with backpressure from HTTP/2 flow control.
 *
 * A connection keeps its read interest for its whole life, idle or busy (an
 * idle one that becomes readable is closed), so serving a request changes
 * no epoll interest; requests are written by the tunnel's end-of-turn flush
 * together with their first body bytes; responses are read 64 KiB at a
 * time into one scratch buffer and parsed there, so a response whose head
 * arrives in one read is never copied before it reaches the stream.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

static uint64_t now_ms(struct agent *ag) {
  struct timeval tv;

  event_base_gettimeofday_cached(ag->base, &tv);
  return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

void bconn_free(struct bconn *c) {
  struct agent *ag = c->ag;

  if (c->s) {
    c->s->bc = NULL;
  } else if (c->prev || ag->idle == c) {
    if (c->prev)
      c->prev->next = c->next;
    else
      ag->idle = c->next;
    if (c->next)
      c->next->prev = c->prev;
    ag->nidle--;
  }
  tunnel_unqueue_write(c);
  sock_close(&c->sk);
  close(c->sk.fd);
  if (c->head)
    evbuffer_free(c->head);
  event_free(c->timeout);
  recycle_free(c);
}

/* The response is complete: detach from the stream, keep the socket if we may. */
static void bconn_release(struct bconn *c) {
  struct agent *ag = c->ag;
  struct stream *s = c->s;

  s->bc = NULL;
  c->s = NULL;
  tunnel_unqueue_write(c);
  event_del(c->timeout);
  if (s->unconsumed) {
    nghttp2_session_consume(s->t->h2, s->id, s->unconsumed);
    s->unconsumed = 0;
  }
  if (!c->keepalive || !s->req_ended || ag->stopping || ag->nidle >= MAX_IDLE_BACKENDS ||
      evbuffer_get_length(c->sk.out) > 0 || c->sk.read_paused) {
    bconn_free(c);
    return;
  }
  c->prev = NULL;
  c->next = ag->idle;
  if (ag->idle)
    ag->idle->prev = c;
  ag->idle = c;
  ag->nidle++;
}

void stream_data_ready(struct stream *s) {
  if (s->deferred) {
    s->deferred = 0;
    nghttp2_session_resume_data(s->t->h2, s->id);
  }
}
/* Is name one of the tokens of a Connection field value? */
static int listed_in(struct h1_str list, struct h1_str name) {
  struct h1_str t;
  size_t pos = 0;

  while (h1_list_next(list, &pos, &t)) {
    size_t i;
    if (t.n != name.n)
      continue;
    for (i = 0; i < t.n; i++) {
      unsigned char a = (unsigned char)t.p[i], b = (unsigned char)name.p[i];
      if ((a >= 'A' && a <= 'Z' ? a + 32 : a) != (b >= 'A' && b <= 'Z' ? b + 32 : b))
        break;
    }
    if (i == t.n)
      return 1;
  }
  return 0;
}

/* Connection-specific fields are not allowed in HTTP/2 messages. */
static int response_field_dropped(const struct h1_head *hd, const struct h1_field *f,
                                  const struct h1_field *conn) {
  static const char *const drop[] = {
      "connection", "keep-alive", "proxy-connection", "transfer-encoding",
      "upgrade",    "te",         "trailer"};

  for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
    if (h1_str_ieq(f->name, drop[i]))
      return 1;
  if (hd->te_present && h1_str_ieq(f->name, "content-length"))
    return 1;
  return conn && listed_in(conn->value, f->name);
}

/* Parses the response head at the start of raw (avail bytes, ours to
 * change: names are lowercased in place; at most MAX_HEAD of them are
 * looked at) and submits it as HTTP/2 HEADERS. The head's length (an
 * interim response leaves c->st at B_HEAD), 0 while incomplete, -1 broken. */
static ssize_t bconn_head(struct bconn *c, char *raw, size_t avail) {
  struct stream *s = c->s;
  struct h1_field fields[MAX_HEADERS];
  struct h1_head hd;
  const struct h1_field *conn;
  nghttp2_nv nva[MAX_HEADERS + 1];
  nghttp2_data_provider prd;
  char status[4];
  size_t n = 0;
  int no_body, rv;

  rv = h1_parse_response(raw, avail < MAX_HEAD ? avail : MAX_HEAD, MAX_HEAD, fields, MAX_HEADERS,
                         &hd);
  if (rv == H1_INCOMPLETE)
    return 0;
  if (rv != H1_OK)
    return -1;
  if (hd.status >= 100 && hd.status < 200 && hd.status != 101)
    return (ssize_t)hd.head_len; /* interim response: wait for the real one */
  if (hd.status < 200)
    return -1; /* 101: we never asked to switch protocols */
  conn = h1_find(&hd, "connection");
  c->keepalive = hd.minor >= 1 ? !hd.conn_close : hd.conn_keepalive;
  no_body = s->is_head || hd.status == 204 || hd.status == 304;
  if (no_body) {
    c->st = B_DONE;
  } else if (hd.chunked) {
    c->st = B_CHUNKED;
    memset(&c->chunk, 0, sizeof(c->chunk));
  } else if (hd.te_present) {
    c->st = B_UNTIL_CLOSE; /* another coding last: the body ends at close */
  } else if (hd.content_length >= 0) {
    c->st = hd.content_length ? B_LENGTH : B_DONE;
    c->remaining = (uint64_t)hd.content_length;
  } else {
    c->st = B_UNTIL_CLOSE;
  }
  if (c->st == B_UNTIL_CLOSE)
    c->keepalive = 0;

  snprintf(status, sizeof(status), "%03d", hd.status);
  nva[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
  for (size_t i = 0; i < hd.nfields; i++) {
    struct h1_field *f = &fields[i];
    if (response_field_dropped(&hd, f, conn))
      continue;
    for (size_t k = 0; k < f->name.n; k++) { /* HTTP/2 names are lowercase */
      char *ch = raw + (f->name.p - raw) + k;
      if (*ch >= 'A' && *ch <= 'Z')
        *ch = (char)(*ch + 32);
    }
    nva[n++] = (nghttp2_nv){(uint8_t *)f->name.p, (uint8_t *)f->value.p, f->name.n, f->value.n,
                            NGHTTP2_NV_FLAG_NONE};
  }
  prd.source.ptr = s;
  prd.read_callback = data_read_cb;
  s->resp_started = 1;
  s->resp_done = c->st == B_DONE;
  rv = nghttp2_submit_response(s->t->h2, s->id, nva, n, s->resp_done ? NULL : &prd);
  return rv == 0 ? (ssize_t)hd.head_len : -1;
}

/* Body bytes of the response (n of them at p) into the stream's buffer:
 * how many belong to it. B_DONE once the body is complete. -1: broken. */
static ssize_t bconn_body(struct bconn *c, const char *p, size_t n) {
  struct evbuffer *resp = c->s->resp;
  size_t pos = 0;

  switch (c->st) {
  case B_LENGTH:
    if (n > c->remaining)
      n = (size_t)c->remaining;
    evbuffer_add(resp, p, n);
    c->remaining -= n;
    if (!c->remaining)
      c->st = B_DONE;
    return (ssize_t)n;
  case B_UNTIL_CLOSE: evbuffer_add(resp, p, n); return (ssize_t)n;
  case B_CHUNKED:
    while (pos < n && !h1_chunked_done(&c->chunk)) {
      size_t off, len;
      ssize_t used = h1_chunked_decode(&c->chunk, p + pos, n - pos, n - pos, &off, &len);
      if (used < 0)
        return -1;
      if (used == 0)
        break; /* a chunk-size line not complete yet: the rest is kept */
      if (len)
        evbuffer_add(resp, p + pos + off, len);
      pos += (size_t)used;
    }
    if (h1_chunked_done(&c->chunk))
      c->st = B_DONE;
    return (ssize_t)pos;
  default: return 0;
  }
}

/*
 * The bytes of one read (writable: names are lowercased in place), through
 * the response state machine. What cannot be used yet (a head or a chunk
 * line cut by the read) waits in c->head, at most MAX_HEAD bytes. 0, or -1
 * for a broken response.
 */
static int bconn_input(struct bconn *c, char *p, size_t n) {
  int from_held = 0;

  if (c->head && evbuffer_get_length(c->head) > 0) {
    /* Earlier bytes wait: continue behind them, in one piece. */
    size_t held = evbuffer_get_length(c->head);
    if (held + n > MAX_HEAD + (size_t)MAX_READ || evbuffer_add(c->head, p, n) < 0)
      return -1;
    n += held;
    if (!(p = (char *)evbuffer_pullup(c->head, (ev_ssize_t)n)))
      return -1;
    from_held = 1;
  }
  size_t pos = 0;
  while (pos < n && c->s) {
    if (c->st == B_HEAD) {
      ssize_t used = bconn_head(c, p + pos, n - pos);
      if (used < 0)
        return -1;
      if (used == 0)
        break;
      pos += (size_t)used;
      continue; /* an interim response leaves c->st at B_HEAD */
    }
    if (c->st == B_DONE) {
      c->keepalive = 0; /* bytes after the response: the connection is not reusable */
      pos = n;
      break;
    }
    ssize_t used = bconn_body(c, p + pos, n - pos);
    if (used < 0)
      return -1;
    if (used == 0 && c->st != B_DONE)
      break;
    pos += (size_t)used;
  }
  if (c->s && pos < n && c->st != B_DONE) { /* keep the unused tail for the next read */
    if (from_held) {
      evbuffer_drain(c->head, pos);
    } else if ((!c->head && !(c->head = evbuffer_new())) ||
               evbuffer_add(c->head, p + pos, n - pos) < 0) {
      return -1;
    }
    if (c->st == B_HEAD && evbuffer_get_length(c->head) >= MAX_HEAD)
      return -1; /* a head over MAX_HEAD bytes */
  } else if (from_held) {
    evbuffer_drain(c->head, evbuffer_get_length(c->head));
  }
  return 0;
}

static int bconn_start(struct stream *s, struct bconn *c);
static struct bconn *bconn_get(struct agent *ag);

/* The connection failed (closed, reset, timed out) while serving s. */
static void bconn_failed(struct bconn *c, int eof, int timed_out) {
  struct stream *s = c->s;
  struct tunnel *t = s->t;

  if (eof && c->st == B_UNTIL_CLOSE) {
    s->resp_done = 1;
    bconn_free(c);
    stream_data_ready(s);
  } else if (c->reused && !c->got_bytes && !s->body_sent && s->req_head && !timed_out) {
    /* The backend closed a pooled connection as we reused it: retry once. */
    struct bconn *fresh;

    bconn_free(c);
    VLOG("stream %d: stale backend connection, retrying", s->id);
    fresh = bconn_get(t->ag);
    if (!fresh || bconn_start(s, fresh) < 0)
      stream_backend_failed(s, "backend unreachable");
  } else {
    stream_backend_failed(s, timed_out      ? "backend timed out"
                             : c->got_bytes ? "backend closed mid-response"
                                            : "backend unreachable");
  }
  tunnel_want_flush(t);
}

static void bconn_read_cb(evutil_socket_t fd, short what, void *arg) {
  static char buf[MAX_READ];
  struct bconn *c = arg;
  struct stream *s = c->s;
  struct tunnel *t;
  size_t budget = READ_BUDGET;

  (void)fd, (void)what;
  if (!s) { /* an idle keep-alive connection must stay silent */
    bconn_free(c);
    return;
  }
  t = s->t;
  while (c->s && !c->sk.read_paused && budget > 0) {
    ssize_t n = sock_read(&c->sk, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n <= 0) {
      bconn_failed(c, n == 0, 0);
      return;
    }
    c->got_bytes = 1;
    c->active_ms = now_ms(c->ag);
    if (bconn_input(c, buf, (size_t)n) < 0) {
      stream_backend_failed(s, "malformed backend response");
      tunnel_want_flush(t);
      return;
    }
    if (c->st == B_DONE) {
      s->resp_done = 1;
      bconn_release(c);
      break;
    }
    /* Backpressure: HTTP/2 flow control decides how fast we drain. */
    if (evbuffer_get_length(s->resp) >= STREAM_HIGH)
      sock_pause_read(&c->sk, 1);
    if ((size_t)n < sizeof(buf))
      break; /* drained */
    budget -= (size_t)n < budget ? (size_t)n : budget;
  }
  if (s->req_head && s->resp_started) {
    recycle_free(s->req_head);
    s->req_head = NULL;
  }
  stream_data_ready(s);
  tunnel_want_flush(t);
}

/* Writes the queued request bytes (the tunnel's end-of-turn flush, or write
 * readiness); errors fail the stream. */
void bconn_flush(struct bconn *c) {
  struct stream *s = c->s;
  int rc;

  if (!s || c->connecting)
    return; /* the connect's completion flushes */
  if ((rc = sock_write(&c->sk)) < 0) {
    bconn_failed(c, 0, 0);
    return;
  }
  c->active_ms = now_ms(c->ag);
  /* The backend took the queued body: let the client send more. */
  if (rc == 0 && s->unconsumed) {
    nghttp2_session_consume(s->t->h2, s->id, s->unconsumed);
    s->unconsumed = 0;
    tunnel_want_flush(s->t);
  }
}

static void bconn_write_cb(evutil_socket_t fd, short what, void *arg) {
  struct bconn *c = arg;
  int err = 0;
  socklen_t len = sizeof(err);

  (void)fd, (void)what;
  if (c->connecting) {
    if (getsockopt(c->sk.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
      err = errno;
    if (err) {
      if (c->s)
        bconn_failed(c, 0, 0);
      else
        bconn_free(c);
      return;
    }
    c->connecting = 0;
  }
  if (!c->s) { /* cannot happen: idle connections have nothing to write */
    sock_write(&c->sk);
    return;
  }
  bconn_flush(c);
}

/* No progress for BACKEND_TIMEOUT_S: the deadline moves with every byte,
 * lazily (reads and writes only note the time). */
static void bconn_timeout_cb(evutil_socket_t fd, short what, void *arg) {
  struct bconn *c = arg;
  uint64_t now = now_ms(c->ag), due = c->active_ms + (uint64_t)BACKEND_TIMEOUT_S * 1000;

  (void)fd, (void)what;
  if (!c->s)
    return;
  if (now < due) {
    struct timeval tv = ms_tv(due - now);
    evtimer_add(c->timeout, &tv);
    return;
  }
  bconn_failed(c, 0, 1);
}

static struct bconn *bconn_get(struct agent *ag) {
  struct bconn *c = ag->idle;
  int fd;

  if (c) {
    ag->idle = c->next;
    if (c->next)
      c->next->prev = NULL;
    c->next = c->prev = NULL;
    ag->nidle--;
    c->reused = 1;
    return c;
  }
  if (!(c = recycle_calloc(1, sizeof(*c))))
    return NULL;
  c->ag = ag;
  if ((fd = agent_dial(&ag->cfg.backend, NULL)) < 0) {
    recycle_free(c);
    return NULL;
  }
  if (!(c->timeout = evtimer_new(ag->base, bconn_timeout_cb, c)) ||
      sock_init(&c->sk, ag->base, fd, bconn_read_cb, bconn_write_cb, c) < 0) {
    if (c->timeout)
      event_free(c->timeout);
    close(fd);
    recycle_free(c);
    return NULL;
  }
  c->connecting = 1;
  sock_want_write(&c->sk); /* the connect's completion */
  return c;
}

static int bconn_start(struct stream *s, struct bconn *c) {
  c->s = s;
  s->bc = c;
  c->st = B_HEAD;
  c->got_bytes = 0;
  c->active_ms = now_ms(c->ag);
  if (c->head)
    evbuffer_drain(c->head, evbuffer_get_length(c->head));
  event_add(c->timeout, c->ag->backend_tmo);
  if (evbuffer_add(c->sk.out, s->req_head, s->req_head_len) < 0)
    return -1;
  tunnel_queue_write(s->t, c);
  return 0;
}

void stream_backend_failed(struct stream *s, const char *why) {
  char m[32], path[128];

  logmsg("tunnel %" PRIu64 " stream %d: %s %s: %s", s->t->conn_id, s->id,
         log_safe(m, sizeof(m), s->method.p, s->method.n),
         log_safe(path, sizeof(path), s->path.p, s->path.n), why);
  if (s->bc)
    bconn_free(s->bc);
  if (!s->resp_started) {
    stream_reply_text(s, 502, "502 bad gateway: backend unavailable\n");
  } else if (!s->resp_done) {
    /* Headers are out; only a reset can tell the client the body is cut. */
    s->resp_done = 1;
    nghttp2_submit_rst_stream(s->t->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
  }
}

/* Bytes that may appear in an HTTP/1.1 request line or Host field: visible
 * ASCII (so neither a space nor a line break can split the request). */
static int visible_ascii(const struct bytes *b) {
  if (b->n == 0)
    return 0;
  for (size_t i = 0; i < b->n; i++)
    if ((unsigned char)b->p[i] <= 0x20 || (unsigned char)b->p[i] >= 0x7f)
      return 0;
  return 1;
}

static int is_token(const struct bytes *b) {
  if (b->n == 0)
    return 0;
  for (size_t i = 0; i < b->n; i++)
    if (!h1_is_tchar((unsigned char)b->p[i]))
      return 0;
  return 1;
}

/* Appends n bytes at *at. */
static void put(char **at, const void *p, size_t n) {
  memcpy(*at, p, n);
  *at += n;
}

/* The request head is complete: translate to HTTP/1.1 and send it. */
void stream_dispatch(struct stream *s) {
  static const char TE_CHUNKED[] = "transfer-encoding: chunked\r\n";
  const struct bytes *host;
  struct bytes fallback;
  struct bconn *c;
  size_t nh, nc, n;
  char *at;

  if (!s->method.p || !s->path.p || (s->method.n == 7 && !memcmp(s->method.p, "CONNECT", 7))) {
    stream_reply_text(s, 501, "501 not implemented\n");
    return;
  }
  fallback.p = s->t->ag->cfg.backend.text;
  fallback.n = strlen(fallback.p);
  host = s->authority.p ? &s->authority : s->host.p ? &s->host : &fallback;
  if (!is_token(&s->method) || !visible_ascii(&s->path) || !visible_ascii(host) ||
      (s->path.p[0] != '/' && !(s->path.n == 1 && s->path.p[0] == '*'))) {
    stream_reply_text(s, 400, "400 bad request\n");
    return;
  }
  s->is_head = s->method.n == 4 && !memcmp(s->method.p, "HEAD", 4);
  s->chunked_up = !s->req_ended && !s->has_length;
  /* One piece, sized first: "M P HTTP/1.1\r\nhost: H\r\n" fields [cookie]
   * [transfer-encoding] "\r\n". The header bytes are bounded by
   * max_header_list, so the sum cannot overflow. */
  nh = evbuffer_get_length(s->hdrs);
  nc = evbuffer_get_length(s->cookies);
  n = s->method.n + 1 + s->path.n + 17 + host->n + 2 + nh + (nc ? 8 + nc + 2 : 0) +
      (s->chunked_up ? sizeof(TE_CHUNKED) - 1 : 0) + 2;
  if (!(s->req_head = recycle_malloc(n))) {
    stream_reply_text(s, 503, "503 out of memory\n");
    return;
  }
  at = s->req_head;
  put(&at, s->method.p, s->method.n);
  put(&at, " ", 1);
  put(&at, s->path.p, s->path.n);
  put(&at, " HTTP/1.1\r\nhost: ", 17);
  put(&at, host->p, host->n);
  put(&at, "\r\n", 2);
  at += evbuffer_remove(s->hdrs, at, nh);
  if (nc) {
    /* HTTP/2 may split cookies into several fields; HTTP/1.1 wants one. */
    put(&at, "cookie: ", 8);
    at += evbuffer_remove(s->cookies, at, nc);
    put(&at, "\r\n", 2);
  }
  if (s->chunked_up)
    put(&at, TE_CHUNKED, sizeof(TE_CHUNKED) - 1);
  put(&at, "\r\n", 2);
  s->req_head_len = (size_t)(at - s->req_head);
  if (verbose) {
    char m[32], path[128];
    logmsg("tunnel %" PRIu64 " stream %d: %s %s", s->t->conn_id, s->id,
           log_safe(m, sizeof(m), s->method.p, s->method.n),
           log_safe(path, sizeof(path), s->path.p, s->path.n));
  }
  c = bconn_get(s->t->ag);
  if (!c || bconn_start(s, c) < 0) {
    if (c && !s->bc)
      bconn_free(c);
    stream_backend_failed(s, "backend unreachable");
  }
}
