/*
 * revtun-upstream-proxy: h2c client connections (HTTP/2 with prior
 * knowledge). Every stream is an exchange; request bodies are credited back
 * to the client (WINDOW_UPDATE) only once they went upstream.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;

static int feed(struct conn *c, const uint8_t *data, size_t len) {
  ssize_t rv = nghttp2_session_mem_recv(c->h2, data, len);

  if (rv < 0) {
    conn_kill(c, nghttp2_strerror((int)rv));
    return -1;
  }
  return c->dying ? -1 : 0;
}

int h2c_start(struct conn *c) {
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, CLIENT_MAX_STREAMS},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, c->p->cfg.max_header_list},
  };
  size_t n;

  if (nghttp2_session_server_new3(&c->h2, callbacks, c, options, recycle_nghttp2_mem()) != 0 ||
      nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, settings,
                              sizeof(settings) / sizeof(settings[0])) != 0 ||
      nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0)
    return -1;
  if (c->p->stopping)
    h2c_drain(c);
  /* what protocol detection read, preface included; later reads skip c->in */
  while ((n = evbuffer_get_contiguous_space(c->in)) > 0) {
    if (feed(c, evbuffer_pullup(c->in, (ev_ssize_t)n), n) < 0)
      return 0;
    evbuffer_drain(c->in, n);
  }
  h2c_work(c);
  return 0;
}

/* Sends what nghttp2 has queued; ends the connection once both sides are done. */
void h2c_work(struct conn *c) {
  struct evbuffer *out = c->s.out;
  int rv;

  if (c->close_when_flushed) { /* nothing more from nghttp2: just the last bytes */
    conn_write(c);
    return;
  }
  for (;;) {
    size_t before, produced;
    if (c->dying)
      break;
    before = evbuffer_get_length(out);
    if ((rv = nghttp2_session_send(c->h2)) != 0) {
      conn_kill(c, nghttp2_strerror(rv));
      return;
    }
    produced = evbuffer_get_length(out) - before;
    conn_write(c);
    /* stop when the kernel is full (EV_WRITE resumes us) or nghttp2 is done */
    if (c->dying || c->s.writing || produced == 0 || !nghttp2_session_want_write(c->h2))
      break;
  }
  if (!c->dying && !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
    VLOG("HTTP/2 client session finished");
    conn_close_when_flushed(c);
  }
}

void h2c_read(struct conn *c) {
  static _Thread_local uint8_t buf[READ_CHUNK]; /* one per --workers thread */
  size_t budget = READ_BUDGET;

  while (!c->dying && budget > 0) {
    ssize_t n = sock_read(&c->s, buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      conn_kill(c, n == 0 ? "closed by the client" : strerror(errno));
      return;
    }
    if (n < 0 || feed(c, buf, (size_t)n) < 0)
      break;
    if ((size_t)n < sizeof(buf))
      break;
    budget -= (size_t)n < budget ? (size_t)n : budget;
  }
  h2c_work(c);
}

void h2c_drain(struct conn *c) {
  if (c->goaway_sent || c->dying)
    return;
  c->goaway_sent = 1;
  nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->h2),
                        NGHTTP2_NO_ERROR, NULL, 0);
  conn_want_work(c);
}

/* --------------------------------------------------------- responses */

