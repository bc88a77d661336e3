/* The handle: one pool of tunnels with the services every layer shares
 * (allocator, config, options, fd table and deadlines, interned strings,
 * stats, the host's hooks, re-entrancy), and slots for the state of the
 * layers above, which core never looks into.
 *
 * Core never calls a function of a higher layer. Where it must trigger their
 * work (a record to the access loggers, buffered records to write at the end
 * of a call, frees that only the outermost frame may run) it calls through
 * struct rt_upcalls, which the top layer wires when it creates the handle. */
#ifndef REVTUN_CORE_HANDLE_H
#define REVTUN_CORE_HANDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/deadline_heap.h"
#include "base/hash.h"
#include "base/mem.h"
#include "core/config.h"
#include "core/options.h"
#include "core/stats.h"
#include "revtun/revtun.h"

#define RT_NO_DEADLINE UINT64_MAX
/* The latest `now` a host may pass (146 million years of monotonic
 * milliseconds): every deadline is now plus at most an hour, so none can wrap
 * or reach RT_NO_DEADLINE. */
#define RT_MAX_TIME_MS (UINT64_C(1) << 62)

struct rt_fdent;
struct rt_deferred;
struct rt_pool;
struct rt_logger;
struct rt_remote;

/* Calls from core into the layers above it. */
struct rt_upcalls {
  /* A lifecycle record, to the access loggers built from the config; NULL
   * when there are none. */
  void (*record)(revtun_t *h, const revtun_event_t *ev);
  /* A reporter event, to the reporter built from the config; NULL when
   * there is none. */
  void (*report)(revtun_t *h, const revtun_event_t *ev);
  /* Writes buffered records: those due, or all when force. Called at the
   * end of the outermost call while log_flush_due is set. */
  void (*flush)(revtun_t *h, bool force);
  /* What only the outermost frame may do, asked for from inside a call:
   * free the acceptors marked for it, and a deferred revtun_free (which
   * frees h). */
  void (*finish)(revtun_t *h);
};

struct revtun {
  struct rt_mem mem;
  struct rt_config cfg;
  revtun_options_t opts; /* deep copy of the caller's options */
  uint64_t rng;          /* keepalive jitter */
  struct rt_hkey hkey;   /* secret key of every id hash table */

  struct rt_fdent **fds; /* the fd table: core/fdtable.h */
  size_t fds_cap;
  struct rt_heap timers;    /* one deadline per fd-table entry at most */
  struct rt_htable strings; /* core/intern.h */
  struct rt_stats stats;
  struct rt_upcalls upcalls;

  /* The layers above: their state, opaque here. */
  struct rt_pool *pool;       /* pool/pool.h */
  struct rt_logger **loggers; /* observe/accesslog.c: the access loggers */
  size_t n_loggers;
  const struct rt_factory *reporter_factory; /* observe/reporter.c: the reporter */
  void *reporter_instance;
  struct revtun_acceptor *acceptors; /* acceptor/acceptor.c: every live acceptor */
  struct rt_remote *remote;          /* pool/remote.c: the process directory, or NULL */

  /* Re-entrancy: core/reentry.h. */
  struct rt_deferred *deferred; /* blocks freed when the outermost call returns */
  unsigned depth;               /* nesting of library calls */
  unsigned cb_depth;            /* nesting of host callbacks */
  unsigned iterating;           /* inside a walk: the pool must not change */
  bool free_pending;            /* revtun_free was called inside a call */
  bool acceptor_free_pending;   /* revtun_acceptor_free was called inside a call */
  bool freeing;
  bool failed;                    /* a host hook failed: the handle is unusable */
  uint64_t armed_deadline;        /* what the host timer is armed for, or RT_NO_DEADLINE */
  revtun_time_ms_t last_now;      /* the latest now a call brought */
  revtun_time_ms_t log_flush_due; /* when buffered records are due; 0 = nothing buffered */
};

/* The core part of a new handle (h zeroed): allocator, secret hash key,
 * jitter seed, the empty tables; cannot fail. The options and the config are
 * copied in by the caller, which may fail. */
void rt_handle_init(revtun_t *h, const revtun_options_t *opts, revtun_time_ms_t now);
/* Frees what core holds (not h itself, which its creator allocated). */
void rt_handle_clear(revtun_t *h);

static inline uint64_t rt_random(revtun_t *h) { return rt_splitmix64(&h->rng); }
static inline void rt_count(revtun_t *h, enum rt_counter c) { h->stats.counters[c]++; }

#endif
