/* Bounds on what hiredis 0.14 may build from a connection. Its reader has
 * none of its own: it buffers a bulk string whole before handing it over
 * (a 100 MB PUBLISH would be read into memory), and it allocates an array's
 * element table from the count in the header, before a single element has
 * arrived. Wrapping the reader's object functions refuses, while the reply is
 * being parsed, any string, array or reply larger than the connection's
 * limits (returning NULL makes hiredis fail the reader, which drops the
 * connection); rr_guard_overfull() lets the glue in conn.c refuse to read
 * more into a reader already holding too many unparsed bytes. */
#include "rr_int.h"

static bool admit(const redisReadTask *t, size_t elements, size_t bytes) {
  struct rr_guard *g = t->privdata;
  if (!t->parent)
    g->objects = 0; /* a new reply begins */
  if (++g->objects > g->lim.max_objects || elements > g->lim.max_elements ||
      bytes > g->lim.max_string) {
    g->rejected++;
    return false;
  }
  return true;
}

static void *g_string(const redisReadTask *t, char *s, size_t n) {
  struct rr_guard *g = t->privdata;
  return admit(t, 0, n) ? g->orig->createString(t, s, n) : NULL;
}

static void *g_array(const redisReadTask *t, int n) {
  struct rr_guard *g = t->privdata;
  if (n < 0) { /* a count hiredis truncated from a huge one */
    g->rejected++;
    return NULL;
  }
  return admit(t, (size_t)n, 0) ? g->orig->createArray(t, n) : NULL;
}

static void *g_integer(const redisReadTask *t, long long v) {
  struct rr_guard *g = t->privdata;
  return admit(t, 0, 0) ? g->orig->createInteger(t, v) : NULL;
}

static void *g_nil(const redisReadTask *t) {
  struct rr_guard *g = t->privdata;
  return admit(t, 0, 0) ? g->orig->createNil(t) : NULL;
}

void rr_guard_install(struct rr_guard *g, redisReader *r, const struct rr_limits *lim) {
  g->orig = r->fn;
  g->fn = *r->fn;
  g->fn.createString = g_string;
  g->fn.createArray = g_array;
  g->fn.createInteger = g_integer;
  g->fn.createNil = g_nil;
  g->lim = *lim;
  g->objects = 0;
  r->fn = &g->fn;
  r->privdata = g;
}

bool rr_guard_overfull(const struct rr_guard *g, const redisReader *r) {
  return r->len > r->pos && r->len - r->pos > g->lim.max_buffer;
}
