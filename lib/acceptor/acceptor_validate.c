/* What the acceptor checks in a complete handshake request, in the order
 * Envoy's reverse_tunnel filter checks it: method and path, upgrade, identity headers, tenant
 * rules, required cluster name, the per-node limit, identity validation
 * formats; and the validation metadata a tunnel_setup record carries. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "acceptor/acceptor_int.h"
#include "base/sockaddr.h"
#include "core/host.h"

static void header_name(const revtun_acceptor_t *acc, const char *suffix, char *buf, size_t cap) {
  snprintf(buf, cap, "%s-reverse-tunnel-%s", acc->prefix, suffix);
}

static const struct rt_str *tunnel_header(const revtun_acceptor_t *acc,
                                          const struct rt_hs_request *req, const char *suffix) {
  char name[128];
  header_name(acc, suffix, name, sizeof(name));
  return rt_hs_header(req, name);
}

static char *copy_str(const struct rt_str *s, char **cursor) {
  char *d = *cursor;
  if (s) {
    memcpy(d, s->p, s->n);
    d += s->n;
  }
  *d++ = '\0';
  char *start = *cursor;
  *cursor = d;
  return start;
}

static bool has_colon(const struct rt_str *s) { return s && memchr(s->p, ':', s->n) != NULL; }

static int64_t parse_time(revtun_t *h, const struct rt_str *v) {
  if (!v || !v->n || v->n > 18)
    return 0;
  int64_t r = 0;
  for (size_t i = 0; i < v->n; i++) {
    if (v->p[i] < '0' || v->p[i] > '9') {
      rt_log(h, REVTUN_LOG_WARN, "ignoring unparsable initiation-time header");
      return 0;
    }
    r = r * 10 + (v->p[i] - '0');
  }
  return r;
}

static const char *lookup_header(const void *user, const char *name, size_t *len) {
  const struct rt_str *v = rt_hs_header(user, name);
  if (!v)
    return NULL;
  *len = v->n;
  return v->p;
}

/* A field of the peer's identity from the connection's transport session,
 * for %DOWNSTREAM_PEER_*% in the validation formats. */
static const char *session_peer(const void *user, int field, size_t *len) {
  const struct rt_hs_conn *c = user;
  const char *v = NULL;
  if (c->tp.peer(c->tp_conn, field, &v, len) != REVTUN_OK)
    return NULL;
  return v;
}

/* Renders each configured format and compares it with the claimed id. An
 * empty or "-" rendering fails closed, so a format whose header is missing
 * cannot match an id an initiator chose to be "-" (Envoy PR #46580). */
static bool identity_ok(revtun_acceptor_t *acc, struct rt_hs_conn *c,
                        const struct rt_hs_request *req, const struct rt_str *ids[]) {
  struct rt_addr local, remote;
  rt_addr_of_socket(c->ent.fd, &local, &remote);
  struct rt_fmt_ctx ctx;
  memset(&ctx, 0, sizeof(ctx));
  ctx.req_header = lookup_header;
  ctx.req_user = req;
  ctx.local = local.len ? &local.u.sa : NULL;
  ctx.local_len = local.len;
  ctx.remote = remote.len ? &remote.u.sa : NULL;
  ctx.remote_len = remote.len;
  if (c->tp_conn && c->tp.peer) {
    ctx.peer = session_peer;
    ctx.peer_user = c;
  }
  ctx.conn_meta = c->conn_meta; /* NULL: nothing attached, every such operator is absent */
  for (int i = 0; i < RT_ACC_N_IDS; i++) {
    if (!acc->cfg.id_format[i])
      continue;
    char out[RT_MAX_ID_LEN + 8];
    unsigned flags = 0;
    size_t n = rt_fmt_render(acc->cfg.id_format[i], &ctx, out, sizeof(out), &flags);
    if (n == 0 || (flags & (RT_FMT_R_NULL | RT_FMT_R_SHORTENED)) || (n == 1 && out[0] == '-') ||
        n != ids[i]->n || memcmp(out, ids[i]->p, n))
      return false;
  }
  return true;
}

static bool deny(struct rt_acc_verdict *v, int status, const char *body, enum rt_counter counter) {
  *v = (struct rt_acc_verdict){status, body, counter};
  return false;
}

/* The checks of a complete request, in Envoy's order: true when the
 * connection is to be accepted (c->args filled), else *v says how to answer. */
