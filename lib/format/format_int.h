/* Internals shared by the format engine's files, each using only those
 * listed before it:
 *
 *   format_sink.c  the output sink: escaping, budgets, JSON strings, numbers
 *   format_time.c  START_TIME's conversions
 *   format_ops.c   the operator table, arguments, evaluation against a context
 *   format_seq.c   parsing a format string into parts; parts as text
 *   format_json.c  json_format templates; google.protobuf.Struct as JSON
 *   format.c       compile, render (text or JSON, shortening passes), free
 *   format_sfs.c   envoy.config.core.v3.SubstitutionFormatString */
#ifndef REVTUN_FORMAT_FORMAT_INT_H
#define REVTUN_FORMAT_FORMAT_INT_H

#include <stdint.h>

#include "base/text.h"
#include "format/format.h"

#define RT_FMT_NO_MAX UINT32_MAX

/* A config error sentence (base/text.h). */
#define rt_fmt_fail(err, errlen, ...) rt_fail(REVTUN_E_CONFIG, (err), (errlen), __VA_ARGS__)

enum rt_fmt_opcode {
  RT_OP_LITERAL = 0,
  RT_OP_START_TIME,
  RT_OP_DYN_META,
  RT_OP_FILTER_STATE,
  RT_OP_ADDRESS,
  RT_OP_PORT,
  RT_OP_TERMINATION,
  RT_OP_REQ,
  RT_OP_PEER,      /* a field of the peer's identity (key: enum revtun_peer_field) */
  RT_OP_PEER_TIME, /* a validity time of the peer's certificate, rendered as a time */
  RT_OP_LOG_TYPE,  /* %ACCESS_LOG_TYPE% */
  RT_OP_CONN_ID    /* %CONNECTION_ID% */
};

/* Part flags. */
#define RT_PF_LOCAL 0x01u    /* ADDRESS/PORT: the local side */
#define RT_PF_NO_PORT 0x02u  /* ADDRESS: _WITHOUT_PORT */
#define RT_PF_PLAIN 0x04u    /* FILTER_STATE: :PLAIN */
#define RT_PF_DEEP 0x08u     /* DYNAMIC_METADATA: a path below a key (always absent) */
#define RT_PF_OTHER_NS 0x10u /* DYNAMIC_METADATA: a namespace we have nothing in */

/* One piece of a format string: a literal slice or a command operator. Every
 * string points into the owning sequence's pool (NUL-terminated args). */
struct rt_fmt_part {
  uint8_t op;
  uint8_t flags;
  uint8_t key;      /* FILTER_STATE: which key (rt_fs_key); PEER*: which field */
  uint32_t max_len; /* ":Z", or RT_FMT_NO_MAX */
  const char *a;    /* literal bytes; START_TIME and PEER_TIME strftime (NULL = default);
                       metadata key (NULL = whole namespace); REQ header name */
  size_t len;       /* literal length */
  const char *b;    /* REQ alternative header, or NULL; DYNAMIC_METADATA: the argument, from
                       its namespace up to its first ':' */
};

struct rt_fmt_seq {
  struct rt_fmt_part *parts;
  size_t n;
  char *pool;
};

enum rt_jkind { RT_J_OBJ, RT_J_LIST, RT_J_FMT, RT_J_NUM, RT_J_BOOL, RT_J_NULL };

struct rt_fmt_jnode {
  uint8_t kind;
  bool b;
  double num;
  char *key; /* member name inside an object */
  struct rt_fmt_seq seq;
  struct rt_fmt_jnode *kids;
  size_t n_kids;
};

struct rt_fmt {
  bool json;
  unsigned flags;
  bool ends_nl;             /* text: the format ends in a newline (kept when a record is cut) */
  struct rt_fmt_seq seq;    /* text */
  struct rt_fmt_jnode root; /* json */
};

/* ------------------------------------------------------------ output sink
 * Writes what fits into p[0..cap) and keeps counting past it, so a render
 * learns the length it needed. `esc` is the JSON-escaping depth of what is
 * put (0 raw, 1 inside a JSON string, 2 inside a JSON string inside a JSON
 * string); `budget` caps the raw bytes of the value being written. */
