/* See handle.h: the core part of a handle's creation and destruction. */
#include "core/fdtable.h"
#include "core/handle.h"
#include "core/stats.h"

void rt_handle_init(revtun_t *h, const revtun_options_t *opts, revtun_time_ms_t now) {
  h->mem = opts->mem;
  /* Ids are attacker-chosen: tables hash them under a per-handle secret key,
   * drawn apart from the jitter seed (which a host or test may fix). */
  rt_hkey_random(&h->hkey);
  struct rt_hkey seed;
  if (opts->seed_set)
    seed.k0 = opts->seed;
  else
    rt_hkey_random(&seed);
  h->rng = seed.k0;
  rt_htable_init(&h->strings, &h->hkey);
  rt_heap_init(&h->timers);
  rt_stats_init(h);
  h->armed_deadline = RT_NO_DEADLINE;
  h->last_now = now;
}

void rt_handle_clear(revtun_t *h) {
  rt_stats_free(h);
  rt_htable_free(&h->mem, &h->strings);
  rt_fdtable_free(h);
  rt_config_clear(&h->mem, &h->cfg);
  rt_options_clear(&h->mem, &h->opts);
}
