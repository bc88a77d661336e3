/* See deadline_heap.h. */
#include "base/deadline_heap.h"

#define ARITY 4u

void rt_heap_init(struct rt_heap *hp) {
  hp->v = NULL;
  hp->n = hp->cap = 0;
}

void rt_heap_free(const struct rt_mem *m, struct rt_heap *hp) {
  rt_free(m, hp->v);
  rt_heap_init(hp);
}

int rt_heap_reserve(const struct rt_mem *m, struct rt_heap *hp, size_t n) {
  if (n <= hp->cap)
    return 0;
  size_t cap = hp->cap ? hp->cap : 64;
  while (cap < n)
    cap *= 2;
  struct rt_heap_slot *v = rt_realloc(m, hp->v, cap * sizeof(*v));
  if (!v)
    return -1;
  hp->v = v;
  hp->cap = cap;
  return 0;
}

static void place(struct rt_heap *hp, size_t i, struct rt_heap_slot s) {
  hp->v[i] = s;
  s.t->idx = i;
}

static void sift_up(struct rt_heap *hp, size_t i, struct rt_heap_slot s) {
  while (i > 0) {
    size_t parent = (i - 1) / ARITY;
    if (hp->v[parent].deadline <= s.deadline)
      break;
    place(hp, i, hp->v[parent]);
    i = parent;
  }
  place(hp, i, s);
}

static void sift_down(struct rt_heap *hp, size_t i, struct rt_heap_slot s) {
  for (;;) {
    size_t first = ARITY * i + 1;
    if (first >= hp->n)
      break;
    size_t last = first + ARITY < hp->n ? first + ARITY : hp->n, best = first;
    for (size_t c = first + 1; c < last; c++)
      if (hp->v[c].deadline < hp->v[best].deadline)
        best = c;
    if (s.deadline <= hp->v[best].deadline)
      break;
    place(hp, i, hp->v[best]);
    i = best;
  }
  place(hp, i, s);
}

void rt_heap_set(struct rt_heap *hp, struct rt_timer *t, uint64_t deadline) {
  struct rt_heap_slot s = {deadline, t};
  t->deadline = deadline;
  if (t->idx == RT_TIMER_IDLE) {
    sift_up(hp, hp->n++, s);
    return;
  }
  size_t i = t->idx;
  if (deadline < hp->v[i].deadline)
    sift_up(hp, i, s);
  else
    sift_down(hp, i, s);
}

void rt_heap_remove(struct rt_heap *hp, struct rt_timer *t) {
  if (t->idx == RT_TIMER_IDLE)
    return;
  size_t i = t->idx;
  struct rt_heap_slot last = hp->v[--hp->n];
  t->idx = RT_TIMER_IDLE;
  if (last.t == t)
    return;
  if (i > 0 && hp->v[(i - 1) / ARITY].deadline > last.deadline)
    sift_up(hp, i, last);
  else
    sift_down(hp, i, last);
}
