/* The command operators: their table, their arguments, and what each one
 * yields for a context. Values are typed (string, number, absent, or the
 * whole lifecycle namespace) so JSON output can keep numbers as numbers. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "base/conn_meta.h"
#include "format/format_int.h"
#include "revtun/revtun.h"
#include "revtun/transport.h"

#define LIFECYCLE_NS "envoy.reverse_tunnel.lifecycle"
#define FILTER_STATE_PREFIX "envoy.reverse_tunnel."
#define RT_TIME_FORMAT_MAX 128u

static const struct rt_fmt_opdef ops[] = {
    {"START_TIME", RT_OP_START_TIME, 0, RT_FMT_OP_START_TIME, RT_ARG_OPTIONAL, 0},
    {"DYNAMIC_METADATA", RT_OP_DYN_META, 0, RT_FMT_OP_DYNAMIC_METADATA, RT_ARG_REQUIRED, 0},
    {"FILTER_STATE", RT_OP_FILTER_STATE, 0, RT_FMT_OP_FILTER_STATE, RT_ARG_REQUIRED, 0},
    {"DOWNSTREAM_REMOTE_ADDRESS", RT_OP_ADDRESS, 0, RT_FMT_OP_DOWNSTREAM_ADDRESS, RT_ARG_NONE, 0},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", RT_OP_ADDRESS, RT_PF_NO_PORT,
     RT_FMT_OP_DOWNSTREAM_ADDRESS, RT_ARG_NONE, 0},
    {"DOWNSTREAM_LOCAL_ADDRESS", RT_OP_ADDRESS, RT_PF_LOCAL, RT_FMT_OP_DOWNSTREAM_ADDRESS,
     RT_ARG_NONE, 0},
    {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", RT_OP_ADDRESS, RT_PF_LOCAL | RT_PF_NO_PORT,
     RT_FMT_OP_DOWNSTREAM_ADDRESS, RT_ARG_NONE, 0},
    {"DOWNSTREAM_REMOTE_PORT", RT_OP_PORT, 0, RT_FMT_OP_DOWNSTREAM_ADDRESS, RT_ARG_NONE, 0},
    {"DOWNSTREAM_LOCAL_PORT", RT_OP_PORT, RT_PF_LOCAL, RT_FMT_OP_DOWNSTREAM_ADDRESS, RT_ARG_NONE,
     0},
    {"CONNECTION_TERMINATION_DETAILS", RT_OP_TERMINATION, 0, RT_FMT_OP_TERMINATION_DETAILS,
     RT_ARG_NONE, 0},
    {"REQ", RT_OP_REQ, 0, RT_FMT_OP_REQ, RT_ARG_REQUIRED, 0},
    {"DOWNSTREAM_PEER_URI_SAN", RT_OP_PEER, 0, RT_FMT_OP_PEER, RT_ARG_NONE, REVTUN_PEER_URI_SAN},
    {"DOWNSTREAM_PEER_DNS_SAN", RT_OP_PEER, 0, RT_FMT_OP_PEER, RT_ARG_NONE, REVTUN_PEER_DNS_SAN},
    {"DOWNSTREAM_PEER_SUBJECT", RT_OP_PEER, 0, RT_FMT_OP_PEER, RT_ARG_NONE, REVTUN_PEER_SUBJECT},
    {"DOWNSTREAM_PEER_ISSUER", RT_OP_PEER, 0, RT_FMT_OP_PEER, RT_ARG_NONE, REVTUN_PEER_ISSUER},
    {"DOWNSTREAM_PEER_FINGERPRINT_256", RT_OP_PEER, 0, RT_FMT_OP_PEER, RT_ARG_NONE,
     REVTUN_PEER_FINGERPRINT_256},
    {"DOWNSTREAM_PEER_SERIAL", RT_OP_PEER, 0, RT_FMT_OP_PEER, RT_ARG_NONE, REVTUN_PEER_SERIAL},
    {"DOWNSTREAM_TLS_VERSION", RT_OP_PEER, 0, RT_FMT_OP_PEER, RT_ARG_NONE, REVTUN_PEER_TLS_VERSION},
    {"DOWNSTREAM_PEER_CERT_V_START", RT_OP_PEER_TIME, 0, RT_FMT_OP_PEER, RT_ARG_OPTIONAL,
     REVTUN_PEER_CERT_V_START},
    {"DOWNSTREAM_PEER_CERT_V_END", RT_OP_PEER_TIME, 0, RT_FMT_OP_PEER, RT_ARG_OPTIONAL,
     REVTUN_PEER_CERT_V_END},
    {"ACCESS_LOG_TYPE", RT_OP_LOG_TYPE, 0, RT_FMT_OP_RECORD, RT_ARG_NONE, 0},
    {"CONNECTION_ID", RT_OP_CONN_ID, 0, RT_FMT_OP_RECORD, RT_ARG_NONE, 0},
};

const struct rt_fmt_opdef *rt_fmt_find_op(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
    if (strlen(ops[i].name) == len && memcmp(ops[i].name, name, len) == 0)
      return &ops[i];
  return NULL;
}

/* Keys of the lifecycle namespace that have a getter of their own, resolved
 * when the format is compiled so that rendering calls that getter instead of
 * building and searching the metadata view for every operator. The presence
 * rules are those of the view (revtun_event_meta_find); check_format
 * compares the two for every key. Other keys (handoff_kind, the extra
 * pairs) are looked up in the view. */
