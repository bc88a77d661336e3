/* Intrusive string-keyed hash table with separate chaining. Entries embed an
 * rt_hnode; the table never owns them. Growth is best effort: if the bigger
 * bucket array cannot be allocated the table keeps working with longer chains,
 * so inserting never fails for want of memory. */
#ifndef REVTUN_HASH_H
#define REVTUN_HASH_H

#include <stddef.h>
#include <stdint.h>
#include "mem.h"

struct rt_hnode {
  struct rt_hnode *next;
  const char *key; /* NUL-terminated, owned by the entry */
  size_t keylen;
  uint32_t hash;
};

struct rt_htable {
  struct rt_hnode **buckets;
  size_t nbuckets; /* power of two, 0 before the first insert */
  size_t count;
};

uint32_t rt_hash(const char *s, size_t n);
void rt_htable_init(struct rt_htable *t);
void rt_htable_free(const struct rt_mem *m, struct rt_htable *t);
/* Needs one bucket array; returns -1 if even the first one cannot be made. */
int rt_htable_insert(const struct rt_mem *m, struct rt_htable *t, struct rt_hnode *n,
                     const char *key, size_t keylen);
struct rt_hnode *rt_htable_find(const struct rt_htable *t, const char *key, size_t keylen);
void rt_htable_remove(struct rt_htable *t, struct rt_hnode *n);

/* Iteration: for (n = rt_htable_first(t, &i); n; n = rt_htable_next(t, n, &i)). */
struct rt_hnode *rt_htable_first(const struct rt_htable *t, size_t *i);
struct rt_hnode *rt_htable_next(const struct rt_htable *t, struct rt_hnode *n, size_t *i);

#endif
