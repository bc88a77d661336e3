/* The Redis directory without a Redis: the options' rules, the id keys, the
 * validation of every reply shape and of invalidation messages, the reader
 * guard against hostile protocol input, and the bookkeeping of a handle's
 * events. The decoders are internal, so this suite links the component's
 * convenience library. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "rr_int.h"
#include "testutil.h"

/* ---------------------------------------------------------------- options */

START_TEST(options_refuse_what_would_break_the_keys_or_the_loop) {
  revtun_redis_options_t *o;
  ck_assert_int_eq(revtun_redis_options_new(NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_new(&o), REVTUN_OK);
  /* names would need a blocking getaddrinfo(3) */
  ck_assert_int_eq(revtun_redis_options_set_server(o, "localhost", 6380), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_server(o, "127.0.0.1", 0), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_server(o, "127.0.0.1", 65536), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_server(o, "::1", 6380), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_server(o, "/run/redis.sock", 0), REVTUN_OK);
  char path[200];
  memset(path, 'p', sizeof(path) - 1);
  path[0] = '/', path[sizeof(path) - 1] = '\0';
  ck_assert_int_eq(revtun_redis_options_set_server(o, path, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_server(o, NULL, 1), REVTUN_E_INVAL);

  ck_assert_int_eq(revtun_redis_options_set_instance(o, "", "a:1"), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_instance(o, "a b", "a:1"), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_instance(o, "a\n", "a:1"), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_instance(o, "a", NULL), REVTUN_E_INVAL);
  char big[300];
  memset(big, 'i', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  big[129] = '\0';
  ck_assert_int_eq(revtun_redis_options_set_instance(o, big, "a:1"), REVTUN_E_INVAL);
  big[128] = '\0';
  ck_assert_int_eq(revtun_redis_options_set_instance(o, big, "a:1"), REVTUN_OK);
  memset(big, 'a', sizeof(big) - 1);
  big[256] = '\0';
  ck_assert_int_eq(revtun_redis_options_set_instance(o, "i", big), REVTUN_E_INVAL);
  big[255] = '\0';
  ck_assert_int_eq(revtun_redis_options_set_instance(o, "i", big), REVTUN_OK);

  ck_assert_int_eq(revtun_redis_options_set_prefix(o, ""), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_prefix(o, "{fleet}:"), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_token(o, "short"), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_token(o, "0123456789abcdef"), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_token(o, NULL), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_heartbeat(o, 9, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_heartbeat(o, 100, 100), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_heartbeat(o, 100, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_heartbeat(o, 100, 250), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_timeout(o, 5), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_cache_ttl(o, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_cache_ttl(o, 3600001), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_backoff(o, 0, 10), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_backoff(o, 20, 10), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_backoff(o, 10, 20), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_auth(o, "user", NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_auth(o, NULL, "secret"), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_log_cb(o, NULL, 0, NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_options_set_tenant_isolation(NULL, 1), REVTUN_E_INVAL);
  revtun_redis_options_free(o);
  revtun_redis_options_free(NULL);

  struct event_base *base = event_base_new();
  revtun_redis_t *r = (revtun_redis_t *)1;
  char err[200];
  ck_assert_int_eq(revtun_redis_options_new(&o), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_new(&r, base, o, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_ptr_null(r);
  ck_assert_ptr_nonnull(strstr(err, "instance"));
  ck_assert_int_eq(revtun_redis_new(&r, NULL, o, err, sizeof(err)), REVTUN_E_INVAL);
  revtun_redis_options_free(o);
  event_base_free(base);
}
END_TEST

START_TEST(ids_become_the_cores_keys) {
  char buf[RR_MAX_KEY];
  ck_assert_uint_eq(rr_ids_key(false, "node", 4, "acme", 4, buf), 4);
  ck_assert(memcmp(buf, "node", 4) == 0);
  ck_assert_uint_eq(rr_ids_key(true, "node", 4, "acme", 4, buf), 9);
  ck_assert(memcmp(buf, "acme:node", 9) == 0);
  ck_assert_uint_eq(rr_ids_key(true, "node", 4, NULL, 0, buf), 0);
  ck_assert_uint_eq(rr_ids_key(true, "no:de", 5, "acme", 4, buf), 0);
  ck_assert_uint_eq(rr_ids_key(true, "node", 4, "ac:me", 5, buf), 0);
  ck_assert_uint_eq(rr_ids_key(false, "no:de", 5, NULL, 0, buf), 5); /* allowed without */
  ck_assert_uint_eq(rr_ids_key(false, "", 0, NULL, 0, buf), 0);
  char id[RR_MAX_ID + 1];
  memset(id, 'x', sizeof(id));
  ck_assert_uint_eq(rr_ids_key(true, id, RR_MAX_ID, id, RR_MAX_ID, buf), RR_MAX_KEY);
  ck_assert_uint_eq(rr_ids_key(false, id, RR_MAX_ID + 1, NULL, 0, buf), 0);
  ck_assert_uint_eq(rr_ids_key(true, id, RR_MAX_ID, id, RR_MAX_ID + 1, buf), 0);
}
END_TEST

/* -------------------------------------------------------------- decoding */

/* One reply parsed from RESP text by hiredis' reader (no guard). */
static redisReply *parse(const char *resp) {
  redisReader *rd = redisReaderCreate();
  ck_assert_int_eq(redisReaderFeed(rd, resp, strlen(resp)), REDIS_OK);
  void *rep = NULL;
  ck_assert_int_eq(redisReaderGetReply(rd, &rep), REDIS_OK);
  ck_assert_ptr_nonnull(rep);
  redisReaderFree(rd);
  return rep;
}

static int lookup_status(const char *resp, struct rr_answer *a) {
  redisReply *rep = parse(resp);
  rr_decode_lookup(rep, a);
  freeReplyObject(rep);
  return a->status;
}

START_TEST(lookup_answers_are_validated) {
  struct rr_answer a;
  ck_assert_int_eq(lookup_status("*7\r\n$2\r\nok\r\n$3\r\np-1\r\n$8\r\n1.2.3.4:\r\n$2\r\n12\r\n"
                                 "$3\r\n345\r\n:2\r\n:0\r\n",
                                 &a),
                   REVTUN_OK);
  ck_assert_uint_eq(a.generation, 12);
  ck_assert_uint_eq(a.claim, 345);
  ck_assert_uint_eq(a.stale, 2);
  ck_assert_int_eq(lookup_status("*3\r\n$4\r\nnone\r\n:0\r\n:3\r\n", &a), REVTUN_E_NOT_FOUND);
  ck_assert_uint_eq(a.bad, 3);
  static const char *const refused[] = {
      "*2\r\n$3\r\nbad\r\n:1\r\n",       /* wrong type at the index */
      "*2\r\n$3\r\nbig\r\n:1000000\r\n", /* too many claimants */
      "$2\r\nok\r\n",                    /* not an array */
      "*6\r\n$2\r\nok\r\n$1\r\np\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\n1\r\n:0\r\n", /* short */
      "*7\r\n$2\r\nok\r\n$3\r\np 1\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\n1\r\n:0\r\n:0\r\n",
      "*7\r\n$2\r\nok\r\n$1\r\np\r\n$0\r\n\r\n$1\r\n1\r\n$1\r\n1\r\n:0\r\n:0\r\n",
      "*7\r\n$2\r\nok\r\n$1\r\np\r\n$1\r\na\r\n$2\r\n01\r\n$1\r\n1\r\n:0\r\n:0\r\n",
      ("*7\r\n$2\r\nok\r\n$1\r\np\r\n$1\r\na\r\n$1\r\n1\r\n$20\r\n12345678901234567890\r\n"
       ":0\r\n:0\r\n"), /* a 20-digit claim */
      "*7\r\n$2\r\nok\r\n$1\r\np\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\n1\r\n:-1\r\n:0\r\n",
      "*7\r\n$2\r\nok\r\n:1\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\n1\r\n:0\r\n:0\r\n",
      "*3\r\n$4\r\nnone\r\n$1\r\n0\r\n:0\r\n",
      "*3\r\n$4\r\nNONE\r\n:0\r\n:0\r\n",
      "-ERR something\r\n",
      "$-1\r\n",
  };
  for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
    ck_assert_msg(lookup_status(refused[i], &a) == REVTUN_REDIS_E_REJECTED, "case %zu", i);
    ck_assert_uint_eq(a.bad, 1);
    ck_assert_ptr_null(a.instance);
  }
  rr_decode_lookup(NULL, &a);
  ck_assert_int_eq(a.status, REVTUN_REDIS_E_REJECTED);
  /* 128-byte instance ids pass, 129 do not */
  char resp[600];
  char id[130];
  memset(id, 'i', sizeof(id));
  snprintf(resp, sizeof(resp),
           "*7\r\n$2\r\nok\r\n$128\r\n%.128s\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\n1\r\n"
           ":0\r\n:0\r\n",
           id);
  ck_assert_int_eq(lookup_status(resp, &a), REVTUN_OK);
  snprintf(resp, sizeof(resp),
           "*7\r\n$2\r\nok\r\n$129\r\n%.129s\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\n1\r\n"
           ":0\r\n:0\r\n",
           id);
  ck_assert_int_eq(lookup_status(resp, &a), REVTUN_REDIS_E_REJECTED);
}
END_TEST

static enum rr_verdict claim_of(const char *resp, uint64_t *v) {
  redisReply *r = parse(resp);
  enum rr_verdict verdict = rr_decode_claim(r, v);
  freeReplyObject(r);
  return verdict;
}

static enum rr_verdict publish_of(const char *resp, uint64_t *v) {
  redisReply *r = parse(resp);
  enum rr_verdict verdict = rr_decode_publish(r, v);
  freeReplyObject(r);
  return verdict;
}

static enum rr_verdict simple_of(const char *resp) {
  redisReply *r = parse(resp);
  enum rr_verdict verdict = rr_decode_simple(r);
  freeReplyObject(r);
  return verdict;
}

START_TEST(script_verdicts_are_validated) {
  uint64_t v = 0;
  ck_assert_int_eq(claim_of("*2\r\n$2\r\nok\r\n$3\r\n417\r\n", &v), RV_OK);
  ck_assert_uint_eq(v, 417);
  ck_assert_int_eq(claim_of("*2\r\n$2\r\nok\r\n$3\r\n4x7\r\n", &v), RV_INVALID);
  ck_assert_int_eq(claim_of("*1\r\n$4\r\nbusy\r\n", &v), RV_BUSY);
  ck_assert_int_eq(claim_of("*1\r\n$3\r\nbad\r\n", &v), RV_BAD);
  ck_assert_int_eq(publish_of("*2\r\n$2\r\nok\r\n:3\r\n", &v), RV_OK);
  ck_assert_uint_eq(v, 3);
  ck_assert_int_eq(publish_of("*2\r\n$2\r\nok\r\n:-3\r\n", &v), RV_INVALID);
  ck_assert_int_eq(publish_of("*1\r\n$6\r\nfenced\r\n", &v), RV_FENCED);
  ck_assert_int_eq(publish_of("*1\r\n$4\r\ngone\r\n", &v), RV_GONE);
  ck_assert_int_eq(simple_of("*1\r\n$6\r\nfenced\r\n"), RV_FENCED);
  ck_assert_int_eq(simple_of("*1\r\n$4\r\ngone\r\n"), RV_GONE);
  ck_assert_int_eq(simple_of("*1\r\n$2\r\nok\r\n"), RV_OK);
  ck_assert_int_eq(simple_of("*2\r\n$2\r\nok\r\n:1\r\n"), RV_INVALID);
  redisReply *r;
  char sha[41];
  r = parse("$40\r\n0123456789abcdef0123456789abcdef01234567\r\n");
  ck_assert(rr_decode_sha(r, sha));
  freeReplyObject(r);
  r = parse("$40\r\n0123456789abcdef0123456789abcdef0123456Z\r\n");
  ck_assert(!rr_decode_sha(r, sha));
  freeReplyObject(r);
  r = parse("-NOSCRIPT No matching script.\r\n");
  ck_assert(rr_is_noscript(r));
  freeReplyObject(r);
  bool ack;
  r = parse("*3\r\n$7\r\nmessage\r\n$5\r\nt:inv\r\n$1\r\n*\r\n");
  const redisReply *p = rr_decode_message(r, "t:inv", 5, &ack);
  ck_assert_ptr_nonnull(p);
  ck_assert(!ack);
  ck_assert_ptr_null(rr_decode_message(r, "t:inw", 5, &ack));
  freeReplyObject(r);
  r = parse("*3\r\n$9\r\nsubscribe\r\n$5\r\nt:inv\r\n:1\r\n");
  ck_assert_ptr_null(rr_decode_message(r, "t:inv", 5, &ack));
  ck_assert(ack);
  freeReplyObject(r);
  r = parse("*3\r\n$7\r\nmessage\r\n$5\r\nt:inv\r\n:1\r\n");
  ck_assert_ptr_null(rr_decode_message(r, "t:inv", 5, &ack));
  freeReplyObject(r);
}
END_TEST

struct items {
  int n;
  char got[8][64];
};
static void collect(void *ctx, char kind, const char *key, size_t len) {
  struct items *it = ctx;
  if (it->n < 8)
    snprintf(it->got[it->n], sizeof(it->got[0]), "%c:%.*s", kind, (int)len, key);
  it->n++;
}

START_TEST(invalidation_messages_are_parsed_strictly) {
  struct items it = {0};
  bool all;
  ck_assert(rr_parse_invalidation("n4:edgec3:pop", 13, collect, &it, &all));
  ck_assert(!all);
  ck_assert_int_eq(it.n, 2);
  ck_assert_str_eq(it.got[0], "n:edge");
  ck_assert_str_eq(it.got[1], "c:pop");
  ck_assert(rr_parse_invalidation("*", 1, collect, &it, &all));
  ck_assert(all);
  ck_assert(rr_parse_invalidation("n3:a:b", 6, collect, &it, &all)); /* ':' inside a key */
  static const char *const bad[] = {"",         "**",      "x3:abc",  "n:abc",
                                    "n0:",      "n03:abc", "n3abc",   "n4:abc",
                                    "n99999:a", "n2050:a", "n3:abcn", "n3:abcn1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    it.n = 0;
    ck_assert_msg(!rr_parse_invalidation(bad[i], strlen(bad[i]), collect, &it, &all), "%s", bad[i]);
    ck_assert(!all);
  }
  ck_assert(!rr_parse_invalidation(NULL, 0, collect, &it, &all));
  char *huge = malloc(RR_INV_MAX + 2);
  memset(huge, 'n', RR_INV_MAX + 1);
  ck_assert(!rr_parse_invalidation(huge, RR_INV_MAX + 1, collect, &it, &all));
  free(huge);
}
END_TEST

START_TEST(u64_parsing) {
  uint64_t v;
  ck_assert(rr_parse_u64("1", 1, &v) && v == 1);
  ck_assert(rr_parse_u64("9999999999999999999", 19, &v) && v == 9999999999999999999ull);
  ck_assert(!rr_parse_u64("10000000000000000000", 20, &v));
  ck_assert(!rr_parse_u64("0", 1, &v));
  ck_assert(!rr_parse_u64("01", 2, &v));
  ck_assert(!rr_parse_u64("-1", 2, &v));
  ck_assert(!rr_parse_u64("1 ", 2, &v));
  ck_assert(!rr_parse_u64("", 0, &v));
}
END_TEST

/* ------------------------------------------------------------------ guard */

static const struct rr_limits small = {
    .max_string = 16, .max_elements = 4, .max_objects = 6, .max_buffer = 64};

/* Feeds resp to a guarded reader; returns the reader's verdict. */
static int guarded(const char *resp, size_t len, struct rr_guard *g) {
  redisReader *rd = redisReaderCreate();
  memset(g, 0, sizeof(*g));
  rr_guard_install(g, rd, &small);
  void *rep = NULL;
  int rc = redisReaderFeed(rd, resp, len);
  if (rc == REDIS_OK)
    rc = redisReaderGetReply(rd, &rep);
  if (rc == REDIS_OK && !rep && rr_guard_overfull(g, rd))
    rc = 2; /* the glue would drop the connection before reading more */
  if (rep)
    freeReplyObject(rep);
  redisReaderFree(rd);
  return rc;
}

START_TEST(the_reader_guard_refuses_oversized_replies) {
  struct rr_guard g;
  ck_assert_int_eq(guarded("*2\r\n$2\r\nok\r\n:1\r\n", 16, &g), REDIS_OK);
  ck_assert_uint_eq(g.rejected, 0);
  /* an element count that hiredis 0.14 would allocate at once */
  ck_assert_int_eq(guarded("*2147483647\r\n", 13, &g), REDIS_ERR);
  ck_assert_uint_eq(g.rejected, 1);
  ck_assert_int_eq(guarded("*4294967295\r\n", 13, &g), REDIS_ERR); /* hiredis makes it -1 */
  ck_assert_int_eq(guarded("*5\r\n", 4, &g), REDIS_ERR);
  ck_assert_int_eq(guarded("$17\r\n01234567890123456\r\n", 24, &g), REDIS_ERR);
  ck_assert_int_eq(guarded("$16\r\n0123456789012345\r\n", 23, &g), REDIS_OK);
  /* objects in one reply, nested ones included */
  static const char nested[] = "*2\r\n*2\r\n:1\r\n:2\r\n*2\r\n:3\r\n:4\r\n";
  ck_assert_int_eq(guarded(nested, strlen(nested), &g), REDIS_ERR);
  /* a bulk string announced huge: refused once the buffer passes the bound */
  char buf[200];
  int n = snprintf(buf, sizeof(buf), "$104857600\r\n");
  memset(buf + n, 'x', sizeof(buf) - (size_t)n);
  ck_assert_int_eq(guarded(buf, sizeof(buf), &g), 2);
  /* the counters restart with every reply */
  redisReader *rd = redisReaderCreate();
  rr_guard_install(&g, rd, &small);
  for (int i = 0; i < 20; i++) {
    void *rep = NULL;
    ck_assert_int_eq(redisReaderFeed(rd, "*2\r\n:1\r\n:2\r\n", 12), REDIS_OK);
    ck_assert_int_eq(redisReaderGetReply(rd, &rep), REDIS_OK);
    ck_assert_ptr_nonnull(rep);
    freeReplyObject(rep);
  }
  redisReaderFree(rd);
}
END_TEST

/* ------------------------------------------------------------ bookkeeping */

static revtun_redis_t *dir;
static void forward(revtun_t *h, const revtun_event_t *ev, void *user) {
  (void)user;
  revtun_redis_on_event(h, ev, dir);
}

static uint64_t stat_of(const char *name) {
  uint64_t v = 0;
  ck_assert_int_eq(revtun_redis_stats_get(dir, name, &v), REVTUN_OK);
  return v;
}

struct seen {
  int n, status;
};
static void on_answer(revtun_redis_t *r, int status, const revtun_redis_owner_t *o, void *user) {
  (void)r;
  ck_assert_ptr_null(o);
  struct seen *s = user;
  s->n++;
  s->status = status;
}

static int count_stats(const char *name, int type, uint64_t v, void *user) {
  (void)v;
  ck_assert(strncmp(name, "redis.", 6) == 0);
  ck_assert(type == REVTUN_STAT_COUNTER || type == REVTUN_STAT_GAUGE);
  ++*(int *)user;
  return 0;
}

START_TEST(events_are_folded_per_socket_and_key) {
  struct event_base *base = event_base_new();
  revtun_redis_options_t *o;
  ck_assert_int_eq(revtun_redis_options_new(&o), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_instance(o, "p1", "10.0.0.1:80"), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_new(&dir, base, o, NULL, 0), REVTUN_OK);
  revtun_redis_options_free(o);

  revtun_options_t *ho;
  ck_assert_int_eq(revtun_options_new(&ho), REVTUN_OK);
  revtun_options_set_access_log_cb(ho, forward);
  revtun_options_set_reporter_cb(ho, forward);
  revtun_t *h = tu_new_opts(NULL, ho, 0);
  revtun_options_free(ho);

  int a[2], b[2], c[2];
  tu_socketpair(a), tu_socketpair(b), tu_socketpair(c);
  ck_assert_int_eq(tu_register(h, a[0], "n1", "c1", NULL, 0, 1), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, b[0], "n1", "c1", NULL, 0, 1), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, c[0], "n2", "c1", NULL, 0, 1), REVTUN_OK);
  /* tunnel_setup and connected each announce every socket: counted once */
  ck_assert_uint_eq(stat_of("redis.sockets"), 3);
  ck_assert_uint_eq(stat_of("redis.entries"), 3); /* n1, n2, c1 */
  ck_assert_uint_eq(stat_of("redis.events"), 6);
  int fd;
  ck_assert_int_eq(revtun_handoff(h, "n2", NULL, 2, &fd, NULL), REVTUN_OK);
  ck_assert_uint_eq(stat_of("redis.entries"), 3); /* handed off: still serving */
  ck_assert_int_eq(revtun_note_goaway(h, fd, 3), REVTUN_OK);
  ck_assert_uint_eq(stat_of("redis.entries"), 2); /* n2 drains */
  ck_assert_uint_eq(stat_of("redis.sockets"), 3);
  ck_assert_int_eq(revtun_mark_dead(h, fd, REVTUN_CLOSE_LOCAL_CLOSE, 4), REVTUN_OK);
  close(fd);
  ck_assert_uint_eq(stat_of("redis.sockets"), 2);
  ck_assert_int_eq(revtun_mark_dead(h, a[0], REVTUN_CLOSE_LOCAL_CLOSE, 5), REVTUN_OK);
  ck_assert_uint_eq(stat_of("redis.entries"), 2); /* n1 has another socket */
  ck_assert_int_eq(revtun_mark_dead(h, b[0], REVTUN_CLOSE_LOCAL_CLOSE, 6), REVTUN_OK);
  ck_assert_uint_eq(stat_of("redis.entries"), 0);
  ck_assert_uint_eq(stat_of("redis.sockets"), 0);
  ck_assert_uint_eq(stat_of("redis.published"), 0);
  ck_assert_uint_eq(stat_of("redis.events_ignored"), 0);

  /* not started, not connected: lookups answer at once */
  struct seen s = {0, 0};
  ck_assert_int_eq(revtun_redis_lookup_node(dir, "n1", NULL, on_answer, &s), REVTUN_OK);
  ck_assert_int_eq(s.n, 1);
  ck_assert_int_eq(s.status, REVTUN_REDIS_E_UNAVAILABLE);
  ck_assert_int_eq(revtun_redis_lookup_node(dir, "", NULL, on_answer, &s), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_lookup_cluster(dir, "c", NULL, NULL, &s), REVTUN_E_INVAL);
  ck_assert_int_eq(s.n, 1);

  /* a second handle is not this directory's */
  revtun_t *h2 = tu_new_opts(NULL, NULL, 0);
  int d[2];
  tu_socketpair(d);
  revtun_options_t *o2;
  ck_assert_int_eq(revtun_options_new(&o2), REVTUN_OK);
  revtun_options_set_access_log_cb(o2, forward);
  revtun_t *h3 = tu_new_opts(NULL, o2, 0);
  revtun_options_free(o2);
  ck_assert_int_eq(tu_register(h3, d[0], "n9", "c9", NULL, 0, 1), REVTUN_OK);
  ck_assert_uint_eq(stat_of("redis.events_ignored"), 1);
  ck_assert_uint_eq(stat_of("redis.sockets"), 0);

  int n = 0;
  ck_assert_int_eq(revtun_redis_stats_foreach(dir, count_stats, &n), REVTUN_OK);
  ck_assert_int_eq(n, RS_N_COUNTERS + 9);
  uint64_t v;
  ck_assert_int_eq(revtun_redis_stats_get(dir, "redis.nope", &v), REVTUN_E_NOT_FOUND);
  ck_assert_str_eq(revtun_redis_status_name(REVTUN_REDIS_E_BUSY), "REVTUN_REDIS_E_BUSY");
  ck_assert_str_eq(revtun_redis_status_name(REVTUN_E_NOT_FOUND), "REVTUN_E_NOT_FOUND");
  ck_assert_int_eq(revtun_redis_stop(dir, NULL, NULL), REVTUN_E_STATE);
  ck_assert_int_eq(revtun_redis_start(NULL, NULL, NULL), REVTUN_E_INVAL);

  revtun_redis_free(dir);
  dir = NULL; /* the handles' shutdown records go nowhere */
  revtun_free(h);
  revtun_free(h2);
  revtun_free(h3);
  close(a[1]), close(b[1]), close(c[1]), close(d[1]);
  event_base_free(base);
}
END_TEST

int main(void) {
  Suite *s = suite_create("redis_unit");
  TCase *tc = tcase_create("unit");
  tcase_add_test(tc, options_refuse_what_would_break_the_keys_or_the_loop);
  tcase_add_test(tc, ids_become_the_cores_keys);
  tcase_add_test(tc, lookup_answers_are_validated);
  tcase_add_test(tc, script_verdicts_are_validated);
  tcase_add_test(tc, invalidation_messages_are_parsed_strictly);
  tcase_add_test(tc, u64_parsing);
  tcase_add_test(tc, the_reader_guard_refuses_oversized_replies);
  tcase_add_test(tc, events_are_folded_per_socket_and_key);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