enum rt_meta_key {
  MK_OTHER,
  MK_EVENT,
  MK_NODE_ID,
  MK_CLUSTER_ID,
  MK_TENANT_ID,
  MK_WORKER,
  MK_SOCKET_STATE,
  MK_CLOSE_REASON,
  MK_FD,
  MK_MISS_COUNT,
  MK_INIT_WORKER,
  MK_INIT_CONN
};

static uint8_t meta_key(const char *k) {
  static const char *const names[] = {
      [MK_EVENT] = "event",
      [MK_NODE_ID] = "node_id",
      [MK_CLUSTER_ID] = "cluster_id",
      [MK_TENANT_ID] = "tenant_id",
      [MK_WORKER] = "worker",
      [MK_SOCKET_STATE] = "socket_state",
      [MK_CLOSE_REASON] = "close_reason",
      [MK_FD] = "fd",
      [MK_MISS_COUNT] = "miss_count",
      [MK_INIT_WORKER] = "initiator_worker_id",
      [MK_INIT_CONN] = "initiator_connection_id",
  };
  for (uint8_t i = MK_EVENT; i < sizeof(names) / sizeof(names[0]); i++)
    if (strcmp(k, names[i]) == 0)
      return i;
  return MK_OTHER;
}

/* The filter-state keys a record carries, envoy.reverse_tunnel.<key>
 * (0 = a key the library never sets: absent). */
enum rt_fs_key {
  FS_NONE,
  FS_NODE_ID,
  FS_CLUSTER_ID,
  FS_TENANT_ID,
  FS_WORKER,
  FS_FD,
  FS_INIT_WORKER,
  FS_INIT_CONN
};

static uint8_t filter_state_key(const char *k) {
  static const struct {
    const char *name;
    uint8_t id;
  } keys[] = {
      {"node_id", FS_NODE_ID},
      {"cluster_id", FS_CLUSTER_ID},
      {"tenant_id", FS_TENANT_ID},
      {"worker", FS_WORKER},
      {"fd", FS_FD},
      {"initiator_worker_id", FS_INIT_WORKER},
      {"initiator_connection_id", FS_INIT_CONN},
  };
  size_t plen = strlen(FILTER_STATE_PREFIX);
  if (strncmp(k, FILTER_STATE_PREFIX, plen) != 0)
    return FS_NONE;
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    if (strcmp(k + plen, keys[i].name) == 0)
      return keys[i].id;
  return FS_NONE;
}

