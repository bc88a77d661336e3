/* Lifecycle records and reporter events: built on the stack (the handle's
 * part here, a socket's part by the pool), handed to the host callbacks and
 * then to the loggers and the reporter built from the config (upcalls),
 * read through getters, gone when the callbacks return. */
#include <string.h>

#include "base/text.h"
#include "core/event.h"
#include "core/handle.h"
#include "revtun/transport.h"

void rt_event_init(struct revtun_event *ev, const revtun_t *h, int kind, revtun_time_ms_t now) {
  memset(ev, 0, offsetof(struct revtun_event, fd_buf));
  ev->kind = kind;
  ev->time = now;
  ev->worker = h->opts.worker;
  ev->fd = -1;
  ev->node_id = ev->cluster_id = ev->tenant_id = ev->node_key = ev->cluster_key = "";
  ev->init_worker = ev->init_conn = "";
}

void rt_emit(revtun_t *h, struct revtun_event *ev) {
  if (h->opts.access_log_cb) {
    h->cb_depth++;
    h->opts.access_log_cb(h, ev, h->opts.user_data);
    h->cb_depth--;
  }
  if (h->upcalls.record)
    h->upcalls.record(h, ev);
}

void rt_report(revtun_t *h, struct revtun_event *ev) {
  if (h->opts.reporter_cb) {
    h->cb_depth++;
    h->opts.reporter_cb(h, ev, h->opts.user_data);
    h->cb_depth--;
  }
  if (h->upcalls.report)
    h->upcalls.report(h, ev);
}

/* --------------------------------------------------------------- getters */

static const char *str_out(const char *s, size_t *len) {
  if (len)
    *len = s ? strlen(s) : 0;
  return s;
}

int revtun_event_kind(const revtun_event_t *ev) { return ev ? ev->kind : 0; }
revtun_time_ms_t revtun_event_time_ms(const revtun_event_t *ev) { return ev ? ev->time : 0; }

#define STR_GETTER(name, field)                                                                    \
  const char *revtun_event_##name(const revtun_event_t *ev, size_t *len) {                         \
    return str_out(ev ? ev->field : NULL, len);                                                    \
  }
STR_GETTER(node_id, node_id)
STR_GETTER(cluster_id, cluster_id)
STR_GETTER(tenant_id, tenant_id)
STR_GETTER(node_key, node_key)
STR_GETTER(cluster_key, cluster_key)
STR_GETTER(worker, worker)
STR_GETTER(initiator_worker_id, init_worker)
STR_GETTER(initiator_connection_id, init_conn)

int revtun_event_fd(const revtun_event_t *ev) { return ev ? ev->fd : -1; }
void *revtun_event_sock_user(const revtun_event_t *ev) { return ev ? ev->sock_user : NULL; }
int revtun_event_socket_state(const revtun_event_t *ev) { return ev ? ev->socket_state : 0; }
int revtun_event_close_reason(const revtun_event_t *ev) { return ev ? ev->close_reason : 0; }
int revtun_event_sys_errno(const revtun_event_t *ev) { return ev ? ev->sys_errno : 0; }
uint32_t revtun_event_miss_count(const revtun_event_t *ev) { return ev ? ev->miss_count : 0; }
int64_t revtun_event_initiation_time_ms(const revtun_event_t *ev) {
  return ev ? ev->initiation_time_ms : 0;
}

const char *revtun_event_peer(const revtun_event_t *ev, int field, size_t *len) {
  const char *v = NULL;
  size_t n = 0;
  if (ev && ev->peer && ev->peer->field && ev->peer->field(ev->peer->conn, field, &v, &n) != 0)
    v = NULL;
  if (len)
    *len = v ? n : 0;
  return v;
}

static const struct sockaddr *addr_out(const struct rt_addr *a, socklen_t *len) {
  if (len)
    *len = a ? a->len : 0;
  return a && a->len ? &a->u.sa : NULL;
}

const struct sockaddr *revtun_event_local_addr(const revtun_event_t *ev, socklen_t *len) {
  return addr_out(ev ? ev->local : NULL, len);
}

const struct sockaddr *revtun_event_remote_addr(const revtun_event_t *ev, socklen_t *len) {
  return addr_out(ev ? ev->remote : NULL, len);
}

/* ------------------------------------------------------- the metadata view
 * The keys of Envoy's envoy.reverse_tunnel.lifecycle namespace, in Envoy's
 * order, followed by the extra pairs (handshake validation metadata). */

#define META_MAX 16

static size_t build_meta(const revtun_event_t *cev, struct rt_meta_kv *kv) {
  revtun_event_t *ev = (revtun_event_t *)cev; /* number buffers are filled lazily */
  size_t n = 0;
  kv[n++] = (struct rt_meta_kv){"event", revtun_event_kind_name(ev->kind)};
  kv[n++] = (struct rt_meta_kv){"node_id", ev->node_id};
  kv[n++] = (struct rt_meta_kv){"cluster_id", ev->cluster_id};
  kv[n++] = (struct rt_meta_kv){"tenant_id", ev->tenant_id};
  kv[n++] = (struct rt_meta_kv){"worker", ev->worker};
  kv[n++] = (struct rt_meta_kv){"socket_state", revtun_socket_state_name(ev->socket_state)};
  if (ev->handoff_kind)
    kv[n++] = (struct rt_meta_kv){"handoff_kind", ev->handoff_kind};
  if (ev->close_reason)
    kv[n++] = (struct rt_meta_kv){"close_reason", revtun_close_reason_name(ev->close_reason)};
  if (ev->fd >= 0) {
    kv[n++] = (struct rt_meta_kv){"fd", rt_u64_str((uint64_t)ev->fd, ev->fd_buf)};
  }
  if (ev->kind == REVTUN_EV_PING_MISS || ev->kind == REVTUN_EV_PING_TIMEOUT) {
    kv[n++] = (struct rt_meta_kv){"miss_count", rt_u64_str(ev->miss_count, ev->miss_buf)};
  }
  if (*ev->init_worker)
    kv[n++] = (struct rt_meta_kv){"initiator_worker_id", ev->init_worker};
  if (*ev->init_conn)
    kv[n++] = (struct rt_meta_kv){"initiator_connection_id", ev->init_conn};
  return n;
}

size_t revtun_event_meta_count(const revtun_event_t *ev) {
  if (!ev)
    return 0;
  struct rt_meta_kv kv[META_MAX];
  return build_meta(ev, kv) + ev->n_extra;
}

int revtun_event_meta_get(const revtun_event_t *ev, size_t i, const char **key,
                          const char **value) {
  if (!ev)
    return REVTUN_E_INVAL;
  struct rt_meta_kv kv[META_MAX];
  size_t n = build_meta(ev, kv);
  const struct rt_meta_kv *e;
  if (i < n)
    e = &kv[i];
  else if (i - n < ev->n_extra)
    e = &ev->extra[i - n];
  else
    return REVTUN_E_NOT_FOUND;
  if (key)
    *key = e->key;
  if (value)
    *value = e->value;
  return REVTUN_OK;
}

const char *revtun_event_meta_find(const revtun_event_t *ev, const char *key) {
  if (!ev || !key)
    return NULL;
  struct rt_meta_kv kv[META_MAX];
  size_t n = build_meta(ev, kv);
  for (size_t i = 0; i < n; i++)
    if (strcmp(kv[i].key, key) == 0)
      return kv[i].value;
  for (size_t i = 0; i < ev->n_extra; i++)
    if (strcmp(ev->extra[i].key, key) == 0)
      return ev->extra[i].value;
  return NULL;
}
