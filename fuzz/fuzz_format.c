/* libFuzzer harness: the substitution-format engine (lib/format.h), parser
 * and renderer together.
 *
 * Input: byte 0 picks the mode, the rest is the format.
 *   bit 0     JSON template instead of a text format
 *   bit 1     omit_empty_values          bit 2  legacy untyped JSON
 *   bit 3     handshake operators (REQ, addresses) instead of lifecycle ones
 *   bits 4-5  which record/context variant   bits 6-7  output capacity
 * A JSON template is built from the rest split at NUL bytes: key, value,
 * key, value ...; a value starting '{' opens a nested struct for the pairs
 * that follow, '[' a list of the next two strings, '#' is a number, '!' a
 * bool, '~' null; anything else is a format string.
 *
 * Invariants: compile errors always explain themselves; rendering never
 * exceeds the capacity, is deterministic, and JSON output (when any) is one
 * valid JSON object with valid UTF-8 followed by "\n". */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "format/format.h"
#include "google/protobuf/struct.pb-c.h"
#include "base/mem.h"
#include "base/sockaddr.h"
#include "core/event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PAIRS 16

/* ------------------------------------------------- a strict JSON checker */

struct jp {
  const unsigned char *p, *end;
  int depth;
};

static bool ws(struct jp *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    j->p++;
  return true;
}

static bool jstring(struct jp *j) {
  if (j->p >= j->end || *j->p++ != '"')
    return false;
  while (j->p < j->end) {
    unsigned c = *j->p++;
    if (c == '"')
      return true;
    if (c < 0x20)
      return false;
    if (c == '\\') {
      if (j->p >= j->end)
        return false;
      c = *j->p++;
      if (c == 'u') {
        for (int i = 0; i < 4; i++)
          if (j->p >= j->end || !strchr("0123456789abcdefABCDEF", *j->p++))
            return false;
      } else if (!strchr("\"\\/bfnrt", (int)c) || !c) {
        return false;
      }
    } else if (c >= 0x80) { /* must be valid UTF-8 */
      size_t need = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : 99;
      if (c > 0xf4 || need == 99 || (size_t)(j->end - j->p) < need)
        return false;
      for (size_t i = 0; i < need; i++)
        if ((*j->p++ & 0xc0) != 0x80)
          return false;
    }
  }
  return false;
}

static bool jvalue(struct jp *j);

static bool jcontainer(struct jp *j, char close, bool keyed) {
  if (++j->depth > 64)
    return false;
  j->p++; /* open */
  ws(j);
  if (j->p < j->end && *j->p == close) {
    j->p++;
    j->depth--;
    return true;
  }
  for (;;) {
    ws(j);
    if (keyed) {
      if (!jstring(j))
        return false;
      ws(j);
      if (j->p >= j->end || *j->p++ != ':')
        return false;
    }
    if (!jvalue(j))
      return false;
    ws(j);
    if (j->p >= j->end)
      return false;
    char c = (char)*j->p++;
    if (c == close) {
      j->depth--;
      return true;
    }
    if (c != ',')
      return false;
  }
}

static bool jvalue(struct jp *j) {
  ws(j);
  if (j->p >= j->end)
    return false;
  switch (*j->p) {
  case '{': return jcontainer(j, '}', true);
  case '[': return jcontainer(j, ']', false);
  case '"': return jstring(j);
  default: break;
  }
  static const char *const lits[] = {"true", "false", "null"};
  for (size_t i = 0; i < 3; i++) {
    size_t n = strlen(lits[i]);
    if ((size_t)(j->end - j->p) >= n && memcmp(j->p, lits[i], n) == 0) {
      j->p += n;
      return true;
    }
  }
  const unsigned char *start = j->p;
  if (*j->p == '-')
    j->p++;
  while (j->p < j->end && strchr("0123456789.eE+-", *j->p) && *j->p)
    j->p++;
  return j->p > start;
}

