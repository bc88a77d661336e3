/* A strict parser of the Prometheus text exposition format 0.0.4 for the
 * tests, header-only. prom_parse() returns 0 and fills the result, or -1
 * with the first deviation in err:
 *   - every line ends in '\n'; no empty line (Envoy writes none);
 *   - "# TYPE <name> counter|gauge|histogram|summary|untyped", at most one
 *     per family and before its first sample; other comments only HELP;
 *   - a sample is name[{label="value",...}] value, names
 *     [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* not "__"
 *     reserved, values valid UTF-8 with only \\, \" and \n escapes, no label
 *     twice; the value a decimal number, +Inf, -Inf or NaN;
 *   - a family's samples are contiguous; no series appears twice;
 *   - a histogram has _bucket samples with an "le" label, rising bounds and
 *     non-decreasing counts per label set, a +Inf bucket equal to _count,
 *     and _sum and _count.
 * prom_lint() counts what promtool's lint would report on the names:
 * counters without "_total" (Envoy's names never have it). */
#ifndef REVTUN_TESTS_PROM_PARSE_H
#define REVTUN_TESTS_PROM_PARSE_H

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct prom_sample {
  char name[256];    /* as written, with _bucket/_sum/_count */
  char family[256];  /* the TYPE name it belongs to */
  char labels[1024]; /* the labels, unescaped, as k=v\x1f... in written order */
  double value;
  double le; /* histogram buckets */
};

struct prom_family {
  char name[256];
  char type[16];
};

struct prom_result {
  struct prom_sample *s;
  size_t n, cap;
  struct prom_family *f;
  size_t nf, capf;
  char err[512];
};

static inline void prom_free(struct prom_result *r) {
  free(r->s);
  free(r->f);
  memset(r, 0, sizeof(*r));
}

