/* The deadline structure: a 4-ary min-heap of embedded timers. Each heap slot
 * keeps the deadline next to the pointer, so sifting compares keys inside the
 * array without touching the (usually cold) sockets; only moved timers get
 * their index written back. Add, remove and re-arm are O(log n) worst case
 * and O(1) on average for the deadlines a pool produces (new deadlines are
 * the latest); a tick pops only what is due, so its cost follows the number
 * of due sockets, never the pool size. */
#ifndef REVTUN_BASE_DEADLINE_HEAP_H
#define REVTUN_BASE_DEADLINE_HEAP_H

#include <stddef.h>
#include <stdint.h>
#include "base/mem.h"

#define RT_TIMER_IDLE ((size_t)-1)

struct rt_timer {
  uint64_t deadline;
  size_t idx; /* position in the heap, RT_TIMER_IDLE when not armed */
};

struct rt_heap_slot {
  uint64_t deadline;
  struct rt_timer *t;
};

struct rt_heap {
  struct rt_heap_slot *v;
  size_t n, cap;
};

void rt_heap_init(struct rt_heap *hp);
void rt_heap_free(const struct rt_mem *m, struct rt_heap *hp);
/* Reserve room so that arming one more timer cannot fail later. */
int rt_heap_reserve(const struct rt_mem *m, struct rt_heap *hp, size_t n);
/* Arms or re-arms t; the room must have been reserved. */
void rt_heap_set(struct rt_heap *hp, struct rt_timer *t, uint64_t deadline);
void rt_heap_remove(struct rt_heap *hp, struct rt_timer *t);
static inline struct rt_timer *rt_heap_top(const struct rt_heap *hp) {
  return hp->n ? hp->v[0].t : NULL;
}

#endif
