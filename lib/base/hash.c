/* See hash.h. SipHash-2-4 is written out here because it is twenty lines,
 * hot (every registration and lookup hashes an id) and fixed by its
 * published test vectors, which tests/check_hash.c replays. */
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/hash.h"

#define RT_HASH_MIN_BUCKETS 16u

/* ------------------------------------------------------------- SipHash */

static inline uint64_t rotl(uint64_t x, unsigned b) { return (x << b) | (x >> (64u - b)); }

static inline uint64_t load_le64(const uint8_t *p) {
  uint64_t v = 0;
  for (unsigned i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8u * i);
  return v;
}

#define SIPROUND                                                                                   \
  do {                                                                                             \
    v0 += v1;                                                                                      \
    v1 = rotl(v1, 13);                                                                             \
    v1 ^= v0;                                                                                      \
    v0 = rotl(v0, 32);                                                                             \
    v2 += v3;                                                                                      \
    v3 = rotl(v3, 16);                                                                             \
    v3 ^= v2;                                                                                      \
    v0 += v3;                                                                                      \
    v3 = rotl(v3, 21);                                                                             \
    v3 ^= v0;                                                                                      \
    v2 += v1;                                                                                      \
    v1 = rotl(v1, 17);                                                                             \
    v1 ^= v2;                                                                                      \
    v2 = rotl(v2, 32);                                                                             \
  } while (0)

uint64_t rt_siphash(const struct rt_hkey *k, const void *data, size_t n) {
  const uint8_t *p = data;
  uint64_t v0 = 0x736f6d6570736575ull ^ k->k0;
  uint64_t v1 = 0x646f72616e646f6dull ^ k->k1;
  uint64_t v2 = 0x6c7967656e657261ull ^ k->k0;
  uint64_t v3 = 0x7465646279746573ull ^ k->k1;
  size_t whole = n - n % 8;
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m = load_le64(p + i);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)n << 56;
  for (size_t i = whole; i < n; i++)
    b |= (uint64_t)p[i] << (8u * (i - whole));
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

bool rt_hkey_random(struct rt_hkey *k) {
  uint8_t buf[16];
  size_t got = 0;
  while (got < sizeof(buf)) {
    ssize_t r = getrandom(buf + got, sizeof(buf) - got, GRND_NONBLOCK);
    if (r > 0)
      got += (size_t)r;
    else if (r < 0 && errno == EINTR)
      continue;
    else
      break;
  }
  if (got == sizeof(buf)) {
    k->k0 = load_le64(buf);
    k->k1 = load_le64(buf + 8);
    return true;
  }
  /* No entropy from the kernel (very early boot, or a seccomp filter):
   * a key an attacker cannot read off the wire still beats a fixed one. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  struct rt_hkey mix = {(uint64_t)(uintptr_t)k ^ (uint64_t)ts.tv_nsec,
                        ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_sec};
  k->k0 = rt_siphash(&mix, "k0", 2);
  k->k1 = rt_siphash(&mix, "k1", 2);
  return false;
}

uint64_t rt_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* --------------------------------------------------------------- table */

void rt_htable_init(struct rt_htable *t, const struct rt_hkey *hkey) {
  memset(t, 0, sizeof(*t));
  t->hkey = *hkey;
}

void rt_htable_free(const struct rt_mem *m, struct rt_htable *t) {
  rt_free(m, t->buckets);
  t->buckets = NULL;
  t->nbuckets = t->count = 0;
}

static void rehash(const struct rt_mem *m, struct rt_htable *t, size_t nbuckets) {
  struct rt_hnode **nb = rt_calloc(m, nbuckets, sizeof(*nb));
  if (!nb)
    return; /* keep the old, smaller table */
  for (size_t i = 0; i < t->nbuckets; i++) {
    struct rt_hnode *n = t->buckets[i];
    while (n) {
      struct rt_hnode *next = n->next;
      size_t b = (size_t)(n->hash & (nbuckets - 1));
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
  n->hash = rt_siphash(&t->hkey, key, keylen);
  size_t b = (size_t)(n->hash & (t->nbuckets - 1));
  n->next = t->buckets[b];
  t->buckets[b] = n;
  t->count++;
  return 0;
}

struct rt_hnode *rt_htable_find(const struct rt_htable *t, const char *key, size_t keylen) {
  if (!t->nbuckets)
    return NULL;
  uint64_t h = rt_siphash(&t->hkey, key, keylen);
  for (struct rt_hnode *n = t->buckets[h & (t->nbuckets - 1)]; n; n = n->next)
    if (n->hash == h && n->keylen == keylen && memcmp(n->key, key, keylen) == 0)
      return n;
  return NULL;
}

void rt_htable_remove(struct rt_htable *t, struct rt_hnode *n) {
  if (!t->nbuckets)
    return;
  struct rt_hnode **pp = &t->buckets[n->hash & (t->nbuckets - 1)];
  while (*pp && *pp != n)
    pp = &(*pp)->next;
  if (*pp) {
    *pp = n->next;
    t->count--;
  }
}

size_t rt_htable_max_chain(const struct rt_htable *t) {
  size_t best = 0;
  for (size_t i = 0; i < t->nbuckets; i++) {
    size_t len = 0;
    for (const struct rt_hnode *n = t->buckets[i]; n; n = n->next)
      len++;
    if (len > best)
      best = len;
  }
  return best;
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
