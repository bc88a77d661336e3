/* revtun_stats_prometheus(): the stats as Prometheus text exposition format
 * 0.0.4, laid out as Envoy's admin /stats/prometheus lays them out
 * (source/server/admin/prometheus_stats.cc):
 *   - names are "envoy_" + the stat name with every character outside
 *     [a-zA-Z0-9_] replaced by '_' (one '_' per UTF-8 character, as Envoy's
 *     RE2 replace does); counters keep their name, no "_total" suffix;
 *   - counters, then gauges, then histograms, each sorted by name; one
 *     "# TYPE" line per family, then its samples, no blank lines;
 *   - a histogram: name_bucket{le="<bound>"} (cumulative, bounds printed as
 *     %.32g), name_bucket{le="+Inf"}, name_sum{}, name_count{};
 *   - the detailed per-node/cluster/tenant gauges are Envoy's
 *     HiddenAccumulate ones: left out unless REVTUN_PROM_HIDDEN_INCLUDE.
 * REVTUN_PROM_LABELS moves the ids of the detailed gauges out of the names
 * into labels: <p>.nodes.<id> -> <p>_nodes{node="<id>"},
 * <p>.tenants.<t>.clusters.<id> -> <p>_tenants_clusters{cluster="<id>",tenant="<t>"},
 * <p>.<w>.node.<id> -> <p>_<w>_node{node="<id>"}; label values escaped
 * (\\, \", \n), a byte that is not valid UTF-8 becomes U+FFFD.
 * Two stats whose names differ only in characters Prometheus cannot carry
 * end up as one series; their values are summed so the output stays valid
 * (no duplicate series, one TYPE per name), and a family that collides with
 * one of an earlier type is left out.
 *
 * snprintf contract: at most cap bytes are written, NUL-terminated when cap
 * is not 0; *len_out gets the full length (without the NUL); the return is
 * REVTUN_E_NOSPACE when that did not fit, so buf NULL / cap 0 asks the size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/macros.h"
#include "core/handle.h"
#include "core/stats.h"
#include "observe/stats_walk.h"

#define PREFIX "envoy_"
#define T_HISTOGRAM 3 /* after REVTUN_STAT_COUNTER, REVTUN_STAT_GAUGE */

struct metric {
  char *family; /* sanitized, with the prefix */
  char *labels; /* what goes between the braces, "" for none */
  int type;
  uint64_t value;
  const struct rt_histogram *hist;
};

struct collect {
  const struct rt_mem *m;
  struct metric *v;
  size_t n, cap;
  bool nomem;
};

/* A growable string. */
struct sb {
  const struct rt_mem *m;
  char *s;
  size_t len, cap;
  bool nomem;
};

