/*
 * revtun-downstream-agent: the HTTP/2 server side. A tunnel is a parked
 * socket the upstream took: the agent serves HTTP/2 on it (nghttp2), each
 * request stream handed to backend.c and its response relayed back with
 * flow control. Request header sections are bounded (advertised as
 * SETTINGS_MAX_HEADER_LIST_SIZE, enforced per stream and per tunnel).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"

/* ------------------------------------------------------------- streams */

void stream_free(struct stream *s) {
  struct tunnel *t = s->t;

  if (s->bc)
    bconn_free(s->bc); /* mid-exchange: the socket cannot be reused */
  if (s->prev)
    s->prev->next = s->next;
  else
    t->streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  t->hdr_held -= s->hdr_cost < t->hdr_held ? s->hdr_cost : t->hdr_held;
  recycle_free(s->method.p);
  recycle_free(s->path.p);
  recycle_free(s->authority.p);
  recycle_free(s->host.p);
  recycle_free(s->req_head);
  if (s->hdrs)
    evbuffer_free(s->hdrs);
  if (s->cookies)
    evbuffer_free(s->cookies);
  if (s->resp)
    evbuffer_free(s->resp);
  recycle_free(s);
}

void stream_reply_text(struct stream *s, int status, const char *text) {
  char st[4], len[24];
  nghttp2_nv nva[3];
  nghttp2_data_provider prd;

  snprintf(st, sizeof(st), "%03d", status);
  snprintf(len, sizeof(len), "%zu", strlen(text));
  nva[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)st, 7, 3, NGHTTP2_NV_FLAG_NONE};
  nva[1] = (nghttp2_nv){(uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10,
                        NGHTTP2_NV_FLAG_NONE};
  nva[2] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)len, 14, strlen(len),
                        NGHTTP2_NV_FLAG_NONE};
  evbuffer_add(s->resp, text, strlen(text));
  s->resp_started = s->resp_done = 1;
  prd.source.ptr = s;
  prd.read_callback = data_read_cb;
  nghttp2_submit_response(s->t->h2, s->id, nva, 3, &prd);
}

static void stream_request_ended(struct stream *s) {
  s->req_ended = 1;
  if (s->bc && s->chunked_up) {
    evbuffer_add(s->bc->sk.out, "0\r\n\r\n", 5);
    tunnel_queue_write(s->t, s->bc);
  }
}

/* ------------------------------------------------------ nghttp2 callbacks */

static ssize_t send_cb(nghttp2_session *session, const uint8_t *data, size_t len, int flags,
                       void *user_data) {
  struct tunnel *t = user_data;
  struct evbuffer *out = t->sk.out;

  (void)session;
  (void)flags;
  if (evbuffer_get_length(out) >= TUN_OUT_HIGH)
    return NGHTTP2_ERR_WOULDBLOCK;
  if (evbuffer_add(out, data, len) < 0)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  return (ssize_t)len;
}

/*
 * Response bodies go out with NO_COPY: nghttp2 only decides the frame size,
 * send_data_cb then moves the bytes between evbuffers without copying.
 */
