/* Format strings as sequences of parts: the parser, and a sequence
 * rendered as text.
 *
 * Grammar, as Envoy's SubstitutionFormatParser: a command is
 *   '%' NAME [ '(' ARG ')' ] [ ':' DIGITS ] '%'
 * with NAME in [A-Z0-9_]+ and ARG free of ')'; "%%" is a literal '%'. A '%'
 * that starts nothing valid is an error with its offset: a silent literal
 * would hide a typo until someone reads the logs. */
#include <stdio.h>
#include <string.h>

#include "base/text.h"
#include "format/format_int.h"

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
  *p =
      (struct rt_fmt_part){.op = def->op, .flags = def->flags, .key = def->key, .max_len = max_len};
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
    rt_fmt_put_meta_object(s, r, v, s->esc);
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