static ssize_t body_read_cb(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *user_data) {
  struct xchg *x = source->ptr;
  size_t avail = evbuffer_get_length(x->resp_body);
  size_t n = avail < length ? avail : length;

  (void)session, (void)id, (void)buf, (void)user_data;
  if (n == 0 && !x->resp_done) {
    x->cl_deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  if (n > 0)
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (x->resp_done && n == avail)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

void h2c_response_head(struct xchg *x) {
  struct conn *c = x->c;
  nghttp2_nv *nva = c->p->nv_scratch; /* room for any response head */
  nghttp2_data_provider prd;
  char status[8];
  size_t n = 0;
  int no_body = x->is_head || x->resp_status == 204 || x->resp_status == 304;

  if (x->resp.n + 1 > (size_t)c->p->cfg.max_headers + NV_SCRATCH_EXTRA) {
    h2c_response_abort(x); /* cannot happen: on_header and local replies stay below */
    return;
  }
  x->resp_started = 1;
  snprintf(status, sizeof(status), "%d", x->resp_status);
  nva[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, strlen(status),
                          NGHTTP2_NV_FLAG_NONE};
  for (size_t i = 0; i < x->resp.n; i++)
    if (!is_hop_by_hop((const char *)x->resp.v[i].name, x->resp.v[i].namelen))
      nva[n++] = x->resp.v[i];
  if (no_body) {
    /* nothing may follow the head: drop a body the agent sent anyway */
    x->resp_done = 1;
    evbuffer_drain(x->resp_body, evbuffer_get_length(x->resp_body));
  }
  prd.source.ptr = x;
  prd.read_callback = body_read_cb;
  nghttp2_submit_response(c->h2, x->cid, nva, n,
                          x->resp_done && !evbuffer_get_length(x->resp_body) ? NULL : &prd);
  conn_want_work(c);
}

void h2c_response_data(struct xchg *x) {
  if (x->cl_deferred) {
    x->cl_deferred = 0;
    nghttp2_session_resume_data(x->c->h2, x->cid);
    conn_want_work(x->c);
  }
}

void h2c_response_abort(struct xchg *x) {
  nghttp2_submit_rst_stream(x->c->h2, NGHTTP2_FLAG_NONE, x->cid, NGHTTP2_INTERNAL_ERROR);
  conn_want_work(x->c);
}

void h2c_request_drained(struct xchg *x, size_t n) {
  if (n > x->req_unconsumed)
    n = x->req_unconsumed;
  if (!n)
    return;
  x->req_unconsumed -= n;
  nghttp2_session_consume(x->c->h2, x->cid, n);
  conn_want_work(x->c);
}

/* ----------------------------------------------------- nghttp2 callbacks */

static ssize_t send_cb(nghttp2_session *session, const uint8_t *data, size_t len, int flags,
                       void *user_data) {
  (void)session, (void)flags;
  return sock_h2_send(&((struct conn *)user_data)->s, data, len);
}

static int send_data_cb(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *user_data) {
  struct conn *c = user_data;
  struct xchg *x = source->ptr;

  (void)session, (void)frame;
  int rv = sock_h2_send_data(&c->s, framehd, x->resp_body, length);
  if (rv == 0)
    xchg_sent_to_client(x, length);
  return rv;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  struct conn *c = user_data;
  struct xchg *x;

  if (c->dying || frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  if (!(x = xchg_new(c, frame->hd.stream_id)))
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, x);
  return 0;
}

/* Every field of a request counts against the stream's limits and the
 * connection's and process's budgets; past any of them the stream is reset
 * (nghttp2 answers a failed callback with RST_STREAM and skips the rest of
 * the header block, which it still decodes without keeping). */
static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data) {
  struct xchg *x = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  struct conn *c = user_data;
  size_t cost = namelen + valuelen + HEADER_FIELD_OVERHEAD;

  (void)flags;
  if (!x || frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0; /* trailers are dropped */
  x->req_cost += cost;
  if (x->req_cost > c->p->cfg.max_header_list || x->req.n >= c->p->cfg.max_headers ||
      hbudget_charge(x, cost, 0) < 0) {
    c->p->st.header_limit_resets++;
    VLOG("h2c stream %d: request header section over the limits: reset", frame->hd.stream_id);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  if (namelen == 7 && !memcmp(name, ":method", 7))
    x->is_head = valuelen == 4 && !memcmp(value, "HEAD", 4);
  if (namelen == 2 && !memcmp(name, "te", 2))
    return 0;
  if (c->p->auth && namelen == 13 && !memcmp(name, "authorization", 13)) {
    if (xchg_take_auth(x, (const char *)value, valuelen) < 0)
      x->req_bad = 1;
    return 0; /* checked here, never forwarded */
  }
  if (hdrs_add(&x->req, (const char *)name, namelen, (const char *)value, valuelen) < 0)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  struct conn *c = user_data;
  struct xchg *x;

  if (c->dying || (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA))
    return 0;
  x = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (!x)
    return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    x->req_has_body = !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
    x->req_done = !x->req_has_body;
    xchg_dispatch(x);
  } else if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
    x->req_done = 1;
    xchg_request_data(x);
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user_data) {
  struct xchg *x = nghttp2_session_get_stream_user_data(session, id);

  (void)flags, (void)user_data;
  if (!x) {
    nghttp2_session_consume(session, id, len);
    return 0;
  }
  evbuffer_add(x->req_body, data, len);
  x->req_unconsumed += len;
  xchg_request_data(x);
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code,
                           void *user_data) {
  struct xchg *x = nghttp2_session_get_stream_user_data(session, id);

  (void)error_code, (void)user_data;
  if (!x)
    return 0;
  if (x->req_unconsumed)
    nghttp2_session_consume_connection(session, x->req_unconsumed);
  x->req_unconsumed = 0;
  xchg_client_done(x);
  return 0;
}

int h2c_setup(void) {
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
  nghttp2_option_set_no_auto_window_update(options, 1);
  /* Closed streams are kept only for the priority tree, which nobody uses:
   * up to SETTINGS_MAX_CONCURRENT_STREAMS of them per session, memory and
   * tree upkeep for nothing. */
  nghttp2_option_set_no_closed_streams(options, 1);
  callbacks = cb;
  return 0;
}

void h2c_teardown(void) {
  nghttp2_session_callbacks_del(callbacks);
  nghttp2_option_del(options);
}