ssize_t data_read_cb(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
                     uint32_t *flags, nghttp2_data_source *source, void *user_data) {
  struct stream *s = source->ptr;
  size_t avail = evbuffer_get_length(s->resp);
  size_t n = avail < length ? avail : length;

  (void)session;
  (void)id;
  (void)buf;
  (void)user_data;
  if (n == 0 && !s->resp_done) {
    s->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  if (n > 0)
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (s->resp_done && n == avail)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

static int send_data_cb(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *user_data) {
  struct tunnel *t = user_data;
  struct stream *s = source->ptr;
  struct evbuffer *out = t->sk.out;

  (void)session;
  (void)frame; /* no padding is ever selected */
  if (evbuffer_get_length(out) >= TUN_OUT_HIGH)
    return NGHTTP2_ERR_WOULDBLOCK;
  evbuffer_add(out, framehd, 9);
  evbuffer_remove_buffer(s->resp, out, length);
  if (s->bc && evbuffer_get_length(s->resp) < STREAM_LOW)
    sock_pause_read(&s->bc->sk, 0);
  return 0;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  struct tunnel *t = user_data;
  struct stream *s;

  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  if (!(s = recycle_calloc(1, sizeof(*s))))
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  s->t = t;
  s->id = frame->hd.stream_id;
  s->hdrs = evbuffer_new();
  s->cookies = evbuffer_new();
  s->resp = evbuffer_new();
  s->next = t->streams;
  if (t->streams)
    t->streams->prev = s;
  t->streams = s;
  if (!s->hdrs || !s->cookies || !s->resp) {
    stream_free(s);
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  nghttp2_session_set_stream_user_data(session, s->id, s);
  return 0;
}

static int is_hop_by_hop(const uint8_t *name, size_t len) {
  static const struct {
    const char *name;
    size_t len;
  } hop[] = {{"te", 2},
             {"host", 4},
             {"upgrade", 7},
             {"keep-alive", 10},
             {"connection", 10},
             {"http2-settings", 14},
             {"proxy-connection", 16},
             {"transfer-encoding", 17}};

  if (len < 2 || len > 17)
    return 0;
  for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
    if (hop[i].len == len && !memcmp(hop[i].name, name, len))
      return 1;
  return 0;
}

/* Every request field (trailers too) counts against the stream's limits
 * and what the tunnel's streams hold against its budget; past any of them
 * the stream is reset (nghttp2 answers a failed callback with RST_STREAM
 * and decodes the rest of the block without keeping it). */
static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data) {
  struct stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  struct tunnel *t = user_data;
  const struct config *cfg = &t->ag->cfg;
  size_t cost = namelen + valuelen + HEADER_FIELD_OVERHEAD;
  struct bytes *slot = NULL;

  (void)flags;
  if (!s)
    return 0;
  s->hdr_cost += cost;
  t->hdr_held += cost;
  if (s->hdr_cost > cfg->max_header_list || ++s->nfields > cfg->max_headers ||
      t->hdr_held > (size_t)cfg->max_header_list * HEADER_TUNNEL_BUDGET_FACTOR) {
    VLOG("tunnel %" PRIu64 " stream %d: request header section over the limits: reset", t->conn_id,
         s->id);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0; /* trailers are dropped */
  if (namelen == 7 && !memcmp(name, ":method", 7))
    slot = &s->method;
  else if (namelen == 5 && !memcmp(name, ":path", 5))
    slot = &s->path;
  else if (namelen == 10 && !memcmp(name, ":authority", 10))
    slot = &s->authority;
  else if (namelen == 4 && !memcmp(name, "host", 4))
    slot = &s->host;
  if (slot) {
    recycle_free(slot->p);
    slot->n = 0;
    if (!(slot->p = recycle_malloc(valuelen + 1)))
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    memcpy(slot->p, value, valuelen);
    slot->p[valuelen] = '\0';
    slot->n = valuelen;
    return 0;
  }
  if (namelen > 0 && name[0] == ':')
    return 0;
  if (namelen == 6 && !memcmp(name, "cookie", 6)) {
    if (evbuffer_get_length(s->cookies))
      evbuffer_add(s->cookies, "; ", 2);
    evbuffer_add(s->cookies, value, valuelen);
    return 0;
  }
  if (is_hop_by_hop(name, namelen))
    return 0;
  if (namelen == 14 && !memcmp(name, "content-length", 14))
    s->has_length = 1;
  evbuffer_add(s->hdrs, name, namelen);
  evbuffer_add(s->hdrs, ": ", 2);
  evbuffer_add(s->hdrs, value, valuelen);
  evbuffer_add(s->hdrs, "\r\n", 2);
  return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  struct stream *s;

  (void)user_data;
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
    return 0;
  s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (!s)
    return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    s->req_ended = !!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
    stream_dispatch(s);
  } else if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
    stream_request_ended(s);
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user_data) {
  struct stream *s = nghttp2_session_get_stream_user_data(session, id);
  struct evbuffer *out;
  char sz[20];

  (void)flags;
  (void)user_data;
  if (!s || !s->bc || s->req_ended) {
    nghttp2_session_consume(session, id, len); /* dropped */
    return 0;
  }
  out = s->bc->sk.out;
  if (s->chunked_up) {
    snprintf(sz, sizeof(sz), "%zx\r\n", len);
    evbuffer_add(out, sz, strlen(sz));
  }
  evbuffer_add(out, data, len);
  if (s->chunked_up)
    evbuffer_add(out, "\r\n", 2);
  s->body_sent = 1;
  tunnel_queue_write(s->t, s->bc);
  /* Acknowledge now unless the backend is behind; see bconn_flush. */
  if (evbuffer_get_length(out) < BACKEND_OUT_HIGH)
    nghttp2_session_consume(session, id, len);
  else
    s->unconsumed += len;
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code,
                           void *user_data) {
  struct stream *s = nghttp2_session_get_stream_user_data(session, id);

  (void)error_code;
  (void)user_data;
  if (!s)
    return 0;
  if (s->unconsumed)
    nghttp2_session_consume_connection(session, s->unconsumed);
  stream_free(s);
  return 0;
}

/* -------------------------------------------------------------- tunnels */

void tunnel_free(struct tunnel *t) {
  struct agent *ag = t->ag;

  /* nghttp2_session_del() runs no callbacks, so streams go by hand. */
  nghttp2_session_del(t->h2);
  t->h2 = NULL;
  while (t->streams)
    stream_free(t->streams);
  while (t->wq)
    tunnel_unqueue_write(t->wq);
  sock_close(&t->sk);
  tls_free(t->ssl); /* the tunnel ends with its socket: no alert */
  close(t->sk.fd);
  event_free(t->kill_ev);
  event_free(t->flush_ev);
  if (t->prev)
    t->prev->next = t->next;
  else
    ag->tunnels = t->next;
  if (t->next)
    t->next->prev = t->prev;
  recycle_free(t);
  if (ag->stopping && !ag->tunnels)
    event_base_loopbreak(ag->base);
}

static void tunnel_kill_cb(evutil_socket_t fd, short what, void *arg) {
  struct tunnel *t = arg;

  (void)fd;
  (void)what;
  if (t->tls_handshaking && !t->dying) /* the handshake's deadline */
    logmsg("tunnel %" PRIu64 ": TLS after the handoff timed out (%ds)", t->conn_id,
           HANDSHAKE_TIMEOUT_S);
  tunnel_free(t);
}

/*
 * Destruction is deferred to a fresh loop iteration so that no caller up
 * the stack (nghttp2 or a backend callback) is left holding freed memory.
 */
static void tunnel_kill(struct tunnel *t, const char *why) {
  if (t->dying)
    return;
  t->dying = 1;
  logmsg("tunnel %" PRIu64 ": closed (%s)", t->conn_id, why);
  sock_pause_read(&t->sk, 1);
  if (t->sk.writing) {
    event_del(t->sk.wev);
    t->sk.writing = 0;
  }
  event_active(t->kill_ev, 0, 0);
}

/*
 * Both sides said GOAWAY and nothing is left to send. Closing now, with bytes
 * from the proxy still unread (a PING, a WINDOW_UPDATE), would make the kernel
 * send a reset that can destroy the tail of our last response in flight. So
 * half-close, read and discard until the proxy closes, at most LINGER_S.
 */
static void tunnel_linger(struct tunnel *t) {
  struct timeval tv = {LINGER_S, 0};

  t->dying = 1;
  t->lingering = 1;
  logmsg("tunnel %" PRIu64 ": session finished", t->conn_id);
  shutdown(t->sk.fd, SHUT_WR);
  sock_pause_read(&t->sk, 0);
  event_add(t->kill_ev, &tv);
}

static void tunnel_flush(struct tunnel *t) {
  int rv, wr;

  t->flush_pending = 0;
  if (t->tls_handshaking)
    return; /* frames wait for the session (tunnel_read_cb flushes after it) */
  /* Requests to the backends first: what they take frees request window. */
  while (t->wq) {
    struct bconn *c = t->wq;
    tunnel_unqueue_write(c);
    bconn_flush(c);
  }
  for (;;) {
    size_t before, produced;
    if (t->dying)
      return;
    before = evbuffer_get_length(t->sk.out);
    if ((rv = nghttp2_session_send(t->h2)) != 0) {
      tunnel_kill(t, nghttp2_strerror(rv));
      return;
    }
    produced = evbuffer_get_length(t->sk.out) - before;
    if ((wr = sock_write(&t->sk)) < 0) {
      tunnel_kill(t, strerror(errno));
      return;
    }
    /* the kernel is full (write readiness resumes us), or nghttp2 is done */
    if (wr > 0 || produced == 0 || !nghttp2_session_want_write(t->h2))
      break;
  }
  /* Both sides said GOAWAY and no stream is left: we are done. */
  if (!nghttp2_session_want_read(t->h2) && !nghttp2_session_want_write(t->h2) &&
      evbuffer_get_length(t->sk.out) == 0)
    tunnel_linger(t);
}

static void tunnel_flush_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  tunnel_flush(arg);
}

/* Everything this loop turn produces for the tunnel and its backends goes
 * out in one write per socket, after the turn's other callbacks. */
void tunnel_want_flush(struct tunnel *t) {
  if (t->dying || t->flush_pending)
    return;
  t->flush_pending = 1;
  event_active(t->flush_ev, 0, 0);
}

void tunnel_queue_write(struct tunnel *t, struct bconn *c) {
  if (c->wq_of)
    return;
  c->wprev = NULL;
  c->wnext = t->wq;
  if (t->wq)
    t->wq->wprev = c;
  t->wq = c;
  c->wq_of = t;
  tunnel_want_flush(t);
}

void tunnel_unqueue_write(struct bconn *c) {
  struct tunnel *t = c->wq_of;

  if (!t)
    return;
  if (c->wprev)
    c->wprev->wnext = c->wnext;
  else
    t->wq = c->wnext;
  if (c->wnext)
    c->wnext->wprev = c->wprev;
  c->wprev = c->wnext = NULL;
  c->wq_of = NULL;
}

static void tunnel_feed(struct tunnel *t, const uint8_t *p, size_t n) {
  ssize_t rv;

  if (t->dying || n == 0)
    return;
  rv = nghttp2_session_mem_recv(t->h2, p, n);
  if (rv < 0)
    tunnel_kill(t, nghttp2_strerror((int)rv));
}

static void tunnel_read_cb(evutil_socket_t fd, short what, void *arg) {
  static uint8_t buf[MAX_READ];
  struct tunnel *t = arg;
  size_t budget = READ_BUDGET;

  (void)fd, (void)what;
  if (t->tls_handshaking && !t->dying) {
    int r = tunnel_tls_step(t);
    if (r < 0)
      tunnel_kill(t, "TLS handshake failed");
    if (r <= 0)
      return;
  }
  while (budget > 0 && (!t->dying || t->lingering)) {
    ssize_t n = sock_read(&t->sk, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n <= 0) {
      if (t->lingering)
        event_active(t->kill_ev, 0, 0);
      else
        tunnel_kill(t, n == 0 ? "closed by upstream" : strerror(errno));
      return;
    }
    if (!t->lingering) /* a lingering tunnel only waits for the close */
      tunnel_feed(t, buf, (size_t)n);
    if ((size_t)n < sizeof(buf) && !(t->ssl && tls_has_pending(t->ssl)))
      break; /* drained (TLS returns a record at a time, more may be held) */
    budget -= (size_t)n < budget ? (size_t)n : budget;
  }
  tunnel_want_flush(t);
}

static void tunnel_write_cb(evutil_socket_t fd, short what, void *arg) {
  struct tunnel *t = arg;

  (void)fd, (void)what;
  if (t->dying)
    return;
  if (t->tls_handshaking) {
    int r = tunnel_tls_step(t);
    if (r < 0)
      tunnel_kill(t, "TLS handshake failed");
    else if (r > 0)
      tunnel_read_cb(t->sk.fd, EV_READ, t); /* what came with the last flight */
    return;
  }
  if (sock_write(&t->sk) < 0)
    tunnel_kill(t, strerror(errno));
  else if (evbuffer_get_length(t->sk.out) <= TUN_OUT_LOW)
    tunnel_flush(t);
}

static nghttp2_session_callbacks *h2_callbacks;
static nghttp2_option *h2_options;

int h2_setup(void) {
  nghttp2_session_callbacks *cb;

  if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&h2_options) != 0)
    return -1;
  nghttp2_session_callbacks_set_send_callback(cb, send_cb);
  nghttp2_session_callbacks_set_send_data_callback(cb, send_data_cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  /* Window updates follow what the backend absorbed, not what we buffered. */
  nghttp2_option_set_no_auto_window_update(h2_options, 1);
  /* Closed streams are kept only for the priority tree, which nobody uses:
   * up to SETTINGS_MAX_CONCURRENT_STREAMS of them per session, memory and
   * tree upkeep for nothing. */
  nghttp2_option_set_no_closed_streams(h2_options, 1);
  h2_callbacks = cb;
  return 0;
}

