/* json_format templates (google.protobuf.Struct) and JSON output.
 *
 * As Envoy's JSON formatter: a string value that is exactly one command
 * operator keeps the operator's type (numbers stay numbers, absent is null,
 * left out with omit_empty_values); a string mixing text and operators is a
 * string; nested structs and lists keep their shape; number, bool and null
 * values are constants. With the legacy FileAccessLog.json_format every
 * operator value is a string ("-" when absent). Keys keep the config's order
 * (the wire order of the Struct's entries); a key repeated on the wire keeps
 * its first position and its last value, as a protobuf map does. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/format_int.h"
#include "google/protobuf/struct.pb-c.h"

/* ------------------------------------------------------------ compilation */

struct jcompile {
  const struct rt_mem *m;
  unsigned ops;
  size_t budget; /* template bytes left (RT_FMT_MAX_SOURCE) */
  char path[160];
  char *err;
  size_t errlen;
};

static int charge(struct jcompile *c, size_t n) {
  if (n > c->budget)
    return rt_fmt_fail(c->err, c->errlen, "json_format template is larger than %u bytes",
                       RT_FMT_MAX_SOURCE);
  c->budget -= n;
  return REVTUN_OK;
}

static int compile_value(struct jcompile *c, const Google__Protobuf__Value *v,
                         struct rt_fmt_jnode *n);

/* Appends ".key" or "[i]" to the error path, returning the old length. */
static size_t path_push(struct jcompile *c, const char *key, size_t index) {
  size_t old = strlen(c->path);
  if (key)
    snprintf(c->path + old, sizeof(c->path) - old, ".%s", key);
  else
    snprintf(c->path + old, sizeof(c->path) - old, "[%zu]", index);
  return old;
}

static int compile_struct(struct jcompile *c, const Google__Protobuf__Struct *st,
                          struct rt_fmt_jnode *n) {
  n->kind = RT_J_OBJ;
  if (!st || !st->n_fields)
    return REVTUN_OK;
  n->kids = rt_calloc(c->m, st->n_fields, sizeof(*n->kids));
  if (!n->kids)
    return REVTUN_E_NOMEM;
  for (size_t i = 0; i < st->n_fields; i++) {
    const Google__Protobuf__Struct__FieldsEntry *e = st->fields[i];
    const char *key = e->key ? e->key : "";
    int rc = charge(c, strlen(key) + 4);
    if (rc)
      return rc;
    struct rt_fmt_jnode *slot = NULL;
    for (size_t k = 0; k < n->n_kids && !slot; k++)
      if (strcmp(n->kids[k].key, key) == 0)
        slot = &n->kids[k];
    if (slot) { /* repeated key: last value, first position */
      char *kept = slot->key;
      slot->key = NULL;
      rt_fmt_json_free(c->m, slot);
      memset(slot, 0, sizeof(*slot));
      slot->key = kept;
    } else {
      slot = &n->kids[n->n_kids++];
      if (!(slot->key = rt_strdup(c->m, key)))
        return REVTUN_E_NOMEM;
    }
    size_t old = path_push(c, key, 0);
    rc = compile_value(c, e->value, slot);
    if (rc)
      return rc;
    c->path[old] = '\0';
  }
  return REVTUN_OK;
}

static int compile_value(struct jcompile *c, const Google__Protobuf__Value *v,
                         struct rt_fmt_jnode *n) {
  int kind = v ? (int)v->kind_case : GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET;
  switch (kind) {
  case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE: {
    const char *str = v->string_value ? v->string_value : "";
    size_t len = strlen(str);
    int rc = charge(c, len);
    if (rc)
      return rc;
    n->kind = RT_J_FMT;
    char msg[200];
    rc = rt_fmt_parse_seq(c->m, str, len, c->ops, &n->seq, msg, sizeof(msg));
    if (rc == REVTUN_E_NOMEM)
      return rc;
    if (rc)
      return rt_fmt_fail(c->err, c->errlen, "%s: %s", c->path, msg);
    return REVTUN_OK;
  }
  case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE: return compile_struct(c, v->struct_value, n);
  case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE: {
    n->kind = RT_J_LIST;
    const Google__Protobuf__ListValue *l = v->list_value;
    if (!l || !l->n_values)
      return REVTUN_OK;
    n->kids = rt_calloc(c->m, l->n_values, sizeof(*n->kids));
    if (!n->kids)
      return REVTUN_E_NOMEM;
    for (size_t i = 0; i < l->n_values; i++) {
      int rc = charge(c, 2);
      if (rc)
        return rc;
      size_t old = path_push(c, NULL, i);
      n->n_kids++;
      if ((rc = compile_value(c, l->values[i], &n->kids[i])))
        return rc;
      c->path[old] = '\0';
    }
    return REVTUN_OK;
  }
  case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
    n->kind = RT_J_NUM;
    n->num = v->number_value;
    return charge(c, 8);
  case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
    n->kind = RT_J_BOOL;
    n->b = v->bool_value;
    return charge(c, 5);
  case GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE: n->kind = RT_J_NULL; return charge(c, 4);
  default:
    return rt_fmt_fail(c->err, c->errlen,
                       "%s: a value must be set (string, number, bool, "
                       "null, struct or list)",
                       c->path);
  }
}

