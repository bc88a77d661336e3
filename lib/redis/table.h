/* A keyed hash table for the directory's sockets, entries, lookups in flight
 * and cached answers.
 *
 * Node, cluster and tenant ids come from agents (unauthenticated handshakes)
 * and from lookups of clients, so an attacker chooses the keys. The table
 * hashes with SipHash-2-4 under a random 128-bit key drawn per directory, so
 * keys chosen to collide cannot turn lookups into walks of one long chain.
 * (The core library has its own copy behind its ABI; it exports none.)
 *
 * Entries embed an rr_hnode and own their key bytes; the table owns only its
 * bucket array. Growth is best effort: when a bigger array cannot be
 * allocated the table keeps its chains longer, so inserting never fails once
 * the first array exists. */
#ifndef RR_TABLE_H
#define RR_TABLE_H

#include <stddef.h>
#include <stdint.h>

struct rr_hnode {
  struct rr_hnode *next;
  const void *key;
  size_t keylen;
  uint64_t hash;
};

struct rr_table {
  struct rr_hnode **b;
  size_t cap; /* power of two */
  size_t n;
  uint64_t k0, k1;
};

/* SipHash-2-4 of p[0..n) under (k0, k1). */
uint64_t rr_siphash(uint64_t k0, uint64_t k1, const void *p, size_t n);
/* 16 random bytes from getrandom(2); -1 when the kernel gave none. */
int rr_random(void *buf, size_t n);

int rr_table_init(struct rr_table *t, uint64_t k0, uint64_t k1); /* -1: no memory */
void rr_table_fini(struct rr_table *t);
struct rr_hnode *rr_table_find(const struct rr_table *t, const void *key, size_t keylen);
/* n->key and n->keylen must be set; the key must not be in the table yet. */
void rr_table_add(struct rr_table *t, struct rr_hnode *n);
void rr_table_del(struct rr_table *t, struct rr_hnode *n);
/* for (n = rr_table_first(t, &i); n; n = next) { next = rr_table_next(t, n, &i); ... }:
 * ask for the next node before deleting the current one; deleting does not
 * move the others. */
struct rr_hnode *rr_table_first(const struct rr_table *t, size_t *i);
struct rr_hnode *rr_table_next(const struct rr_table *t, struct rr_hnode *n, size_t *i);

#endif
