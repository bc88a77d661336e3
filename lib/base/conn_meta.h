/* revtun_conn_meta_t: the strings a host attaches to a connection before the
 * acceptor sees it (dynamic metadata by namespace and key, filter state by
 * key), bounded in count and size, and the copy a pending handshake keeps. */
#ifndef REVTUN_BASE_CONN_META_H
#define REVTUN_BASE_CONN_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/mem.h"

struct rt_cm_entry {
  const char *ns; /* NULL: a filter state entry */
  const char *key, *val;
  uint16_t ns_len, key_len, val_len;
};

struct revtun_conn_meta {
  struct rt_mem mem;
  struct rt_cm_entry *e;
  size_t n, cap;
  size_t bytes; /* names and values, NUL-terminated */
  bool block;   /* a copy: entries and strings live in the object's own allocation */
};

/* The value of an entry (ns NULL: filter state), or NULL; not NUL-dependent. */
const char *rt_conn_meta_find(const revtun_conn_meta_t *m, const char *ns, size_t ns_len,
                              const char *key, size_t key_len, size_t *len);

/* One allocation of m's allocator holding a copy of src; its size in *size. */
revtun_conn_meta_t *rt_conn_meta_copy(const struct rt_mem *m, const revtun_conn_meta_t *src,
                                      size_t *size);

/* Frees a copy made by rt_conn_meta_copy. */
void rt_conn_meta_free_copy(const struct rt_mem *m, revtun_conn_meta_t *copy);

#endif