void rt_fmt_json_free(const struct rt_mem *m, struct rt_fmt_jnode *n) {
  for (size_t i = 0; i < n->n_kids; i++)
    rt_fmt_json_free(m, &n->kids[i]);
  rt_free(m, n->kids);
  rt_free(m, n->key);
  rt_fmt_seq_free(m, &n->seq);
  n->kids = NULL;
  n->n_kids = 0;
  n->key = NULL;
}

int rt_fmt_compile_json(const struct rt_mem *m, const Google__Protobuf__Struct *tmpl, unsigned ops,
                        unsigned flags, struct rt_fmt **out, char *err, size_t errlen) {
  *out = NULL;
  struct rt_fmt *f = rt_calloc(m, 1, sizeof(*f));
  if (!f) {
    rt_fmt_fail(err, errlen, "out of memory");
    return REVTUN_E_NOMEM;
  }
  f->json = true;
  f->flags = flags & (RT_FMT_OMIT_EMPTY | RT_FMT_UNTYPED);
  struct jcompile c = {.m = m,
                       .ops = ops,
                       .budget = RT_FMT_MAX_SOURCE,
                       .path = "json_format",
                       .err = err,
                       .errlen = errlen};
  int rc = compile_struct(&c, tmpl, &f->root);
  if (rc == REVTUN_E_NOMEM)
    rt_fmt_fail(err, errlen, "out of memory");
  if (rc) {
    rt_fmt_json_free(m, &f->root);
    rt_free(m, f);
    return rc;
  }
  *out = f;
  return REVTUN_OK;
}

/* -------------------------------------------------------------- rendering */

static bool single_op(const struct rt_fmt_seq *q) {
  return q->n == 1 && q->parts[0].op != RT_OP_LITERAL;
}

static void put_typed(struct rt_sink *s, const struct rt_fmt_val *v, const struct rt_rctx *r,
                      uint32_t max_len) {
  size_t len;
  switch (v->kind) {
  case RT_V_STR:
    len = v->len;
    if (max_len != RT_FMT_NO_MAX && len > max_len)
      len = max_len;
    if (len > r->value_cap)
      len = r->value_cap;
    rt_sink_json_string(s, v->s, len, 0);
    return;
  case RT_V_NUM: rt_sink_number(s, (double)v->num, 0); return;
  case RT_V_META: rt_fmt_put_meta_object(s, r, v, 0); return;
  default: rt_sink_raw(s, "null", 4);
  }
}

/* A single-operator value is evaluated once, before its key is written, so
 * that omit_empty_values can leave the key out. */
static bool omitted(const struct rt_fmt_jnode *n, struct rt_rctx *r, struct rt_fmt_val *v) {
  if (n->kind == RT_J_FMT && single_op(&n->seq)) {
    rt_fmt_eval(&n->seq.parts[0], r, v);
    return v->kind == RT_V_NULL && (r->flags & RT_FMT_OMIT_EMPTY);
  }
  return n->kind == RT_J_NULL && (r->flags & RT_FMT_OMIT_EMPTY);
}

static void put_node(const struct rt_fmt_jnode *n, struct rt_rctx *r, struct rt_sink *s,
                     const struct rt_fmt_val *v);

