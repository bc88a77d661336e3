/* The output sink every renderer writes to (format_int.h): raw bytes, JSON
 * escaping to any depth, per-value byte budgets, JSON strings and numbers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/format_int.h"

void rt_sink_raw(struct rt_sink *s, const char *d, size_t n) {
  if (s->len < s->cap) {
    size_t room = s->cap - s->len;
    memcpy(s->p + s->len, d, n < room ? n : room);
  }
  s->len += n;
}

/* Length of the valid UTF-8 sequence at p[0..n), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  size_t need;
  unsigned min;
  if (c >= 0xc2 && c <= 0xdf)
    need = 2, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef)
    need = 3, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4)
    need = 4, min = 0x10000;
  else
    return 0;
  if (n < need)
    return 0;
  unsigned cp = c & (0x3fu >> (need - 1));
  for (size_t i = 1; i < need; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3fu);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return need;
}

/* JSON string content, escaped `level` times. Control characters, quote and
 * backslash are escaped; bytes that are not valid UTF-8 become \u00XX so the
 * output is always valid JSON whatever an id contains. */
void rt_sink_esc(struct rt_sink *s, const char *d, size_t n, unsigned level) {
  if (level == 0) {
    rt_sink_raw(s, d, n);
    return;
  }
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)d;
  size_t run = 0; /* bytes that need no escaping, written in one go */
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    char e[6];
    size_t elen = 0;
    size_t adv = 1;
    if (c == '"' || c == '\\') {
      e[0] = '\\', e[1] = (char)c, elen = 2;
    } else if (c < 0x20) {
      e[0] = '\\';
      elen = 2;
      switch (c) {
      case '\n': e[1] = 'n'; break;
      case '\r': e[1] = 'r'; break;
      case '\t': e[1] = 't'; break;
      case '\b': e[1] = 'b'; break;
      case '\f': e[1] = 'f'; break;
      default: memcpy(e, "\\u00", 4); e[4] = hex[c >> 4], e[5] = hex[c & 15], elen = 6;
      }
    } else if (c >= 0x80) {
      adv = utf8_seq(p + i, n - i);
      if (!adv) {
        memcpy(e, "\\u00", 4);
        e[4] = hex[c >> 4], e[5] = hex[c & 15], elen = 6;
        adv = 1;
      }
    }
    if (!elen) {
      run += adv;
      i += adv;
      continue;
    }
    if (run)
      rt_sink_esc(s, (const char *)p + i - run, run, level - 1);
    run = 0;
    rt_sink_esc(s, e, elen, level - 1);
    i += adv;
  }
  if (run)
    rt_sink_esc(s, (const char *)p + n - run, run, level - 1);
}

void rt_sink_val(struct rt_sink *s, const char *d, size_t n) {
  if (n > s->budget)
    n = s->budget;
  if (s->budget != SIZE_MAX)
    s->budget -= n;
  rt_sink_esc(s, d, n, s->esc);
}

void rt_sink_json_string(struct rt_sink *s, const char *d, size_t n, unsigned level) {
  rt_sink_esc(s, "\"", 1, level);
  rt_sink_esc(s, d, n, level + 1);
  rt_sink_esc(s, "\"", 1, level);
}

/* Integers print as integers; other doubles in the shortest form that reads
 * back the same; NaN and infinities, which JSON cannot carry, as null. */
void rt_sink_number(struct rt_sink *s, double v, unsigned level) {
  char buf[40];
  int n;
  if (isnan(v) || isinf(v)) {
    rt_sink_esc(s, "null", 4, level);
    return;
  }
  /* range first: converting an out-of-range double to an integer is UB */
  if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(long long)v) {
    n = snprintf(buf, sizeof(buf), "%lld", (long long)v);
  } else {
    n = snprintf(buf, sizeof(buf), "%.15g", v);
    if (strtod(buf, NULL) != v)
      n = snprintf(buf, sizeof(buf), "%.17g", v);
  }
  rt_sink_esc(s, buf, (size_t)n, level);
}
