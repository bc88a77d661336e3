/* The format engine's entry points (format.h): compiling a text format,
 * rendering a record (text or JSON) with the shortening passes, freeing. */
#include <string.h>

#include "format/format_int.h"

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

unsigned rt_fmt_ops_used(const struct rt_fmt *f) {
  if (!f)
    return 0;
  if (f->json)
    return ~0u; /* not needed by any caller yet: every family may be used */
  unsigned ops = 0;
  for (size_t i = 0; i < f->seq.n; i++) {
    switch (f->seq.parts[i].op) {
    case RT_OP_DYN_META: ops |= RT_FMT_OP_DYNAMIC_METADATA; break;
    case RT_OP_FILTER_STATE: ops |= RT_FMT_OP_FILTER_STATE; break;
    case RT_OP_LITERAL: break;
    default: ops |= ~(unsigned)(RT_FMT_OP_DYNAMIC_METADATA | RT_FMT_OP_FILTER_STATE); break;
    }
  }
  return ops;
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