static void put_kids(const struct rt_fmt_jnode *n, struct rt_rctx *r, struct rt_sink *s) {
  bool obj = n->kind == RT_J_OBJ, first = true;
  rt_sink_raw(s, obj ? "{" : "[", 1);
  for (size_t i = 0; i < n->n_kids; i++) {
    const struct rt_fmt_jnode *k = &n->kids[i];
    struct rt_fmt_val v;
    if (omitted(k, r, &v))
      continue;
    if (!first)
      rt_sink_raw(s, ",", 1);
    first = false;
    if (obj) {
      rt_sink_json_string(s, k->key, strlen(k->key), 0);
      rt_sink_raw(s, ":", 1);
    }
    put_node(k, r, s, &v);
  }
  rt_sink_raw(s, obj ? "}" : "]", 1);
}

static void put_node(const struct rt_fmt_jnode *n, struct rt_rctx *r, struct rt_sink *s,
                     const struct rt_fmt_val *v) {
  switch (n->kind) {
  case RT_J_OBJ:
  case RT_J_LIST: put_kids(n, r, s); return;
  case RT_J_NUM: rt_sink_number(s, n->num, 0); return;
  case RT_J_BOOL: rt_sink_raw(s, n->b ? "true" : "false", n->b ? 4 : 5); return;
  case RT_J_NULL: rt_sink_raw(s, "null", 4); return;
  default: break;
  }
  if (single_op(&n->seq) && !(r->flags & RT_FMT_UNTYPED)) {
    put_typed(s, v, r, n->seq.parts[0].max_len);
    return;
  }
  rt_sink_raw(s, "\"", 1);
  s->esc = 1;
  if (single_op(&n->seq))
    rt_fmt_put_value_text(s, v, r, n->seq.parts[0].max_len);
  else
    rt_fmt_render_seq_text(&n->seq, r, s);
  s->esc = 0;
  rt_sink_raw(s, "\"", 1);
}

void rt_fmt_render_json(const struct rt_fmt *f, struct rt_rctx *r, struct rt_sink *s) {
  put_kids(&f->root, r, s);
  rt_sink_raw(s, "\n", 1);
}

/* --------------------------------------------------- Struct -> plain JSON */

static void put_plain(struct rt_sink *s, const Google__Protobuf__Value *v);

static void put_plain_struct(struct rt_sink *s, const Google__Protobuf__Struct *st) {
  rt_sink_raw(s, "{", 1);
  for (size_t i = 0; st && i < st->n_fields; i++) {
    const Google__Protobuf__Struct__FieldsEntry *e = st->fields[i];
    const char *key = e->key ? e->key : "";
    if (i)
      rt_sink_raw(s, ",", 1);
    rt_sink_json_string(s, key, strlen(key), 0);
    rt_sink_raw(s, ":", 1);
    put_plain(s, e->value);
  }
  rt_sink_raw(s, "}", 1);
}

static void put_plain(struct rt_sink *s, const Google__Protobuf__Value *v) {
  int kind = v ? (int)v->kind_case : GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET;
  switch (kind) {
  case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE: {
    const char *str = v->string_value ? v->string_value : "";
    rt_sink_json_string(s, str, strlen(str), 0);
    return;
  }
  case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE: rt_sink_number(s, v->number_value, 0); return;
  case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
    rt_sink_raw(s, v->bool_value ? "true" : "false", v->bool_value ? 4 : 5);
    return;
  case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE: put_plain_struct(s, v->struct_value); return;
  case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
    rt_sink_raw(s, "[", 1);
    for (size_t i = 0; v->list_value && i < v->list_value->n_values; i++) {
      if (i)
        rt_sink_raw(s, ",", 1);
      put_plain(s, v->list_value->values[i]);
    }
    rt_sink_raw(s, "]", 1);
    return;
  default: rt_sink_raw(s, "null", 4); return;
  }
}

int rt_json_from_struct(const struct rt_mem *m, const Google__Protobuf__Struct *st, char **out,
                        size_t *len_out) {
  struct rt_sink s = {.budget = SIZE_MAX}; /* first pass: measure */
  put_plain_struct(&s, st);
  size_t len = s.len;
  char *buf = rt_malloc(m, len + 1);
  if (!buf)
    return REVTUN_E_NOMEM;
  s = (struct rt_sink){.p = buf, .cap = len, .budget = SIZE_MAX};
  put_plain_struct(&s, st);
  buf[len] = '\0';
  *out = buf;
  *len_out = len;
  return REVTUN_OK;
}
