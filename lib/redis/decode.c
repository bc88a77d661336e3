/* Every reply and message read from Redis is checked here before anything
 * uses it. Anyone who can write to the Redis database can put anything in
 * it, and the scripts' answers are only as good as what they read, so the
 * shapes, lengths and characters are checked again on this side. Nothing
 * here allocates; answers point into the reply. */
#include <string.h>

#include "rr_int.h"

static bool is_str(const redisReply *r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->str;
}

static bool str_eq(const redisReply *r, const char *s) {
  size_t n = strlen(s);
  return is_str(r) && r->len == n && memcmp(r->str, s, n) == 0;
}

static bool count_of(const redisReply *r, uint64_t *out) {
  if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < 0)
    return false;
  *out = (uint64_t)r->integer;
  return true;
}

/* The array's first element names the verdict; n is the exact element count
 * that verdict must come with. */
static bool verdict_is(const redisReply *r, const char *v, size_t n) {
  return r && r->type == REDIS_REPLY_ARRAY && r->elements == n && r->element &&
         str_eq(r->element[0], v);
}

bool rr_parse_u64(const char *s, size_t n, uint64_t *out) {
  if (!s || n == 0 || n > RR_MAX_DIGITS || s[0] < '1' || s[0] > '9')
    return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits cannot overflow */
  }
  *out = v;
  return true;
}

static bool u64_of(const redisReply *r, uint64_t *out) {
  return is_str(r) && rr_parse_u64(r->str, r->len, out);
}

void rr_decode_lookup(const redisReply *r, struct rr_answer *a) {
  memset(a, 0, sizeof(*a));
  a->status = REVTUN_REDIS_E_REJECTED;
  if (verdict_is(r, "ok", 7)) {
    redisReply **e = r->element;
    if (is_str(e[1]) && rr_instance_ok(e[1]->str, e[1]->len) && is_str(e[2]) &&
        rr_address_ok(e[2]->str, e[2]->len) && u64_of(e[3], &a->generation) &&
        u64_of(e[4], &a->claim) && count_of(e[5], &a->stale) && count_of(e[6], &a->bad)) {
      a->status = REVTUN_OK;
      a->instance = e[1]->str, a->instance_len = e[1]->len;
      a->address = e[2]->str, a->address_len = e[2]->len;
      return;
    }
  } else if (verdict_is(r, "none", 3)) {
    if (count_of(r->element[1], &a->stale) && count_of(r->element[2], &a->bad)) {
      a->status = REVTUN_E_NOT_FOUND;
      return;
    }
  }
  /* "bad" (the index key holds another type), "big" (too many claimants),
   * or an answer of the wrong shape: the value is refused */
  memset(a, 0, sizeof(*a));
  a->status = REVTUN_REDIS_E_REJECTED;
  a->bad = 1;
}

enum rr_verdict rr_decode_claim(const redisReply *r, uint64_t *gen) {
  if (verdict_is(r, "ok", 2))
    return u64_of(r->element[1], gen) ? RV_OK : RV_INVALID;
  if (verdict_is(r, "busy", 1))
    return RV_BUSY;
  if (verdict_is(r, "bad", 1))
    return RV_BAD;
  return RV_INVALID;
}

enum rr_verdict rr_decode_publish(const redisReply *r, uint64_t *bad) {
  if (verdict_is(r, "ok", 2))
    return count_of(r->element[1], bad) ? RV_OK : RV_INVALID;
  if (verdict_is(r, "gone", 1))
    return RV_GONE;
  if (verdict_is(r, "fenced", 1))
    return RV_FENCED;
  return RV_INVALID;
}

enum rr_verdict rr_decode_simple(const redisReply *r) {
  if (verdict_is(r, "ok", 1))
    return RV_OK;
  if (verdict_is(r, "gone", 1))
    return RV_GONE;
  if (verdict_is(r, "fenced", 1))
    return RV_FENCED;
  return RV_INVALID;
}

bool rr_decode_sha(const redisReply *r, char out[41]) {
  if (!is_str(r) || r->len != 40)
    return false;
  for (size_t i = 0; i < 40; i++) {
    char ch = r->str[i];
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
      return false;
  }
  memcpy(out, r->str, 40);
  out[40] = '\0';
  return true;
}

bool rr_decode_status(const redisReply *r, const char *want) {
  return r && r->type == REDIS_REPLY_STATUS && str_eq(r, want);
}

bool rr_is_noscript(const redisReply *r) {
  return r && r->type == REDIS_REPLY_ERROR && r->str && r->len >= 8 &&
         memcmp(r->str, "NOSCRIPT", 8) == 0;
}

const redisReply *rr_decode_message(const redisReply *r, const char *channel, size_t chlen,
                                    bool *is_ack) {
  *is_ack = false;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !r->element)
    return NULL;
  redisReply **e = r->element;
  if (!is_str(e[1]) || e[1]->len != chlen || memcmp(e[1]->str, channel, chlen) != 0)
    return NULL;
  if (str_eq(e[0], "subscribe") && e[2] && e[2]->type == REDIS_REPLY_INTEGER) {
    *is_ack = true;
    return NULL;
  }
  if (str_eq(e[0], "message") && e[2] && e[2]->type == REDIS_REPLY_STRING && e[2]->str)
    return e[2];
  return NULL;
}

bool rr_parse_invalidation(const char *m, size_t len, rr_inv_item_fn item, void *ctx, bool *all) {
  *all = false;
  if (!m)
    return false;
  if (len == 1 && m[0] == '*') {
    *all = true;
    return true;
  }
  if (len == 0 || len > RR_INV_MAX)
    return false;
  size_t pos = 0;
  while (pos < len) {
    char kind = m[pos++];
    if (kind != 'n' && kind != 'c')
      return false;
    size_t n = 0, digits = 0;
    while (pos < len && m[pos] >= '0' && m[pos] <= '9') {
      if (++digits > 4 || (digits == 2 && n == 0)) /* at most RR_MAX_KEY, no leading 0 */
        return false;
      n = n * 10 + (size_t)(m[pos++] - '0');
    }
    if (digits == 0 || n == 0 || n > RR_MAX_KEY || pos >= len || m[pos] != ':')
      return false;
    pos++;
    if (n > len - pos)
      return false;
    item(ctx, kind, m + pos, n);
    pos += n;
  }
  return true;
}