static inline int prom_fail(struct prom_result *r, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int prom_fail(struct prom_result *r, size_t line, const char *fmt, ...) {
  va_list ap;
  int k = snprintf(r->err, sizeof(r->err), "line %zu: ", line);
  va_start(ap, fmt);
  vsnprintf(r->err + k, sizeof(r->err) - (size_t)k, fmt, ap);
  va_end(ap);
  return -1;
}

#define prom_fail0(...) ((void)prom_fail(__VA_ARGS__), (size_t)0)

static inline bool prom_name_char(char c, bool first, bool colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
         (!first && c >= '0' && c <= '9');
}

/* The length of a valid UTF-8 character at p (n bytes left), 0 if none. */
static inline size_t prom_utf8(const unsigned char *p, size_t n) {
  if (p[0] < 0x80)
    return 1;
  size_t need = p[0] >= 0xc2 && p[0] <= 0xdf   ? 2
                : p[0] >= 0xe0 && p[0] <= 0xef ? 3
                : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4
                                               : 0;
  if (!need || need > n)
    return 0;
  for (size_t i = 1; i < need; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 0;
  if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
      (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
    return 0;
  return need;
}

static inline struct prom_family *prom_family_find(struct prom_result *r, const char *name) {
  for (size_t i = 0; i < r->nf; i++)
    if (!strcmp(r->f[i].name, name))
      return &r->f[i];
  return NULL;
}

/* The family a sample name belongs to: a histogram's suffixed names, else its own. */
static inline struct prom_family *prom_owner(struct prom_result *r, const char *name) {
  static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
  for (size_t i = 0; i < 3; i++) {
    size_t nl = strlen(name), sl = strlen(suffixes[i]);
    if (nl > sl && !strcmp(name + nl - sl, suffixes[i])) {
      char base[256];
      snprintf(base, sizeof(base), "%.*s", (int)(nl - sl), name);
      struct prom_family *f = prom_family_find(r, base);
      if (f && (!strcmp(f->type, "histogram") || (!strcmp(f->type, "summary") && i)))
        return f;
    }
  }
  return prom_family_find(r, name);
}

static inline bool prom_value(const char *s, size_t len, double *out) {
  char buf[64];
  if (!len || len >= sizeof(buf))
    return false;
  memcpy(buf, s, len);
  buf[len] = '\0';
  if (!strcmp(buf, "+Inf") || !strcmp(buf, "-Inf") || !strcmp(buf, "NaN")) {
    *out = buf[0] == 'N' ? NAN : buf[0] == '+' ? INFINITY : -INFINITY;
    return true;
  }
  size_t i = 0;
  if (buf[i] == '-' || buf[i] == '+')
    i++;
  size_t digits = 0;
  while (buf[i] >= '0' && buf[i] <= '9')
    i++, digits++;
  if (buf[i] == '.')
    for (i++; buf[i] >= '0' && buf[i] <= '9'; i++)
      digits++;
  if (!digits)
    return false;
  if (buf[i] == 'e' || buf[i] == 'E') {
    i++;
    if (buf[i] == '-' || buf[i] == '+')
      i++;
    if (!(buf[i] >= '0' && buf[i] <= '9'))
      return false;
    while (buf[i] >= '0' && buf[i] <= '9')
      i++;
  }
  if (buf[i])
    return false;
  *out = strtod(buf, NULL);
  return true;
}

/* Parses "{...}" at p (len bytes) into out; returns bytes used, 0 on error. */
static inline size_t prom_labels(struct prom_result *r, size_t ln, const char *p, size_t len,
                                 char *out, size_t cap, double *le, bool *has_le) {
  size_t i = 1, o = 0;
  char keys[16][128];
  size_t nkeys = 0;
  out[0] = '\0';
  while (i < len && p[i] != '}') {
    size_t k0 = i;
    if (!prom_name_char(p[i], true, false))
      return prom_fail0(r, ln, "bad label name");
    while (i < len && prom_name_char(p[i], false, false))
      i++;
    size_t kl = i - k0;
    if (kl >= 2 && p[k0] == '_' && p[k0 + 1] == '_')
      return prom_fail0(r, ln, "reserved label name");
    if (kl >= 128 || nkeys == 16)
      return prom_fail0(r, ln, "label too long or too many");
    for (size_t k = 0; k < nkeys; k++)
      if (strlen(keys[k]) == kl && !memcmp(keys[k], p + k0, kl))
        return prom_fail0(r, ln, "label %.*s twice", (int)kl, p + k0);
    memcpy(keys[nkeys], p + k0, kl);
    keys[nkeys++][kl] = '\0';
    if (i + 1 >= len || p[i] != '=' || p[i + 1] != '"')
      return prom_fail0(r, ln, "expected =\"");
    i += 2;
    char val[512];
    size_t vl = 0;
    while (i < len && p[i] != '"') {
      char c = p[i];
      size_t n = 1;
      if (c == '\\') {
        if (i + 1 >= len)
          return prom_fail0(r, ln, "escape at end");
        char e = p[i + 1];
        c = e == 'n' ? '\n' : e == '\\' ? '\\' : e == '"' ? '"' : 0;
        if (!c)
          return prom_fail0(r, ln, "bad escape \\%c", e);
        i += 2;
      } else {
        n = prom_utf8((const unsigned char *)p + i, len - i);
        if (!n || c == '\n')
          return prom_fail0(r, ln, "label value not UTF-8");
        if (vl + n < sizeof(val))
          memcpy(val + vl, p + i, n);
        vl += n;
        i += n;
        continue;
      }
      if (vl + 1 < sizeof(val))
        val[vl] = c;
      vl++;
    }
    if (i >= len)
      return prom_fail0(r, ln, "unterminated label value");
    i++;
    if (vl >= sizeof(val))
      return prom_fail0(r, ln, "label value too long");
    val[vl] = '\0';
    if (!strcmp(keys[nkeys - 1], "le")) {
      if (!prom_value(val, vl, le))
        return prom_fail0(r, ln, "bad le %s", val);
      *has_le = true;
    } else {
      int k = snprintf(out + o, cap - o, "%s=%s\x1f", keys[nkeys - 1], val);
      if (k < 0 || (size_t)k >= cap - o)
        return prom_fail0(r, ln, "labels too long");
      o += (size_t)k;
    }
    if (i < len && p[i] == ',')
      i++;
    else if (i < len && p[i] != '}')
      return prom_fail0(r, ln, "expected , or }");
  }
  if (i >= len)
    return prom_fail0(r, ln, "unterminated labels");
  return i + 1;
}

static inline int prom_histograms(struct prom_result *r) {
  for (size_t f = 0; f < r->nf; f++) {
    if (strcmp(r->f[f].type, "histogram"))
      continue;
    const char *fam = r->f[f].name;
    char nb[300], ns[300], nc[300];
    snprintf(nb, sizeof(nb), "%s_bucket", fam);
    snprintf(ns, sizeof(ns), "%s_sum", fam);
    snprintf(nc, sizeof(nc), "%s_count", fam);
    /* per label set, in order of appearance */
    for (size_t i = 0; i < r->n; i++) {
      struct prom_sample *c = &r->s[i];
      if (strcmp(c->name, nc))
        continue;
      double last_le = -INFINITY, last = -1, inf = -1;
      bool sum = false;
      for (size_t j = 0; j < r->n; j++) {
        struct prom_sample *b = &r->s[j];
        if (strcmp(b->labels, c->labels))
          continue;
        if (!strcmp(b->name, ns))
          sum = true;
        if (strcmp(b->name, nb))
          continue;
        if (!(b->le > last_le))
          return prom_fail(r, 0, "%s: le %g after %g", fam, b->le, last_le);
        if (b->value < last)
          return prom_fail(r, 0, "%s: bucket counts fall", fam);
        last_le = b->le;
        last = b->value;
        if (isinf(b->le))
          inf = b->value;
      }
      if (inf < 0 || inf != c->value)
        return prom_fail(r, 0, "%s: +Inf bucket missing or not _count", fam);
      if (!sum)
        return prom_fail(r, 0, "%s: no _sum", fam);
    }
    bool any = false;
    for (size_t i = 0; i < r->n; i++)
      any |= !strcmp(r->s[i].name, nc);
    if (!any)
      return prom_fail(r, 0, "%s: no _count", fam);
  }
  return 0;
}

static inline int prom_parse(const char *text, size_t len, struct prom_result *r) {
  memset(r, 0, sizeof(*r));
  size_t prev = (size_t)-1;
  size_t ln = 0;
  for (size_t at = 0; at < len;) {
    ln++;
    const char *line = text + at;
    const char *nl = memchr(line, '\n', len - at);
    if (!nl)
      return prom_fail(r, ln, "not terminated");
    size_t ll = (size_t)(nl - line);
    at += ll + 1;
    if (!ll)
      return prom_fail(r, ln, "empty line");
    if (line[0] == '#') {
      if (ll > 7 && !memcmp(line, "# HELP ", 7))
        continue;
      if (ll <= 7 || memcmp(line, "# TYPE ", 7))
        return prom_fail(r, ln, "comment that is not TYPE or HELP");
      const char *p = line + 7, *sp = memchr(p, ' ', ll - 7);
      if (!sp || sp == p || (size_t)(sp - p) >= 256)
        return prom_fail(r, ln, "bad TYPE line");
      for (const char *q = p; q < sp; q++)
        if (!prom_name_char(*q, q == p, true))
          return prom_fail(r, ln, "bad metric name");
      size_t tl = ll - (size_t)(sp + 1 - line);
      const char *t = sp + 1;
      static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
      bool ok = false;
      for (size_t i = 0; i < 5; i++)
        ok |= strlen(types[i]) == tl && !memcmp(types[i], t, tl);
      if (!ok)
        return prom_fail(r, ln, "bad type %.*s", (int)tl, t);
      char name[256];
      snprintf(name, sizeof(name), "%.*s", (int)(sp - p), p);
      if (prom_family_find(r, name))
        return prom_fail(r, ln, "second TYPE for %s", name);
      for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->s[i].name, name) || !strcmp(r->s[i].family, name))
          return prom_fail(r, ln, "TYPE for %s after its samples", name);
      if (r->nf == r->capf) {
        r->capf = r->capf ? 2 * r->capf : 64;
        r->f = realloc(r->f, r->capf * sizeof(*r->f));
      }
      struct prom_family *f = &r->f[r->nf++];
      snprintf(f->name, sizeof(f->name), "%s", name);
      snprintf(f->type, sizeof(f->type), "%.*s", (int)tl, t);
      continue;
    }
    if (r->n == r->cap) {
      r->cap = r->cap ? 2 * r->cap : 256;
      r->s = realloc(r->s, r->cap * sizeof(*r->s));
    }
    struct prom_sample *s = &r->s[r->n];
    memset(s, 0, sizeof(*s));
    size_t i = 0;
    if (!prom_name_char(line[0], true, true))
      return prom_fail(r, ln, "bad sample name");
    while (i < ll && prom_name_char(line[i], false, true))
      i++;
    if (i >= 256)
      return prom_fail(r, ln, "name too long");
    memcpy(s->name, line, i);
    bool has_le = false;
    if (i < ll && line[i] == '{') {
      size_t used =
          prom_labels(r, ln, line + i, ll - i, s->labels, sizeof(s->labels), &s->le, &has_le);
      if (!used)
        return -1;
      i += used;
    }
    if (i >= ll || line[i] != ' ')
      return prom_fail(r, ln, "expected a space before the value");
    i++;
    const char *v = line + i, *sp = memchr(v, ' ', ll - i);
    size_t vl = sp ? (size_t)(sp - v) : ll - i;
    if (!prom_value(v, vl, &s->value))
      return prom_fail(r, ln, "bad value %.*s", (int)vl, v);
    if (sp) { /* a timestamp: an integer */
      size_t tl = ll - i - vl - 1;
      if (!tl || strspn(sp + 1, "-0123456789") < tl)
        return prom_fail(r, ln, "bad timestamp");
    }
    struct prom_family *f = prom_owner(r, s->name);
    snprintf(s->family, sizeof(s->family), "%s", f ? f->name : s->name);
    bool bucket = f && !strcmp(f->type, "histogram") && strlen(s->name) > strlen(f->name) &&
                  !strcmp(s->name + strlen(f->name), "_bucket");
    if (bucket != has_le)
      return prom_fail(r, ln, bucket ? "bucket without le" : "le outside a bucket");
    if (prev != (size_t)-1 && strcmp(r->s[prev].family, s->family))
      for (size_t k = 0; k < r->n; k++)
        if (!strcmp(r->s[k].family, s->family))
          return prom_fail(r, ln, "samples of %s not contiguous", s->family);
    for (size_t k = 0; k < r->n; k++)
      if (!strcmp(r->s[k].name, s->name) && !strcmp(r->s[k].labels, s->labels) &&
          (!bucket || r->s[k].le == s->le))
        return prom_fail(r, ln, "series %s{%s} twice", s->name, s->labels);
    r->n++;
    prev = r->n - 1;
  }
  return prom_histograms(r);
}

/* What promtool check metrics would flag on names: counters without _total. */
static inline size_t prom_lint(const struct prom_result *r, size_t *non_total_counters) {
  size_t n = 0;
  for (size_t i = 0; i < r->nf; i++) {
    size_t l = strlen(r->f[i].name);
    if (!strcmp(r->f[i].type, "counter") && (l < 6 || strcmp(r->f[i].name + l - 6, "_total")))
      n++;
  }
  if (non_total_counters)
    *non_total_counters = n;
  return n;
}

static inline const struct prom_sample *prom_find(const struct prom_result *r, const char *name,
                                                  const char *labels) {
  for (size_t i = 0; i < r->n; i++)
    if (!strcmp(r->s[i].name, name) && !strcmp(r->s[i].labels, labels ? labels : ""))
      return &r->s[i];
  return NULL;
}

static inline const struct prom_family *prom_type(const struct prom_result *r, const char *name) {
  for (size_t i = 0; i < r->nf; i++)
    if (!strcmp(r->f[i].name, name))
      return &r->f[i];
  return NULL;
}

#endif
