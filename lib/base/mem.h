/* The allocator a handle was created with; every allocation goes through it so
 * that hosts can account memory and tests can fail each allocation in turn. */
#ifndef REVTUN_BASE_MEM_H
#define REVTUN_BASE_MEM_H

#include <stddef.h>
#include "revtun/revtun.h"

struct rt_mem {
  revtun_malloc_fn malloc_fn;
  revtun_realloc_fn realloc_fn;
  revtun_free_fn free_fn;
  void *user;
};

void rt_mem_default(struct rt_mem *m);
void *rt_malloc(const struct rt_mem *m, size_t n);
void *rt_calloc(const struct rt_mem *m, size_t count, size_t size); /* overflow-checked */
void *rt_realloc(const struct rt_mem *m, void *p, size_t n);
void rt_free(const struct rt_mem *m, void *p);
char *rt_strdup(const struct rt_mem *m, const char *s);
char *rt_strndup(const struct rt_mem *m, const char *s, size_t n);

#endif
