/* The Redis fleet directory against a real redis-server, one private server
 * per test. Each "instance" is what a proxy of the fleet would be: its own
 * revtun_t with real socketpair tunnels, driven by the libevent adapter, and
 * its own directory, all on one event base; the handle's records and
 * reporter events reach the directory through revtun_redis_on_event(). The
 * tests look at the answers of the directories, their stats, and at Redis
 * itself. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>
#include <revtun/adapters/libevent.h>
#include <revtun/redis.h>

#include "redis_util.h"
#include "testutil.h"

#define PREFIX "t:"

static struct rs_server srv;
static struct event_base *base;
static int slow = 1; /* CK_TIMEOUT_MULTIPLIER: valgrind runs everything 20 times slower */

static void setup(void) {
  const char *m = getenv("CK_TIMEOUT_MULTIPLIER");
  slow = m && atoi(m) > 1 ? atoi(m) : 1;
  signal(SIGPIPE, SIG_IGN);
  base = event_base_new();
  ck_assert_ptr_nonnull(base);
  ru_server_start(&srv, 0);
}

static void teardown(void) {
  ru_server_kill(&srv);
  event_base_free(base);
}

/* ------------------------------------------------------------- instances */

struct cfg {
  uint32_t heartbeat, ttl, cache_ttl, timeout;
  const char *token;
  bool isolation, no_cache;
  int port; /* 0: the test's server */
};

struct inst {
  char id[32], addr[32];
  revtun_t *h;
  struct revtun_libevent *le;
  revtun_redis_t *r;
  int started; /* the start callback's status; 1 until it came */
};

static void forward(revtun_t *h, const revtun_event_t *ev, void *user) {
  struct inst *in = revtun_libevent_user(user);
  if (in->r)
    revtun_redis_on_event(h, ev, in->r);
}

static void on_started(revtun_redis_t *r, int status, void *user) {
  (void)r;
  ((struct inst *)user)->started = status;
}

static revtun_redis_options_t *options(const char *id, const char *addr, const struct cfg *c) {
  revtun_redis_options_t *o;
  ck_assert_int_eq(revtun_redis_options_new(&o), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_server(o, "127.0.0.1", c->port ? c->port : srv.port),
                   REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_prefix(o, PREFIX), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_instance(o, id, addr), REVTUN_OK);
  uint32_t hb = (c->heartbeat ? c->heartbeat : 100) * (uint32_t)slow;
  ck_assert_int_eq(revtun_redis_options_set_heartbeat(o, hb, c->ttl * (uint32_t)slow), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_cache_ttl(o, c->no_cache    ? 0
                                                         : c->cache_ttl ? c->cache_ttl
                                                                        : 1000),
                   REVTUN_OK);
  ck_assert_int_eq(
      revtun_redis_options_set_timeout(o, (c->timeout ? c->timeout : 500) * (uint32_t)slow),
      REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_backoff(o, 10, 200), REVTUN_OK);
  if (c->token)
    ck_assert_int_eq(revtun_redis_options_set_token(o, c->token), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_tenant_isolation(o, c->isolation), REVTUN_OK);
  return o;
}

static bool start_answered(void *arg) { return ((struct inst *)arg)->started != 1; }

/* A handle with the libevent adapter and a directory, started. */
static void inst_open_nowait(struct inst *in, int n, const struct cfg *c) {
  memset(in, 0, sizeof(*in));
  snprintf(in->id, sizeof(in->id), "proxy-%d", n);
  snprintf(in->addr, sizeof(in->addr), "10.0.0.%d:8080", n);
  revtun_options_t *ho;
  ck_assert_int_eq(revtun_options_new(&ho), REVTUN_OK);
  in->le = revtun_libevent_new(base, ho, in);
  ck_assert_ptr_nonnull(in->le);
  ck_assert_int_eq(revtun_options_set_access_log_cb(ho, forward), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_reporter_cb(ho, forward), REVTUN_OK);
  in->h = tu_new_opts(c->isolation ? "isolation" : NULL, ho, revtun_libevent_now());
  revtun_options_free(ho);
  revtun_libevent_bind(in->le, in->h);
  revtun_redis_options_t *o = options(in->id, in->addr, c);
  char err[256];
  ck_assert_int_eq(revtun_redis_new(&in->r, base, o, err, sizeof(err)), REVTUN_OK);
  revtun_redis_options_free(o);
  in->started = 1;
  ck_assert_int_eq(revtun_redis_start(in->r, on_started, in), REVTUN_OK);
}

static void inst_open(struct inst *in, int n, const struct cfg *c) {
  inst_open_nowait(in, n, c);
  ck_assert_msg(ru_run_until(base, start_answered, in, 5000 * slow), "start never answered");
  ck_assert_int_eq(in->started, REVTUN_OK);
}

static uint64_t st(const struct inst *in, const char *name) {
  uint64_t v = 0;
  ck_assert_msg(revtun_redis_stats_get(in->r, name, &v) == REVTUN_OK, "no stat %s", name);
  return v;
}

/* Frees the directory first: the handle's shutdown records then go nowhere,
 * as when the process dies. Redis keeps the claim until its TTL. */
static void inst_crash(struct inst *in) {
  revtun_redis_t *r = in->r;
  in->r = NULL;
  revtun_redis_free(r);
}

static void inst_close(struct inst *in) {
  inst_crash(in);
  revtun_free(in->h);
  revtun_libevent_free(in->le);
  in->h = NULL, in->le = NULL;
}

struct tun {
  int lib, agent;
};

static struct tun tun_open(struct inst *in, const char *node, const char *cluster,
                           const char *tenant) {
  int sv[2];
  tu_socketpair(sv);
  ck_assert_int_eq(tu_register(in->h, sv[0], node, cluster, tenant, 300000, revtun_libevent_now()),
                   REVTUN_OK);
  return (struct tun){sv[0], sv[1]};
}

/* The agent goes away; the handle sees the EOF in the loop. */
static void tun_close(struct tun *t) {
  close(t->agent);
  t->agent = -1;
}

struct want_published {
  const struct inst *in;
  uint64_t n;
};
static bool is_published(void *arg) {
  struct want_published *w = arg;
  return st(w->in, "redis.published") == w->n && st(w->in, "redis.entries") == w->n;
}
static void wait_published(const struct inst *in, uint64_t n) {
  struct want_published w = {in, n};
  ck_assert_msg(ru_run_until(base, is_published, &w, 5000 * slow),
                "%s: published %llu entries, want %llu", in->id,
                (unsigned long long)st(in, "redis.published"), (unsigned long long)n);
}

static bool is_connected(void *arg) {
  const struct inst *in = arg;
  return st(in, "redis.connected") && st(in, "redis.subscribed");
}
static bool is_disconnected(void *arg) { return !st(arg, "redis.connected"); }