static void sb_put(struct sb *b, const void *p, size_t n) {
  if (b->nomem)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *s = rt_realloc(b->m, b->s, cap);
    if (!s) {
      b->nomem = true;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
  memcpy(b->s + b->len, p, n);
  b->len += n;
  b->s[b->len] = '\0';
}

/* Bytes of the valid UTF-8 character at p (len bytes left), 0 when the byte
 * does not start one. */
static size_t utf8_len(const unsigned char *p, size_t len) {
  if (p[0] < 0x80)
    return 1;
  size_t need = p[0] >= 0xf0 && p[0] <= 0xf4  ? 4
                : p[0] >= 0xe0 && p[0] < 0xf0 ? 3
                : p[0] >= 0xc2 && p[0] < 0xe0 ? 2
                                              : 0;
  if (!need || need > len)
    return 0;
  for (size_t i = 1; i < need; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 0;
  /* overlong 3/4-byte forms, surrogates, above U+10FFFF */
  if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
      (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
    return 0;
  return need;
}

/* The Prometheus form of the name bytes [p, p+len): each character outside
 * [a-zA-Z0-9_] (a UTF-8 character, or an invalid byte) becomes one '_'. */
static void sanitize_into(struct sb *b, const char *name, size_t len) {
  const unsigned char *p = (const unsigned char *)name, *end = p + len;
  while (p < end) {
    unsigned char c = *p;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') {
      sb_put(b, p, 1);
      p++;
    } else {
      size_t n = utf8_len(p, (size_t)(end - p));
      sb_put(b, "_", 1);
      p += n ? n : 1;
    }
  }
}

static void label_into(struct sb *b, const char *key, const char *v, size_t len) {
  if (b->len)
    sb_put(b, ",", 1);
  sb_put(b, key, strlen(key));
  sb_put(b, "=\"", 2);
  const unsigned char *p = (const unsigned char *)v, *end = p + len;
  while (p < end) {
    size_t n = utf8_len(p, (size_t)(end - p));
    if (!n) {
      sb_put(b, "\xef\xbf\xbd", 3); /* U+FFFD */
      p++;
    } else if (*p == '\\' || *p == '"') {
      sb_put(b, "\\", 1);
      sb_put(b, p++, 1);
    } else if (*p == '\n') {
      sb_put(b, "\\n", 2);
      p++;
    } else {
      sb_put(b, p, n);
      p += n;
    }
  }
  sb_put(b, "\"", 1);
}

static struct metric *slot(struct collect *c) {
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    struct metric *v = rt_realloc(c->m, c->v, cap * sizeof(*v));
    if (!v) {
      c->nomem = true;
      return NULL;
    }
    c->v = v;
    c->cap = cap;
  }
  return &c->v[c->n];
}

/* Takes the family (and labels) built in f and l into a new metric. */
static void add(struct collect *c, struct sb *f, struct sb *l, int type, uint64_t value,
                const struct rt_histogram *hist) {
  struct metric *mt = c->nomem ? NULL : slot(c);
  if (!l->s && !l->nomem)
    sb_put(l, "", 0);
  if (!mt || f->nomem || l->nomem) {
    c->nomem = true;
    rt_free(c->m, f->s);
    rt_free(c->m, l->s);
    return;
  }
  *mt = (struct metric){f->s, l->s, type, value, hist};
  c->n++;
}

static int collect_cb(const char *name, int type, uint64_t value, void *user) {
  struct collect *c = user;
  struct sb f = {.m = c->m}, l = {.m = c->m};
  sb_put(&f, PREFIX, sizeof(PREFIX) - 1);
  sanitize_into(&f, name, strlen(name));
  add(c, &f, &l, type, value, NULL);
  return c->nomem;
}

static void collect_gauge(struct collect *c, const struct rt_gauge *g, bool labels) {
  struct sb f = {.m = c->m}, l = {.m = c->m};
  sb_put(&f, PREFIX, sizeof(PREFIX) - 1);
  if (!labels) {
    sanitize_into(&f, g->name, strlen(g->name));
  } else {
    bool node =
        g->kind == RT_G_NODES || g->kind == RT_G_TENANT_NODES || g->kind == RT_G_WORKER_NODE;
    if (g->t_len) { /* <p>.tenants.<t>.nodes.<id>: "<p>.tenants" ".nodes" */
      sanitize_into(&f, g->name, (size_t)g->t_off - 1);
      sanitize_into(&f, g->name + g->t_off + g->t_len,
                    (size_t)(g->id_off - 1 - g->t_off - g->t_len));
    } else {
      sanitize_into(&f, g->name, (size_t)g->id_off - 1);
    }
    label_into(&l, node ? "node" : "cluster", g->name + g->id_off, g->id_len);
    if (g->t_len)
      label_into(&l, "tenant", g->name + g->t_off, g->t_len);
  }
  add(c, &f, &l, REVTUN_STAT_GAUGE, g->value, NULL);
}

static void collect_all(const revtun_t *h, unsigned flags, struct collect *c) {
  if (rt_stats_walk_base(h, collect_cb, c))
    return;
  size_t i;
  for (struct rt_hnode *hn = rt_htable_first(&h->stats.gauges, &i); hn && !c->nomem;
       hn = rt_htable_next(&h->stats.gauges, hn, &i)) {
    const struct rt_gauge *g = RT_CONTAINER_OF(hn, struct rt_gauge, hn);
    bool hidden = g->kind != RT_G_WORKER_NODE && g->kind != RT_G_WORKER_CLUSTER;
    if (!hidden || (flags & REVTUN_PROM_HIDDEN_INCLUDE))
      collect_gauge(c, g, flags & REVTUN_PROM_LABELS);
  }
  for (int k = 0; k < RT_H_COUNT && !c->nomem; k++) {
    struct sb f = {.m = c->m}, l = {.m = c->m};
    const char *p = h->cfg.stat_prefix, *n = rt_hist_name((enum rt_hist)k);
    sb_put(&f, PREFIX, sizeof(PREFIX) - 1);
    sanitize_into(&f, p, strlen(p));
    sb_put(&f, "_", 1);
    sanitize_into(&f, n, strlen(n));
    add(c, &f, &l, T_HISTOGRAM, 0, &h->stats.hist[k]);
  }
}

static int by_type_name_labels(const void *a, const void *b) {
  const struct metric *x = a, *y = b;
  if (x->type != y->type)
    return x->type < y->type ? -1 : 1;
  int c = strcmp(x->family, y->family);
  return c ? c : strcmp(x->labels, y->labels);
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

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

/* Whether a family of an earlier type (v sorted) has this name. */
static bool taken(const struct metric *v, size_t n, int type, const char *family) {
  for (int t = REVTUN_STAT_COUNTER; t < type; t++) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      int c = v[mid].type != t ? (v[mid].type < t ? -1 : 1) : strcmp(v[mid].family, family);
      if (c < 0)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo < n && v[lo].type == t && !strcmp(v[lo].family, family))
      return true;
  }
  return false;
}

