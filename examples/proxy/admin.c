/*
 * revtun-upstream-proxy: the admin listener (libevent's evhttp).
 *
 *   GET /stats    the library's stats as Prometheus text (revtun_stats_prometheus_ex;
 *                 a plain "name value" listing if the library has no exporter),
 *                 followed by the proxy's own counters; ?hidden=include adds
 *                 Envoy's hidden per-node/cluster gauges, ?labels=1 puts ids
 *                 in labels
 *   GET /tunnels  JSON: nodes and clusters with idle and live tunnel counts, and
 *                 the HTTP/2 sessions this proxy runs on handed-off tunnels
 *
 * With --workers N > 1 this listener runs on the main thread and sums the
 * workers' answers (workers.c); /stats?worker=K shows one worker, and each
 * /tunnels entry names its worker.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "handover_wire.h"
#include "proxy.h"

static int plain_stat(const char *name, int type, uint64_t value, void *user) {
  (void)type;
  evbuffer_add_printf(user, "%s %" PRIu64 "\n", name, value);
  return 0;
}

void admin_metric(struct evbuffer *b, int prom, const char *name, const char *type, uint64_t v) {
  if (prom)
    evbuffer_add_printf(b, "# TYPE revtun_proxy_%s %s\nrevtun_proxy_%s %" PRIu64 "\n", name, type,
                        name, v);
  else
    evbuffer_add_printf(b, "revtun_proxy.%s %" PRIu64 "\n", name, v);
}

/* The flags of /stats?hidden=include|exclude&labels=0|1 (as Envoy's admin
 * names the first), and with --workers worker=K (*worker, else -1); -1 for
 * anything else. */
static int stats_flags(const char *query, unsigned n_workers, int *worker) {
  struct evkeyvalq q;
  int flags = 0;
  uint64_t k;

  *worker = -1;
  if (!query)
    return 0;
  TAILQ_INIT(&q);
  if (evhttp_parse_query_str(query, &q))
    return -1;
  for (struct evkeyval *kv = q.tqh_first; kv && flags >= 0; kv = kv->next.tqe_next) {
    if (!strcmp(kv->key, "hidden") && !strcmp(kv->value, "include"))
      flags |= REVTUN_PROM_HIDDEN_INCLUDE;
    else if (!strcmp(kv->key, "hidden") && !strcmp(kv->value, "exclude"))
      flags &= ~(int)REVTUN_PROM_HIDDEN_INCLUDE;
    else if (!strcmp(kv->key, "labels") && !strcmp(kv->value, "1"))
      flags |= REVTUN_PROM_LABELS;
    else if (!strcmp(kv->key, "labels") && !strcmp(kv->value, "0"))
      flags &= ~(int)REVTUN_PROM_LABELS;
    else if (n_workers > 1 && !strcmp(kv->key, "worker") &&
             parse_u64(kv->value, UINT32_MAX, &k) == 0 && k < n_workers)
      *worker = (int)k;
    else
      flags = -1;
  }
  evhttp_clear_headers(&q);
  return flags;
}

