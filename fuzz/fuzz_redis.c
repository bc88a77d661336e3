/* libFuzzer harness: what the Redis directory reads back from Redis. The
 * input is a RESP byte stream, fed in chunks (the first byte of each gives
 * its length) to a hiredis reader wearing the directory's guard, as the
 * connections do; every reply it yields goes through every decoder (lookup
 * answers, claim, publish and heartbeat verdicts, script digests, pub/sub
 * messages and the invalidations they carry). The whole input is also parsed
 * as an invalidation message. Checks: the guard's bounds hold for every reply
 * built, and nothing a decoder accepts breaks the rules the directory relies
 * on (ids and addresses printable and bounded, numbers positive, invalidation
 * keys inside the message and at most RR_MAX_KEY bytes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rr_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *msg_lo, *msg_hi;

static void check_item(void *ctx, char kind, const char *key, size_t len) {
  (void)ctx;
  if ((kind != 'n' && kind != 'c') || len == 0 || len > RR_MAX_KEY || key < msg_lo ||
      key + len > msg_hi)
    abort();
}

static void check_invalidation(const char *m, size_t len) {
  bool all;
  msg_lo = m, msg_hi = m + len;
  if (rr_parse_invalidation(m, len, check_item, NULL, &all) && all && !(len == 1 && m[0] == '*'))
    abort();
}

/* Every object of the reply is within the guard's bounds; returns their number. */
static size_t bounded(const redisReply *rep, const struct rr_limits *lim) {
  size_t n = 1;
  if (rep->type == REDIS_REPLY_ARRAY) {
    if (rep->elements > lim->max_elements)
      abort();
    for (size_t i = 0; i < rep->elements; i++)
      n += bounded(rep->element[i], lim);
  } else if ((rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS ||
              rep->type == REDIS_REPLY_ERROR) &&
             rep->len > lim->max_string) {
    abort();
  }
  return n;
}

static void check_reply(const redisReply *rep, const struct rr_limits *lim) {
  if (bounded(rep, lim) > lim->max_objects)
    abort();

  struct rr_answer a;
  rr_decode_lookup(rep, &a);
  if (a.status == REVTUN_OK &&
      (!rr_instance_ok(a.instance, a.instance_len) || !rr_address_ok(a.address, a.address_len) ||
       strlen(a.instance) != a.instance_len || a.generation == 0 || a.claim == 0))
    abort();
  if (a.status != REVTUN_OK && (a.instance || a.address))
    abort();
  uint64_t v = 0;
  if (rr_decode_claim(rep, &v) == RV_OK && v == 0)
    abort();
  rr_decode_publish(rep, &v);
  rr_decode_simple(rep);
  char sha[41];
  if (rr_decode_sha(rep, sha) && strlen(sha) != 40)
    abort();
  rr_is_noscript(rep);
  bool ack;
  const redisReply *payload = rr_decode_message(rep, "t:inv", 5, &ack);
  if (payload)
    check_invalidation(payload->str, payload->len);
}

static const struct rr_limits limits[2] = {
    {.max_string = 4096, .max_elements = 64, .max_objects = 256, .max_buffer = 8192},
    {.max_string = 2 * RR_INV_MAX,
     .max_elements = 8,
     .max_objects = 16,
     .max_buffer = 4 * RR_INV_MAX},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  check_invalidation((const char *)data + 1, size - 1);

  const struct rr_limits *lim = &limits[data[0] & 1];
  redisReader *rd = redisReaderCreate();
  if (!rd)
    return 0;
  struct rr_guard g;
  memset(&g, 0, sizeof(g));
  rr_guard_install(&g, rd, lim);
  size_t pos = 1;
  bool dead = false;
  while (pos < size && !dead) {
    size_t chunk = (size_t)data[pos++] % 128 + 1;
    if (chunk > size - pos)
      chunk = size - pos;
    if (rr_guard_overfull(&g, rd))
      break; /* the glue drops the connection before reading more */
    if (redisReaderFeed(rd, (const char *)data + pos, chunk) != REDIS_OK)
      break;
    pos += chunk;
    for (;;) {
      void *rep = NULL;
      if (redisReaderGetReply(rd, &rep) != REDIS_OK) {
        dead = true; /* protocol error or a bound refused: the connection goes */
        break;
      }
      if (!rep)
        break;
      check_reply(rep, lim);
      freeReplyObject(rep);
    }
  }
  if (rr_guard_overfull(&g, rd) && rd->len - rd->pos > lim->max_buffer + 128)
    abort(); /* one chunk past the bound at most */
  redisReaderFree(rd);
  return 0;
}
