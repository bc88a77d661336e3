/* The format-string parser, the output sink and text rendering (format.h).
 *
 * Grammar, as Envoy's SubstitutionFormatParser: a command is
 *   '%' NAME [ '(' ARG ')' ] [ ':' DIGITS ] '%'
 * with NAME in [A-Z0-9_]+ and ARG free of ')'; "%%" is a literal '%'. A '%'
 * that starts nothing valid is an error with its offset: a silent literal
 * would hide a typo until someone reads the logs. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "format/format_int.h"

/* ------------------------------------------------------------------ sink */

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

/* ----------------------------------------------------------------- parser */

static bool is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static int grow_parts(const struct rt_mem *m, struct rt_fmt_seq *q, size_t *cap) {
  if (q->n < *cap)
    return REVTUN_OK;
  size_t ncap = *cap ? *cap * 2 : 8;
  struct rt_fmt_part *p = rt_realloc(m, q->parts, ncap * sizeof(*p));
  if (!p)
    return REVTUN_E_NOMEM;
  q->parts = p;
  *cap = ncap;
  return REVTUN_OK;
}

static int add_literal(const struct rt_mem *m, struct rt_fmt_seq *q, size_t *cap, const char *start,
                       size_t len) {
  if (!len)
    return REVTUN_OK;
  if (grow_parts(m, q, cap))
    return REVTUN_E_NOMEM;
  q->parts[q->n++] =
      (struct rt_fmt_part){.op = RT_OP_LITERAL, .a = start, .len = len, .max_len = RT_FMT_NO_MAX};
  return REVTUN_OK;
}

/* The command as written, for messages: "%NAME(arg):Z%", cut at 64 bytes. */
static const char *token_text(const char *src, size_t start, size_t end, char *buf, size_t cap) {
  size_t n = end - start;
  if (n > 64)
    snprintf(buf, cap, "%.*s...", 60, src + start);
  else
    snprintf(buf, cap, "%.*s", (int)n, src + start);
  return buf;
}

/* Parses one command starting at src[i] == '%' (and src[i+1] != '%').
 * On success *next is the offset after its closing '%'. */
static int parse_command(const char *src, size_t len, size_t i, char *pool, unsigned ops,
                         struct rt_fmt_part *p, size_t *next, char *err, size_t errlen) {
  size_t j = i + 1;
  while (j < len && is_name_char(src[j]))
    j++;
  if (j == i + 1)
    return rt_fmt_fail(err, errlen,
                       "invalid command operator at offset %zu: expected %%NAME%%, "
                       "%%NAME(arg)%% or %%NAME(arg):LENGTH%% (write %%%% for a literal %%)",
                       i);
  size_t name_end = j;
  char *arg = NULL;
  if (j < len && src[j] == '(') {
    const char *close = memchr(src + j + 1, ')', len - j - 1);
    if (!close)
      return rt_fmt_fail(err, errlen, "missing ')' in command operator %%%.*s at offset %zu",
                         (int)(name_end - i - 1 > 64 ? 64 : name_end - i - 1), src + i + 1, i);
    size_t k = (size_t)(close - src);
    arg = pool + j + 1;
    pool[k] = '\0'; /* the ')' is never part of a literal */
    j = k + 1;
  }
  uint32_t max_len = RT_FMT_NO_MAX;
  if (j < len && src[j] == ':') {
    size_t d = j + 1;
    uint64_t v = 0;
    while (d < len && src[d] >= '0' && src[d] <= '9' && v <= UINT32_MAX)
      v = v * 10 + (uint64_t)(src[d++] - '0');
    if (d == j + 1 || v >= UINT32_MAX)
      return rt_fmt_fail(err, errlen,
                         "invalid length after ':' in command operator at offset %zu "
                         "(expected digits, at most %u)",
                         i, UINT32_MAX - 1);
    max_len = (uint32_t)v;
    j = d;
  }
  char tok[80];
  if (j >= len || src[j] != '%')
    return rt_fmt_fail(err, errlen, "command operator %s at offset %zu is not closed by '%%'",
                       token_text(src, i, j, tok, sizeof(tok)), i);
  *next = j + 1;
  const struct rt_fmt_opdef *def = rt_fmt_find_op(src + i + 1, name_end - i - 1);
  if (!def)
    return rt_fmt_fail(err, errlen, "unsupported command operator %s at offset %zu",
                       token_text(src, i, j + 1, tok, sizeof(tok)), i);
  if (!(def->family & ops))
    return rt_fmt_fail(err, errlen,
                       "unsupported command operator %s at offset %zu (not available in "
                       "this context)",
                       token_text(src, i, j + 1, tok, sizeof(tok)), i);
  if (def->arg == RT_ARG_NONE && arg)
    return rt_fmt_fail(err, errlen, "command operator %s at offset %zu takes no argument",
                       token_text(src, i, j + 1, tok, sizeof(tok)), i);
  if (def->arg == RT_ARG_REQUIRED && (!arg || !*arg))
    return rt_fmt_fail(err, errlen, "command operator %s at offset %zu needs an argument",
                       token_text(src, i, j + 1, tok, sizeof(tok)), i);
  *p = (struct rt_fmt_part){.op = def->op, .flags = def->flags, .max_len = max_len};
  char msg[192];
  if (rt_fmt_parse_arg(p, arg, msg, sizeof(msg)))
    return rt_fmt_fail(err, errlen, "command operator %s at offset %zu: %s",
                       token_text(src, i, j + 1, tok, sizeof(tok)), i, msg);
  return REVTUN_OK;
}