void admin_stats(struct proxy *p, struct evbuffer *b, unsigned flags) {
  size_t len = 0;
  int prom = 1, rc = revtun_stats_prometheus_ex(p->h, flags, NULL, 0, &len);

  if (rc == REVTUN_OK || rc == REVTUN_E_NOSPACE) {
    char *text = malloc(len + 1);
    if (text && revtun_stats_prometheus_ex(p->h, flags, text, len + 1, &len) == REVTUN_OK)
      evbuffer_add(b, text, len);
    free(text);
  } else {
    /* REVTUN_E_UNSUPPORTED: a library without the exporter */
    prom = 0;
    revtun_stats_foreach(p->h, plain_stat, b);
  }
  admin_metric(b, prom, "requests", "counter", p->st.requests);
  admin_metric(b, prom, "local_replies", "counter", p->st.local_replies);
  admin_metric(b, prom, "upstream_resets", "counter", p->st.upstream_resets);
  admin_metric(b, prom, "handoffs", "counter", p->st.handoffs);
  admin_metric(b, prom, "sessions_closed", "counter", p->st.sessions_closed);
  admin_metric(b, prom, "keepalive_timeouts", "counter", p->st.keepalive_timeouts);
  admin_metric(b, prom, "goaways", "counter", p->st.goaways);
  admin_metric(b, prom, "header_limit_resets", "counter", p->st.header_limit_resets);
  admin_metric(b, prom, "idle_sessions_closed", "counter", p->st.idle_sessions_closed);
  admin_metric(b, prom, "accept_pauses", "counter", p->st.accept_pauses);
  admin_metric(b, prom, "auth_failures", "counter", p->st.auth_failures);
  admin_metric(b, prom, "handoff_tls_handshakes", "counter", p->st.handoff_tls_handshakes);
  admin_metric(b, prom, "handoff_tls_failures", "counter", p->st.handoff_tls_failures);
  admin_metric(b, prom, "handoff_tls_timeouts", "counter", p->st.handoff_tls_timeouts);
  admin_metric(b, prom, "sessions", "gauge", p->n_sessions);
  admin_metric(b, prom, "client_connections", "gauge", p->n_conns);
  admin_metric(b, prom, "requests_in_flight", "gauge", p->n_xchg);
  admin_metric(b, prom, "header_bytes_held", "gauge", p->hb.used);
  if (p->fleet)
    fleet_stats(p, b, prom);
}

struct json_ctx {
  struct proxy *p;
  struct evbuffer *b;
  int worker; /* >= 0: add "worker": K */
};

static void end_line(struct json_ctx *j) {
  if (j->worker >= 0)
    evbuffer_add_printf(j->b, ", \"worker\": %d", j->worker);
  evbuffer_add(j->b, "}\n", 2);
}

static unsigned node_streams(const struct node *n) {
  unsigned streams = 0;
  for (const struct upsess *u = n ? n->sessions : NULL; u; u = u->next)
    streams += u->active;
  return streams;
}

static int node_json(const char *node_id, const char *tenant, const char *cluster, size_t idle,
                     size_t live, void *user) {
  struct json_ctx *j = user;
  const char *tkey = revtun_config_tenant_isolation(j->p->h) && tenant ? tenant : "";
  struct node *n = node_find(j->p, tkey, strlen(tkey), node_id, strlen(node_id));

  evbuffer_add(j->b, "{\"node\": ", 9);
  json_string(j->b, node_id, strlen(node_id));
  evbuffer_add(j->b, ", \"tenant\": ", 12);
  json_string(j->b, tenant ? tenant : "", tenant ? strlen(tenant) : 0);
  evbuffer_add(j->b, ", \"cluster\": ", 13);
  json_string(j->b, cluster ? cluster : "", cluster ? strlen(cluster) : 0);
  evbuffer_add_printf(j->b, ", \"idle\": %zu, \"live\": %zu, \"sessions\": %u, \"streams\": %u",
                      idle, live, n ? n->n_sessions : 0, node_streams(n));
  end_line(j);
  return 0;
}

static int cluster_json(const char *cluster, const char *tenant, size_t nodes, size_t idle,
                        size_t live, void *user) {
  struct json_ctx *j = user;

  evbuffer_add(j->b, "{\"cluster\": ", 12);
  json_string(j->b, cluster, strlen(cluster));
  evbuffer_add(j->b, ", \"tenant\": ", 12);
  json_string(j->b, tenant ? tenant : "", tenant ? strlen(tenant) : 0);
  evbuffer_add_printf(j->b, ", \"nodes\": %zu, \"idle\": %zu, \"live\": %zu", nodes, idle, live);
  end_line(j);
  return 0;
}