static void render_histogram(struct out *o, const char *fam, const struct rt_histogram *hg) {
  char line[96];
  uint64_t run = 0;
  for (size_t b = 0; b <= RT_HIST_BOUNDS; b++) {
    run += hg->bucket[b];
    puts_(o, fam);
    if (b < RT_HIST_BOUNDS)
      snprintf(line, sizeof(line), "_bucket{le=\"%.32g\"} %llu\n", rt_hist_bounds[b],
               (unsigned long long)run);
    else
      snprintf(line, sizeof(line), "_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)hg->count);
    puts_(o, line);
  }
  puts_(o, fam);
  snprintf(line, sizeof(line), "_sum{} %llu\n", (unsigned long long)hg->sum);
  puts_(o, line);
  puts_(o, fam);
  snprintf(line, sizeof(line), "_count{} %llu\n", (unsigned long long)hg->count);
  puts_(o, line);
}

static void render(struct out *o, const struct metric *v, size_t n) {
  static const char *const type_names[] = {"", "counter", "gauge", "histogram"};
  char line[32];
  const char *family = NULL; /* the family whose TYPE line is out */
  for (size_t i = 0; i < n;) {
    size_t j = i;
    uint64_t sum = 0;
    for (; j < n && by_type_name_labels(&v[i], &v[j]) == 0; j++)
      sum += v[j].value;
    if (taken(v, n, v[i].type, v[i].family)) {
      i = j;
      continue;
    }
    if (!family || strcmp(family, v[i].family)) {
      puts_(o, "# TYPE ");
      puts_(o, v[i].family);
      put(o, " ", 1);
      puts_(o, type_names[v[i].type]);
      put(o, "\n", 1);
      family = v[i].family;
    }
    if (v[i].type == T_HISTOGRAM) {
      render_histogram(o, v[i].family, v[i].hist);
    } else {
      puts_(o, v[i].family);
      put(o, "{", 1);
      puts_(o, v[i].labels);
      snprintf(line, sizeof(line), "} %llu\n", (unsigned long long)sum);
      puts_(o, line);
    }
    i = j;
  }
}

int revtun_stats_prometheus_ex(const revtun_t *h, unsigned flags, char *buf, size_t cap,
                               size_t *len_out) {
  if (len_out)
    *len_out = 0;
  if (!h || (!buf && cap) || (flags & ~(REVTUN_PROM_HIDDEN_INCLUDE | REVTUN_PROM_LABELS)))
    return REVTUN_E_INVAL;
  struct collect c = {.m = &h->mem};
  collect_all(h, flags, &c);
  int rc = REVTUN_OK;
  if (c.nomem) {
    rc = REVTUN_E_NOMEM;
  } else {
    if (c.n)
      qsort(c.v, c.n, sizeof(*c.v), by_type_name_labels);
    struct out o = {buf, cap, 0};
    render(&o, c.v, c.n);
    if (cap)
      buf[o.len < cap ? o.len : cap - 1] = '\0';
    if (len_out)
      *len_out = o.len;
    if (o.len >= cap)
      rc = REVTUN_E_NOSPACE;
  }
  for (size_t i = 0; i < c.n; i++) {
    rt_free(&h->mem, c.v[i].family);
    rt_free(&h->mem, c.v[i].labels);
  }
  rt_free(&h->mem, c.v);
  return rc;
}

int revtun_stats_prometheus(const revtun_t *h, char *buf, size_t cap, size_t *len_out) {
  return revtun_stats_prometheus_ex(h, 0, buf, cap, len_out);
}
