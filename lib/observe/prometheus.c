/* revtun_stats_prometheus(): the stats as Prometheus text exposition format
 * 0.0.4, laid out as Envoy's admin /stats/prometheus lays them out
 * (source/server/admin/prometheus_stats.cc):
 *   - names are "envoy_" + the stat name with every character outside
 *     [a-zA-Z0-9_] replaced by '_' (one '_' per UTF-8 character, as Envoy's
 *     RE2 replace does); counters keep their name, no "_total" suffix;
 *   - counters first, then gauges, each sorted by name; one "# TYPE" line per
 *     metric, then "name{} value", then an empty line.
 * Two stats whose names differ only in characters Prometheus cannot carry
 * end up with one name; their values are summed into one sample so the
 * output stays valid (no duplicate series, one TYPE per name), and a gauge
 * that collides with a counter is left out.
 *
 * snprintf contract: at most cap bytes are written, NUL-terminated when cap
 * is not 0; *len_out gets the full length (without the NUL); the return is
 * REVTUN_E_NOSPACE when that did not fit, so buf NULL / cap 0 asks the size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/handle.h"
#include "observe/stats_walk.h"

#define PREFIX "envoy_"

struct metric {
  char *name; /* sanitized, with the prefix */
  int type;
  uint64_t value;
};

struct collect {
  const struct rt_mem *m;
  struct metric *v;
  size_t n, cap;
  bool nomem;
};

/* Bytes of the UTF-8 character at p (1 for a byte that does not start a
 * valid one, which then becomes its own '_'). */
static size_t char_len(const unsigned char *p) {
  size_t need = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 1;
  if (p[0] < 0x80 || p[0] > 0xf4)
    return 1;
  for (size_t i = 1; i < need; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 1;
  return need;
}

static char *sanitize(const struct rt_mem *m, const char *name) {
  size_t len = strlen(name);
  char *out = rt_malloc(m, sizeof(PREFIX) + len);
  if (!out)
    return NULL;
  memcpy(out, PREFIX, sizeof(PREFIX) - 1);
  char *o = out + sizeof(PREFIX) - 1;
  for (const unsigned char *p = (const unsigned char *)name; *p;) {
    unsigned char c = *p;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') {
      *o++ = (char)c;
      p++;
    } else {
      *o++ = '_';
      p += char_len(p);
    }
  }
  *o = '\0';
  return out;
}

static int collect_cb(const char *name, int type, uint64_t value, void *user) {
  struct collect *c = user;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    struct metric *v = rt_realloc(c->m, c->v, cap * sizeof(*v));
    if (!v) {
      c->nomem = true;
      return 1;
    }
    c->v = v;
    c->cap = cap;
  }
  char *s = sanitize(c->m, name);
  if (!s) {
    c->nomem = true;
    return 1;
  }
  c->v[c->n++] = (struct metric){s, type, value};
  return 0;
}

static int by_type_then_name(const void *a, const void *b) {
  const struct metric *x = a, *y = b;
  if (x->type != y->type)
    return x->type == REVTUN_STAT_COUNTER ? -1 : 1;
  return strcmp(x->name, y->name);
}

struct out {
  char *buf;
  size_t cap, len;
};

static void put(struct out *o, const char *s, size_t n) {
  if (o->cap && o->len < o->cap - 1) {
    size_t room = o->cap - 1 - o->len;
    memcpy(o->buf + o->len, s, n < room ? n : room);
  }
  o->len += n;
}

static bool counter_named(const struct metric *v, size_t n_counters, const char *name) {
  size_t lo = 0, hi = n_counters;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(v[mid].name, name);
    if (c == 0)
      return true;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return false;
}

static void render(struct out *o, const struct metric *v, size_t n) {
  size_t n_counters = 0;
  while (n_counters < n && v[n_counters].type == REVTUN_STAT_COUNTER)
    n_counters++;
  char line[64];
  for (size_t i = 0; i < n;) {
    size_t j = i;
    uint64_t sum = 0;
    for (; j < n && v[j].type == v[i].type && strcmp(v[j].name, v[i].name) == 0; j++)
      sum += v[j].value;
    bool counter = v[i].type == REVTUN_STAT_COUNTER;
    if (counter || !counter_named(v, n_counters, v[i].name)) {
      size_t nl = strlen(v[i].name);
      put(o, "# TYPE ", 7);
      put(o, v[i].name, nl);
      put(o, counter ? " counter\n" : " gauge\n", counter ? 9 : 7);
      put(o, v[i].name, nl);
      int k = snprintf(line, sizeof(line), "{} %llu\n\n", (unsigned long long)sum);
      put(o, line, (size_t)k);
    }
    i = j;
  }
}

int revtun_stats_prometheus(const revtun_t *h, char *buf, size_t cap, size_t *len_out) {
  if (len_out)
    *len_out = 0;
  if (!h || (!buf && cap))
    return REVTUN_E_INVAL;
  struct collect c = {.m = &h->mem};
  rt_stats_walk(h, collect_cb, &c);
  int rc = REVTUN_OK;
  if (c.nomem) {
    rc = REVTUN_E_NOMEM;
  } else {
    if (c.n)
      qsort(c.v, c.n, sizeof(*c.v), by_type_then_name);
    struct out o = {buf, cap, 0};
    render(&o, c.v, c.n);
    if (cap)
      buf[o.len < cap ? o.len : cap - 1] = '\0';
    if (len_out)
      *len_out = o.len;
    if (o.len >= cap)
      rc = REVTUN_E_NOSPACE;
  }
  for (size_t i = 0; i < c.n; i++)
    rt_free(&h->mem, c.v[i].name);
  rt_free(&h->mem, c.v);
  return rc;
}