/* Header names are matched in lower case, as HTTP/1.1 and Envoy do. */
static int header_name(char *name, char *err, size_t errlen) {
  if (!*name)
    return rt_fmt_fail(err, errlen, "empty header name");
  for (char *c = name; *c; c++) {
    unsigned char u = (unsigned char)*c;
    if (u <= 0x20 || u >= 0x7f || u == '"')
      return rt_fmt_fail(err, errlen, "invalid character 0x%02x in header name", u);
    if (u >= 'A' && u <= 'Z')
      *c = (char)(u - 'A' + 'a');
  }
  return REVTUN_OK;
}

/* "name" or "name?alternative" (the alternative is used when name is absent). */
static int parse_req(struct rt_fmt_part *p, char *arg, char *err, size_t errlen) {
  char *q = strchr(arg, '?');
  if (q) {
    *q++ = '\0';
    if (strchr(q, '?'))
      return rt_fmt_fail(err, errlen, "more than one alternative header");
    if (header_name(q, err, errlen))
      return REVTUN_E_CONFIG;
    p->b = q;
  }
  p->a = arg;
  return header_name(arg, err, errlen);
}

int rt_fmt_parse_arg(struct rt_fmt_part *p, char *arg, char *err, size_t errlen) {
  switch (p->op) {
  case RT_OP_START_TIME:
  case RT_OP_PEER_TIME:
    if (!arg || !*arg) {
      p->a = NULL; /* Envoy's default: %Y-%m-%dT%H:%M:%E3SZ */
      return REVTUN_OK;
    }
    if (strlen(arg) > RT_TIME_FORMAT_MAX)
      return rt_fmt_fail(err, errlen, "time format is longer than %u bytes", RT_TIME_FORMAT_MAX);
    p->a = arg;
    return rt_fmt_check_time_format(arg, err, errlen);
  case RT_OP_DYN_META: {
    char *key = strchr(arg, ':');
    if (key)
      *key++ = '\0';
    if (!*arg)
      return rt_fmt_fail(err, errlen, "a namespace is required");
    if (key) {
      char *deeper = strchr(key, ':');
      if (deeper) {
        *deeper = '\0';
        p->flags |= RT_PF_DEEP; /* every value is a scalar: no path below a key */
      }
    }
    p->b = arg; /* the namespace, for a connection's metadata (up to a ':' once joined) */
    if (strcmp(arg, LIFECYCLE_NS) != 0) {
      if (!key) {
        p->flags |= RT_PF_OTHER_NS; /* whole foreign namespaces are never set */
      } else {
        /* Other namespaces (the acceptor's validation metadata) ride on the
         * record as extra pairs keyed "<namespace>:<key>". */
        key[-1] = ':';
        p->a = arg;
        p->key = MK_OTHER;
        return REVTUN_OK;
      }
    }
    p->a = key;
    p->key = key ? meta_key(key) : MK_OTHER;
    return REVTUN_OK;
  }
  case RT_OP_FILTER_STATE: {
    char *ser = strchr(arg, ':');
    if (ser) {
      *ser++ = '\0';
      if (strchr(ser, ':'))
        return rt_fmt_fail(err, errlen, "only the PLAIN and TYPED serializations are supported");
      if (strcmp(ser, "PLAIN") == 0)
        p->flags |= RT_PF_PLAIN;
      else if (strcmp(ser, "TYPED") != 0)
        return rt_fmt_fail(err, errlen, "serialization must be PLAIN or TYPED (got '%s')", ser);
    }
    if (!*arg)
      return rt_fmt_fail(err, errlen, "a filter state key is required");
    p->key = filter_state_key(arg);
    p->a = arg;
    return REVTUN_OK;
  }
  case RT_OP_REQ: return parse_req(p, arg, err, errlen);
  default: return REVTUN_OK;
  }
}

/* -------------------------------------------------------------- evaluation */

static void set_str(struct rt_fmt_val *v, const char *s) {
  if (!s || !*s)
    return; /* absent */
  v->kind = RT_V_STR;
  v->s = s;
  v->len = strlen(s);
}

