/* See stats.h. */
#include <stdio.h>
#include <string.h>

#include "base/macros.h"
#include "core/handle.h"
#include "core/stats.h"

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

/* The i-th detailed gauge name a socket contributes to, into buf (RT_STAT_NAME_CAP
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
  case 0: snprintf(buf, RT_STAT_NAME_CAP, "%s.nodes.%s", p, node); return true;
  case 1: snprintf(buf, RT_STAT_NAME_CAP, "%s.clusters.%s", p, cluster); return true;
  case 2: snprintf(buf, RT_STAT_NAME_CAP, "%s.tenants.%s.nodes.%s", p, tenant, node); return true;
  case 3:
    snprintf(buf, RT_STAT_NAME_CAP, "%s.tenants.%s.clusters.%s", p, tenant, cluster);
    return true;
  case 4: snprintf(buf, RT_STAT_NAME_CAP, "%s.%s.node.%s", p, w, node); return true;
  case 5: snprintf(buf, RT_STAT_NAME_CAP, "%s.%s.cluster.%s", p, w, cluster); return true;
  default: return false;
  }
}

const double rt_hist_bounds[RT_HIST_BOUNDS] = {
    0.5,  1,    5,     10,    25,    50,     100,    250,     500,     1000,
    2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
};

const char *rt_hist_name(enum rt_hist which) {
  static const char *const names[RT_H_COUNT] = {
      [RT_H_UPGRADE] = "cx_upgrade_time",
      [RT_H_IDLE_EXPIRE] = "cx_idle_expire_time",
      [RT_H_POST_UPGRADE] = "cx_post_upgrade_lifetime",
  };
  return names[which];
}

void rt_stats_record(revtun_t *h, enum rt_hist which, int64_t ms) {
  uint64_t v = ms > 0 ? (uint64_t)ms : 0;
  struct rt_histogram *hg = &h->stats.hist[which];
  size_t b = 0;
  while (b < RT_HIST_BOUNDS && (double)v > rt_hist_bounds[b])
    b++;
  hg->bucket[b]++;
  hg->count++;
  hg->sum += v;
}

static struct rt_gauge *find_gauge(revtun_t *h, const char *name) {
  struct rt_hnode *hn = rt_htable_find(&h->stats.gauges, name, strlen(name));
  return hn ? RT_CONTAINER_OF(hn, struct rt_gauge, hn) : NULL;
}

static void drop_gauge(revtun_t *h, struct rt_gauge *g) {
  rt_htable_remove(&h->stats.gauges, &g->hn);
  rt_free(&h->mem, g);
}

/* The i-th name's kind, and where its id and tenant are in it. */
static void gauge_meta(const revtun_t *h, size_t i, const char *node, const char *cluster,
                       const char *tenant, struct rt_gauge *g, size_t len) {
  bool tenanted = h->cfg.tenant_isolation && *tenant;
  if (!tenanted && i >= 2)
    i += 2;
  g->kind = (uint8_t)i;
  size_t id_len = strlen(i == 0 || i == 2 || i == 4 ? node : cluster);
  g->id_len = (uint16_t)id_len;
  g->id_off = (uint16_t)(len - id_len);
  g->t_off = g->t_len = 0;
  if (i == 2 || i == 3) {
    g->t_off = (uint16_t)(strlen(h->cfg.stat_prefix) + sizeof(".tenants.") - 1);
    g->t_len = (uint16_t)strlen(tenant);
  }
}

static struct rt_gauge *make_gauge(revtun_t *h, const char *name, size_t i, const char *node,
                                   const char *cluster, const char *tenant) {
  size_t len = strlen(name);
  struct rt_gauge *g = rt_malloc(&h->mem, sizeof(*g) + len + 1);
  if (!g)
    return NULL;
  memcpy(g->name, name, len + 1);
  g->value = 0;
  gauge_meta(h, i, node, cluster, tenant, g, len);
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
  char name[RT_STAT_NAME_CAP];
  struct rt_gauge *made[MAX_GAUGES];
  size_t n_made = 0;
  for (size_t i = 0; gauge_name(h, i, node, cluster, tenant ? tenant : "", name); i++) {
    if (find_gauge(h, name))
      continue;
    if (!(made[n_made] = make_gauge(h, name, i, node, cluster, tenant ? tenant : ""))) {
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
  char name[RT_STAT_NAME_CAP];
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
  char name[RT_STAT_NAME_CAP];
  for (size_t i = 0; gauge_name(h, i, node, cluster, tenant, name); i++) {
    struct rt_gauge *g = find_gauge(h, name);
    if (!g && delta > 0)
      g = make_gauge(h, name, i, node, cluster,
                     tenant); /* dropped at 0 between prepare and commit */
    if (!g)
      continue; /* floored at 0, or out of memory in that rare case */
    if (delta > 0)
      g->value++;
    else if (g->value && --g->value == 0)
      drop_gauge(h, g); /* gone at 0: node churn cannot grow memory */
  }
}