int rt_fmt_parse_seq(const struct rt_mem *m, const char *src, size_t len, unsigned ops,
                     struct rt_fmt_seq *q, char *err, size_t errlen) {
  memset(q, 0, sizeof(*q));
  if (len > RT_FMT_MAX_SOURCE)
    return rt_fmt_fail(err, errlen, "format is %zu bytes, more than the limit of %u", len,
                       RT_FMT_MAX_SOURCE);
  /* The pool is a copy of the source: literals are slices of it and command
   * arguments are NUL-terminated in place. */
  q->pool = rt_malloc(m, len + 1);
  if (!q->pool) {
    rt_fmt_fail(err, errlen, "out of memory");
    return REVTUN_E_NOMEM;
  }
  memcpy(q->pool, src, len);
  q->pool[len] = '\0';
  size_t cap = 0, lit = 0, i = 0;
  int rc = REVTUN_OK;
  while (i < len) {
    if (src[i] != '%') {
      i++;
      continue;
    }
    if (i + 1 < len && src[i + 1] == '%') { /* "%%": keep one '%' in the literal */
      rc = add_literal(m, q, &cap, q->pool + lit, i + 1 - lit);
      lit = i += 2;
      if (rc)
        break;
      continue;
    }
    if ((rc = add_literal(m, q, &cap, q->pool + lit, i - lit)))
      break;
    struct rt_fmt_part part;
    size_t next = len;
    rc = parse_command(src, len, i, q->pool, ops, &part, &next, err, errlen);
    if (rc)
      break;
    if ((rc = grow_parts(m, q, &cap)))
      break;
    q->parts[q->n++] = part;
    lit = i = next;
  }
  if (!rc)
    rc = add_literal(m, q, &cap, q->pool + lit, len - lit);
  if (rc == REVTUN_E_NOMEM)
    rt_fmt_fail(err, errlen, "out of memory");
  if (rc)
    rt_fmt_seq_free(m, q);
  return rc;
}

void rt_fmt_seq_free(const struct rt_mem *m, struct rt_fmt_seq *q) {
  rt_free(m, q->parts);
  rt_free(m, q->pool);
  memset(q, 0, sizeof(*q));
}

/* -------------------------------------------------------- text rendering */

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

void rt_fmt_put_value_text(struct rt_sink *s, const struct rt_fmt_val *v, const struct rt_rctx *r,
                           uint32_t max_len) {
  size_t saved = s->budget;
  s->budget = min_size(r->value_cap, max_len == RT_FMT_NO_MAX ? SIZE_MAX : max_len);
  switch (v->kind) {
  case RT_V_NULL:
    s->budget = saved;
    if (!(r->flags & RT_FMT_OMIT_EMPTY))
      rt_sink_esc(s, "-", 1, s->esc);
    return;
  case RT_V_STR:
    if (v->quote_text) { /* Envoy prints a TYPED filter state as JSON */
      rt_sink_esc(s, "\"", 1, s->esc);
      s->esc++;
      rt_sink_val(s, v->s, v->len);
      s->esc--;
      rt_sink_esc(s, "\"", 1, s->esc);
    } else {
      rt_sink_val(s, v->s, v->len);
    }
    break;
  case RT_V_NUM: {
    char buf[24];
    rt_sink_val(s, buf, rt_u64_dec(v->num, buf));
    break;
  }
  case RT_V_META:
    s->budget = saved;
    rt_fmt_put_meta_object(s, r, s->esc);
    return;
  }
  s->budget = saved;
}