static void check_json(const char *out, size_t n) {
  if (n == 0)
    return; /* dropped: did not fit */
  if (out[n - 1] != '\n' || out[0] != '{')
    __builtin_trap();
  struct jp j = {(const unsigned char *)out, (const unsigned char *)out + n - 1, 0};
  if (!jvalue(&j) || j.p != j.end)
    __builtin_trap();
}

/* ------------------------------------------------------------- contexts */

static const char *header(const void *user, const char *name, size_t *len) {
  (void)user;
  static char big[20000];
  if (!big[0])
    memset(big, 'h', sizeof(big) - 1);
  if (strcmp(name, "x-big") == 0) {
    *len = sizeof(big) - 1;
    return big;
  }
  if (strcmp(name, "x-utf8") == 0) {
    *len = 9;
    return "\xc3\xa9\xff\"\\\n\x01"
           "ab";
  }
  if (name[0] == 'x') {
    *len = strlen(name);
    return name;
  }
  return NULL;
}

static struct rt_addr a4, a6, aunix;
static const struct rt_meta_kv extra[] = {{"k\"ey", "v\nal\xff"}, {"fd", "not-a-number"}};

static void make_event(struct revtun_event *ev, int variant) {
  memset(ev, 0, sizeof(*ev));
  a4.u.in4.sin_family = AF_INET;
  a4.u.in4.sin_port = htons(4242);
  a4.u.in4.sin_addr.s_addr = htonl(0x0a000001);
  a4.len = sizeof(a4.u.in4);
  a6.u.in6.sin6_family = AF_INET6;
  a6.u.in6.sin6_port = htons(443);
  inet_pton(AF_INET6, "2001:db8::1", &a6.u.in6.sin6_addr);
  a6.len = sizeof(a6.u.in6);
  aunix.u.sa.sa_family = AF_UNIX;
  aunix.len = sizeof(sa_family_t);
  ev->kind = 1 + variant % 8;
  ev->node_id = variant & 1 ? "n\xc3\xa9\"ud" : "node";
  ev->cluster_id = "cluster";
  ev->tenant_id = variant & 2 ? "" : "t\x01";
  ev->node_key = ev->cluster_key = "k";
  ev->worker = "worker_0";
  ev->init_worker = variant & 2 ? "" : "iw";
  ev->init_conn = "7";
  ev->fd = variant & 1 ? -1 : 9;
  ev->socket_state = 1 + variant % 3;
  ev->close_reason = variant % 12;
  ev->miss_count = (uint32_t)variant;
  ev->handoff_kind = variant & 2 ? "pool_to_upstream" : NULL;
  ev->remote = variant == 0 ? &a4 : variant == 1 ? &a6 : &aunix;
  ev->local = variant == 3 ? NULL : &a4;
  ev->extra = extra;
  ev->n_extra = variant & 1 ? 2 : 0;
}

/* ------------------------------------------------ JSON template building */

static Google__Protobuf__Value *new_value(const char *s) {
  Google__Protobuf__Value *v = calloc(1, sizeof(*v));
  switch (s[0]) {
  case '#':
    v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    v->number_value = strtod(s + 1, NULL);
    break;
  case '!':
    v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
    v->bool_value = s[1] == 't';
    break;
  case '~': v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE; break;
  default: v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE; v->string_value = (char *)s;
  }
  return v;
}

static void free_struct(Google__Protobuf__Struct *st);

static void free_value(Google__Protobuf__Value *v) {
  if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE)
    free_struct(v->struct_value);
  if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE) {
    for (size_t i = 0; i < v->list_value->n_values; i++)
      free_value(v->list_value->values[i]);
    free(v->list_value->values);
    free(v->list_value);
  }
  free(v);
}

static void free_struct(Google__Protobuf__Struct *st) {
  for (size_t i = 0; i < st->n_fields; i++) {
    free_value(st->fields[i]->value);
    free(st->fields[i]);
  }
  free(st->fields);
  free(st);
}

