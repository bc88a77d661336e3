/* Keyed hashing, an intrusive string-keyed hash table, and splitmix64.
 *
 * Node, cluster and tenant ids come from unauthenticated handshakes, so an
 * attacker chooses the keys: with an unkeyed hash they could pick ids that
 * all land in one bucket and make every registration and lookup walk one
 * long chain. Every table therefore hashes with SipHash-2-4 under a 128-bit
 * key that its handle draws from the kernel (getrandom) and never exposes.
 *
 * The table embeds an rt_hnode in each entry and never owns the entries.
 * Growth is best effort: if the bigger bucket array cannot be allocated the
 * table keeps working with longer chains, so inserting never fails for want
 * of memory once the first bucket array exists. */
#ifndef REVTUN_BASE_HASH_H
#define REVTUN_BASE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/mem.h"

struct rt_hkey {
  uint64_t k0, k1;
};

/* SipHash-2-4 of p[0..n) under key k. */
uint64_t rt_siphash(const struct rt_hkey *k, const void *p, size_t n);

/* A fresh random key from getrandom(2); false if the kernel gave none, in
 * which case *k holds a best-effort key mixed from addresses and time. */
bool rt_hkey_random(struct rt_hkey *k);

/* The next number of the splitmix64 sequence of *state: fast and evenly
 * spread (keepalive jitter), not a secret. */
uint64_t rt_splitmix64(uint64_t *state);

struct rt_hnode {
  struct rt_hnode *next;
  const char *key; /* owned by the entry */
  size_t keylen;
  uint64_t hash;
};

struct rt_htable {
  struct rt_hnode **buckets;
  size_t nbuckets; /* power of two, 0 before the first insert */
  size_t count;
  struct rt_hkey hkey;
};

void rt_htable_init(struct rt_htable *t, const struct rt_hkey *hkey);
void rt_htable_free(const struct rt_mem *m, struct rt_htable *t);
/* Needs one bucket array; returns -1 if even the first one cannot be made. */
int rt_htable_insert(const struct rt_mem *m, struct rt_htable *t, struct rt_hnode *n,
                     const char *key, size_t keylen);
struct rt_hnode *rt_htable_find(const struct rt_htable *t, const char *key, size_t keylen);
void rt_htable_remove(struct rt_htable *t, struct rt_hnode *n);
/* The longest chain, for tests and benchmarks: O(table size). */
size_t rt_htable_max_chain(const struct rt_htable *t);

/* Iteration: for (n = rt_htable_first(t, &i); n; n = rt_htable_next(t, n, &i)). */
struct rt_hnode *rt_htable_first(const struct rt_htable *t, size_t *i);
struct rt_hnode *rt_htable_next(const struct rt_htable *t, struct rt_hnode *n, size_t *i);

#endif
