/*
 * revtun-upstream-proxy: one request/response pair between a client side
 * (HTTP/1.1 connection or h2c stream) and an upstream HTTP/2 stream.
 *
 * Each side tells the exchange when it is done with it; the exchange is freed
 * when neither side refers to it any more. Bodies pass through two
 * evbuffers; a side returns flow-control credit to its peer only for the
 * bytes that left towards the other side, so memory stays bounded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

struct xchg *xchg_new(struct conn *c, int32_t cid) {
  struct xchg *x = recycle_calloc(1, sizeof(*x));

  if (!x)
    return NULL;
  x->req_body = evbuffer_new();
  x->resp_body = evbuffer_new();
  if (!x->req_body || !x->resp_body) {
    if (x->req_body)
      evbuffer_free(x->req_body);
    if (x->resp_body)
      evbuffer_free(x->resp_body);
    recycle_free(x);
    return NULL;
  }
  x->p = c->p;
  x->c = c;
  x->cid = cid;
  x->cnext = c->xs;
  if (c->xs)
    c->xs->cprev = x;
  c->xs = x;
  c->p->n_xchg++;
  return x;
}

static void xchg_maybe_free(struct xchg *x) {
  if (x->c || x->u || x->hold)
    return;
  hbudget_release(&x->p->hb, &x->charged_proc);
  recycle_free(x->auth);
  hdrs_free(&x->req);
  hdrs_free(&x->resp);
  evbuffer_free(x->req_body);
  evbuffer_free(x->resp_body);
  x->p->n_xchg--;
  recycle_free(x);
}

/* Keeps x alive across calls that may end both of its sides. */
void xchg_hold(struct xchg *x) { x->hold++; }

void xchg_release(struct xchg *x) {
  x->hold--;
  xchg_maybe_free(x);
}

/* Keeps the authorization value of a request aside (--client-auth): it is
 * checked here and never forwarded. A second one makes the request bad. */
int xchg_take_auth(struct xchg *x, const char *value, size_t len) {
  if (x->auth || len > 4096 || !(x->auth = recycle_malloc(len + 1)))
    return -1;
  memcpy(x->auth, value, len);
  x->auth[len] = '\0';
  x->auth_len = len;
  return 0;
}

/* Routes the request (headers complete) to a tunnel session, or answers
 * why not: 400/401/403/431 from access_check, 503 without a tunnel. */
void xchg_dispatch(struct xchg *x) {
  struct proxy *p = x->p;
  const char *hname = NULL, *hvalue = NULL;
  char why[320];
  int status;

  p->st.requests++;
  if (x->req_bad) {
    xchg_local_reply(x, 400, "malformed request");
    return;
  }
  if ((status = access_check(p, x, &hname, &hvalue, why, sizeof(why))) != 0) {
    xchg_local_reply_hdr(x, status, why, hname, hvalue);
    return;
  }
  xchg_route(x);
}

/* Sends an admitted request to a tunnel session, or answers 503. Again
 * after another worker's answer came (workers.c). */
void xchg_route(struct xchg *x) {
  struct proxy *p = x->p;
  char why[320];
  struct upsess *u;

  u = up_route(p, x, why, sizeof(why));
  if (x->worker_wait)
    return;                          /* another worker's tunnel is on its way (workers.c) */
  if (!u && x->handoff_tls_failed) { /* the tunnels there failed TLS */
    xchg_local_reply_hdr(x, 502, why, "x-revtun-error", "handoff-tls-failed");
    return;
  }
  if (!u && p->w && workers_retry(x))
    return; /* a tunnel may be moving between workers: look again shortly */
  if (!u) {
    /* with --fleet-redis, another instance may hold the node */
    if (!p->fleet || !fleet_route(x, why, sizeof(why)))
      xchg_local_reply(x, 503, why);
    return;
  }
  if (up_submit(u, x) < 0)
    xchg_local_reply(x, 503, "cannot open a stream on the reverse tunnel");
}

/* The client added request body bytes or finished the request. */
void xchg_request_data(struct xchg *x) {
  if (x->fleet_wait || x->worker_wait)
    return; /* kept for the instance the directory names, or another worker's tunnel */
  if (x->u) {
    up_resume(x);
    return;
  }
  /* Nobody upstream will read it (503, or the upstream stream ended): discard. */
  size_t n = evbuffer_get_length(x->req_body);
  if (n) {
    evbuffer_drain(x->req_body, n);
    conn_request_drained(x, n);
  }
}

/* The client side is finished with x: response delivered, or client gone. */
void xchg_client_done(struct xchg *x) {
  struct conn *c = x->c;

  if (!c)
    return;
  if (x->cprev)
    x->cprev->cnext = x->cnext;
  else
    c->xs = x->cnext;
  if (x->cnext)
    x->cnext->cprev = x->cprev;
  x->c = NULL;
  hbudget_release(&c->hb, &x->charged_conn);
  /* An upstream stream still half-open in either direction is cancelled. */
  if (x->u && !(x->req_done && x->resp_done))
    up_cancel(x);
  xchg_maybe_free(x);
}

