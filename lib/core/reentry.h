/* Entering and leaving the library, and what may only happen when the
 * outermost call returns.
 *
 * Every public call that changes state goes through rt_enter()/rt_leave().
 * Callbacks run inside those calls and may call back in: the loop entry
 * points refuse that (REVTUN_E_RECURSIVE), the pool calls a callback may
 * make enter with rt_enter_nestable(), and frees are deferred. The outermost
 * rt_leave() does the work that must happen once per call: free what a
 * frame below might still have read, write buffered records, re-arm the
 * host timer, and finish the frees that callbacks asked for. */
#ifndef REVTUN_CORE_REENTRY_H
#define REVTUN_CORE_REENTRY_H

#include "revtun/revtun.h"

/* A block a caller frame may still read although what it held is gone
 * (a socket that died inside a callback). The link lives inside the block,
 * in a part nobody reads any more. */
struct rt_deferred {
  struct rt_deferred *next;
  void *block;
};

/* A call that changes state and is refused from a callback. */
int rt_enter(revtun_t *h, revtun_time_ms_t now);
void rt_leave(revtun_t *h); /* may free h when a free was deferred */

/* The calls a callback may make (handoff, mark_dead, the notes): not
 * refused from a callback, but refused inside a walk, whose structures they
 * would change, and on a handle that is going away. */
int rt_enter_nestable(revtun_t *h, revtun_time_ms_t now);
void rt_leave_nestable(revtun_t *h);

/* A walk calls host callbacks over the pool's own structures: nothing may
 * change them meanwhile, and a free asked for from inside happens when the
 * walk ends (which may free h). */
void rt_walk_begin(revtun_t *h);
void rt_walk_end(revtun_t *h);

/* Frees block now, or when the outermost call returns if a frame below may
 * still read it. */
void rt_free_deferred(revtun_t *h, void *block, struct rt_deferred *link);
/* Frees every deferred block now (the handle is being destroyed). */
void rt_free_deferred_all(revtun_t *h);
/* Runs what callbacks deferred, when no library frame is left; may free h. */
void rt_finish_deferred(revtun_t *h);

#endif
