/* See sockstate.h. */
#include <string.h>

#include "revtun/revtun.h"
#include "pool/pool.h"
#include "pool/sockstate.h"

#define MAGIC "RVTS"
#define MAX_DEADLINE_MS                                                                            \
  (2u * RT_MAX_PING_INTERVAL_MS) /* a send time plus jitter, or a reply wait */
#define MAX_AGE_MS (UINT64_C(1) << 42)
#define MAX_MISSES (UINT32_C(1) << 31)

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v) {
  put16(p, (uint16_t)(v >> 16));
  put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v) {
  put32(p, (uint32_t)(v >> 32));
  put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)((unsigned)p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

static bool span_ok(struct rt_span s, bool required) {
  return s.n <= RT_MAX_ID_LEN && (s.n || !required) && (!s.n || (s.p && !memchr(s.p, '\0', s.n)));
}

static bool fields_ok(const struct rt_sockstate *st) {
  return span_ok(st->node, true) && span_ok(st->cluster, true) && span_ok(st->tenant, false) &&
         span_ok(st->init_worker, false) && span_ok(st->init_conn, false) && st->interval_ms >= 1 &&
         st->interval_ms <= RT_MAX_PING_INTERVAL_MS && st->deadline_in_ms <= MAX_DEADLINE_MS &&
         st->misses < MAX_MISSES && st->age_ms <= MAX_AGE_MS && st->initiation_time_ms >= 0 &&
         st->partial <= 4;
}

size_t rt_sockstate_size(const struct rt_sockstate *st) {
  return RT_SOCKSTATE_FIXED + 10u + st->node.n + st->cluster.n + st->tenant.n + st->init_worker.n +
         st->init_conn.n;
}

size_t rt_sockstate_encode(const struct rt_sockstate *st, uint8_t *buf, size_t cap) {
  if (!fields_ok(st))
    return 0;
  const struct rt_span *s[5] = {&st->node, &st->cluster, &st->tenant, &st->init_worker,
                                &st->init_conn};
  size_t total = rt_sockstate_size(st);
  if (total > cap)
    return 0;
  memcpy(buf, MAGIC, 4);
  buf[4] = RT_SOCKSTATE_VERSION;
  buf[5] = 0;
  put16(buf + 6, (uint16_t)total);
  put32(buf + 8, st->interval_ms);
  put32(buf + 12, st->misses);
  put32(buf + 16, st->deadline_in_ms);
  put64(buf + 20, st->age_ms);
  put64(buf + 28, (uint64_t)st->initiation_time_ms);
  buf[36] = st->partial;
  buf[37] = st->awaiting_reply ? 1 : 0;
  size_t off = RT_SOCKSTATE_FIXED;
  for (int i = 0; i < 5; i++) {
    put16(buf + off, (uint16_t)s[i]->n);
    if (s[i]->n)
      memcpy(buf + off + 2, s[i]->p, s[i]->n);
    off += 2 + s[i]->n;
  }
  return total;
}

static int refuse(const char **why, const char *text) {
  if (why)
    *why = text;
  return REVTUN_E_INVAL;
}

int rt_sockstate_decode(const uint8_t *buf, size_t len, struct rt_sockstate *st, const char **why) {
  memset(st, 0, sizeof(*st));
  if (!buf || len < 8 || memcmp(buf, MAGIC, 4) != 0)
    return refuse(why, "not a socket state");
  if (buf[4] != RT_SOCKSTATE_VERSION) {
    if (why)
      *why = "socket state of an unknown version";
    return REVTUN_E_UNSUPPORTED;
  }
  if (buf[5] != 0)
    return refuse(why, "unknown flags in socket state");
  if (len < RT_SOCKSTATE_FIXED || len > RT_SOCKSTATE_MAX || get16(buf + 6) != len)
    return refuse(why, "socket state length does not match");
  st->interval_ms = get32(buf + 8);
  st->misses = get32(buf + 12);
  st->deadline_in_ms = get32(buf + 16);
  st->age_ms = get64(buf + 20);
  st->initiation_time_ms = (int64_t)get64(buf + 28);
  st->partial = buf[36];
  if (buf[37] > 1)
    return refuse(why, "bad flag in socket state");
  st->awaiting_reply = buf[37] == 1;
  struct rt_span *s[5] = {&st->node, &st->cluster, &st->tenant, &st->init_worker, &st->init_conn};
  size_t off = RT_SOCKSTATE_FIXED;
  for (int i = 0; i < 5; i++) {
    if (len - off < 2)
      return refuse(why, "socket state truncated");
    size_t n = get16(buf + off);
    off += 2;
    if (n > len - off)
      return refuse(why, "socket state string runs past the end");
    s[i]->p = (const char *)buf + off;
    s[i]->n = n;
    off += n;
  }
  if (off != len)
    return refuse(why, "trailing bytes in socket state");
  if (!fields_ok(st))
    return refuse(why, "socket state field out of range");
  return REVTUN_OK;
}