static bool parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s)
    return false;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
      return false;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = v;
  return true;
}

/* Values of the lifecycle namespace that Envoy's docs call numbers. */
static bool numeric_meta_key(const char *key) {
  return strcmp(key, "fd") == 0 || strcmp(key, "miss_count") == 0;
}

static void set_present(struct rt_fmt_val *v, const char *s) {
  v->kind = RT_V_STR; /* present, even when empty (Envoy always sets node_id etc.) */
  v->s = s ? s : "";
  v->len = strlen(v->s);
}

/* A key of the view read through its getter; false when the record does not
 * carry it (an extra pair of that name may still exist). */
static bool meta_direct(uint8_t key, const revtun_event_t *ev, struct rt_fmt_val *v) {
  int kind = revtun_event_kind(ev);
  const char *s;
  switch (key) {
  case MK_EVENT: set_present(v, revtun_event_kind_name(kind)); return true;
  case MK_NODE_ID: set_present(v, revtun_event_node_id(ev, NULL)); return true;
  case MK_CLUSTER_ID: set_present(v, revtun_event_cluster_id(ev, NULL)); return true;
  case MK_TENANT_ID: set_present(v, revtun_event_tenant_id(ev, NULL)); return true;
  case MK_WORKER: set_present(v, revtun_event_worker(ev, NULL)); return true;
  case MK_SOCKET_STATE:
    set_present(v, revtun_socket_state_name(revtun_event_socket_state(ev)));
    return true;
  case MK_CLOSE_REASON:
    if (!revtun_event_close_reason(ev))
      return false;
    set_present(v, revtun_close_reason_name(revtun_event_close_reason(ev)));
    return true;
  case MK_FD:
    if (revtun_event_fd(ev) < 0)
      return false;
    v->kind = RT_V_NUM;
    v->num = (uint64_t)revtun_event_fd(ev);
    return true;
  case MK_MISS_COUNT:
    if (kind != REVTUN_EV_PING_MISS && kind != REVTUN_EV_PING_TIMEOUT)
      return false;
    v->kind = RT_V_NUM;
    v->num = revtun_event_miss_count(ev);
    return true;
  case MK_INIT_WORKER:
    if (!(s = revtun_event_initiator_worker_id(ev, NULL)) || !*s)
      return false;
    set_present(v, s);
    return true;
  case MK_INIT_CONN:
    if (!(s = revtun_event_initiator_connection_id(ev, NULL)) || !*s)
      return false;
    set_present(v, s);
    return true;
  default: return false;
  }
}

static void eval_meta(const struct rt_fmt_part *p, const revtun_event_t *ev, struct rt_fmt_val *v) {
  if (!ev || (p->flags & (RT_PF_OTHER_NS | RT_PF_DEEP)))
    return;
  if (!p->a) {
    v->kind = RT_V_META;
    return;
  }
  if (meta_direct(p->key, ev, v))
    return;
  const char *val = revtun_event_meta_find(ev, p->a); /* the extra pairs */
  if (!val)
    return;
  if (numeric_meta_key(p->a) && parse_u64(val, &v->num))
    v->kind = RT_V_NUM;
  else
    set_present(v, val);
}

/* %DYNAMIC_METADATA(ns[:key])% over what the host attached to a connection:
 * every value is a string, so a path below a key is absent (as Envoy finds
 * no field in a string value), and a whole namespace is its entries as a JSON
 * object, absent when it has none. */