struct want_stat {
  const struct inst *in;
  const char *name;
  uint64_t at_least;
};
static bool stat_reached(void *arg) {
  const struct want_stat *w = arg;
  return st(w->in, w->name) >= w->at_least;
}
static void wait_stat(const struct inst *in, const char *name, uint64_t at_least) {
  struct want_stat w = {in, name, at_least};
  ck_assert_msg(ru_run_until(base, stat_reached, &w, 5000 * slow), "%s: %s %llu, want %llu", in->id,
                name, (unsigned long long)st(in, name), (unsigned long long)at_least);
}
static void wait_connected(const struct inst *in) {
  ck_assert_msg(ru_run_until(base, is_connected, (void *)in, 5000 * slow), "%s not connected",
                in->id);
}

/* --------------------------------------------------------------- lookups */

struct ans {
  int done, sync, status;
  char inst[160], addr[300];
  uint64_t gen, claim;
};

static void on_answer(revtun_redis_t *r, int status, const revtun_redis_owner_t *o, void *user) {
  (void)r;
  struct ans *a = user;
  a->done++;
  a->status = status;
  a->inst[0] = a->addr[0] = '\0';
  if (o) {
    size_t il, al;
    const char *i = revtun_redis_owner_instance(o, &il), *d = revtun_redis_owner_address(o, &al);
    ck_assert_uint_eq(strlen(i), il);
    ck_assert_uint_eq(strlen(d), al);
    snprintf(a->inst, sizeof(a->inst), "%s", i);
    snprintf(a->addr, sizeof(a->addr), "%s", d);
    a->gen = revtun_redis_owner_generation(o);
    a->claim = revtun_redis_owner_claim(o);
    ck_assert_uint_gt(a->gen, 0);
    ck_assert_uint_gt(a->claim, 0);
  } else {
    ck_assert_int_ne(status, REVTUN_OK);
  }
}

static bool answered(void *arg) { return ((struct ans *)arg)->done > 0; }

/* Not inlined: each answer is half a KiB, and a test asks many times. */
__attribute__((noinline)) static struct ans ask(const struct inst *in, char kind, const char *id,
                                                const char *tenant) {
  struct ans a;
  memset(&a, 0, sizeof(a));
  int rc = kind == 'n' ? revtun_redis_lookup_node(in->r, id, tenant, on_answer, &a)
                       : revtun_redis_lookup_cluster(in->r, id, tenant, on_answer, &a);
  ck_assert_int_eq(rc, REVTUN_OK);
  a.sync = a.done;
  ck_assert_msg(ru_run_until(base, answered, &a, 5000 * slow), "lookup of %s never answered", id);
  ck_assert_int_eq(a.done, 1);
  return a;
}

/* The answer names owner. */
__attribute__((noinline)) static void owned_by(const struct inst *in, char kind, const char *id,
                                               const char *tenant, const char *owner) {
  struct ans a = ask(in, kind, id, tenant);
  ck_assert_msg(a.status == REVTUN_OK && strcmp(a.inst, owner) == 0,
                "%s asked for %s: %s '%s', want %s", in->id, id, revtun_redis_status_name(a.status),
                a.inst, owner);
}

/* Asks until the answer names owner (NULL: not found), for at most ms. */
static struct ans expect(const struct inst *in, char kind, const char *id, const char *tenant,
                         const struct inst *owner, int ms) {
  uint64_t until = ru_now_ms() + (uint64_t)(ms * slow);
  struct ans a;
  for (;;) {
    a = ask(in, kind, id, tenant);
    bool ok = owner ? a.status == REVTUN_OK && strcmp(a.inst, owner->id) == 0
                    : a.status == REVTUN_E_NOT_FOUND;
    if (ok)
      return a;
    ck_assert_msg(ru_now_ms() < until, "%s asked for %s: %s %s, want %s", in->id, id,
                  revtun_redis_status_name(a.status), a.inst, owner ? owner->id : "not found");
    ru_run_for(base, 5);
  }
}

/* ----------------------------------------------------------------- tests */

START_TEST(fleet_publishes_and_any_instance_finds_the_owner) {
  int fds0 = tu_open_fds();
  struct cfg c = {0};
  struct inst a, b, x;
  inst_open(&a, 1, &c);
  inst_open(&b, 2, &c);
  inst_open(&x, 3, &c);
  struct tun a1 = tun_open(&a, "edge-a1", "edge-a", NULL);
  struct tun a2 = tun_open(&a, "edge-a2", "edge-a", NULL);
  struct tun b1 = tun_open(&b, "edge-b1", "edge-b", NULL);
  wait_published(&a, 3); /* two nodes and their cluster */
  wait_published(&b, 2);
  wait_published(&x, 0);

  const struct inst *all[3] = {&a, &b, &x};
  for (int i = 0; i < 3; i++) {
    struct ans r = ask(all[i], 'n', "edge-a1", NULL);
    ck_assert_int_eq(r.status, REVTUN_OK);
    ck_assert_str_eq(r.inst, "proxy-1");
    ck_assert_str_eq(r.addr, "10.0.0.1:8080");
    ck_assert_uint_eq(r.gen, st(&a, "redis.generation"));
    r = ask(all[i], 'n', "edge-b1", NULL);
    ck_assert_str_eq(r.inst, "proxy-2");
    ck_assert_str_eq(r.addr, "10.0.0.2:8080");
    owned_by(all[i], 'c', "edge-a", NULL, "proxy-1");
    owned_by(all[i], 'c', "edge-b", NULL, "proxy-2");
    ck_assert_int_eq(ask(all[i], 'n', "nobody", NULL).status, REVTUN_E_NOT_FOUND);
    ck_assert_int_eq(ask(all[i], 'c', "edge-a1", NULL).status, REVTUN_E_NOT_FOUND);
  }

  /* the last tunnel of a node closes: the node disappears, its cluster stays */
  tun_close(&a1);
  expect(&x, 'n', "edge-a1", NULL, NULL, 2000);
  owned_by(&x, 'n', "edge-a2", NULL, "proxy-1");
  owned_by(&x, 'c', "edge-a", NULL, "proxy-1");
  wait_published(&a, 2);
  redisContext *rc = ru_client(&srv);
  ck_assert_int_eq(ru_int(rc, "SISMEMBER " PREFIX "n:edge-a1 proxy-1"), 0);
  ck_assert_int_eq(ru_int(rc, "HEXISTS " PREFIX "in:proxy-1 edge-a1"), 0);
  ck_assert_int_eq(ru_int(rc, "HEXISTS " PREFIX "in:proxy-1 edge-a2"), 1);
  tun_close(&a2);
  expect(&b, 'c', "edge-a", NULL, NULL, 2000);
  wait_published(&a, 0);
  ck_assert_int_eq(ru_int(rc, "EXISTS " PREFIX "in:proxy-1 " PREFIX "ic:proxy-1"), 0);
  ck_assert_int_eq(ru_int(rc, "EXISTS " PREFIX "i:proxy-1"), 1); /* still alive */
  redisFree(rc);

  tun_close(&b1);
  inst_close(&a);
  inst_close(&b);
  inst_close(&x);
  ck_assert_int_eq(tu_open_fds(), fds0);
}
END_TEST

