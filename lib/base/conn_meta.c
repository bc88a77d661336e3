/* The connection metadata a host attaches before accept. Every string comes
 * with its length and is checked here, at the public entry point: names are
 * 1..REVTUN_CONN_META_MAX_NAME bytes without NUL or ':' (the operators that
 * read them split their argument on ':', so such a name could never be
 * named), values at most REVTUN_CONN_META_MAX_VALUE bytes without NUL. */
#include <string.h>

#include "base/conn_meta.h"

static bool name_ok(const char *s, size_t n) {
  return s && n && n <= REVTUN_CONN_META_MAX_NAME && !memchr(s, '\0', n) && !memchr(s, ':', n);
}

static bool value_ok(const char *s, size_t n) {
  return (s || !n) && n <= REVTUN_CONN_META_MAX_VALUE && (!n || !memchr(s, '\0', n));
}

int revtun_conn_meta_new(revtun_conn_meta_t **out) {
  if (!out)
    return REVTUN_E_INVAL;
  struct rt_mem m;
  rt_mem_default(&m);
  *out = rt_calloc(&m, 1, sizeof(**out));
  if (!*out)
    return REVTUN_E_NOMEM;
  (*out)->mem = m;
  return REVTUN_OK;
}

static void free_entry(const struct rt_mem *m, struct rt_cm_entry *e) {
  rt_free(m, (void *)(e->ns ? e->ns : e->key)); /* the entry's one allocation */
}

void revtun_conn_meta_free(revtun_conn_meta_t *meta) {
  if (!meta || meta->block) /* a library copy is not the caller's to free */
    return;
  for (size_t i = 0; i < meta->n; i++)
    free_entry(&meta->mem, &meta->e[i]);
  rt_free(&meta->mem, meta->e);
  rt_free(&meta->mem, meta);
}

static size_t find_index(const revtun_conn_meta_t *m, const char *ns, size_t ns_len,
                         const char *key, size_t key_len) {
  for (size_t i = 0; i < m->n; i++) {
    const struct rt_cm_entry *e = &m->e[i];
    if ((e->ns == NULL) != (ns == NULL) || e->key_len != key_len ||
        memcmp(e->key, key, key_len) != 0)
      continue;
    if (ns && (e->ns_len != ns_len || memcmp(e->ns, ns, ns_len) != 0))
      continue;
    return i;
  }
  return SIZE_MAX;
}

const char *rt_conn_meta_find(const revtun_conn_meta_t *m, const char *ns, size_t ns_len,
                              const char *key, size_t key_len, size_t *len) {
  if (!m)
    return NULL;
  size_t i = find_index(m, ns, ns_len, key, key_len);
  if (i == SIZE_MAX)
    return NULL;
  *len = m->e[i].val_len;
  return m->e[i].val;
}

/* Copies "ns\0key\0value\0" (ns optional) to p and points e at it. */
static void fill(struct rt_cm_entry *e, char *p, const char *ns, size_t ns_len, const char *key,
                 size_t key_len, const char *val, size_t val_len) {
  e->ns = NULL;
  if (ns) {
    memcpy(p, ns, ns_len);
    p[ns_len] = '\0';
    e->ns = p;
    p += ns_len + 1;
  }
  memcpy(p, key, key_len);
  p[key_len] = '\0';
  e->key = p;
  p += key_len + 1;
  if (val_len)
    memcpy(p, val, val_len);
  p[val_len] = '\0';
  e->val = p;
  e->ns_len = (uint16_t)ns_len;
  e->key_len = (uint16_t)key_len;
  e->val_len = (uint16_t)val_len;
}

static size_t entry_bytes(size_t ns_len, bool has_ns, size_t key_len, size_t val_len) {
  return (has_ns ? ns_len + 1 : 0) + key_len + 1 + val_len + 1;
}

static int set(revtun_conn_meta_t *m, const char *ns, size_t ns_len, const char *key,
               size_t key_len, const char *val, size_t val_len) {
  size_t i = find_index(m, ns, ns_len, key, key_len);
  if (i == SIZE_MAX && m->n == REVTUN_CONN_META_MAX_ENTRIES)
    return REVTUN_E_LIMIT;
  if (i == SIZE_MAX && m->n == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 4;
    struct rt_cm_entry *e = rt_realloc(&m->mem, m->e, cap * sizeof(*e));
    if (!e)
      return REVTUN_E_NOMEM;
    m->e = e;
    m->cap = cap;
  }
  size_t need = entry_bytes(ns_len, ns != NULL, key_len, val_len);
  char *p = rt_malloc(&m->mem, need);
  if (!p)
    return REVTUN_E_NOMEM; /* the old value, if any, stays */
  if (i == SIZE_MAX) {
    i = m->n++;
  } else {
    const struct rt_cm_entry *old = &m->e[i];
    m->bytes -= entry_bytes(old->ns_len, old->ns != NULL, old->key_len, old->val_len);
    free_entry(&m->mem, &m->e[i]);
  }
  fill(&m->e[i], p, ns, ns_len, key, key_len, val, val_len);
  m->bytes += need;
  return REVTUN_OK;
}

int revtun_conn_meta_set_dynamic(revtun_conn_meta_t *meta, const char *ns, size_t ns_len,
                                 const char *key, size_t key_len, const char *value,
                                 size_t value_len) {
  if (!meta || meta->block || !name_ok(ns, ns_len) || !name_ok(key, key_len) ||
      !value_ok(value, value_len))
    return REVTUN_E_INVAL;
  return set(meta, ns, ns_len, key, key_len, value, value_len);
}

int revtun_conn_meta_set_filter_state(revtun_conn_meta_t *meta, const char *key, size_t key_len,
                                      const char *value, size_t value_len) {
  if (!meta || meta->block || !name_ok(key, key_len) || !value_ok(value, value_len))
    return REVTUN_E_INVAL;
  return set(meta, NULL, 0, key, key_len, value, value_len);
}

revtun_conn_meta_t *rt_conn_meta_copy(const struct rt_mem *m, const revtun_conn_meta_t *src,
                                      size_t *size) {
  size_t need = sizeof(*src) + src->n * sizeof(struct rt_cm_entry) + src->bytes;
  revtun_conn_meta_t *c = rt_malloc(m, need);
  if (!c)
    return NULL;
  memset(c, 0, sizeof(*c));
  c->mem = *m;
  c->block = true;
  c->e = (struct rt_cm_entry *)(void *)(c + 1);
  c->n = c->cap = src->n;
  c->bytes = src->bytes;
  char *p = (char *)(c->e + src->n);
  for (size_t i = 0; i < src->n; i++) {
    const struct rt_cm_entry *e = &src->e[i];
    fill(&c->e[i], p, e->ns, e->ns_len, e->key, e->key_len, e->val, e->val_len);
    p += entry_bytes(e->ns_len, e->ns != NULL, e->key_len, e->val_len);
  }
  *size = need;
  return c;
}

void rt_conn_meta_free_copy(const struct rt_mem *m, revtun_conn_meta_t *copy) { rt_free(m, copy); }