static void eval_conn_meta(const struct rt_fmt_part *p, const revtun_conn_meta_t *m,
                           struct rt_fmt_val *v) {
  if (!m || (p->flags & RT_PF_DEEP))
    return;
  size_t ns_len = strcspn(p->b, ":");
  if (!p->a) {
    for (size_t i = 0; i < m->n; i++)
      if (m->e[i].ns && m->e[i].ns_len == ns_len && memcmp(m->e[i].ns, p->b, ns_len) == 0) {
        v->kind = RT_V_META;
        v->s = p->b;
        v->len = ns_len;
        return;
      }
    return;
  }
  const char *key = p->a == p->b ? p->a + ns_len + 1 : p->a; /* "ns:key" once joined */
  size_t len = 0;
  const char *val = rt_conn_meta_find(m, p->b, ns_len, key, strlen(key), &len);
  if (val) {
    v->kind = RT_V_STR; /* present, even when empty, as a string value in Envoy */
    v->s = val;
    v->len = len;
  }
}

/* %FILTER_STATE(key)% over a connection's metadata: each value is a string
 * object, which TYPED prints as a JSON string and PLAIN as it is. */
static void eval_conn_filter_state(const struct rt_fmt_part *p, const revtun_conn_meta_t *m,
                                   struct rt_fmt_val *v) {
  size_t len = 0;
  const char *val = m ? rt_conn_meta_find(m, NULL, 0, p->a, strlen(p->a), &len) : NULL;
  if (!val)
    return;
  v->kind = RT_V_STR;
  v->s = val;
  v->len = len;
  v->quote_text = !(p->flags & RT_PF_PLAIN);
}

static void eval_filter_state(const struct rt_fmt_part *p, const revtun_event_t *ev,
                              struct rt_fmt_val *v) {
  if (!ev)
    return;
  switch (p->key) {
  case FS_NODE_ID: set_str(v, revtun_event_node_id(ev, NULL)); break;
  case FS_CLUSTER_ID: set_str(v, revtun_event_cluster_id(ev, NULL)); break;
  case FS_TENANT_ID: set_str(v, revtun_event_tenant_id(ev, NULL)); break;
  case FS_WORKER: set_str(v, revtun_event_worker(ev, NULL)); break;
  case FS_INIT_WORKER: set_str(v, revtun_event_initiator_worker_id(ev, NULL)); break;
  case FS_INIT_CONN: set_str(v, revtun_event_initiator_connection_id(ev, NULL)); break;
  case FS_FD:
    /* A uint64 accessor: PLAIN prints the number, TYPED its JSON ("321"). */
    if (revtun_event_fd(ev) >= 0) {
      snprintf(v->buf, sizeof(v->buf), "%d", revtun_event_fd(ev));
      set_str(v, v->buf);
    }
    break;
  default: break;
  }
  if (v->kind == RT_V_STR)
    v->quote_text = !(p->flags & RT_PF_PLAIN);
}

static const struct sockaddr *pick_addr(const struct rt_fmt_part *p, const struct rt_fmt_ctx *c,
                                        socklen_t *len) {
  if (c->ev)
    return (p->flags & RT_PF_LOCAL) ? revtun_event_local_addr(c->ev, len)
                                    : revtun_event_remote_addr(c->ev, len);
  *len = (p->flags & RT_PF_LOCAL) ? c->local_len : c->remote_len;
  return (p->flags & RT_PF_LOCAL) ? c->local : c->remote;
}

/* IPv4 "a.b.c.d:port", IPv6 "[addr]:port" (as Envoy prints them); the
 * _WITHOUT_PORT forms drop the port and the brackets. Anything else, an
 * AF_UNIX peer included, is absent. */
static void eval_address(const struct rt_fmt_part *p, const struct rt_fmt_ctx *c,
                         struct rt_fmt_val *v) {
  socklen_t len = 0;
  const struct sockaddr *sa = pick_addr(p, c, &len);
  if (!sa)
    return;
  char ip[INET6_ADDRSTRLEN];
  unsigned port;
  if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    if (!inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip)))
      return;
    port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
    if (!inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip)))
      return;
    port = ntohs(in6->sin6_port);
  } else {
    return;
  }
  if (p->op == RT_OP_PORT) {
    v->kind = RT_V_NUM;
    v->num = port;
    return;
  }
  int n;
  if (p->flags & RT_PF_NO_PORT)
    n = snprintf(v->buf, sizeof(v->buf), "%s", ip);
  else if (sa->sa_family == AF_INET6)
    n = snprintf(v->buf, sizeof(v->buf), "[%s]:%u", ip, port);
  else
    n = snprintf(v->buf, sizeof(v->buf), "%s:%u", ip, port);
  v->kind = RT_V_STR;
  v->s = v->buf;
  v->len = (size_t)n;
}

