/* The stats walk (stats_walk.c) for the library's own readers. */
#ifndef REVTUN_OBSERVE_STATS_WALK_H
#define REVTUN_OBSERVE_STATS_WALK_H

#include <stdbool.h>

#include "revtun/revtun.h"

/* Calls cb for every stat in a stable order until it returns non-zero,
 * without the walk guard: only for a callback of the library's own, which
 * neither calls back into the library nor frees the handle (so h stays
 * const). The public walk is revtun_walk_stats(). */
void rt_stats_walk(const revtun_t *h, revtun_stat_cb cb, void *user);
/* The same without the detailed per-id gauges (h->stats.gauges); true when
 * cb stopped it. */
bool rt_stats_walk_base(const revtun_t *h, revtun_stat_cb cb, void *user);

#endif