static void detach_upstream(struct xchg *x) {
  struct upsess *u = x->u;

  hbudget_release(&u->hb, &x->charged_sess);
  if (x->uprev)
    x->uprev->unext = x->unext;
  else
    u->xs = x->unext;
  if (x->unext)
    x->unext->uprev = x->uprev;
  x->uprev = x->unext = NULL;
  x->u = NULL;
  x->uid = 0;
  x->up_deferred = 0;
  x->resp_unconsumed = 0;
}

/* The agent refused the stream unprocessed (REFUSED_STREAM after its GOAWAY):
 * a request without a body is sent again, on another session. */
int xchg_retry(struct xchg *x) {
  if (!x->u || !x->c || x->resp_head_ready || x->req_has_body || x->retries >= 2)
    return -1;
  detach_upstream(x);
  x->retries++;
  x->p->st.requests--; /* counted once */
  xchg_dispatch(x);
  return 0;
}

/* The TLS session on x's tunnel failed before any frame went out: nothing
 * of the request reached the agent (its body is still in req_body), so it
 * is routed again, twice at most; then 502 handoff-tls-failed. */
void xchg_handoff_failed(struct xchg *x, const char *error) {
  struct proxy *p = x->p;

  if (!x->u)
    return;
  x->handoff_tls_failed = 1;
  detach_upstream(x);
  if (x->c && !p->stopping && x->retries < 2) {
    x->retries++;
    p->st.requests--; /* counted once */
    xchg_dispatch(x);
    return;
  }
  xchg_hold(x);
  if (x->c) {
    char text[512];
    p->st.upstream_resets++;
    snprintf(text, sizeof(text), "reverse tunnel to %s failed: %s", x->target ? x->target : "?",
             error);
    xchg_local_reply_hdr(x, 502, text, "x-revtun-error", "handoff-tls-failed");
  }
  xchg_release(x);
}

/* The upstream stream closed (error NULL), was reset, or its session died. */
void xchg_upstream_done(struct xchg *x, const char *error) {
  char peer[160] = "";

  if (!x->u)
    return;
  if (x->u->peer && x->u->node)
    log_safe(peer, sizeof(peer), x->u->node->cluster, strlen(x->u->node->cluster));
  detach_upstream(x);
  xchg_hold(x);
  if (x->c) {
    if (!x->resp_done) {
      if (!error)
        error = "stream closed before the response ended";
      x->p->st.upstream_resets++;
      if (!x->resp_started) {
        char text[512];
        if (*peer) {
          snprintf(text, sizeof(text), "forwarding %s to instance %s failed: %s",
                   x->target ? x->target : "?", peer, error);
          xchg_local_reply_hdr(x, 502, text, "x-revtun-error", "peer-unreachable");
        } else {
          snprintf(text, sizeof(text), "reverse tunnel to %s failed: %s",
                   x->target ? x->target : "?", error);
          xchg_local_reply(x, 502, text);
        }
      } else {
        x->resp_failed = 1;
        conn_response_abort(x);
      }
    } else if (!x->req_done) {
      /* The response is complete; the rest of the request has no reader. */
      xchg_request_data(x);
    }
  }
  xchg_release(x);
}

/* A response made here (503/502/400...), delivered like an upstream one. */
void xchg_local_reply(struct xchg *x, int status, const char *text) {
  xchg_local_reply_hdr(x, status, text, NULL, NULL);
}

/* Same, with one more header field (hname NULL: none). */
void xchg_local_reply_hdr(struct xchg *x, int status, const char *text, const char *hname,
                          const char *hvalue) {
  char len[24];
  size_t n = strlen(text);

  if (!x->c || x->resp_started)
    return;
  x->p->st.local_replies++;
  VLOG("%s %s: %d %s", hdrs_get(&x->req, ":method") ? hdrs_get(&x->req, ":method") : "-",
       hdrs_get(&x->req, ":path") ? hdrs_get(&x->req, ":path") : "-", status, text);
  hdrs_free(&x->resp);
  x->resp_status = status;
  snprintf(len, sizeof(len), "%zu", n + 1);
  if (hdrs_add(&x->resp, "content-type", 12, "text/plain", 10) < 0 ||
      hdrs_add(&x->resp, "content-length", 14, len, strlen(len)) < 0 ||
      (hname && hdrs_add(&x->resp, hname, strlen(hname), hvalue, strlen(hvalue)) < 0))
    hdrs_free(&x->resp);
  evbuffer_drain(x->resp_body, evbuffer_get_length(x->resp_body));
  evbuffer_add(x->resp_body, text, n);
  evbuffer_add(x->resp_body, "\n", 1);
  x->resp_head_ready = 1;
  x->resp_done = 1;
  xchg_hold(x);
  conn_response_head(x);
  if (x->c)
    conn_response_data(x);
  xchg_release(x);
}

/* n response body bytes left towards the client: return the upstream window. */
void xchg_sent_to_client(struct xchg *x, size_t n) {
  if (x->u)
    up_consumed(x, n);
}

/* n request body bytes left towards the agent: let the client send more. */
void xchg_sent_upstream(struct xchg *x, size_t n) {
  if (x->c)
    conn_request_drained(x, n);
}