/* A field of the peer's identity: from the record, or from the context's
 * transport session while a handshake is validated. */
static const char *peer_field(const struct rt_fmt_ctx *c, int field, size_t *len) {
  if (c->ev)
    return revtun_event_peer(c->ev, field, len);
  return c->peer ? c->peer(c->peer_user, field, len) : NULL;
}

static void eval_peer(const struct rt_fmt_part *p, const struct rt_fmt_ctx *c,
                      struct rt_fmt_val *v) {
  size_t len = 0;
  const char *val = peer_field(c, p->key, &len);
  if (val && len) { /* an empty identity is absent, as Envoy renders it */
    v->kind = RT_V_STR;
    v->s = val;
    v->len = len;
  }
}

/* The transport gives validity times as decimal seconds since the epoch;
 * rendered as START_TIME renders a time, with the same optional format. */
static void eval_peer_time(const struct rt_fmt_part *p, struct rt_rctx *r, struct rt_fmt_val *v) {
  size_t len = 0;
  const char *val = peer_field(r->ctx, p->key, &len);
  if (!val || !len || len > 18)
    return;
  int64_t secs = 0;
  size_t i = val[0] == '-' ? 1 : 0;
  if (i == len)
    return;
  for (; i < len; i++) {
    if (val[i] < '0' || val[i] > '9')
      return;
    secs = secs * 10 + (val[i] - '0');
  }
  struct timespec ts = {.tv_sec = (time_t)(val[0] == '-' ? -secs : secs), .tv_nsec = 0};
  size_t n = rt_fmt_time(p->a, &ts, r->tbuf, sizeof(r->tbuf));
  v->kind = RT_V_STR;
  v->s = r->tbuf;
  v->len = n;
}

static void eval_time(const struct rt_fmt_part *p, struct rt_rctx *r, struct rt_fmt_val *v) {
  if (!r->wall_read) {
    if (r->ctx->wall)
      r->wall = *r->ctx->wall;
    else
      clock_gettime(CLOCK_REALTIME, &r->wall);
    r->wall_read = true;
  }
  size_t n = rt_fmt_time(p->a, &r->wall, r->tbuf, sizeof(r->tbuf));
  v->kind = RT_V_STR;
  v->s = r->tbuf;
  v->len = n;
}

/* The access log type Envoy's upstream socket manager gives each synthetic
 * lifecycle record: TcpUpstreamConnected while a tunnel is parked (setup,
 * RPINGs sent, acked, missed, timed out), UpstreamPoolReady at handoff, and
 * at close UpstreamEnd for a socket that was handed off, TcpConnectionEnd
 * otherwise. The records Envoy does not emit are named by the same rules:
 * a failed handshake is a connection that ended, a moved idle socket is
 * still parked, and an HTTP/2 keepalive timeout on a handed-off socket is a
 * periodic note on an upstream connection. */
static const char *access_log_type(const revtun_event_t *ev) {
  switch (revtun_event_kind(ev)) {
  case REVTUN_EV_SOCKET_HANDOFF: return "UpstreamPoolReady";
  case REVTUN_EV_TUNNEL_CLOSED:
    return revtun_event_socket_state(ev) == REVTUN_SOCK_IN_USE ? "UpstreamEnd" : "TcpConnectionEnd";
  case REVTUN_EV_HANDSHAKE_FAILED: return "TcpConnectionEnd";
  case REVTUN_EV_H2_KEEPALIVE_TIMEOUT: return "UpstreamPeriodic";
  default: return "TcpUpstreamConnected";
  }
}

