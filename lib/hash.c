/* See hash.h. FNV-1a: ids are short and this is not exposed to hash flooding
 * in a way that matters more than the per-node limit and handshake caps do. */
#include <string.h>

#include "hash.h"

#define RT_HASH_MIN_BUCKETS 16u

uint32_t rt_hash(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 16777619u;
  }
  return h;
}

void rt_htable_init(struct rt_htable *t) { memset(t, 0, sizeof(*t)); }

void rt_htable_free(const struct rt_mem *m, struct rt_htable *t) {
  rt_free(m, t->buckets);
  rt_htable_init(t);
}

static void rehash(const struct rt_mem *m, struct rt_htable *t, size_t nbuckets) {
  struct rt_hnode **nb = rt_calloc(m, nbuckets, sizeof(*nb));
  if (!nb)
    return; /* keep the old, smaller table */
  for (size_t i = 0; i < t->nbuckets; i++) {
    struct rt_hnode *n = t->buckets[i];
    while (n) {
      struct rt_hnode *next = n->next;
      size_t b = n->hash & (nbuckets - 1);
      n->next = nb[b];
      nb[b] = n;
      n = next;
    }
  }
  rt_free(m, t->buckets);
  t->buckets = nb;
  t->nbuckets = nbuckets;
}

int rt_htable_insert(const struct rt_mem *m, struct rt_htable *t, struct rt_hnode *n,
                     const char *key, size_t keylen) {
  if (!t->nbuckets) {
    rehash(m, t, RT_HASH_MIN_BUCKETS);
    if (!t->nbuckets)
      return -1;
  } else if (t->count >= t->nbuckets) {
    rehash(m, t, t->nbuckets * 2);
  }
  n->key = key;
  n->keylen = keylen;
  n->hash = rt_hash(key, keylen);
  size_t b = n->hash & (t->nbuckets - 1);
  n->next = t->buckets[b];
  t->buckets[b] = n;
  t->count++;
  return 0;
}

struct rt_hnode *rt_htable_find(const struct rt_htable *t, const char *key, size_t keylen) {
  if (!t->nbuckets)
    return NULL;
  uint32_t h = rt_hash(key, keylen);
  for (struct rt_hnode *n = t->buckets[h & (t->nbuckets - 1)]; n; n = n->next)
    if (n->hash == h && n->keylen == keylen && memcmp(n->key, key, keylen) == 0)
      return n;
  return NULL;
}

void rt_htable_remove(struct rt_htable *t, struct rt_hnode *n) {
  struct rt_hnode **pp = &t->buckets[n->hash & (t->nbuckets - 1)];
  while (*pp && *pp != n)
    pp = &(*pp)->next;
  if (*pp) {
    *pp = n->next;
    t->count--;
  }
}

struct rt_hnode *rt_htable_first(const struct rt_htable *t, size_t *i) {
  for (*i = 0; *i < t->nbuckets; (*i)++)
    if (t->buckets[*i])
      return t->buckets[*i];
  return NULL;
}

struct rt_hnode *rt_htable_next(const struct rt_htable *t, struct rt_hnode *n, size_t *i) {
  if (n->next)
    return n->next;
  for ((*i)++; *i < t->nbuckets; (*i)++)
    if (t->buckets[*i])
      return t->buckets[*i];
  return NULL;
}