void h2_teardown(void) {
  nghttp2_session_callbacks_del(h2_callbacks);
  nghttp2_option_del(h2_options);
}

/* The upstream sent its first non-RPING byte: this socket is HTTP/2 now.
 * prefix: bytes of a partial RPING held back; rest: what followed them in
 * the slot's last read. */
void tunnel_start(struct slot *sl, const char *prefix, size_t plen, const uint8_t *rest,
                  size_t restlen) {
  struct agent *ag = sl->ag;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1024},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, ag->cfg.max_header_list},
  };
  struct tunnel *t = recycle_calloc(1, sizeof(*t));

  if (!t ||
      nghttp2_session_server_new3(&t->h2, h2_callbacks, t, h2_options, recycle_nghttp2_mem()) !=
          0 ||
      !(t->kill_ev = event_new(ag->base, -1, 0, tunnel_kill_cb, t)) ||
      !(t->flush_ev = event_new(ag->base, -1, 0, tunnel_flush_cb, t)) ||
      sock_init(&t->sk, ag->base, sl->sk.fd, tunnel_read_cb, tunnel_write_cb, t) < 0) {
    if (t && t->h2)
      nghttp2_session_del(t->h2);
    if (t && t->kill_ev)
      event_free(t->kill_ev);
    if (t && t->flush_ev)
      event_free(t->flush_ev);
    recycle_free(t);
    slot_retry(sl, -1, "out of memory for HTTP/2 session");
    return;
  }
  /* The socket is the tunnel's now, with any echo still queued. */
  evbuffer_add_buffer(t->sk.out, sl->sk.out);
  sock_close(&sl->sk);
  sl->sk.fd = -1;
  sl->state = SLOT_WAIT;
  t->ag = ag;
  t->conn_id = sl->conn_id;
  t->next = ag->tunnels;
  if (ag->tunnels)
    ag->tunnels->prev = t;
  ag->tunnels = t;
  logmsg("slot %u: tunnel %" PRIu64 " taken by upstream, serving HTTP/2", sl->idx, t->conn_id);

  nghttp2_submit_settings(t->h2, NGHTTP2_FLAG_NONE, settings,
                          sizeof(settings) / sizeof(settings[0]));
  nghttp2_session_set_local_window_size(t->h2, NGHTTP2_FLAG_NONE, 0, 16 << 20);
  if (ag->tls_srv_ctx) { /* --tls: the upstream opens a TLS session first */
    if (tunnel_tls_begin(t, prefix, plen, rest, restlen) < 0)
      tunnel_kill(t, "no TLS after the handoff");
    else
      tunnel_read_cb(t->sk.fd, EV_READ, t); /* the ClientHello already read */
  } else {
    tunnel_feed(t, (const uint8_t *)prefix, plen);
    tunnel_feed(t, rest, restlen);
  }
  tunnel_want_flush(t);

  /* Keep --count tunnels parked: replace this one right away. */
  slot_connect(sl);
}
