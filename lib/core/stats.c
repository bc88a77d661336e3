/* Stats with Envoy's names, plus the counters a user needs.
 *
 *   <p>.<w>.total_nodes / total_clusters           gauges, always
 *   <p>.nodes.<id>, <p>.clusters.<id>               detailed gauges (raw ids)
 *   <p>.tenants.<t>.nodes.<id> / .clusters.<id>     detailed + isolation + tenant
 *   <p>.<w>.node.<id>, <p>.<w>.cluster.<id>         detailed, per worker
 *   <p>.<counter>, reverse_tunnel.handshake.<x>     counters
 *
 * Detailed gauges are kept in a hash table and removed when they reach 0,
 * so churn of node ids cannot grow memory without bound. */
#include <stdio.h>
#include <string.h>

#include "revtun_int.h"

#define NAME_CAP (256 + 64 + 3 * RT_MAX_ID_LEN + 32)

static const char *counter_name(enum rt_counter c) {
  static const char *const names[RT_C_COUNT] = {
      [RT_C_TUNNELS_SETUP] = "tunnel_setup",
      [RT_C_REGISTRATION_REJECTED] = "registration_rejected",
      [RT_C_HANDOFFS] = "handoff",
      [RT_C_POOL_MISS] = "fallback_no_reverse_socket",
      [RT_C_PINGS_SENT] = "idle_ping_sent",
      [RT_C_PING_ACKS] = "idle_ping_ack",
      [RT_C_PING_MISSES] = "idle_ping_miss",
      [RT_C_HS_PARSE_ERROR] = "parse_error",
      [RT_C_HS_ACCEPTED] = "accepted",
      [RT_C_HS_REJECTED] = "rejected",
      [RT_C_HS_VALIDATION_FAILED] = "validation_failed",
      [RT_C_HS_JWT_DENIED] = "jwt_denied",
      [RT_C_HS_JWT_WOULD_DENY] = "jwt_would_deny",
      [RT_C_HS_TIMEOUT] = "timeout",
      [RT_C_HS_BODY_REJECTED] = "body_rejected",
      [RT_C_HS_REGISTRATION_FAILED] = "registration_failed",
      [RT_C_LOG_DROPPED] = "access_log.dropped_records",
      [RT_C_LOG_WRITE_ERRORS] = "access_log.write_errors",
  };
  return names[c];
}

static bool is_handshake_counter(enum rt_counter c) {
  return c >= RT_C_HS_PARSE_ERROR && c <= RT_C_HS_REGISTRATION_FAILED;
}

void rt_stats_init(revtun_t *h) { rt_htable_init(&h->stats.gauges, &h->hkey); }

void rt_stats_free(revtun_t *h) {
  size_t i;
  struct rt_hnode *hn = rt_htable_first(&h->stats.gauges, &i);
  while (hn) {
    struct rt_hnode *next = rt_htable_next(&h->stats.gauges, hn, &i);
    rt_free(&h->mem, RT_CONTAINER_OF(hn, struct rt_gauge, hn));
    hn = next;
  }
  rt_htable_free(&h->mem, &h->stats.gauges);
}

/* The i-th detailed gauge name a socket contributes to, into buf (NAME_CAP
 * bytes); false past the last. Ids are at most RT_MAX_ID_LEN bytes and the
 * prefix and worker name are bounded, so a name always fits. */
#define MAX_GAUGES 6
static bool gauge_name(const revtun_t *h, size_t i, const char *node, const char *cluster,
                       const char *tenant, char *buf) {
  const char *p = h->cfg.stat_prefix, *w = h->opts.worker;
  bool tenanted = h->cfg.tenant_isolation && *tenant;
  if (!tenanted && i >= 2)
    i += 2; /* no per-tenant gauges */
  switch (i) {
  case 0: snprintf(buf, NAME_CAP, "%s.nodes.%s", p, node); return true;
  case 1: snprintf(buf, NAME_CAP, "%s.clusters.%s", p, cluster); return true;
  case 2: snprintf(buf, NAME_CAP, "%s.tenants.%s.nodes.%s", p, tenant, node); return true;
  case 3: snprintf(buf, NAME_CAP, "%s.tenants.%s.clusters.%s", p, tenant, cluster); return true;
  case 4: snprintf(buf, NAME_CAP, "%s.%s.node.%s", p, w, node); return true;
  case 5: snprintf(buf, NAME_CAP, "%s.%s.cluster.%s", p, w, cluster); return true;
  default: return false;
  }
}

static struct rt_gauge *find_gauge(revtun_t *h, const char *name) {
  struct rt_hnode *hn = rt_htable_find(&h->stats.gauges, name, strlen(name));
  return hn ? RT_CONTAINER_OF(hn, struct rt_gauge, hn) : NULL;
}

static void drop_gauge(revtun_t *h, struct rt_gauge *g) {
  rt_htable_remove(&h->stats.gauges, &g->hn);
  rt_free(&h->mem, g);
}

static struct rt_gauge *make_gauge(revtun_t *h, const char *name) {
  size_t len = strlen(name);
  struct rt_gauge *g = rt_malloc(&h->mem, sizeof(*g) + len + 1);
  if (!g)
    return NULL;
  memcpy(g->name, name, len + 1);
  g->value = 0;
  if (rt_htable_insert(&h->mem, &h->stats.gauges, &g->hn, g->name, len)) {
    rt_free(&h->mem, g);
    return NULL;
  }
  return g;
}

