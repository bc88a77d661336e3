/* The stats, walked: the totals of the pool, every counter with Envoy's
 * name, then the detailed gauges (core/stats.h), in a stable order.
 *
 *   <p>.<w>.total_nodes / total_clusters / idle_sockets / live_sockets
 *   <p>.<counter>, <p>.tunnel_closed.<reason>
 *   reverse_tunnel.handshake.<x>                    once an acceptor exists
 *
 * (<p> the stat prefix, <w> the worker name.) */
#include <stdio.h>
#include <string.h>

#include "base/macros.h"
#include "core/handle.h"
#include "core/reentry.h"
#include "core/stats.h"
#include "observe/stats_walk.h"
#include "pool/pool.h"

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
      [RT_C_TP_HANDSHAKE] = "transport.handshake",
      [RT_C_TP_CONNECTION_ERROR] = "transport.connection_error",
      [RT_C_TP_FAIL_NO_CERT] = "transport.fail_verify_no_cert",
      [RT_C_TP_FAIL_VERIFY] = "transport.fail_verify_error",
      [RT_C_SOCKETS_EXPORTED] = "socket_exported",
      [RT_C_SOCKETS_IMPORTED] = "socket_imported",
      [RT_C_REMOTE_HANDOFFS] = "remote_handoff",
  };
  return names[c];
}

static bool is_handshake_counter(enum rt_counter c) {
  return c >= RT_C_HS_PARSE_ERROR && c <= RT_C_HS_REGISTRATION_FAILED;
}

bool rt_stats_walk_base(const revtun_t *h, revtun_stat_cb cb, void *user) {
  const char *p = h->cfg.stat_prefix, *w = h->opts.worker;
  char name[RT_STAT_NAME_CAP];
  snprintf(name, sizeof(name), "%s.%s.total_nodes", p, w);
  if (cb(name, REVTUN_STAT_GAUGE, h->pool->n_live_nodes, user))
    return true;
  snprintf(name, sizeof(name), "%s.%s.total_clusters", p, w);
  if (cb(name, REVTUN_STAT_GAUGE, h->pool->n_live_clusters, user))
    return true;
  snprintf(name, sizeof(name), "%s.%s.idle_sockets", p, w);
  if (cb(name, REVTUN_STAT_GAUGE, h->pool->n_idle, user))
    return true;
  snprintf(name, sizeof(name), "%s.%s.live_sockets", p, w);
  if (cb(name, REVTUN_STAT_GAUGE, h->pool->n_sockets, user))
    return true;
  for (int c = 0; c < RT_C_COUNT; c++) {
    if (c >= RT_C_CLOSED_BASE && c < RT_C_HS_PARSE_ERROR) {
      int reason = c - RT_C_CLOSED_BASE;
      if (reason < REVTUN_CLOSE_IDLE_PEER_CLOSE || reason > REVTUN_CLOSE_MOVE_FAILED)
        continue;
      snprintf(name, sizeof(name), "%s.tunnel_closed.%s", p, revtun_close_reason_name(reason));
    } else if (is_handshake_counter((enum rt_counter)c)) {
      if (!h->stats.handshake_seen)
        continue;
      snprintf(name, sizeof(name), "reverse_tunnel.handshake.%s", counter_name((enum rt_counter)c));
    } else if (c >= RT_C_TP_HANDSHAKE && c <= RT_C_TP_FAIL_VERIFY) {
      if (!h->stats.transport_seen)
        continue;
      snprintf(name, sizeof(name), "%s.%s", p, counter_name((enum rt_counter)c));
    } else {
      snprintf(name, sizeof(name), "%s.%s", p, counter_name((enum rt_counter)c));
    }
    if (cb(name, REVTUN_STAT_COUNTER, h->stats.counters[c], user))
      return true;
  }
  return false;
}

void rt_stats_walk(const revtun_t *h, revtun_stat_cb cb, void *user) {
  if (rt_stats_walk_base(h, cb, user))
    return;
  size_t i;
  for (struct rt_hnode *hn = rt_htable_first(&h->stats.gauges, &i); hn;
       hn = rt_htable_next(&h->stats.gauges, hn, &i)) {
    const struct rt_gauge *g = RT_CONTAINER_OF(hn, struct rt_gauge, hn);
    if (cb(g->name, REVTUN_STAT_GAUGE, g->value, user))
      return;
  }
}

int revtun_walk_stats(revtun_t *h, revtun_stat_cb cb, void *user) {
  if (!h || !cb)
    return REVTUN_E_INVAL;
  rt_walk_begin(h);
  rt_stats_walk(h, cb, user);
  rt_walk_end(h); /* may free h */
  return REVTUN_OK;
}

/* The walk of 0.1 takes a const handle, but its callback may free it. */
int revtun_stats_foreach(const revtun_t *h, revtun_stat_cb cb, void *user) {
  return revtun_walk_stats((revtun_t *)h, cb, user);
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
  rt_stats_walk(h, find_cb, &f);
  if (!f.found)
    return REVTUN_E_NOT_FOUND;
  *value = f.value;
  return REVTUN_OK;
}

int revtun_walk_histograms(revtun_t *h, revtun_histogram_cb cb, void *user) {
  if (!h || !cb)
    return REVTUN_E_INVAL;
  rt_walk_begin(h);
  char name[RT_STAT_NAME_CAP];
  for (int i = 0; i < RT_H_COUNT; i++) {
    const struct rt_histogram *hg = &h->stats.hist[i];
    uint64_t cum[RT_HIST_BOUNDS], run = 0;
    for (size_t b = 0; b < RT_HIST_BOUNDS; b++)
      cum[b] = run += hg->bucket[b];
    snprintf(name, sizeof(name), "%s.%s", h->cfg.stat_prefix, rt_hist_name((enum rt_hist)i));
    if (cb(name, rt_hist_bounds, cum, RT_HIST_BOUNDS, hg->count, hg->sum, user))
      break;
  }
  rt_walk_end(h); /* may free h */
  return REVTUN_OK;
}
