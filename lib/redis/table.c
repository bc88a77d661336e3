/* See table.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "table.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void sip_round(uint64_t v[4]) {
  v[0] += v[1], v[1] = ROTL(v[1], 13), v[1] ^= v[0], v[0] = ROTL(v[0], 32);
  v[2] += v[3], v[3] = ROTL(v[3], 16), v[3] ^= v[2];
  v[0] += v[3], v[3] = ROTL(v[3], 21), v[3] ^= v[0];
  v[2] += v[1], v[1] = ROTL(v[1], 17), v[1] ^= v[2], v[2] = ROTL(v[2], 32);
}

static uint64_t le64(const unsigned char *p, size_t n) {
  uint64_t w = 0;
  for (size_t i = n; i-- > 0;)
    w = (w << 8) | p[i];
  return w;
}

uint64_t rr_siphash(uint64_t k0, uint64_t k1, const void *data, size_t n) {
  const unsigned char *p = data;
  uint64_t v[4] = {k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull,
                   k0 ^ 0x6c7967656e657261ull, k1 ^ 0x7465646279746573ull};
  size_t whole = n - n % 8;
  for (size_t off = 0; off < whole; off += 8) {
    uint64_t m = le64(p + off, 8);
    v[3] ^= m;
    sip_round(v), sip_round(v);
    v[0] ^= m;
  }
  uint64_t last = le64(p + whole, n % 8) | ((uint64_t)(n & 0xff) << 56);
  v[3] ^= last;
  sip_round(v), sip_round(v);
  v[0] ^= last;
  v[2] ^= 0xff;
  for (int i = 0; i < 4; i++)
    sip_round(v);
  return v[0] ^ v[1] ^ v[2] ^ v[3];
}

int rr_random(void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom((char *)buf + got, n - got, GRND_NONBLOCK);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  return 0;
}

int rr_table_init(struct rr_table *t, uint64_t k0, uint64_t k1) {
  memset(t, 0, sizeof(*t));
  t->k0 = k0, t->k1 = k1;
  t->cap = 16;
  t->b = calloc(t->cap, sizeof(*t->b));
  return t->b ? 0 : -1;
}

void rr_table_fini(struct rr_table *t) {
  free(t->b);
  t->b = NULL;
  t->cap = t->n = 0;
}

struct rr_hnode *rr_table_find(const struct rr_table *t, const void *key, size_t keylen) {
  if (!t->b)
    return NULL;
  uint64_t h = rr_siphash(t->k0, t->k1, key, keylen);
  for (struct rr_hnode *n = t->b[h & (t->cap - 1)]; n; n = n->next)
    if (n->hash == h && n->keylen == keylen && memcmp(n->key, key, keylen) == 0)
      return n;
  return NULL;
}

static void grow(struct rr_table *t) {
  if (t->cap > (SIZE_MAX / 2) / sizeof(*t->b))
    return;
  size_t cap = t->cap * 2;
  struct rr_hnode **b = calloc(cap, sizeof(*b));
  if (!b)
    return; /* longer chains, still correct */
  for (size_t i = 0; i < t->cap; i++) {
    struct rr_hnode *n = t->b[i], *next;
    for (; n; n = next) {
      next = n->next;
      n->next = b[n->hash & (cap - 1)];
      b[n->hash & (cap - 1)] = n;
    }
  }
  free(t->b);
  t->b = b;
  t->cap = cap;
}

void rr_table_add(struct rr_table *t, struct rr_hnode *n) {
  if (t->n >= t->cap)
    grow(t);
  n->hash = rr_siphash(t->k0, t->k1, n->key, n->keylen);
  struct rr_hnode **slot = &t->b[n->hash & (t->cap - 1)];
  n->next = *slot;
  *slot = n;
  t->n++;
}

void rr_table_del(struct rr_table *t, struct rr_hnode *n) {
  struct rr_hnode **p = &t->b[n->hash & (t->cap - 1)];
  while (*p && *p != n)
    p = &(*p)->next;
  if (*p) {
    *p = n->next;
    t->n--;
  }
}

static struct rr_hnode *scan(const struct rr_table *t, size_t *i) {
  for (; *i < t->cap; ++*i)
    if (t->b[*i])
      return t->b[*i];
  return NULL;
}

struct rr_hnode *rr_table_first(const struct rr_table *t, size_t *i) {
  *i = 0;
  return t->b ? scan(t, i) : NULL;
}

struct rr_hnode *rr_table_next(const struct rr_table *t, struct rr_hnode *n, size_t *i) {
  if (n->next)
    return n->next;
  ++*i;
  return scan(t, i);
}
