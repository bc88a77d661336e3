/* revtun-upstream-proxy: nghttp2 output to sockets, header lists and their budgets, JSON
 * strings, reopening the access logs. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy.h"

/* ---------------------------------------------------------------- sockets */

/* nghttp2's send and send_data callbacks for a session on s: frames are
 * queued in s->out (written by the loop), data frames move the body's bytes
 * without a copy; both refuse when the socket is OUT_HIGH behind. */
ssize_t sock_h2_send(struct sock *s, const uint8_t *data, size_t len) {
  if (evbuffer_get_length(s->out) >= OUT_HIGH)
    return NGHTTP2_ERR_WOULDBLOCK;
  if (evbuffer_add(s->out, data, len) < 0)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  return (ssize_t)len;
}

int sock_h2_send_data(struct sock *s, const uint8_t *framehd, struct evbuffer *body,
                      size_t length) {
  if (evbuffer_get_length(s->out) >= OUT_HIGH)
    return NGHTTP2_ERR_WOULDBLOCK;
  evbuffer_add(s->out, framehd, 9);
  evbuffer_remove_buffer(body, s->out, length);
  return 0;
}

/* ------------------------------------------------------------- headers */

/* All names and values of a list live in one buffer (NUL-terminated), so a
 * typical header block costs two allocations, not two per field. */
int hdrs_add(struct hdrs *h, const char *name, size_t nlen, const char *value, size_t vlen) {
  size_t need = nlen + vlen + 2;

  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 16;
    nghttp2_nv *v = recycle_realloc(h->v, cap * sizeof(*v));
    if (!v)
      return -1;
    h->v = v;
    h->cap = cap;
  }
  if (h->len + need > h->bcap) {
    size_t bcap = h->bcap ? h->bcap : 512;
    char *b;
    while (bcap < h->len + need)
      bcap *= 2;
    for (size_t i = 0; i < h->n; i++) { /* pointers become offsets ... */
      h->v[i].name = (uint8_t *)(uintptr_t)(h->v[i].name - (uint8_t *)h->buf);
      h->v[i].value = (uint8_t *)(uintptr_t)(h->v[i].value - (uint8_t *)h->buf);
    }
    b = recycle_realloc(h->buf, bcap);
    if (b) {
      h->buf = b;
      h->bcap = bcap;
    }
    for (size_t i = 0; i < h->n; i++) { /* ... and pointers again */
      h->v[i].name = (uint8_t *)h->buf + (uintptr_t)h->v[i].name;
      h->v[i].value = (uint8_t *)h->buf + (uintptr_t)h->v[i].value;
    }
    if (!b)
      return -1;
  }
  nghttp2_nv *nv = &h->v[h->n++];
  nv->name = (uint8_t *)h->buf + h->len;
  memcpy(nv->name, name, nlen);
  nv->name[nlen] = '\0';
  nv->value = nv->name + nlen + 1;
  memcpy(nv->value, value, vlen);
  nv->value[vlen] = '\0';
  nv->namelen = nlen;
  nv->valuelen = vlen;
  nv->flags = NGHTTP2_NV_FLAG_NONE;
  h->len += need;
  return 0;
}

/* The first field of a (lowercase) name; it stays where it is until the
 * next hdrs_add(). Its value is NUL-terminated after valuelen bytes; the
 * parsers refuse NUL inside values, so it is also a C string. */
const nghttp2_nv *hdrs_find(const struct hdrs *h, const char *name) {
  size_t len = strlen(name);
  for (size_t i = 0; i < h->n; i++)
    if (h->v[i].namelen == len && !memcmp(h->v[i].name, name, len))
      return &h->v[i];
  return NULL;
}

/* The first value of a (lowercase) name, for logs. */
const char *hdrs_get(const struct hdrs *h, const char *name) {
  const nghttp2_nv *nv = hdrs_find(h, name);
  return nv ? (const char *)nv->value : NULL;
}

/* Charges cost header bytes kept for x to the budgets of its client
 * connection, of its session (for response headers, from_agent) and of the
 * process. -1, charging nothing, when any of them would go over its limit. */
int hbudget_charge(struct xchg *x, size_t cost, int from_agent) {
  struct hbudget *conn = x->c ? &x->c->hb : NULL;
  struct hbudget *sess = from_agent && x->u ? &x->u->hb : NULL;
  struct hbudget *proc = &x->p->hb;

  if ((conn && conn->used + cost > conn->limit) || (sess && sess->used + cost > sess->limit) ||
      proc->used + cost > proc->limit)
    return -1;
  if (conn) {
    conn->used += cost;
    x->charged_conn += cost;
  }
  if (sess) {
    sess->used += cost;
    x->charged_sess += cost;
  }
  proc->used += cost;
  x->charged_proc += cost;
  return 0;
}

/* Gives back to b what *charged holds of it. */
void hbudget_release(struct hbudget *b, size_t *charged) {
  b->used -= *charged < b->used ? *charged : b->used;
  *charged = 0;
}

void hdrs_free(struct hdrs *h) {
  recycle_free(h->v);
  recycle_free(h->buf);
  memset(h, 0, sizeof(*h));
}

/* Connection-specific fields (not allowed in HTTP/2) and the ones HTTP/2 carries
 * as pseudo-headers or handles itself: never forwarded. */
int is_hop_by_hop(const char *name, size_t len) {
  static const struct {
    const char *name;
    size_t len;
  } names[] = {{"te", 2},
               {"host", 4},
               {"expect", 6},
               {"upgrade", 7},
               {"keep-alive", 10},
               {"connection", 10},
               {"http2-settings", 14},
               {"proxy-connection", 16},
               {"transfer-encoding", 17}};
  if (len < 2 || len > 17)
    return 0;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (names[i].len == len && h1_str_ieq((struct h1_str){name, len}, names[i].name))
      return 1;
  return 0;
}

const char *reason_phrase(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 413: return "Content Too Large";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  case 417: return "Expectation Failed";
  default:
    return status < 300   ? "OK"
           : status < 400 ? "Redirect"
           : status < 500 ? "Error"
                          : "Server Error";
  }
}

/* A JSON string literal for any bytes (see json_escape in common.h). */
void json_string(struct evbuffer *out, const char *s, size_t len) {
  char small[256];
  size_t need = json_escape(small, sizeof(small), (const uint8_t *)s, len);
  char *big;

  if (need < sizeof(small)) {
    evbuffer_add(out, small, need);
  } else if ((big = malloc(need + 1))) {
    json_escape(big, need + 1, (const uint8_t *)s, len);
    evbuffer_add(out, big, need);
    free(big);
  } else {
    evbuffer_add(out, "\"\"", 2);
  }
}

/* ------------------------------------------------------------------ logs */

/* SIGUSR1: the config's access-log files are opened again (after logrotate
 * moved them). With --workers every worker is told; the handles share each
 * file, so it is reopened once. Only a failure is logged here: the signal
 * handler has said what it does. */
void proxy_reopen_logs(struct proxy *p) {
  int rc = revtun_reopen_logs(p->h);
  if (rc != REVTUN_OK)
    logmsg("SIGUSR1: reopening the access logs failed (%s); still writing to the old files",
           revtun_status_name(rc));
}