void rt_fmt_eval(const struct rt_fmt_part *p, struct rt_rctx *r, struct rt_fmt_val *v) {
  v->kind = RT_V_NULL;
  v->quote_text = false;
  const struct rt_fmt_ctx *c = r->ctx;
  switch (p->op) {
  case RT_OP_START_TIME: eval_time(p, r, v); break;
  case RT_OP_DYN_META:
    if (c->ev)
      eval_meta(p, c->ev, v);
    else
      eval_conn_meta(p, c->conn_meta, v);
    break;
  case RT_OP_FILTER_STATE:
    if (c->ev)
      eval_filter_state(p, c->ev, v);
    else
      eval_conn_filter_state(p, c->conn_meta, v);
    break;
  case RT_OP_ADDRESS:
  case RT_OP_PORT: eval_address(p, c, v); break;
  case RT_OP_PEER: eval_peer(p, c, v); break;
  case RT_OP_PEER_TIME: eval_peer_time(p, r, v); break;
  case RT_OP_LOG_TYPE: set_str(v, c->ev ? access_log_type(c->ev) : "NotSet"); break;
  case RT_OP_CONN_ID:
    v->kind = RT_V_NUM; /* Envoy: the connection id, or 0 without one */
    v->num = 0;
    break;
  case RT_OP_TERMINATION:
    if (c->ev && revtun_event_close_reason(c->ev))
      set_str(v, revtun_close_reason_name(revtun_event_close_reason(c->ev)));
    break;
  case RT_OP_REQ:
    if (c->req_header) {
      size_t len = 0;
      const char *val = c->req_header(c->req_user, p->a, &len);
      if (!val && p->b)
        val = c->req_header(c->req_user, p->b, &len);
      if (val) {
        v->kind = RT_V_STR;
        v->s = val;
        v->len = len;
      }
    }
    break;
  default: break;
  }
}

static void put_conn_namespace(struct rt_sink *s, const struct rt_rctx *r,
                               const struct rt_fmt_val *v, unsigned level) {
  const revtun_conn_meta_t *m = r->ctx->conn_meta;
  bool first = true;
  rt_sink_esc(s, "{", 1, level);
  for (size_t i = 0; m && i < m->n; i++) {
    const struct rt_cm_entry *e = &m->e[i];
    if (!e->ns || e->ns_len != v->len || memcmp(e->ns, v->s, v->len) != 0)
      continue;
    if (!first)
      rt_sink_esc(s, ",", 1, level);
    first = false;
    rt_sink_json_string(s, e->key, e->key_len, level);
    rt_sink_esc(s, ":", 1, level);
    rt_sink_json_string(s, e->val, e->val_len < r->value_cap ? e->val_len : r->value_cap, level);
  }
  rt_sink_esc(s, "}", 1, level);
}

void rt_fmt_put_meta_object(struct rt_sink *s, const struct rt_rctx *r, const struct rt_fmt_val *v,
                            unsigned level) {
  const revtun_event_t *ev = r->ctx->ev;
  if (!ev) {
    put_conn_namespace(s, r, v, level);
    return;
  }
  size_t n = revtun_event_meta_count(ev);
  rt_sink_esc(s, "{", 1, level);
  for (size_t i = 0; i < n; i++) {
    const char *k, *val;
    if (revtun_event_meta_get(ev, i, &k, &val) != REVTUN_OK)
      continue;
    if (i)
      rt_sink_esc(s, ",", 1, level);
    rt_sink_json_string(s, k, strlen(k), level);
    rt_sink_esc(s, ":", 1, level);
    uint64_t num;
    if (numeric_meta_key(k) && parse_u64(val, &num)) {
      char buf[24];
      rt_sink_esc(s, buf, rt_u64_dec(num, buf), level);
    } else {
      size_t len = strlen(val);
      rt_sink_json_string(s, val, len < r->value_cap ? len : r->value_cap, level);
    }
  }
  rt_sink_esc(s, "}", 1, level);
}