/* Consumes pieces[*i..] into st; '{' recurses for the rest. */
static Google__Protobuf__Struct *build(char **pieces, size_t n, size_t *i, int depth) {
  Google__Protobuf__Struct *st = calloc(1, sizeof(*st));
  st->fields = calloc(MAX_PAIRS, sizeof(*st->fields));
  while (*i + 1 < n && st->n_fields < MAX_PAIRS) {
    Google__Protobuf__Struct__FieldsEntry *e = calloc(1, sizeof(*e));
    e->key = pieces[(*i)++];
    const char *val = pieces[(*i)++];
    if (val[0] == '{' && depth < 8) {
      e->value = calloc(1, sizeof(*e->value));
      e->value->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
      e->value->struct_value = build(pieces, n, i, depth + 1);
    } else if (val[0] == '[' && *i + 1 < n) {
      Google__Protobuf__Value *v = calloc(1, sizeof(*v));
      v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
      v->list_value = calloc(1, sizeof(*v->list_value));
      v->list_value->values = calloc(2, sizeof(*v->list_value->values));
      v->list_value->n_values = 2;
      v->list_value->values[0] = new_value(pieces[(*i)++]);
      v->list_value->values[1] = new_value(pieces[(*i)++]);
      e->value = v;
    } else {
      e->value = new_value(val);
    }
    st->fields[st->n_fields++] = e;
  }
  return st;
}

/* -------------------------------------------------------------- the entry */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  unsigned mode = data[0];
  struct rt_mem m;
  rt_mem_default(&m);
  unsigned ops = (mode & 8) ? RT_FMT_OPS_HANDSHAKE : RT_FMT_OPS_LIFECYCLE;
  unsigned flags = ((mode & 2) ? RT_FMT_OMIT_EMPTY : 0) | ((mode & 4) ? RT_FMT_UNTYPED : 0);
  char err[256] = "";
  struct rt_fmt *f = NULL;
  int rc;
  char *text = malloc(size); /* NUL-terminated copy of the rest */
  memcpy(text, data + 1, size - 1);
  text[size - 1] = '\0';
  char *pieces[2 * MAX_PAIRS * 4];
  size_t n_pieces = 0;
  Google__Protobuf__Struct *tmpl = NULL;
  if (mode & 1) {
    for (char *p = text; p < text + size && n_pieces < sizeof(pieces) / sizeof(pieces[0]);
         p += strlen(p) + 1)
      pieces[n_pieces++] = p;
    size_t i = 0;
    tmpl = build(pieces, n_pieces, &i, 0);
    rc = rt_fmt_compile_json(&m, tmpl, ops, flags, &f, err, sizeof(err));
  } else {
    rc = rt_fmt_compile(&m, (const char *)data + 1, size - 1, ops, flags, &f, err, sizeof(err));
  }
  if (rc != REVTUN_OK) {
    if (f || rc != REVTUN_E_CONFIG || !err[0])
      __builtin_trap(); /* a failure always explains itself and leaves nothing */
  } else {
    static const size_t caps[] = {RT_FMT_MAX_RECORD, 300, 64, 8};
    size_t cap = caps[(mode >> 6) & 3];
    struct revtun_event ev;
    make_event(&ev, (mode >> 4) & 3);
    static const struct timespec wall = {1700000000, 123456789};
    struct rt_fmt_ctx ctx = {.ev = (mode & 8) ? NULL : &ev,
                             .req_header = header,
                             .remote = &a6.u.sa,
                             .remote_len = a6.len,
                             .wall = &wall};
    char *out1 = malloc(cap), *out2 = malloc(cap);
    unsigned r1 = 0, r2 = 0;
    size_t n1 = rt_fmt_render(f, &ctx, out1, cap, &r1);
    size_t n2 = rt_fmt_render(f, &ctx, out2, cap, &r2);
    if (n1 > cap || n1 != n2 || r1 != r2 || memcmp(out1, out2, n1))
      __builtin_trap();
    if (mode & 1) /* a JSON template */
      check_json(out1, n1);
    free(out1);
    free(out2);
    rt_fmt_free(&m, f);
  }
  if (tmpl)
    free_struct(tmpl);
  free(text);
  return 0;
}