void admin_tunnel_lines(struct proxy *p, int worker, struct evbuffer *nodes,
                        struct evbuffer *clusters, struct evbuffer *sessions) {
  struct json_ctx j = {p, nodes, worker};

  revtun_foreach_node(p->h, node_json, &j);
  j.b = clusters;
  revtun_foreach_cluster(p->h, cluster_json, &j);
  j.b = sessions;
  for (struct node *n = p->nodes; n; n = n->next)
    for (struct upsess *u = n->sessions; u; u = u->next) {
      evbuffer_add_printf(sessions, "{\"id\": %llu, \"node\": ", (unsigned long long)u->id);
      json_string(sessions, n->id, n->id_len);
      evbuffer_add_printf(sessions, ", \"fd\": %d, \"streams\": %u, \"goaway\": %s", u->s.fd,
                          u->active, u->goaway ? "true" : "false");
      end_line(&j);
    }
}

/* One list: the lines of `lines` as array elements, one per line. */
static void join_list(struct evbuffer *b, const char *name, struct evbuffer *lines) {
  size_t eol;
  int first = 1;

  evbuffer_add_printf(b, "  \"%s\": [", name);
  while (evbuffer_get_length(lines)) {
    struct evbuffer_ptr nl = evbuffer_search(lines, "\n", 1, NULL);
    eol = nl.pos < 0 ? evbuffer_get_length(lines) : (size_t)nl.pos;
    evbuffer_add_printf(b, "%s\n    ", first ? "" : ",");
    evbuffer_remove_buffer(lines, b, eol);
    evbuffer_drain(lines, 1);
    first = 0;
  }
  evbuffer_add_printf(b, "%s]", first ? "" : "\n  ");
}

/* One object per line, so `grep '"node": "n1"'` finds a node's whole entry. */
void admin_tunnels_join(struct evbuffer *b, struct evbuffer *nodes, struct evbuffer *clusters,
                        struct evbuffer *sessions, size_t pending) {
  evbuffer_add(b, "{\n", 2);
  join_list(b, "nodes", nodes);
  evbuffer_add(b, ",\n", 2);
  join_list(b, "clusters", clusters);
  evbuffer_add(b, ",\n", 2);
  join_list(b, "sessions", sessions);
  evbuffer_add_printf(b, ",\n  \"pending_handshakes\": %zu\n}\n", pending);
}

static void tunnels(struct proxy *p, struct evbuffer *b) {
  struct evbuffer *l[3] = {evbuffer_new(), evbuffer_new(), evbuffer_new()};

  if (l[0] && l[1] && l[2]) {
    admin_tunnel_lines(p, -1, l[0], l[1], l[2]);
    admin_tunnels_join(b, l[0], l[1], l[2], revtun_acceptor_pending(p->acc));
  }
  for (int i = 0; i < 3; i++)
    if (l[i])
      evbuffer_free(l[i]);
}