START_TEST(a_dead_instance_vanishes_within_its_ttl) {
  struct cfg c = {.heartbeat = 100, .ttl = 400, .cache_ttl = 100};
  struct inst a, b;
  inst_open(&a, 1, &c);
  inst_open(&b, 2, &c);
  struct tun t = tun_open(&a, "roamer", "edge", NULL);
  wait_published(&a, 2);
  owned_by(&b, 'n', "roamer", NULL, "proxy-1");

  /* proxy-1 dies: no more heartbeats, no cleanup. Everything it published
   * expires within one TTL of its last heartbeat. */
  inst_crash(&a);
  redisContext *rc = ru_client(&srv);
  const char *keys[3] = {PREFIX "i:proxy-1", PREFIX "in:proxy-1", PREFIX "ic:proxy-1"};
  for (int i = 0; i < 3; i++) {
    long long ttl = ru_int(rc, "PTTL %s", keys[i]);
    ck_assert_msg(ttl > 0 && ttl <= 400 * slow, "%s: PTTL %lld", keys[i], ttl);
  }
  expect(&b, 'n', "roamer", NULL, NULL, 5000);
  ck_assert_int_eq(ru_int(rc, "EXISTS %s %s %s", keys[0], keys[1], keys[2]), 0);
  redisFree(rc);

  /* its agent dials again and reaches proxy-2 */
  tun_close(&t);
  struct tun t2 = tun_open(&b, "roamer", "edge", NULL);
  struct ans r = expect(&b, 'n', "roamer", NULL, &b, 2000);
  ck_assert_str_eq(r.addr, "10.0.0.2:8080");
  owned_by(&b, 'c', "edge", NULL, "proxy-2");
  tun_close(&t2);
  revtun_free(a.h);
  revtun_libevent_free(a.le);
  inst_close(&b);
}
END_TEST

START_TEST(redis_restarts_under_traffic) {
  struct cfg c = {.heartbeat = 100};
  struct inst a, b;
  inst_open(&a, 1, &c);
  inst_open(&b, 2, &c);
  struct tun t1 = tun_open(&a, "n1", "edge", NULL);
  wait_published(&a, 2);
  owned_by(&b, 'n', "n1", NULL, "proxy-1");
  uint64_t republished = st(&a, "redis.republishes");

  int port = srv.port;
  ru_server_kill(&srv);
  uint64_t t0 = ru_now_ms();
  while (st(&a, "redis.connected") || st(&b, "redis.connected")) {
    ck_assert(ru_now_ms() - t0 < 3000u * (uint64_t)slow);
    ru_run_for(base, 5);
  }
  /* lookups answer "unavailable" at once: before the call returns */
  for (int i = 0; i < 3; i++) {
    struct ans r = ask(&b, 'n', "n1", NULL);
    ck_assert_int_eq(r.status, REVTUN_REDIS_E_UNAVAILABLE);
    ck_assert_int_eq(r.sync, 1);
    ck_assert_int_eq(ask(&a, 'c', "edge", NULL).status, REVTUN_REDIS_E_UNAVAILABLE);
  }
  ck_assert_uint_ge(st(&b, "redis.lookups_unavailable"), 3);
  /* local service goes on: the pool is intact, new tunnels are tracked */
  ck_assert_int_eq(revtun_idle_count(a.h, "n1", NULL), 1);
  struct tun t2 = tun_open(&a, "n2", "edge", NULL);
  ck_assert_int_eq(revtun_idle_count(a.h, "n2", NULL), 1);
  ck_assert_uint_eq(st(&a, "redis.entries"), 3);
  ru_run_for(base, 100);

  /* Redis comes back empty: reconnect, claim again, publish everything */
  ru_server_start(&srv, port);
  wait_published(&a, 3);
  ck_assert_str_eq(expect(&b, 'n', "n1", NULL, &a, 3000).inst, "proxy-1");
  ck_assert_str_eq(expect(&b, 'n', "n2", NULL, &a, 3000).inst, "proxy-1");
  ck_assert_uint_ge(st(&a, "redis.reconnects"), 1);
  ck_assert_uint_ge(st(&a, "redis.republishes"), republished + 1);
  ck_assert_uint_eq(st(&a, "redis.claimed"), 1);
  ck_assert_uint_ge(st(&a, "redis.connect_failures"), 1);
  tun_close(&t1);
  tun_close(&t2);
  inst_close(&a);
  inst_close(&b);
}
END_TEST

