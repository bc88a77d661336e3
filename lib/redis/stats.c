/* The directory's counters and gauges, by name. */
#include <string.h>

#include "rr_int.h"

static const char *const counter_names[RS_N_COUNTERS] = {
    [RS_ROUND_TRIPS] = "redis.round_trips",
    [RS_COMMANDS] = "redis.commands",
    [RS_ERRORS] = "redis.errors",
    [RS_TIMEOUTS] = "redis.timeouts",
    [RS_RECONNECTS] = "redis.reconnects",
    [RS_CONNECT_FAILURES] = "redis.connect_failures",
    [RS_REJECTED] = "redis.rejected",
    [RS_LOOKUPS] = "redis.lookups",
    [RS_CACHE_HITS] = "redis.cache_hits",
    [RS_CACHE_MISSES] = "redis.cache_misses",
    [RS_COALESCED] = "redis.lookups_coalesced",
    [RS_UNAVAILABLE] = "redis.lookups_unavailable",
    [RS_PUBLISH_OPS] = "redis.publish_ops",
    [RS_REPUBLISHES] = "redis.republishes",
    [RS_HEARTBEATS] = "redis.heartbeats",
    [RS_INVALIDATIONS] = "redis.invalidations",
    [RS_CACHE_FLUSHES] = "redis.cache_flushes",
    [RS_EVENTS] = "redis.events",
    [RS_EVENTS_IGNORED] = "redis.events_ignored",
    [RS_ID_CONFLICTS] = "redis.id_conflicts",
};

enum gauge {
  G_CONNECTED,
  G_SUBSCRIBED,
  G_CLAIMED,
  G_GENERATION,
  G_SOCKETS,
  G_ENTRIES,
  G_PUBLISHED,
  G_CACHE_ENTRIES,
  G_PENDING_LOOKUPS,
  G_N
};
static const char *const gauge_names[G_N] = {
    [G_CONNECTED] = "redis.connected",
    [G_SUBSCRIBED] = "redis.subscribed",
    [G_CLAIMED] = "redis.claimed",
    [G_GENERATION] = "redis.generation",
    [G_SOCKETS] = "redis.sockets",
    [G_ENTRIES] = "redis.entries",
    [G_PUBLISHED] = "redis.published",
    [G_CACHE_ENTRIES] = "redis.cache_entries",
    [G_PENDING_LOOKUPS] = "redis.pending_lookups",
};

static uint64_t gauge(const revtun_redis_t *r, int g) {
  switch (g) {
  case G_CONNECTED: return r->cmd.state == RC_UP;
  case G_SUBSCRIBED: return r->sub.state == RC_UP;
  case G_CLAIMED: return r->phase == RP_CLAIMED;
  case G_GENERATION: return r->gen;
  case G_SOCKETS: return r->socks.n;
  case G_ENTRIES: return r->n_serving;
  case G_PUBLISHED: return r->n_published;
  case G_CACHE_ENTRIES: return r->cache.n;
  default: return r->n_waiters;
  }
}

/* The reader guards count what they refused; they live in the connections. */
static uint64_t counter(const revtun_redis_t *r, int i) {
  uint64_t v = r->stats[i];
  if (i == RS_REJECTED)
    v += r->cmd.guard.rejected + r->sub.guard.rejected;
  return v;
}

int revtun_redis_stats_foreach(const revtun_redis_t *r, revtun_stat_cb cb, void *user) {
  if (!r || !cb)
    return REVTUN_E_INVAL;
  for (int i = 0; i < RS_N_COUNTERS; i++)
    if (cb(counter_names[i], REVTUN_STAT_COUNTER, counter(r, i), user))
      return REVTUN_OK;
  for (int g = 0; g < G_N; g++)
    if (cb(gauge_names[g], REVTUN_STAT_GAUGE, gauge(r, g), user))
      return REVTUN_OK;
  return REVTUN_OK;
}

int revtun_redis_stats_get(const revtun_redis_t *r, const char *name, uint64_t *value) {
  if (!r || !name || !value)
    return REVTUN_E_INVAL;
  for (int i = 0; i < RS_N_COUNTERS; i++)
    if (strcmp(counter_names[i], name) == 0)
      return *value = counter(r, i), REVTUN_OK;
  for (int g = 0; g < G_N; g++)
    if (strcmp(gauge_names[g], name) == 0)
      return *value = gauge(r, g), REVTUN_OK;
  return REVTUN_E_NOT_FOUND;
}

const char *revtun_redis_status_name(int status) {
  switch (status) {
  case REVTUN_REDIS_E_UNAVAILABLE: return "REVTUN_REDIS_E_UNAVAILABLE";
  case REVTUN_REDIS_E_CANCELLED: return "REVTUN_REDIS_E_CANCELLED";
  case REVTUN_REDIS_E_BUSY: return "REVTUN_REDIS_E_BUSY";
  case REVTUN_REDIS_E_REJECTED: return "REVTUN_REDIS_E_REJECTED";
  default: return revtun_status_name(status);
  }
}