static void handle(struct evhttp_request *req, void *arg) {
  struct proxy *p = arg;
  const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
  const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
  struct evkeyvalq *hdrs = evhttp_request_get_output_headers(req);
  struct evbuffer *b = evbuffer_new();
  int cmd = evhttp_request_get_command(req);
  unsigned n_workers = p->all ? p->cfg.workers : 1;
  int worker = -1;

  if (!b) {
    evhttp_send_error(req, HTTP_INTERNAL, NULL);
    return;
  }
  if (!path)
    path = "/";
  if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
    evhttp_add_header(hdrs, "Allow", "GET, HEAD");
    evbuffer_add_printf(b, "only GET\n");
    evhttp_send_reply(req, 405, "Method Not Allowed", b);
  } else if (!strcmp(path, "/stats") && stats_flags(query, n_workers, &worker) < 0) {
    evbuffer_add_printf(b, "/stats takes hidden=include|exclude and labels=0|1%s\n",
                        n_workers > 1 ? " and worker=0..N-1" : "");
    evhttp_add_header(hdrs, "Content-Type", "text/plain");
    evhttp_send_reply(req, HTTP_BADREQUEST, "Bad Request", b);
  } else if (!strcmp(path, "/stats")) {
    unsigned flags = (unsigned)stats_flags(query, n_workers, &worker);
    if (p->all)
      workers_admin_stats(p->all, b, flags, worker);
    else
      admin_stats(p, b, flags);
    evhttp_add_header(hdrs, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", b);
  } else if (!strcmp(path, "/tunnels")) {
    if (p->all)
      workers_admin_tunnels(p->all, b);
    else
      tunnels(p, b);
    evhttp_add_header(hdrs, "Content-Type", "application/json");
    evhttp_send_reply(req, HTTP_OK, "OK", b);
  } else if (!strcmp(path, "/")) {
    evbuffer_add_printf(b, PROG " admin\n  GET /stats    Prometheus text\n"
                                "  GET /tunnels  nodes, clusters and sessions as JSON\n");
    evhttp_add_header(hdrs, "Content-Type", "text/plain");
    evhttp_send_reply(req, HTTP_OK, "OK", b);
  } else {
    evbuffer_add_printf(b, "not found\n");
    evhttp_add_header(hdrs, "Content-Type", "text/plain");
    evhttp_send_reply(req, HTTP_NOTFOUND, "Not Found", b);
  }
  evbuffer_free(b);
}

/* "PORT" alone means 127.0.0.1:PORT: the admin port shows every node and
 * tunnel, so it is not exposed unless an address says so. */
int admin_start(struct proxy *p, const char *spec) {
  char host[256], full[300];
  uint16_t port;
  uint64_t only_port;
  struct evhttp_bound_socket *bs;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  char name[128] = "?";

  if (parse_u64(spec, 65535, &only_port) == 0) {
    snprintf(full, sizeof(full), "127.0.0.1:%s", spec);
    spec = full;
  }
  if (hostport_split(spec, host, sizeof(host), &port) < 0) {
    logmsg("bad --admin-listen '%s'", spec);
    return -1;
  }
  if (!(p->admin = evhttp_new(p->base)))
    return -1;
  evhttp_set_allowed_methods(p->admin, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                           EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
  /* small requests, and no connection held open by a silent peer */
  evhttp_set_max_headers_size(p->admin, 8192);
  evhttp_set_max_body_size(p->admin, 4096);
  evhttp_set_timeout(p->admin, 10);
  evhttp_set_gencb(p->admin, handle, p);
  if (p->inherited_fd[HO_L_ADMIN] >= 0) {
    /* taken over from the previous instance (handover.c) */
    evutil_make_socket_nonblocking(p->inherited_fd[HO_L_ADMIN]);
    bs = evhttp_accept_socket_with_handle(p->admin, p->inherited_fd[HO_L_ADMIN]);
    if (!bs)
      close(p->inherited_fd[HO_L_ADMIN]);
    p->inherited_fd[HO_L_ADMIN] = -1;
  } else
    bs = evhttp_bind_socket_with_handle(p->admin, host, port);
  if (!bs) {
    logmsg("cannot listen on %s (admin)", spec);
    return -1;
  }
  if (listeners_watch_admin(p, evhttp_bound_socket_get_listener(bs)) < 0)
    return -1;
  if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) == 0) {
    addr_format((struct sockaddr *)&ss, sl, name, sizeof(name));
    if (!addr_is_loopback((struct sockaddr *)&ss))
      logmsg("warning: the admin port %s is not on loopback: anyone who reaches it sees every "
             "node and tunnel",
             name);
  }
  logmsg("admin (/stats, /tunnels) on %s", name);
  return 0;
}

/* Also at the start of a shutdown: the port is free again at once, so a
 * new proxy can bind it while this one finishes its requests. */
void admin_stop(struct proxy *p) {
  p->admin_l.l = NULL; /* evhttp frees its listener */
  if (p->admin_l.resume_ev)
    evtimer_del(p->admin_l.resume_ev);
  if (p->admin)
    evhttp_free(p->admin);
  p->admin = NULL;
}