/* Makes sure every gauge the registration will bump exists, so that the
 * registration either fails whole (REVTUN_E_NOMEM) or counts completely. */
int rt_stats_reserve(revtun_t *h, const char *node, const char *cluster, const char *tenant) {
  if (!h->cfg.detailed_stats)
    return REVTUN_OK;
  char name[NAME_CAP];
  struct rt_gauge *made[MAX_GAUGES];
  size_t n_made = 0;
  for (size_t i = 0; gauge_name(h, i, node, cluster, tenant ? tenant : "", name); i++) {
    if (find_gauge(h, name))
      continue;
    if (!(made[n_made] = make_gauge(h, name))) {
      while (n_made)
        drop_gauge(h, made[--n_made]);
      return REVTUN_E_NOMEM;
    }
    n_made++;
  }
  return REVTUN_OK;
}

/* Undoes rt_stats_reserve() for a registration that failed afterwards. */
void rt_stats_unreserve(revtun_t *h, const char *node, const char *cluster, const char *tenant) {
  if (!h->cfg.detailed_stats)
    return;
  char name[NAME_CAP];
  for (size_t i = 0; gauge_name(h, i, node, cluster, tenant ? tenant : "", name); i++) {
    struct rt_gauge *g = find_gauge(h, name);
    if (g && g->value == 0)
      drop_gauge(h, g);
  }
}

void rt_stats_socket(revtun_t *h, const char *node, const char *cluster, const char *tenant,
                     int delta) {
  if (!h->cfg.detailed_stats)
    return;
  char name[NAME_CAP];
  for (size_t i = 0; gauge_name(h, i, node, cluster, tenant, name); i++) {
    struct rt_gauge *g = find_gauge(h, name);
    if (!g && delta > 0)
      g = make_gauge(h, name); /* dropped at 0 between prepare and commit */
    if (!g)
      continue; /* floored at 0, or out of memory in that rare case */
    if (delta > 0)
      g->value++;
    else if (g->value && --g->value == 0)
      drop_gauge(h, g); /* gone at 0: node churn cannot grow memory */
  }
}

static void walk_stats(const revtun_t *h, revtun_stat_cb cb, void *user) {
  const char *p = h->cfg.stat_prefix, *w = h->opts.worker;
  char name[NAME_CAP];
  snprintf(name, sizeof(name), "%s.%s.total_nodes", p, w);
  if (cb(name, REVTUN_STAT_GAUGE, h->n_live_nodes, user))
    return;
  snprintf(name, sizeof(name), "%s.%s.total_clusters", p, w);
  if (cb(name, REVTUN_STAT_GAUGE, h->n_live_clusters, user))
    return;
  snprintf(name, sizeof(name), "%s.%s.idle_sockets", p, w);
  if (cb(name, REVTUN_STAT_GAUGE, h->n_idle, user))
    return;
  snprintf(name, sizeof(name), "%s.%s.live_sockets", p, w);
  if (cb(name, REVTUN_STAT_GAUGE, h->n_sockets, user))
    return;
  for (int c = 0; c < RT_C_COUNT; c++) {
    if (c >= RT_C_CLOSED_BASE && c < RT_C_HS_PARSE_ERROR) {
      int reason = c - RT_C_CLOSED_BASE;
      if (reason < REVTUN_CLOSE_IDLE_PEER_CLOSE || reason > REVTUN_CLOSE_HTTP2_PING_TIMEOUT)
        continue;
      snprintf(name, sizeof(name), "%s.tunnel_closed.%s", p, revtun_close_reason_name(reason));
    } else if (is_handshake_counter((enum rt_counter)c)) {
      if (!h->stats.handshake_seen)
        continue;
      snprintf(name, sizeof(name), "reverse_tunnel.handshake.%s", counter_name((enum rt_counter)c));
    } else {
      snprintf(name, sizeof(name), "%s.%s", p, counter_name((enum rt_counter)c));
    }
    if (cb(name, REVTUN_STAT_COUNTER, h->stats.counters[c], user))
      return;
  }
  size_t i;
  for (struct rt_hnode *hn = rt_htable_first(&h->stats.gauges, &i); hn;
       hn = rt_htable_next(&h->stats.gauges, hn, &i)) {
    const struct rt_gauge *g = RT_CONTAINER_OF(hn, struct rt_gauge, hn);
    if (cb(g->name, REVTUN_STAT_GAUGE, g->value, user))
      return;
  }
}

/* Calls cb for every stat in a stable order; stops when cb returns non-zero. */
int revtun_stats_foreach(const revtun_t *h, revtun_stat_cb cb, void *user) {
  if (!h || !cb)
    return REVTUN_E_INVAL;
  revtun_t *mut = rt_walk_begin(h);
  walk_stats(h, cb, user);
  rt_walk_end(mut); /* may free the handle */
  return REVTUN_OK;
}

struct find_ctx {
  const char *name;
  uint64_t value;
  bool found;
};

static int find_cb(const char *name, int type, uint64_t value, void *user) {
  (void)type;
  struct find_ctx *f = user;
  if (strcmp(name, f->name))
    return 0;
  f->value = value;
  f->found = true;
  return 1;
}

int revtun_stats_get(const revtun_t *h, const char *name, uint64_t *value) {
  if (!h || !name || !value)
    return REVTUN_E_INVAL;
  struct find_ctx f = {name, 0, false};
  revtun_stats_foreach(h, find_cb, &f);
  if (!f.found)
    return REVTUN_E_NOT_FOUND;
  *value = f.value;
  return REVTUN_OK;
}
