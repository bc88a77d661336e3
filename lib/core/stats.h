/* Where the stats live: the counters of every layer, and the detailed
 * per-id gauges (enable_detailed_stats) with Envoy's names:
 *
 *   <p>.nodes.<id>, <p>.clusters.<id>               raw ids
 *   <p>.tenants.<t>.nodes.<id> / .clusters.<id>     with isolation and a tenant
 *   <p>.<w>.node.<id>, <p>.<w>.cluster.<id>         per worker
 *
 * (<p> the stat prefix, <w> the worker name). A gauge is dropped when it
 * reaches 0, so churn of node ids cannot grow memory without bound. The
 * names and order of the walk are observe/stats_walk.c's. */
#ifndef REVTUN_CORE_STATS_H
#define REVTUN_CORE_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/hash.h"
#include "base/ids.h"
#include "revtun/revtun.h"

/* Room for any stat name: a bounded prefix and worker name, and ids of at
 * most RT_MAX_ID_LEN bytes. */
#define RT_STAT_NAME_CAP (256 + 64 + 3 * RT_MAX_ID_LEN + 32)

enum rt_counter {
  RT_C_TUNNELS_SETUP,
  RT_C_REGISTRATION_REJECTED,
  RT_C_HANDOFFS,
  RT_C_POOL_MISS,
  RT_C_PINGS_SENT,
  RT_C_PING_ACKS,
  RT_C_PING_MISSES,
  RT_C_CLOSED_BASE, /* + close reason (1..12) */
  RT_C_HS_PARSE_ERROR = RT_C_CLOSED_BASE + 13,
  RT_C_HS_ACCEPTED,
  RT_C_HS_REJECTED,
  RT_C_HS_VALIDATION_FAILED,
  RT_C_HS_JWT_DENIED,
  RT_C_HS_JWT_WOULD_DENY,
  RT_C_HS_TIMEOUT,
  RT_C_HS_BODY_REJECTED,
  RT_C_HS_REGISTRATION_FAILED,
  RT_C_LOG_DROPPED,
  RT_C_LOG_WRITE_ERRORS,
  RT_C_TP_HANDSHAKE, /* <p>.transport.*: sessions of an acceptor's transport */
  RT_C_TP_CONNECTION_ERROR,
  RT_C_TP_FAIL_NO_CERT,
  RT_C_TP_FAIL_VERIFY,
  RT_C_SOCKETS_EXPORTED, /* idle sockets that left alive (to another handle or process) */
  RT_C_SOCKETS_IMPORTED, /* and that joined */
  RT_C_REMOTE_HANDOFFS,  /* handoffs served by another handle of the directory */
  RT_C_COUNT
};

/* What a detailed gauge counts (the order of its name's forms above). The
 * first four are Envoy's HiddenAccumulate gauges, the per-worker ones are
 * visible. */
enum rt_gauge_kind {
  RT_G_NODES,
  RT_G_CLUSTERS,
  RT_G_TENANT_NODES,
  RT_G_TENANT_CLUSTERS,
  RT_G_WORKER_NODE,
  RT_G_WORKER_CLUSTER,
};

struct rt_gauge { /* a detailed per-id gauge */
  struct rt_hnode hn;
  uint64_t value;
  uint8_t kind;            /* enum rt_gauge_kind */
  uint16_t id_off, id_len; /* the node or cluster id inside name */
  uint16_t t_off, t_len;   /* the tenant inside name (t_len 0: none) */
  char name[];
};

/* Envoy's reverse-tunnel histograms, in milliseconds, <p>.<name>:
 *   cx_upgrade_time           parked -> handed off
 *   cx_idle_expire_time       parked -> died idle
 *   cx_post_upgrade_lifetime  handed off -> gone (revtun_mark_dead, free)
 * with Envoy's default bucket bounds (rt_hist_bounds). */
enum rt_hist { RT_H_UPGRADE, RT_H_IDLE_EXPIRE, RT_H_POST_UPGRADE, RT_H_COUNT };
#define RT_HIST_BOUNDS 19
extern const double rt_hist_bounds[RT_HIST_BOUNDS];

struct rt_histogram {
  uint64_t
      bucket[RT_HIST_BOUNDS + 1]; /* samples per bucket (not cumulative); the last: > every bound */
  uint64_t count, sum;
};

struct rt_stats {
  uint64_t counters[RT_C_COUNT];
  struct rt_htable gauges; /* only with enable_detailed_stats */
  struct rt_histogram hist[RT_H_COUNT];
  bool handshake_seen; /* list handshake counters once an acceptor exists */
  bool transport_seen; /* and transport counters once one has a transport */
};

void rt_stats_init(revtun_t *h);
void rt_stats_free(revtun_t *h);
/* Makes sure every gauge a registration of (node, cluster, tenant) will
 * bump exists, so that it either fails whole (REVTUN_E_NOMEM) or counts
 * completely; rt_stats_unreserve() undoes it for one that failed later. */
int rt_stats_reserve(revtun_t *h, const char *node, const char *cluster, const char *tenant);
void rt_stats_unreserve(revtun_t *h, const char *node, const char *cluster, const char *tenant);
/* One socket of (node, cluster, tenant) more (+1) or fewer (-1). */
void rt_stats_socket(revtun_t *h, const char *node, const char *cluster, const char *tenant,
                     int delta);
/* One sample of ms milliseconds (negative: 0) into histogram which. */
void rt_stats_record(revtun_t *h, enum rt_hist which, int64_t ms);
const char *rt_hist_name(enum rt_hist which);

#endif
