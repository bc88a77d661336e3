/* revtun_options_t: the creation-time wiring a host hands to revtun_new(),
 * deep-copied into the handle. */
#ifndef REVTUN_CORE_OPTIONS_H
#define REVTUN_CORE_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/mem.h"
#include "core/config.h"
#include "revtun/revtun.h"

/* A named extension factory (reporter or access logger) a host registered. */
struct rt_factory {
  char *name;
  revtun_ext_create_cb create;
  revtun_ext_event_cb event;
  revtun_ext_destroy_cb destroy;
  void *user;
  bool is_reporter;
};

struct revtun_options {
  struct rt_mem own_mem; /* what allocated this object, its factories and module path */
  struct rt_mem mem;     /* the allocator handles created from it use */
  void *user_data;
  revtun_io_cb io_cb;
  revtun_timer_cb timer_cb;
  revtun_event_cb access_log_cb;
  revtun_event_cb reporter_cb;
  revtun_log_cb log_cb;
  int log_level;
  revtun_close_cb close_cb;
  char worker[64];
  uint64_t seed;
  bool seed_set;
  struct rt_limits limits;
  struct rt_factory *factories;
  size_t n_factories;
  char *module_path;             /* where the dynamic-module reporter looks; NULL: not set */
  revtun_directory_t *directory; /* shared with the other handles of the process, or NULL */
  revtun_arrival_cb arrival_cb;
};

const struct rt_factory *rt_options_find_factory(const revtun_options_t *opts, const char *name,
                                                 bool reporter);
/* The defaults, shared by revtun_options_new() and calls given NULL options. */
void rt_options_defaults(revtun_options_t *o);
/* Deep copy into the handle, with the handle's allocator. */
int rt_options_copy(const struct rt_mem *m, revtun_options_t *dst, const revtun_options_t *src);
void rt_options_clear(const struct rt_mem *m, revtun_options_t *o);

#endif
