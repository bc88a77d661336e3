/* Allocation through the handle's hooks. A request for 0 bytes asks the
 * hooks for 1, so NULL always means failure; calloc checks the product for
 * overflow. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

static void *default_malloc(size_t n, void *u) {
  (void)u;
  return malloc(n);
}
static void *default_realloc(void *p, size_t n, void *u) {
  (void)u;
  return realloc(p, n);
}
static void default_free(void *p, void *u) {
  (void)u;
  free(p);
}

void rt_mem_default(struct rt_mem *m) {
  m->malloc_fn = default_malloc;
  m->realloc_fn = default_realloc;
  m->free_fn = default_free;
  m->user = NULL;
}

void *rt_malloc(const struct rt_mem *m, size_t n) { return m->malloc_fn(n ? n : 1, m->user); }

void *rt_calloc(const struct rt_mem *m, size_t count, size_t size) {
  if (size && count > SIZE_MAX / size)
    return NULL;
  void *p = rt_malloc(m, count * size);
  if (p)
    memset(p, 0, count * size);
  return p;
}

void *rt_realloc(const struct rt_mem *m, void *p, size_t n) {
  return m->realloc_fn(p, n ? n : 1, m->user);
}

void rt_free(const struct rt_mem *m, void *p) {
  if (p)
    m->free_fn(p, m->user);
}

char *rt_strndup(const struct rt_mem *m, const char *s, size_t n) {
  char *d = rt_malloc(m, n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

char *rt_strdup(const struct rt_mem *m, const char *s) { return rt_strndup(m, s, strlen(s)); }
