/*
 * revtun-downstream-agent: the backend side. A pool of idle HTTP/1.1
 * keep-alive connections to --backend; each stream from the tunnel becomes
 * one HTTP/1.1 exchange on one of them: the request translated from HTTP/2
 * (stream_dispatch), the response head parsed with the common parser
 * (bounded: MAX_HEAD bytes, MAX_HEADERS fields) and turned into HTTP/2
 * HEADERS, the body relayed as it comes (Content-Length, chunked or until
 * close) with backpressure from HTTP/2 flow control.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

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
  bufferevent_free(c->bev);
  free(c);
}

/* An idle keep-alive connection must stay silent; anything else kills it. */
static void bconn_idle_read(struct bufferevent *bev, void *arg) {
  (void)bev;
  bconn_free(arg);
}

static void bconn_idle_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  (void)what;
  bconn_free(arg);
}

/* The response is complete: detach from the stream, keep the socket if we may. */
static void bconn_release(struct bconn *c) {
  struct agent *ag = c->ag;
  struct stream *s = c->s;

  s->bc = NULL;
  c->s = NULL;
  if (s->unconsumed) {
    nghttp2_session_consume(s->t->h2, s->id, s->unconsumed);
    s->unconsumed = 0;
  }
  if (!c->keepalive || !s->req_ended || ag->stopping || ag->nidle >= MAX_IDLE_BACKENDS ||
      evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
    bconn_free(c);
    return;
  }
  bufferevent_setcb(c->bev, bconn_idle_read, NULL, bconn_idle_event, c);
  bufferevent_set_timeouts(c->bev, NULL, NULL);
  bufferevent_enable(c->bev, EV_READ);
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

/* Turns the backend's response head (raw, head_len bytes, ours to change)
 * into HTTP/2 HEADERS. 0 done, 1 interim response skipped, -1 broken. */
static int bconn_on_head(struct bconn *c, char *raw, size_t head_len) {
  struct stream *s = c->s;
  struct h1_field fields[MAX_HEADERS];
  struct h1_head hd;
  const struct h1_field *conn;
  nghttp2_nv nva[MAX_HEADERS + 1];
  nghttp2_data_provider prd;
  char status[4];
  size_t n = 0;
  int no_body, rv;

  if (h1_parse_response(raw, head_len, MAX_HEAD, fields, MAX_HEADERS, &hd) != H1_OK)
    return -1;
  if (hd.status >= 100 && hd.status < 200 && hd.status != 101)
    return 1; /* interim response: wait for the real one */
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
  return rv == 0 ? 0 : -1;
}

/* Moves up to MAX body bytes from the backend into the stream's buffer. */
static uint64_t bconn_take(struct bconn *c, uint64_t max) {
  struct evbuffer *in = bufferevent_get_input(c->bev);
  size_t avail = evbuffer_get_length(in);
  size_t n = max < avail ? (size_t)max : avail;

  if (n)
    evbuffer_remove_buffer(in, c->s->resp, n);
  return n;
}

/* A response head: at most MAX_HEAD bytes and MAX_HEADERS fields. 1 when
 * one was handled, 0 to wait for bytes, -1 broken. */
static int bconn_head(struct bconn *c) {
  struct evbuffer *in = bufferevent_get_input(c->bev);
  size_t avail = evbuffer_get_length(in), look = avail < MAX_HEAD ? avail : MAX_HEAD;
  const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
  struct h1_field fields[MAX_HEADERS];
  struct h1_head hd;
  char *raw;
  int rc;

  if (!data)
    return -1;
  rc = h1_parse_response(data, look, MAX_HEAD, fields, MAX_HEADERS, &hd);
  if (rc == H1_INCOMPLETE)
    return 0;
  if (rc != H1_OK || !(raw = malloc(hd.head_len)))
    return -1;
  evbuffer_remove(in, raw, hd.head_len);
  rc = bconn_on_head(c, raw, hd.head_len);
  free(raw);
  return rc < 0 ? -1 : 1;
}

/* Chunked body bytes into the stream's buffer. Like B_LENGTH it takes all
 * that was read: reading itself stops while the stream holds STREAM_HIGH. */
static int bconn_chunked(struct bconn *c) {
  struct evbuffer *in = bufferevent_get_input(c->bev);
  size_t n = evbuffer_get_contiguous_space(in), off, len;
  const char *d;
  ssize_t used;

  if (n == 0)
    return 0;
  d = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
  if ((used = h1_chunked_decode(&c->chunk, d, n, n, &off, &len)) < 0)
    return -1;
  if (len) {
    evbuffer_drain(in, off);
    evbuffer_remove_buffer(in, c->s->resp, len);
    evbuffer_drain(in, (size_t)used - off - len);
  } else {
    evbuffer_drain(in, (size_t)used);
  }
  if (h1_chunked_done(&c->chunk))
    c->st = B_DONE;
  return used > 0 ? 1 : 0;
}

/* Advances the response state machine; -1 = broken response. */
static int bconn_parse(struct bconn *c) {
  for (;;) {
    int rv;

    switch (c->st) {
    case B_HEAD:
      if ((rv = bconn_head(c)) <= 0)
        return rv;
      break;
    case B_LENGTH:
      c->remaining -= bconn_take(c, c->remaining);
      if (c->remaining)
        return 0;
      c->st = B_DONE;
      break;
    case B_CHUNKED:
      if ((rv = bconn_chunked(c)) <= 0)
        return rv;
      break;
    case B_UNTIL_CLOSE: bconn_take(c, UINT64_MAX); return 0;
    case B_DONE: return 0;
    }
  }
}

static void bconn_read_cb(struct bufferevent *bev, void *arg) {
  struct bconn *c = arg;
  struct stream *s = c->s;
  struct tunnel *t = s->t;

  (void)bev;
  c->got_bytes = 1;
  if (bconn_parse(c) < 0) {
    stream_backend_failed(s, "malformed backend response");
  } else {
    if (s->req_head && s->resp_started) {
      free(s->req_head);
      s->req_head = NULL;
    }
    /* Backpressure: HTTP/2 flow control decides how fast we drain. */
    if (evbuffer_get_length(s->resp) >= STREAM_HIGH)
      bufferevent_disable(c->bev, EV_READ);
    if (c->st == B_DONE) {
      s->resp_done = 1;
      bconn_release(c);
    }
    stream_data_ready(s);
  }
  tunnel_flush(t);
}

static void bconn_write_cb(struct bufferevent *bev, void *arg) {
  struct bconn *c = arg;
  struct stream *s = c->s;

  (void)bev;
  /* The backend took the queued body: let the client send more. */
  if (s->unconsumed) {
    nghttp2_session_consume(s->t->h2, s->id, s->unconsumed);
    s->unconsumed = 0;
    tunnel_flush(s->t);
  }
}

static int bconn_start(struct stream *s, struct bconn *c);
static struct bconn *bconn_get(struct agent *ag);

static void bconn_event_cb(struct bufferevent *bev, short what, void *arg) {
  struct bconn *c = arg;
  struct stream *s = c->s;
  struct tunnel *t = s->t;

  (void)bev;
  if (what & BEV_EVENT_CONNECTED)
    return;
  if ((what & BEV_EVENT_EOF) && c->st == B_UNTIL_CLOSE) {
    s->resp_done = 1;
    bconn_free(c);
    stream_data_ready(s);
  } else if (c->reused && !c->got_bytes && !s->body_sent && s->req_head &&
             !(what & BEV_EVENT_TIMEOUT)) {
    /* The backend closed a pooled connection as we reused it: retry once. */
    struct bconn *fresh;

    bconn_free(c);
    VLOG("stream %d: stale backend connection, retrying", s->id);
    fresh = bconn_get(t->ag);
    if (!fresh || bconn_start(s, fresh) < 0)
      stream_backend_failed(s, "backend unreachable");
  } else {
    stream_backend_failed(s, (what & BEV_EVENT_TIMEOUT) ? "backend timed out"
                             : c->got_bytes             ? "backend closed mid-response"
                                                        : "backend unreachable");
  }
  tunnel_flush(t);
}

static struct bconn *bconn_get(struct agent *ag) {
  struct bconn *c = ag->idle;

  if (c) {
    ag->idle = c->next;
    if (c->next)
      c->next->prev = NULL;
    c->next = c->prev = NULL;
    ag->nidle--;
    c->reused = 1;
    return c;
  }
  if (!(c = calloc(1, sizeof(*c))))
    return NULL;
  c->ag = ag;
  if (!(c->bev = agent_dial(ag->base, &ag->cfg.backend))) {
    free(c);
    return NULL;
  }
  return c;
}

static int bconn_start(struct stream *s, struct bconn *c) {
  struct timeval tmo = {BACKEND_TIMEOUT_S, 0};

  c->s = s;
  s->bc = c;
  c->st = B_HEAD;
  c->got_bytes = 0;
  bufferevent_setcb(c->bev, bconn_read_cb, bconn_write_cb, bconn_event_cb, c);
  bufferevent_set_timeouts(c->bev, &tmo, &tmo);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  return bufferevent_write(c->bev, s->req_head, s->req_head_len);
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

/* The request head is complete: translate to HTTP/1.1 and send it. */
void stream_dispatch(struct stream *s) {
  struct evbuffer *h;
  const struct bytes *host;
  struct bytes fallback;
  struct bconn *c;
  size_t n;

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
  if (!(h = evbuffer_new()))
    goto oom;
  evbuffer_add(h, s->method.p, s->method.n);
  evbuffer_add(h, " ", 1);
  evbuffer_add(h, s->path.p, s->path.n);
  evbuffer_add(h, " HTTP/1.1\r\nhost: ", 17);
  evbuffer_add(h, host->p, host->n);
  evbuffer_add(h, "\r\n", 2);
  evbuffer_add_buffer(h, s->hdrs);
  if (evbuffer_get_length(s->cookies)) {
    /* HTTP/2 may split cookies into several fields; HTTP/1.1 wants one. */
    evbuffer_add(h, "cookie: ", 8);
    evbuffer_add_buffer(h, s->cookies);
    evbuffer_add(h, "\r\n", 2);
  }
  if (!s->req_ended && !s->has_length) {
    s->chunked_up = 1;
    evbuffer_add_printf(h, "transfer-encoding: chunked\r\n");
  }
  evbuffer_add(h, "\r\n", 2);
  n = evbuffer_get_length(h);
  s->req_head = malloc(n);
  if (!s->req_head) {
    evbuffer_free(h);
    goto oom;
  }
  evbuffer_remove(h, s->req_head, n);
  s->req_head_len = n;
  evbuffer_free(h);
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
  return;
oom:
  stream_reply_text(s, 503, "503 out of memory\n");
}