bool rt_acc_validate(revtun_t *h, struct rt_hs_conn *c, const struct rt_hs_request *req,
                     struct rt_acc_verdict *v) {
  revtun_acceptor_t *acc = c->acc;
  const struct rt_acc_config *cfg = &acc->cfg;
  if (!rt_str_ieq(req->method, cfg->method) || !rt_str_eq(req->target, cfg->request_path)) {
    return deny(v, 404, "Not a reverse tunnel request", RT_C_COUNT); /* no counter */
  }
  if (cfg->use_upgrade) {
    const struct rt_str *up = rt_hs_header(req, "upgrade");
    if (!up || !rt_str_ieq(*up, "reverse-tunnel")) {
      return deny(v, 426, "Upgrade: reverse-tunnel required", RT_C_HS_PARSE_ERROR);
    }
  }
  const struct rt_str *ids[RT_ACC_N_IDS] = {tunnel_header(acc, req, "node-id"),
                                            tunnel_header(acc, req, "cluster-id"),
                                            tunnel_header(acc, req, "tenant-id")};
  if (!ids[RT_ACC_NODE] || !ids[RT_ACC_CLUSTER] || !ids[RT_ACC_TENANT]) {
    return deny(v, 400, "Missing required reverse tunnel headers", RT_C_HS_PARSE_ERROR);
  }
  if (!ids[RT_ACC_TENANT]->n) {
    return deny(v, 400, "Empty tenant-id header value", RT_C_HS_PARSE_ERROR);
  }
  /* Envoy answers 200 and then silently drops such a socket: refuse it. */
  if (!ids[RT_ACC_NODE]->n || !ids[RT_ACC_CLUSTER]->n) {
    return deny(v, 400, "Empty node-id or cluster-id header value", RT_C_HS_PARSE_ERROR);
  }
  if (ids[RT_ACC_NODE]->n > RT_MAX_ID_LEN || ids[RT_ACC_CLUSTER]->n > RT_MAX_ID_LEN ||
      ids[RT_ACC_TENANT]->n > RT_MAX_ID_LEN) {
    return deny(v, 400, "Reverse tunnel identifier too long", RT_C_HS_PARSE_ERROR);
  }
  if (h->cfg.tenant_isolation && (has_colon(ids[0]) || has_colon(ids[1]) || has_colon(ids[2]))) {
    return deny(v, 400,
                "Reverse tunnel identifiers must not contain ':' when tenant isolation is enabled",
                RT_C_HS_PARSE_ERROR);
  }
  if (cfg->required_cluster_name) {
    const struct rt_str *name = tunnel_header(acc, req, "upstream-cluster-name");
    if (!name) {
      return deny(v, 400, "Missing upstream cluster name header", RT_C_HS_PARSE_ERROR);
    }
    if (!rt_str_eq(*name, cfg->required_cluster_name)) {
      return deny(v, 400, "Cluster name mismatch", RT_C_HS_VALIDATION_FAILED);
    }
  }

  /* Own NUL-terminated copies: the pool interns and keys on them. */
  const struct rt_str *worker = tunnel_header(acc, req, "worker-id");
  const struct rt_str *conn = tunnel_header(acc, req, "connection-id");
  size_t need = 5;
  for (int i = 0; i < RT_ACC_N_IDS; i++)
    need += ids[i]->n;
  need += (worker ? worker->n : 0) + (conn ? conn->n : 0);
  char *cursor = c->ids = rt_malloc(&h->mem, need);
  if (!c->ids) {
    return deny(v, 503, "Reverse tunnel registration unavailable", RT_C_HS_REGISTRATION_FAILED);
  }
  c->args.node_id = copy_str(ids[RT_ACC_NODE], &cursor);
  c->args.cluster_id = copy_str(ids[RT_ACC_CLUSTER], &cursor);
  c->args.tenant_id = copy_str(ids[RT_ACC_TENANT], &cursor);
  c->args.init_worker = copy_str(worker, &cursor);
  c->args.init_conn = copy_str(conn, &cursor);

  /* The per-node limit is checked before the identity formats, as Envoy's
   * filter checks it, so a request that breaks both gets 429, not 403. 0
   * means no limit here; Envoy, with the limit enabled, refuses every
   * handshake when it is 0. */
  uint32_t max = h->cfg.max_connections_per_node;
  struct rt_idpair node;
  if (cfg->enable_connection_limit && max &&
      rt_ids_check(h->cfg.tenant_isolation, c->args.node_id, c->args.tenant_id, &node) ==
          REVTUN_OK &&
      rt_pool_count_for_node(h, &node) >= max) {
    return deny(v, 429, "rejected", RT_C_HS_REJECTED);
  }
  if (!identity_ok(acc, c, req, ids)) {
    return deny(v, 403, "validation_failed", RT_C_HS_VALIDATION_FAILED);
  }
  c->args.initiation_time_ms = parse_time(h, tunnel_header(acc, req, "initiation-time"));
  c->args.interval_ms = cfg->ping_interval_ms;
  c->args.sock_user = c->ent.sock_user;
  c->args.enforce_limit = cfg->enable_connection_limit;
  return true;
}

/* Validation metadata rides on the tunnel_setup record as "<namespace>:<key>". */
void rt_acc_attach_metadata(revtun_t *h, struct rt_hs_conn *c) {
  const char *ns = c->acc->cfg.md_namespace;
  static const char *const keys[4] = {"node_id", "cluster_id", "tenant_id", "validation_result"};
  size_t nslen = strlen(ns), need = 0;
  for (int i = 0; i < 4; i++)
    need += nslen + 1 + strlen(keys[i]) + 1;
  char *p = c->meta_keys = rt_malloc(&h->mem, need);
  if (!p)
    return; /* metadata is best effort; the tunnel is not */
  const char *values[4] = {c->args.node_id, c->args.cluster_id, c->args.tenant_id,
                           "validation_passed"};
  for (int i = 0; i < 4; i++) {
    int n = sprintf(p, "%s:%s", ns, keys[i]);
    c->meta[i] = (struct rt_meta_kv){p, values[i]};
    p += n + 1;
  }
  c->args.extra = c->meta;
  c->args.n_extra = 4;
}