void rt_fmt_render_seq_text(const struct rt_fmt_seq *q, struct rt_rctx *r, struct rt_sink *s) {
  for (size_t i = 0; i < q->n; i++) {
    const struct rt_fmt_part *p = &q->parts[i];
    if (p->op == RT_OP_LITERAL) {
      rt_sink_esc(s, p->a, p->len, s->esc);
      continue;
    }
    struct rt_fmt_val v;
    rt_fmt_eval(p, r, &v);
    rt_fmt_put_value_text(s, &v, r, p->max_len);
  }
}

/* ------------------------------------------------------------- public API */

int rt_fmt_compile(const struct rt_mem *m, const char *src, size_t len, unsigned ops,
                   unsigned flags, struct rt_fmt **out, char *err, size_t errlen) {
  *out = NULL;
  if (!src && len)
    return rt_fmt_fail(err, errlen, "format is NULL");
  struct rt_fmt *f = rt_calloc(m, 1, sizeof(*f));
  if (!f) {
    rt_fmt_fail(err, errlen, "out of memory");
    return REVTUN_E_NOMEM;
  }
  f->flags = flags & RT_FMT_OMIT_EMPTY;
  int rc = rt_fmt_parse_seq(m, src ? src : "", len, ops, &f->seq, err, errlen);
  if (rc) {
    rt_free(m, f);
    return rc;
  }
  f->ends_nl = len && src[len - 1] == '\n';
  *out = f;
  return REVTUN_OK;
}

void rt_fmt_free(const struct rt_mem *m, struct rt_fmt *f) {
  if (!f)
    return;
  rt_fmt_seq_free(m, &f->seq);
  rt_fmt_json_free(m, &f->root);
  rt_free(m, f);
}

static size_t render_pass(const struct rt_fmt *f, struct rt_rctx *r, char *out, size_t cap) {
  struct rt_sink s = {.p = out, .cap = cap, .budget = SIZE_MAX};
  if (f->json)
    rt_fmt_render_json(f, r, &s);
  else
    rt_fmt_render_seq_text(&f->seq, r, &s);
  return s.len;
}

size_t rt_fmt_render(const struct rt_fmt *f, const struct rt_fmt_ctx *ctx, char *out, size_t cap,
                     unsigned *flags_out) {
  static const struct rt_fmt_ctx empty;
  struct rt_rctx r = {.ctx = ctx ? ctx : &empty, .value_cap = SIZE_MAX, .flags = f->flags};
  unsigned flags = 0;
  if (!f->json && f->seq.n == 1 && f->seq.parts[0].op != RT_OP_LITERAL) {
    struct rt_fmt_val v;
    rt_fmt_eval(&f->seq.parts[0], &r, &v);
    if (v.kind == RT_V_NULL)
      flags |= RT_FMT_R_NULL;
  }
  /* Shortening passes: whole values, then 256 bytes per value, then none. */
  static const size_t caps[] = {SIZE_MAX, 256, 0};
  size_t need = 0;
  for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
    r.value_cap = caps[i];
    need = render_pass(f, &r, out, cap);
    if (need <= cap) {
      if (i)
        flags |= RT_FMT_R_SHORTENED;
      if (flags_out)
        *flags_out = flags;
      return need;
    }
  }
  flags |= RT_FMT_R_SHORTENED;
  if (flags_out)
    *flags_out = flags;
  if (f->json || cap == 0)
    return 0; /* cut JSON is not JSON: the caller drops it */
  /* A text record is cut, keeping its final newline so lines stay lines. */
  if (f->ends_nl)
    out[cap - 1] = '\n';
  return cap;
}
