/* See timer.h. */
#include "timer.h"

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
  struct rt_timer **v = rt_realloc(m, hp->v, cap * sizeof(*v));
  if (!v)
    return -1;
  hp->v = v;
  hp->cap = cap;
  return 0;
}

static void place(struct rt_heap *hp, size_t i, struct rt_timer *t) {
  hp->v[i] = t;
  t->idx = i;
}

static void sift_up(struct rt_heap *hp, size_t i) {
  struct rt_timer *t = hp->v[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (hp->v[parent]->deadline <= t->deadline)
      break;
    place(hp, i, hp->v[parent]);
    i = parent;
  }
  place(hp, i, t);
}

static void sift_down(struct rt_heap *hp, size_t i) {
  struct rt_timer *t = hp->v[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= hp->n)
      break;
    if (c + 1 < hp->n && hp->v[c + 1]->deadline < hp->v[c]->deadline)
      c++;
    if (t->deadline <= hp->v[c]->deadline)
      break;
    place(hp, i, hp->v[c]);
    i = c;
  }
  place(hp, i, t);
}

void rt_heap_set(struct rt_heap *hp, struct rt_timer *t, uint64_t deadline) {
  if (t->idx == RT_TIMER_IDLE) {
    t->deadline = deadline;
    place(hp, hp->n++, t);
    sift_up(hp, t->idx);
    return;
  }
  uint64_t old = t->deadline;
  t->deadline = deadline;
  if (deadline < old)
    sift_up(hp, t->idx);
  else
    sift_down(hp, t->idx);
}

void rt_heap_remove(struct rt_heap *hp, struct rt_timer *t) {
  if (t->idx == RT_TIMER_IDLE)
    return;
  size_t i = t->idx;
  struct rt_timer *last = hp->v[--hp->n];
  t->idx = RT_TIMER_IDLE;
  if (last == t)
    return;
  place(hp, i, last);
  if (i > 0 && hp->v[(i - 1) / 2]->deadline > last->deadline)
    sift_up(hp, i);
  else
    sift_down(hp, i);
}