struct rt_sink {
  char *p;
  size_t cap, len;
  unsigned esc;
  size_t budget;
};

void rt_sink_raw(struct rt_sink *s, const char *d, size_t n); /* no escaping, no budget */
void rt_sink_esc(struct rt_sink *s, const char *d, size_t n, unsigned level);
void rt_sink_val(struct rt_sink *s, const char *d, size_t n); /* budget + s->esc */
static inline void rt_sink_str(struct rt_sink *s, const char *str) {
  rt_sink_val(s, str, __builtin_strlen(str));
}
/* A JSON string (quotes included) at escaping depth level. */
void rt_sink_json_string(struct rt_sink *s, const char *d, size_t n, unsigned level);
/* A JSON number: integers as integers, other doubles in the shortest form
 * that reads back the same, NaN and infinities as null. */
void rt_sink_number(struct rt_sink *s, double v, unsigned level);

/* ------------------------------------------------------------- evaluation */

enum rt_vkind { RT_V_NULL, RT_V_STR, RT_V_NUM, RT_V_META };

struct rt_fmt_val {
  uint8_t kind;
  bool quote_text; /* FILTER_STATE :TYPED: a JSON string even in text output */
  const char *s;
  size_t len;
  uint64_t num;
  char buf[72]; /* numbers, addresses, times */
};

/* Per-render state. */
struct rt_rctx {
  const struct rt_fmt_ctx *ctx;
  size_t value_cap; /* raw bytes per value (shortening passes) */
  bool wall_read;
  struct timespec wall;
  unsigned flags; /* RT_FMT_OMIT_EMPTY | RT_FMT_UNTYPED */
  char tbuf[512]; /* START_TIME text */
};

/* format_ops.c */
struct rt_fmt_opdef {
  const char *name;
  uint8_t op;
  uint8_t flags;
  unsigned family; /* RT_FMT_OP_* */
  uint8_t arg;     /* RT_ARG_* */
  uint8_t key;     /* PEER*: the field (enum revtun_peer_field) */
};
enum { RT_ARG_NONE, RT_ARG_OPTIONAL, RT_ARG_REQUIRED };
const struct rt_fmt_opdef *rt_fmt_find_op(const char *name, size_t len);
/* Checks and splits the argument (in place, in the pool) for part p. */
int rt_fmt_parse_arg(struct rt_fmt_part *p, char *arg, char *err, size_t errlen);
void rt_fmt_eval(const struct rt_fmt_part *p, struct rt_rctx *r, struct rt_fmt_val *v);
/* Writes a whole namespace (v of kind RT_V_META) as a JSON object at escaping
 * depth level: the record's lifecycle namespace, or a namespace of the
 * connection's metadata (named by v->s, v->len). */
void rt_fmt_put_meta_object(struct rt_sink *s, const struct rt_rctx *r, const struct rt_fmt_val *v,
                            unsigned level);

/* format_time.c */
int rt_fmt_check_time_format(const char *f, char *err, size_t errlen);
size_t rt_fmt_time(const char *fmt, const struct timespec *ts, char *out, size_t cap);

/* format_seq.c */
int rt_fmt_parse_seq(const struct rt_mem *m, const char *src, size_t len, unsigned ops,
                     struct rt_fmt_seq *out, char *err, size_t errlen);
void rt_fmt_seq_free(const struct rt_mem *m, struct rt_fmt_seq *q);
/* Text of one sequence into s at s->esc (null parts as "-" or ""). */
void rt_fmt_render_seq_text(const struct rt_fmt_seq *q, struct rt_rctx *r, struct rt_sink *s);
/* A value as text (the text-format rules), at the sink's escaping depth. */
void rt_fmt_put_value_text(struct rt_sink *s, const struct rt_fmt_val *v, const struct rt_rctx *r,
                           uint32_t max_len);

/* format_json.c */
void rt_fmt_json_free(const struct rt_mem *m, struct rt_fmt_jnode *n);
void rt_fmt_render_json(const struct rt_fmt *f, struct rt_rctx *r, struct rt_sink *s);

#endif
