/* See reentry.h. */
#include "core/handle.h"
#include "core/host.h"
#include "core/reentry.h"

int rt_enter(revtun_t *h, revtun_time_ms_t now) {
  if (!h || now > RT_MAX_TIME_MS)
    return REVTUN_E_INVAL;
  if (h->cb_depth)
    return REVTUN_E_RECURSIVE;
  if (h->free_pending || h->freeing || h->failed)
    return REVTUN_E_STATE;
  h->depth++;
  if (now > h->last_now)
    h->last_now = now;
  return REVTUN_OK;
}

int rt_enter_nestable(revtun_t *h, revtun_time_ms_t now) {
  if (!h || now > RT_MAX_TIME_MS)
    return REVTUN_E_INVAL;
  if (h->free_pending || h->freeing || h->failed)
    return REVTUN_E_STATE;
  if (h->iterating)
    return REVTUN_E_RECURSIVE; /* the pool is being walked by a walk's callback */
  h->depth++;
  if (now > h->last_now)
    h->last_now = now;
  return REVTUN_OK;
}

void rt_free_deferred(revtun_t *h, void *block, struct rt_deferred *link) {
  if (!h->depth) {
    rt_free(&h->mem, block);
    return;
  }
  link->block = block;
  link->next = h->deferred;
  h->deferred = link;
}

void rt_free_deferred_all(revtun_t *h) {
  while (h->deferred) {
    struct rt_deferred *d = h->deferred;
    h->deferred = d->next; /* read before d, which lives in the block, is freed */
    rt_free(&h->mem, d->block);
  }
}

void rt_finish_deferred(revtun_t *h) {
  if (h->depth || h->cb_depth)
    return;
  if (h->acceptor_free_pending || h->free_pending)
    h->upcalls.finish(h); /* may free h */
}

void rt_leave(revtun_t *h) {
  if (--h->depth)
    return;
  rt_free_deferred_all(h);
  if (!h->free_pending) {
    if (h->log_flush_due)
      h->upcalls.flush(h, false);
    rt_rearm_timer(h); /* its callback, too, may free the handle or an acceptor */
  }
  rt_finish_deferred(h);
}

void rt_leave_nestable(revtun_t *h) {
  if (h->cb_depth) { /* nested in a callback: the outer call finishes up */
    h->depth--;
    return;
  }
  rt_leave(h);
}

void rt_walk_begin(revtun_t *h) {
  h->iterating++;
  h->cb_depth++;
}

void rt_walk_end(revtun_t *h) {
  h->iterating--;
  h->cb_depth--;
  rt_finish_deferred(h); /* may free h */
}