START_TEST(a_stale_entry_is_never_answered_as_live) {
  struct cfg c = {.no_cache = true};
  struct inst a, b;
  inst_open(&a, 1, &c);
  redisContext *rc = ru_client(&srv);
  /* an index entry whose instance has no claim */
  ru_int(rc, "SADD " PREFIX "n:ghost dead");
  ru_int(rc, "HSET " PREFIX "in:dead ghost 5");
  ck_assert_int_eq(ask(&a, 'n', "ghost", NULL).status, REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(ru_int(rc, "SISMEMBER " PREFIX "n:ghost dead"), 0); /* cleaned up */
  /* a live claim that does not hold the node (any more) */
  ru_int(rc, "HSET " PREFIX "i:zombie token 0123456789abcdef gen 3 addr 10.9.9.9:1");
  ru_int(rc, "SADD " PREFIX "n:ghost2 zombie");
  ck_assert_int_eq(ask(&a, 'n', "ghost2", NULL).status, REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(ru_int(rc, "SISMEMBER " PREFIX "n:ghost2 zombie"), 0);

  /* a restart of proxy-2 (same id, same token) replaces its entries at once,
   * long before the previous claim's TTL */
  struct cfg c2 = {.no_cache = true, .token = "proxy-2-token-0001", .heartbeat = 1000};
  inst_open(&b, 2, &c2);
  struct tun x = tun_open(&b, "x", "edge", NULL);
  wait_published(&b, 2);
  struct ans old = ask(&a, 'n', "x", NULL);
  ck_assert_str_eq(old.inst, "proxy-2");
  inst_crash(&b);
  revtun_free(b.h);
  revtun_libevent_free(b.le);
  tun_close(&x);
  struct inst b2;
  inst_open_nowait(&b2, 2, &c2);
  struct tun y = tun_open(&b2, "y", "edge", NULL);
  ck_assert(ru_run_until(base, start_answered, &b2, 5000 * slow));
  ck_assert_int_eq(b2.started, REVTUN_OK);
  wait_published(&b2, 2);
  ck_assert_int_eq(ask(&a, 'n', "x", NULL).status, REVTUN_E_NOT_FOUND);
  struct ans now = ask(&a, 'n', "y", NULL);
  ck_assert_str_eq(now.inst, "proxy-2");
  ck_assert_uint_gt(now.gen, old.gen);
  ck_assert_uint_eq(now.gen, st(&b2, "redis.generation"));
  ck_assert_int_eq(ru_int(rc, "HEXISTS " PREFIX "in:proxy-2 x"), 0);
  redisFree(rc);
  tun_close(&y);
  inst_close(&b2);
  inst_close(&a);
}
END_TEST

START_TEST(two_claims_have_one_deterministic_answer) {
  struct cfg c = {.no_cache = true};
  struct inst a, b, x;
  inst_open(&a, 1, &c);
  inst_open(&b, 2, &c);
  inst_open(&x, 3, &c);
  struct tun ta = tun_open(&a, "mover", "edge", NULL);
  wait_published(&a, 2);
  struct ans first = ask(&x, 'n', "mover", NULL);
  ck_assert_str_eq(first.inst, "proxy-1");
  /* the agent also dials proxy-2: both hold it; the later claim wins */
  struct tun tb = tun_open(&b, "mover", "edge", NULL);
  wait_published(&b, 2);
  const struct inst *all[3] = {&a, &b, &x};
  for (int round = 0; round < 5; round++)
    for (int i = 0; i < 3; i++) {
      struct ans r = ask(all[i], 'n', "mover", NULL);
      ck_assert_str_eq(r.inst, "proxy-2");
      ck_assert_uint_gt(r.claim, first.claim);
      ck_assert_uint_eq(r.gen, st(&b, "redis.generation"));
      owned_by(all[i], 'c', "edge", NULL, "proxy-2");
    }
  redisContext *rc = ru_client(&srv);
  ck_assert_int_eq(ru_int(rc, "SCARD " PREFIX "n:mover"), 2);
  redisFree(rc);
  /* proxy-2's tunnel closes: proxy-1's claim is the one left */
  tun_close(&tb);
  struct ans back = expect(&x, 'n', "mover", NULL, &a, 2000);
  ck_assert_uint_eq(back.claim, first.claim);

  /* a second live instance with id proxy-1 is refused */
  struct inst dup;
  inst_open_nowait(&dup, 1, &c);
  ck_assert(ru_run_until(base, start_answered, &dup, 5000 * slow));
  ck_assert_int_eq(dup.started, REVTUN_REDIS_E_BUSY);
  ck_assert_uint_eq(st(&dup, "redis.claimed"), 0);
  ck_assert_uint_eq(st(&dup, "redis.id_conflicts"), 1);
  ru_run_for(base, 300); /* the first keeps its claim and its heartbeats */
  ck_assert_uint_eq(st(&a, "redis.claimed"), 1);
  owned_by(&x, 'n', "mover", NULL, "proxy-1");
  ck_assert_uint_eq(ask(&x, 'n', "mover", NULL).gen, st(&a, "redis.generation"));
  inst_close(&dup);
  tun_close(&ta);
  inst_close(&a);
  inst_close(&b);
  inst_close(&x);
}
END_TEST

/* A string of n bytes at key, made by Redis itself: the test process never
 * holds it, so that its RSS shows only what the directories allocate. */
static void make_big(redisContext *rc, const char *key, size_t n) {
  ru_int(rc, "DEL %s", key);
  ru_int(rc, "SETRANGE %s %lld n", key, (long long)n - 1);
}

START_TEST(hostile_values_are_bounded_and_counted) {
  /* building a million-member set keeps Redis busy for a while: a TTL and a
   * timeout that ride it out keep this test about values, not outages */
  struct cfg c = {.no_cache = true, .heartbeat = 1000, .ttl = 30000, .timeout = 3000};
  struct inst a, l;
  inst_open(&a, 1, &c);
  inst_open(&l, 2, &c);
  struct tun t = tun_open(&l, "g4", "edge", NULL);
  wait_published(&l, 2);
  redisContext *rc = ru_client(&srv);

  /* a 100 MB string where an index set belongs, built inside Redis */
  ru_int(rc, "SETRANGE " PREFIX "n:huge 104857599 x");
  /* a million claimants, added 10,000 at a time (Redis stays responsive) */
  static const char *argv[2 + 10000];
  static size_t lens[2 + 10000];
  static char members[10000][12];
  argv[0] = "SADD", lens[0] = 4, argv[1] = PREFIX "n:many", lens[1] = strlen(argv[1]);
  for (int chunk = 0; chunk < 100; chunk++) {
    for (int i = 0; i < 10000; i++) {
      lens[2 + i] = (size_t)snprintf(members[i], sizeof(members[i]), "%d", chunk * 10000 + i);
      argv[2 + i] = members[i];
    }
    redisReply *rep = redisCommandArgv(rc, 10002, argv, lens);
    ck_assert_ptr_nonnull(rep);
    freeReplyObject(rep);
  }
  ck_assert_int_eq(ru_int(rc, "SCARD " PREFIX "n:many"), 1000000);
  /* from here on the test's own client sends only small commands: the RSS
   * of this process shows what the directories allocate */
  long rss0 = ru_rss_kib();
  wait_connected(&a);
  uint64_t rej = st(&a, "redis.rejected");
  ck_assert_int_eq(ask(&a, 'n', "huge", NULL).status, REVTUN_REDIS_E_REJECTED);
  ck_assert_uint_gt(st(&a, "redis.rejected"), rej);
  rej = st(&a, "redis.rejected");
  ck_assert_int_eq(ask(&a, 'n', "many", NULL).status, REVTUN_REDIS_E_REJECTED);
  ck_assert_uint_gt(st(&a, "redis.rejected"), rej);

  /* garbage in the fields of a claim: not a number, a space, too long */
  ru_int(rc, "HSET " PREFIX "i:evil token x gen abc addr 10.0.0.9:1");
  ru_int(rc, "HSET " PREFIX "in:evil g 7");
  ru_int(rc, "SADD " PREFIX "n:g evil");
  ru_int(rc, "HSET " PREFIX "i:spacey token x gen 5 addr %s", "a b");
  ru_int(rc, "HSET " PREFIX "in:spacey g 8");
  ru_int(rc, "SADD " PREFIX "n:g spacey");
  ru_int(rc, "EVAL %s 1 %s",
         "redis.call('HSET', KEYS[1], 'gen', '5', 'addr', string.rep('a', 300))", PREFIX "i:long");
  ru_int(rc, "HSET " PREFIX "in:long g 9");
  ru_int(rc, "SADD " PREFIX "n:g long");
  make_big(rc, "scratch", 1u << 20); /* a 1 MB address */
  ru_int(rc, "EVAL %s 2 %s %s",
         "redis.call('HSET', KEYS[1], 'gen', '5', 'addr', redis.call('GET', KEYS[2]))",
         PREFIX "i:fat", "scratch");
  ru_int(rc, "HSET " PREFIX "in:fat g 10");
  ru_int(rc, "SADD " PREFIX "n:g fat");
  ru_int(rc, "SADD " PREFIX "n:g %s", "id with spaces");
  ru_int(rc, "HSET " PREFIX "in:nines g 99999999999999999999"); /* 20 digits */
  ru_int(rc, "HSET " PREFIX "i:nines token x gen 5 addr 10.0.0.9:1");
  ru_int(rc, "SADD " PREFIX "n:g nines");
  wait_connected(&a);
  rej = st(&a, "redis.rejected");
  ck_assert_int_eq(ask(&a, 'n', "g", NULL).status, REVTUN_E_NOT_FOUND);
  ck_assert_uint_ge(st(&a, "redis.rejected"), rej + 6);
  /* garbage next to a real claim does not hide it */
  ru_int(rc, "SADD " PREFIX "n:g4 evil fat spacey");
  wait_published(&l, 2);
  owned_by(&a, 'n', "g4", NULL, "proxy-2");
  /* the wrong type where the index belongs */
  ru_int(rc, "HSET " PREFIX "c:hashy a b");
  ck_assert_int_eq(ask(&a, 'c', "hashy", NULL).status, REVTUN_REDIS_E_REJECTED);

  /* the invalidation channel: malformed messages, then 1 MB and 100 MB ones */
  rej = st(&a, "redis.rejected");
  ru_int(rc, "PUBLISH " PREFIX "inv %s", "x5:abc");
  ru_int(rc, "PUBLISH " PREFIX "inv %s", "n99999:a");
  ru_int(rc, "PUBLISH " PREFIX "inv %s", "n5:ab");
  wait_stat(&a, "redis.rejected", rej + 3);
  ck_assert_uint_eq(st(&a, "redis.subscribed"), 1);
  for (int big = 0; big < 2; big++) {
    rej = st(&a, "redis.rejected");
    uint64_t flushes = st(&a, "redis.reconnects");
    make_big(rc, "scratch", big ? 100u << 20 : 1u << 20);
    ru_int(rc, "EVAL %s 2 %s %s",
           "return redis.call('PUBLISH', KEYS[1], redis.call('GET', KEYS[2]))", PREFIX "inv",
           "scratch");
    uint64_t t0 = ru_now_ms();
    while (st(&a, "redis.reconnects") == flushes || !st(&a, "redis.subscribed")) {
      ck_assert_msg(ru_now_ms() - t0 < 5000u * (uint64_t)slow, "subscriber not back");
      ru_run_for(base, 5);
    }
    /* refused by this side's bound, or cut by Redis' own output limit */
    ck_assert(st(&a, "redis.rejected") > rej || big);
  }
  owned_by(&a, 'n', "g4", NULL, "proxy-2");
  long grown = ru_rss_kib() - rss0;
  ck_assert_msg(grown < 24 * 1024, "RSS grew by %ld KiB", grown);
  redisFree(rc);
  tun_close(&t);
  inst_close(&a);
  inst_close(&l);
}
END_TEST

START_TEST(ten_thousand_registrations_cost_one_round_trip) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  ck_assert_msg(rl.rlim_cur >= 10300, "RLIMIT_NOFILE %llu: 10,000 sockets need more",
                (unsigned long long)rl.rlim_cur);
  struct cfg c = {.heartbeat = 2000};
  struct inst a, b;
  inst_open(&a, 1, &c);
  inst_open(&b, 2, &c);
  ru_run_for(base, 20);
  redisContext *rc = ru_client(&srv);
  long long evalsha0 = ru_calls(rc, "evalsha");
  uint64_t rt0 = st(&a, "redis.round_trips"), ops0 = st(&a, "redis.publish_ops");
  int sv[2];
  tu_socketpair(sv);
  revtun_reg_t *reg;
  ck_assert_int_eq(revtun_reg_new(a.h, &reg), REVTUN_OK);
  revtun_reg_set_ping_interval(reg, 300000);
  revtun_time_ms_t now = revtun_libevent_now();
  /* 10,000 tunnels (dups of one socket) of 10,000 nodes in 100 clusters,
   * all in one loop turn */
  for (int i = 0; i < 10000; i++) {
    char node[16], cluster[16];
    snprintf(node, sizeof(node), "n%05d", i);
    snprintf(cluster, sizeof(cluster), "c%02d", i % 100);
    ck_assert_int_eq(revtun_reg_set_ids(reg, node, cluster, NULL), REVTUN_OK);
    int fd = dup(sv[0]);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(revtun_register_socket(a.h, fd, reg, now), REVTUN_OK);
  }
  revtun_reg_free(reg);
  close(sv[0]);
  wait_published(&a, 10100);
  uint64_t trips = st(&a, "redis.round_trips") - rt0;
  long long evalsha = ru_calls(rc, "evalsha") - evalsha0;
  printf("10,000 registrations: %llu round trip(s), %llu publish operations, %lld EVALSHA\n",
         (unsigned long long)trips, (unsigned long long)(st(&a, "redis.publish_ops") - ops0),
         evalsha);
  ck_assert_uint_le(trips, 2);       /* one batch (a heartbeat may add one) */
  ck_assert_int_le(evalsha, 11 + 2); /* 10,100 operations in 1,000-op calls */
  ck_assert_uint_eq(st(&a, "redis.publish_ops") - ops0, 10100);
  owned_by(&b, 'n', "n04242", NULL, "proxy-1");
  owned_by(&b, 'n', "n09999", NULL, "proxy-1");
  owned_by(&b, 'c', "c42", NULL, "proxy-1");
  ck_assert_int_eq(ru_int(rc, "HLEN " PREFIX "in:proxy-1"), 10000);
  redisFree(rc);
  inst_close(&a); /* closes the 10,000 dups */
  close(sv[1]);
  inst_close(&b);
}
END_TEST

START_TEST(cached_answers_are_invalidated_by_pubsub) {
  /* only invalidations can refresh the answers before this TTL */
  struct cfg c = {.cache_ttl = 20000 * (uint32_t)slow};
  struct inst a, b, x;
  inst_open(&a, 1, &c);
  inst_open(&b, 2, &c);
  inst_open(&x, 3, &c);
  struct tun t = tun_open(&a, "hot", "edge", NULL);
  wait_published(&a, 2);
  owned_by(&b, 'n', "hot", NULL, "proxy-1");
  /* proxy-1's publication may reach proxy-2's subscriber after that answer
   * (two connections) and drop it: conservative, and then done */
  ru_run_for(base, 50);
  owned_by(&b, 'n', "hot", NULL, "proxy-1");
  uint64_t rt = st(&b, "redis.round_trips"), hits = st(&b, "redis.cache_hits");
  for (int i = 0; i < 100; i++) {
    struct ans r = ask(&b, 'n', "hot", NULL);
    ck_assert_str_eq(r.inst, "proxy-1");
    ck_assert_int_eq(r.sync, 1); /* from the cache, before the call returned */
  }
  ck_assert_uint_eq(st(&b, "redis.round_trips"), rt);
  ck_assert_uint_eq(st(&b, "redis.cache_hits"), hits + 100);
  ck_assert_uint_ge(st(&b, "redis.cache_entries"), 1);

  /* the node moves to proxy-3; proxy-2's cached answer goes at once */
  uint64_t inv = st(&b, "redis.invalidations");
  tun_close(&t);
  struct tun t3 = tun_open(&x, "hot", "edge", NULL);
  expect(&b, 'n', "hot", NULL, &x, 10000);
  ck_assert_uint_gt(st(&b, "redis.invalidations"), inv);
  /* not-found answers are cached and invalidated too */
  ck_assert_int_eq(ask(&b, 'n', "later", NULL).status, REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(ask(&b, 'n', "later", NULL).sync, 1);
  struct tun tl = tun_open(&a, "later", "edge", NULL);
  expect(&b, 'n', "later", NULL, &a, 2000);

  /* many lookups of one key in one turn share one query */
  static struct ans many[50]; /* 24 KiB: off the stack */
  memset(many, 0, sizeof(many));
  uint64_t co = st(&x, "redis.lookups_coalesced");
  for (int i = 0; i < 50; i++)
    ck_assert_int_eq(revtun_redis_lookup_node(x.r, "cold", NULL, on_answer, &many[i]), REVTUN_OK);
  ck_assert(ru_run_until(base, answered, &many[49], 2000 * slow));
  for (int i = 0; i < 50; i++)
    ck_assert_int_eq(many[i].done, 1);
  ck_assert_uint_eq(st(&x, "redis.lookups_coalesced"), co + 49);
  tun_close(&t3);
  tun_close(&tl);
  inst_close(&a);
  inst_close(&b);
  inst_close(&x);
}
END_TEST

START_TEST(a_cached_owner_that_dies_is_forgotten_within_two_ttls) {
  /* a dead instance publishes no invalidation: only its claim's expiry in
   * Redis tells, and a cached answer must not outlive that by more than a
   * TTL, however long the cache lifetime */
  struct cfg c = {.heartbeat = 100, .ttl = 400, .cache_ttl = 60000};
  struct inst a, b;
  inst_open(&a, 1, &c);
  inst_open(&b, 2, &c);
  struct tun t = tun_open(&a, "doomed", "edge", NULL);
  wait_published(&a, 2);
  owned_by(&b, 'n', "doomed", NULL, "proxy-1");
  ru_run_for(base, 50); /* a late message of proxy-1's publication may drop it */
  owned_by(&b, 'n', "doomed", NULL, "proxy-1");
  ck_assert_int_eq(ask(&b, 'n', "doomed", NULL).sync, 1); /* cached */
  inst_crash(&a);
  /* 60 s of cache lifetime, but the answer goes within 2 x 400 ms */
  expect(&b, 'n', "doomed", NULL, NULL, 5000);
  tun_close(&t);
  revtun_free(a.h);
  revtun_libevent_free(a.le);
  inst_close(&b);
}
END_TEST

START_TEST(handed_off_sessions_serve_until_goaway) {
  struct cfg c = {.no_cache = true};
  struct inst a, b;
  inst_open(&a, 1, &c);
  inst_open(&b, 2, &c);
  struct tun t = tun_open(&a, "h2", "edge", NULL);
  wait_published(&a, 2);
  int fd = -1;
  ck_assert_int_eq(revtun_handoff(a.h, "h2", NULL, revtun_libevent_now(), &fd, NULL), REVTUN_OK);
  ck_assert_int_eq(fd, t.lib);
  ru_run_for(base, 50);
  owned_by(&b, 'n', "h2", NULL, "proxy-1"); /* in use, still serving */
  ck_assert_int_eq(revtun_note_goaway(a.h, fd, revtun_libevent_now()), REVTUN_OK);
  expect(&b, 'n', "h2", NULL, NULL, 2000);
  expect(&b, 'c', "edge", NULL, NULL, 2000);
  ck_assert_uint_eq(st(&a, "redis.sockets"), 1);
  ck_assert_int_eq(revtun_mark_dead(a.h, fd, REVTUN_CLOSE_REMOTE_CLOSE, revtun_libevent_now()),
                   REVTUN_OK);
  close(fd);
  ck_assert_uint_eq(st(&a, "redis.sockets"), 0);
  ck_assert_int_eq(ask(&b, 'n', "h2", NULL).status, REVTUN_E_NOT_FOUND);
  tun_close(&t);
  inst_close(&a);
  inst_close(&b);
}
END_TEST

static void on_stopped(revtun_redis_t *r, int status, void *user) {
  (void)r;
  *(int *)user = status;
}
static bool int_set(void *arg) { return *(int *)arg != 1; }

START_TEST(stop_releases_the_claim_at_once) {
  struct cfg c = {.no_cache = true, .heartbeat = 1000};
  struct inst a, b;
  inst_open(&a, 1, &c);
  inst_open(&b, 2, &c);
  struct tun t = tun_open(&a, "s", "edge", NULL);
  wait_published(&a, 2);
  int stopped = 1;
  ck_assert_int_eq(revtun_redis_stop(a.r, on_stopped, &stopped), REVTUN_OK);
  ck_assert(ru_run_until(base, int_set, &stopped, 2000 * slow));
  ck_assert_int_eq(stopped, REVTUN_OK);
  ck_assert_int_eq(ask(&b, 'n', "s", NULL).status, REVTUN_E_NOT_FOUND);
  redisContext *rc = ru_client(&srv);
  ck_assert_int_eq(ru_int(rc, "EXISTS " PREFIX "i:proxy-1 " PREFIX "in:proxy-1"), 0);
  ck_assert_int_eq(ru_int(rc, "SCARD " PREFIX "n:s"), 0);
  ck_assert_uint_eq(st(&a, "redis.published"), 0);
  ck_assert_uint_eq(st(&a, "redis.entries"), 2); /* still tracked locally */
  /* the id is free: another process takes it without waiting for a TTL */
  struct inst a2;
  inst_open(&a2, 1, &c);
  ck_assert_uint_eq(st(&a2, "redis.claimed"), 1);
  inst_close(&a2);
  /* and the stopped directory can start again, with everything it tracks */
  a.started = 1;
  ck_assert_int_eq(revtun_redis_start(a.r, on_started, &a), REVTUN_OK);
  ck_assert(ru_run_until(base, start_answered, &a, 5000 * slow));
  ck_assert_int_eq(a.started, REVTUN_REDIS_E_BUSY); /* a2's claim is still live */
  redisFree(rc);
  tun_close(&t);
  inst_close(&a);
  inst_close(&b);
}
END_TEST

START_TEST(a_stalled_redis_times_out) {
  struct cfg c = {.timeout = 200, .heartbeat = 100, .ttl = 5000};
  struct inst a, b;
  inst_open(&a, 1, &c);
  inst_open(&b, 2, &c);
  struct tun t = tun_open(&a, "st", "edge", NULL);
  wait_published(&a, 2);
  ru_server_signal(&srv, SIGSTOP);
  uint64_t t0 = ru_now_ms();
  struct ans r = ask(&b, 'n', "st-unknown", NULL);
  uint64_t took = ru_now_ms() - t0;
  ck_assert_int_eq(r.status, REVTUN_REDIS_E_UNAVAILABLE);
  ck_assert_uint_ge(took + 10, 200u * (uint64_t)slow); /* not before the deadline */
  ck_assert_uint_ge(st(&b, "redis.timeouts"), 1);
  /* proxy-1's heartbeat times out too */
  ck_assert(ru_run_until(base, is_disconnected, &a, 3000 * slow));
  ck_assert_int_eq(revtun_idle_count(a.h, "st", NULL), 1);
  ru_server_signal(&srv, SIGCONT);
  expect(&b, 'n', "st", NULL, &a, 5000);
  wait_connected(&a);
  wait_published(&a, 2);
  ck_assert_uint_ge(st(&a, "redis.timeouts"), 1);
  ck_assert_uint_ge(st(&a, "redis.reconnects"), 1);
  tun_close(&t);
  inst_close(&a);
  inst_close(&b);
}
END_TEST

struct freer {
  struct inst *in;
  int calls, status;
};
static void free_in_callback(revtun_redis_t *r, int status, const revtun_redis_owner_t *o,
                             void *user) {
  (void)o;
  struct freer *f = user;
  f->calls++;
  f->status = status;
  ck_assert_ptr_eq(r, f->in->r);
  revtun_redis_free(r); /* deferred until the directory's frame returns */
  ck_assert_int_eq(revtun_redis_lookup_node(r, "x", NULL, on_answer, NULL), REVTUN_E_STATE);
}

START_TEST(a_loop_turn_longer_than_the_timeout_drops_nothing) {
  /* a starved or busy host runs one turn for longer than the timeout while
   * Redis answers at once: the answer is in the socket, not late */
  struct cfg c = {.timeout = 200, .no_cache = true, .heartbeat = 1000, .ttl = 30000};
  struct inst a, b;
  inst_open(&a, 1, &c);
  inst_open(&b, 2, &c);
  struct tun t = tun_open(&a, "busy", "edge", NULL);
  wait_published(&a, 2);
  uint64_t to = st(&b, "redis.timeouts"), rc0 = st(&b, "redis.reconnects");
  for (int round = 0; round < 3; round++) {
    struct ans r;
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(revtun_redis_lookup_node(b.r, "busy", NULL, on_answer, &r), REVTUN_OK);
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK); /* the flush: the lookup is sent */
    usleep(3 * 200 * 1000 * (useconds_t)slow);            /* then a turn of 3 timeouts */
    ck_assert(ru_run_until(base, answered, &r, 5000 * slow));
    ck_assert_msg(r.status == REVTUN_OK && strcmp(r.inst, "proxy-1") == 0, "round %d: %s %s", round,
                  revtun_redis_status_name(r.status), r.inst);
  }
  ck_assert_uint_eq(st(&b, "redis.timeouts"), to);
  ck_assert_uint_eq(st(&b, "redis.reconnects"), rc0);
  tun_close(&t);
  inst_close(&a);
  inst_close(&b);
}
END_TEST

START_TEST(free_cancels_lookups_and_may_come_from_a_callback) {
  int fds0 = tu_open_fds();
  struct cfg c = {.timeout = 5000, .no_cache = true};
  struct inst a;
  inst_open(&a, 1, &c);
  ru_server_signal(&srv, SIGSTOP);
  struct ans pending[3];
  memset(pending, 0, sizeof(pending));
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(revtun_redis_lookup_node(a.r, i ? "p" : "q", NULL, on_answer, &pending[i]),
                     REVTUN_OK);
  ru_run_for(base, 50);
  ck_assert_int_eq(pending[0].done + pending[1].done + pending[2].done, 0);
  inst_crash(&a); /* every accepted lookup hears once, during the free */
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(pending[i].done, 1);
    ck_assert_int_eq(pending[i].status, REVTUN_REDIS_E_CANCELLED);
  }
  ru_server_signal(&srv, SIGCONT);
  ru_run_for(base, 50);
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(pending[i].done, 1);
  revtun_free(a.h);
  revtun_libevent_free(a.le);

  /* two waiters of one query; the first frees the directory */
  struct inst b;
  inst_open(&b, 2, &c);
  struct freer f = {&b, 0, 0};
  struct ans other;
  memset(&other, 0, sizeof(other));
  ck_assert_int_eq(revtun_redis_lookup_node(b.r, "k", NULL, free_in_callback, &f), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_lookup_node(b.r, "k", NULL, on_answer, &other), REVTUN_OK);
  ck_assert(ru_run_until(base, answered, &other, 2000 * slow));
  ck_assert_int_eq(f.calls, 1);
  ck_assert_int_eq(f.status, REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(other.status, REVTUN_E_NOT_FOUND); /* it still got the answer */
  b.r = NULL;
  revtun_free(b.h);
  revtun_libevent_free(b.le);
  ru_run_for(base, 50);
  ck_assert_int_eq(tu_open_fds(), fds0);
}
END_TEST

START_TEST(tenants_are_kept_apart) {
  struct cfg c = {.isolation = true, .no_cache = true};
  struct inst a, b, x;
  inst_open(&a, 1, &c);
  inst_open(&b, 2, &c);
  inst_open(&x, 3, &c);
  struct tun ta = tun_open(&a, "edge", "pop", "acme");
  struct tun tb = tun_open(&b, "edge", "pop", "globex");
  wait_published(&a, 2);
  wait_published(&b, 2);
  owned_by(&x, 'n', "edge", "acme", "proxy-1");
  owned_by(&x, 'n', "edge", "globex", "proxy-2");
  owned_by(&x, 'c', "pop", "globex", "proxy-2");
  ck_assert_int_eq(ask(&x, 'n', "edge", "initech").status, REVTUN_E_NOT_FOUND);
  struct ans unused;
  ck_assert_int_eq(revtun_redis_lookup_node(x.r, "edge", NULL, on_answer, &unused), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_lookup_node(x.r, "edge", "", on_answer, &unused), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_redis_lookup_node(x.r, "ac:me", "x", on_answer, &unused), REVTUN_E_INVAL);
  /* a directory keyed without isolation refuses a handle that isolates */
  struct cfg plain = {0};
  revtun_redis_options_t *o = options("proxy-9", "10.0.0.9:8080", &plain);
  revtun_redis_t *r;
  ck_assert_int_eq(revtun_redis_new(&r, base, o, NULL, 0), REVTUN_OK);
  revtun_redis_options_free(o);
  revtun_redis_t *keep = a.r;
  a.r = r;
  struct tun tc = tun_open(&a, "edge2", "pop", "acme");
  ck_assert_uint_ge(st(&a, "redis.events_ignored"), 1);
  ck_assert_uint_eq(st(&a, "redis.entries"), 0);
  a.r = keep;
  revtun_redis_free(r);
  tun_close(&ta);
  tun_close(&tb);
  tun_close(&tc);
  inst_close(&a);
  inst_close(&b);
  inst_close(&x);
}
END_TEST

START_TEST(redis_down_at_start) {
  int port = srv.port;
  ru_server_kill(&srv);
  struct cfg c = {.port = port, .heartbeat = 100};
  struct inst a;
  inst_open_nowait(&a, 1, &c);
  struct tun t = tun_open(&a, "early", "edge", NULL);
  ck_assert(ru_run_until(base, start_answered, &a, 3000 * slow));
  ck_assert_int_eq(a.started, REVTUN_REDIS_E_UNAVAILABLE);
  ck_assert_uint_ge(st(&a, "redis.connect_failures"), 1);
  struct ans r = ask(&a, 'n', "early", NULL);
  ck_assert_int_eq(r.status, REVTUN_REDIS_E_UNAVAILABLE);
  ck_assert_int_eq(r.sync, 1);
  /* backoff: 10 ms doubling, at most 200 ms: in T ms each of the two
   * connections tries at most T / 200 + 6 times */
  uint64_t f0 = st(&a, "redis.connect_failures"), t0 = ru_now_ms();
  ru_run_for(base, 300 * slow);
  uint64_t failures = st(&a, "redis.connect_failures") - f0, spent = ru_now_ms() - t0;
  ck_assert_uint_ge(failures, 2);
  ck_assert_uint_le(failures, 2 * (spent / 200 + 6));
  ru_server_start(&srv, port);
  wait_published(&a, 2);
  ck_assert_uint_eq(st(&a, "redis.claimed"), 1);
  ck_assert_str_eq(expect(&a, 'n', "early", NULL, &a, 2000).inst, "proxy-1");
  tun_close(&t);
  inst_close(&a);
}
END_TEST

struct logged {
  int errors;
  char last[512];
};
static void on_log(revtun_redis_t *r, int level, const char *msg, void *user) {
  (void)r;
  struct logged *l = user;
  ck_assert(level >= REVTUN_LOG_ERROR && level <= REVTUN_LOG_DEBUG);
  ck_assert_uint_lt(strlen(msg), sizeof(l->last));
  if (level == REVTUN_LOG_ERROR) {
    l->errors++;
    snprintf(l->last, sizeof(l->last), "%s", msg);
  }
}

/* A directory with options of its own (AUTH, logging), started. */
static revtun_redis_t *dir_start(const char *id, const char *user, const char *pass,
                                 struct logged *log, struct inst *status) {
  struct cfg c = {0};
  revtun_redis_options_t *o = options(id, "10.0.0.7:8080", &c);
  ck_assert_int_eq(revtun_redis_options_set_auth(o, user, pass), REVTUN_OK);
  ck_assert_int_eq(revtun_redis_options_set_log_cb(o, on_log, REVTUN_LOG_WARN, log), REVTUN_OK);
  revtun_redis_t *r;
  ck_assert_int_eq(revtun_redis_new(&r, base, o, NULL, 0), REVTUN_OK);
  revtun_redis_options_free(o);
  status->r = r;
  status->started = 1;
  ck_assert_int_eq(revtun_redis_start(r, on_started, status), REVTUN_OK);
  ck_assert(ru_run_until(base, start_answered, status, 5000 * slow));
  return r;
}

START_TEST(credentials_are_presented_and_refusals_logged) {
  redisContext *rc = ru_client(&srv);
  ru_int(rc, "CONFIG SET requirepass s3cret");
  ru_int(rc, "AUTH s3cret");
  ru_int(rc, "ACL SETUSER fleet on >fleet-pw ~* &* +@all");
  struct logged log = {0, ""};
  struct inst with, acl, without;
  dir_start("proxy-1", NULL, "s3cret", &log, &with);
  ck_assert_int_eq(with.started, REVTUN_OK);
  /* the subscriber is a connection of its own: it may log in a little later */
  for (int i = 0; i < 250 && st(&with, "redis.subscribed") != 1; i++)
    ru_run_for(base, 20);
  ck_assert_uint_eq(st(&with, "redis.subscribed"), 1);
  dir_start("proxy-2", "fleet", "fleet-pw", &log, &acl);
  ck_assert_int_eq(acl.started, REVTUN_OK);
  ck_assert_int_eq(log.errors, 0);
  /* no password: Redis refuses the setup; it is counted, logged, retried */
  dir_start("proxy-3", NULL, NULL, &log, &without);
  ck_assert_int_eq(without.started, REVTUN_REDIS_E_UNAVAILABLE);
  ck_assert_uint_ge(st(&without, "redis.errors"), 1);
  ck_assert_uint_eq(st(&without, "redis.connected"), 0);
  ck_assert_int_ge(log.errors, 1);
  ck_assert_msg(strstr(log.last, "NOAUTH") != NULL, "logged: %s", log.last);
  revtun_redis_free(with.r);
  revtun_redis_free(acl.r);
  revtun_redis_free(without.r);
  redisFree(rc);
}
END_TEST

int main(void) {
  ru_require_redis_server("check_redis");
  Suite *s = suite_create("redis");
  TCase *tc = tcase_create("fleet");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, fleet_publishes_and_any_instance_finds_the_owner);
  tcase_add_test(tc, a_dead_instance_vanishes_within_its_ttl);
  tcase_add_test(tc, redis_restarts_under_traffic);
  tcase_add_test(tc, a_stale_entry_is_never_answered_as_live);
  tcase_add_test(tc, two_claims_have_one_deterministic_answer);
  tcase_add_test(tc, hostile_values_are_bounded_and_counted);
  tcase_add_test(tc, cached_answers_are_invalidated_by_pubsub);
  tcase_add_test(tc, a_cached_owner_that_dies_is_forgotten_within_two_ttls);
  tcase_add_test(tc, a_loop_turn_longer_than_the_timeout_drops_nothing);
  tcase_add_test(tc, handed_off_sessions_serve_until_goaway);
  tcase_add_test(tc, stop_releases_the_claim_at_once);
  tcase_add_test(tc, a_stalled_redis_times_out);
  tcase_add_test(tc, free_cancels_lookups_and_may_come_from_a_callback);
  tcase_add_test(tc, tenants_are_kept_apart);
  tcase_add_test(tc, redis_down_at_start);
  tcase_add_test(tc, credentials_are_presented_and_refusals_logged);
  suite_add_tcase(s, tc);
  TCase *scale = tcase_create("scale");
  tcase_set_tags(scale, "slow");
  tcase_add_checked_fixture(scale, setup, teardown);
  tcase_set_timeout(scale, 120);
  tcase_add_test(scale, ten_thousand_registrations_cost_one_round_trip);
  suite_add_tcase(s, scale);
  return tu_run(s);
}
