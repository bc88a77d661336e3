/* bench_redis: what the fleet directory costs Redis and the loop.
 *
 * A private redis-server (never 6379) and one handle whose registrations and
 * closes reach a directory through its access-log and reporter callbacks,
 * as a host wires it. Sockets are fake fds (bench/fakefd.c), so the handle's
 * syscalls cost nothing and 100,000 tunnels fit under RLIMIT_NOFILE.
 *
 * 1. 100,000 registrations of distinct nodes (100 clusters) in one loop
 *    turn, then their 100,000 closes: wall time until Redis acknowledged
 *    everything, and the round trips and commands it took (the directory's
 *    own counters).
 * 2. Cost per registration against its floor, back to back per sample: 10,000
 *    registrations in one turn until acknowledged (the directory's Lua calls,
 *    index sets, claim numbers, invalidations), against 10,000 bare SETs of a
 *    key and value of the same size, pipelined by a hiredis client on the
 *    same server. Reported: ns per registration, ns per SET, and their ratio
 *    (median of per-sample ratios).
 *
 * Nothing asserts on time. Without redis-server the program exits 77. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <revtun/redis.h>

#include "bench_util.h"
#include "redis_server.h"

#define BIG 100000u
#define SMALL 10000u
#define CLUSTERS 100u
#define SAMPLES 9
#define PREFIX "bench:"
#define INSTANCE "bench-proxy-1"

static struct rs_server srv;
static struct event_base *base;
static revtun_t *h;
static revtun_redis_t *dir;
static revtun_reg_t *reg;

static void die(const char *what, const char *why) {
  fprintf(stderr, "bench_redis: %s: %s\n", what, why);
  rs_kill(&srv);
  exit(1);
}

static bool attached = true; /* false: the handle alone, for its own cost */

static void forward(revtun_t *hh, const revtun_event_t *ev, void *user) {
  (void)user;
  if (attached)
    revtun_redis_on_event(hh, ev, dir);
}

static uint64_t stat(const char *name) {
  uint64_t v = 0;
  if (revtun_redis_stats_get(dir, name, &v) != REVTUN_OK)
    die("stat", name);
  return v;
}

/* Runs the loop until the directory's acknowledged entries reach want. */
static void run_until_published(uint64_t want) {
  uint64_t until = bu_now_ns() + 120000000000ull;
  while (stat("redis.published") != want || stat("redis.entries") != want) {
    if (bu_now_ns() > until)
      die("waiting for Redis", "no acknowledgement within 120 s");
    event_base_loop(base, EVLOOP_ONCE);
  }
}

static void node_name(char *buf, size_t cap, unsigned i) {
  snprintf(buf, cap, "edge-node-%06u.prod", i);
}

/* n registrations of nodes [first, first + n) in one turn, or their closes. */
static void register_range(unsigned first, unsigned n) {
  for (unsigned i = first; i < first + n; i++) {
    char node[32], cluster[32];
    node_name(node, sizeof(node), i);
    snprintf(cluster, sizeof(cluster), "edge-pop-%02u", i % CLUSTERS);
    revtun_reg_set_ids(reg, node, cluster, NULL);
    int rc = revtun_register_socket(h, (int)(BU_FAKE_FD_BASE + i), reg, 1);
    if (rc)
      die("revtun_register_socket", revtun_status_name(rc));
  }
}

static void close_range(unsigned first, unsigned n) {
  for (unsigned i = first; i < first + n; i++) {
    int rc = revtun_mark_dead(h, (int)(BU_FAKE_FD_BASE + i), REVTUN_CLOSE_LOCAL_CLOSE, 2);
    if (rc)
      die("revtun_mark_dead", revtun_status_name(rc));
  }
}

static bool started;
static void on_started(revtun_redis_t *r, int status, void *user) {
  (void)r, (void)user;
  if (status != REVTUN_OK)
    die("revtun_redis_start", revtun_redis_status_name(status));
  started = true;
}

static void setup(void) {
  revtun_options_t *o;
  if (revtun_options_new(&o))
    die("revtun_options_new", "failed");
  revtun_options_set_io_cb(o, bu_host_io);
  revtun_options_set_timer_cb(o, bu_host_timer);
  revtun_options_set_close_cb(o, bu_host_close);
  revtun_options_set_access_log_cb(o, forward);
  revtun_options_set_reporter_cb(o, forward);
  char err[256];
  if (revtun_new(&h, NULL, 0, o, 0, err, sizeof(err)))
    die("revtun_new", err);
  revtun_options_free(o);
  if (revtun_reg_new(h, &reg))
    die("revtun_reg_new", "failed");

  revtun_redis_options_t *ro;
  if (revtun_redis_options_new(&ro))
    die("revtun_redis_options_new", "failed");
  revtun_redis_options_set_server(ro, "127.0.0.1", srv.port);
  revtun_redis_options_set_prefix(ro, PREFIX);
  revtun_redis_options_set_instance(ro, INSTANCE, "10.0.0.1:8080");
  revtun_redis_options_set_heartbeat(ro, 60000, 0); /* none during a sample */
  revtun_redis_options_set_timeout(ro, 60000);      /* a 100k republish takes a while */
  if (revtun_redis_new(&dir, base, ro, err, sizeof(err)))
    die("revtun_redis_new", err);
  revtun_redis_options_free(ro);
  if (revtun_redis_start(dir, on_started, NULL))
    die("revtun_redis_start", "refused");
  uint64_t until = bu_now_ns() + 10000000000ull;
  while (!started && bu_now_ns() < until)
    event_base_loop(base, EVLOOP_ONCE);
  if (!started)
    die("revtun_redis_start", "no answer");
}

/* ----------------------------------------------------------------- part 1 */

static void big_batch(void) {
  uint64_t rt = stat("redis.round_trips"), cmds = stat("redis.commands");
  uint64_t fake0 = bu_fake.getsockname, t0 = bu_now_ns();
  register_range(0, BIG);
  uint64_t t1 = bu_now_ns();
  /* bu_fake_selfcheck() also hands a socket off, which this benchmark never
   * does; registration's own syscalls are the ones that must be faked */
  if (bu_fake.getsockname - fake0 < BIG)
    die("fake fds", "the handle's syscalls did not reach bench/fakefd.c");
  run_until_published(BIG + CLUSTERS);
  uint64_t t2 = bu_now_ns();
  uint64_t add_rt = stat("redis.round_trips") - rt, add_cmds = stat("redis.commands") - cmds;
  printf("100,000 registrations in one turn: %.0f ms to register locally, %.0f ms until Redis\n"
         "acknowledged %u entries; %llu round trip(s), %llu commands\n",
         (double)(t1 - t0) / 1e6, (double)(t2 - t0) / 1e6, BIG + CLUSTERS,
         (unsigned long long)add_rt, (unsigned long long)add_cmds);
  rt = stat("redis.round_trips"), cmds = stat("redis.commands");
  t0 = bu_now_ns();
  close_range(0, BIG);
  run_until_published(0);
  t2 = bu_now_ns();
  uint64_t del_rt = stat("redis.round_trips") - rt, del_cmds = stat("redis.commands") - cmds;
  printf("their 100,000 closes: %.0f ms; %llu round trip(s), %llu commands\n",
         (double)(t2 - t0) / 1e6, (unsigned long long)del_rt, (unsigned long long)del_cmds);
  bu_result("bench_redis", "round trips, 100k registrations", (double)add_rt, "rt", "<= 5",
            add_rt <= 5);
  bu_result("bench_redis", "round trips, 100k closes", (double)del_rt, "rt", "<= 5", del_rt <= 5);
  bu_result("bench_redis", "commands, 100k registrations", (double)add_cmds, "cmd", "-", BU_INFO);
}

/* ----------------------------------------------------------------- part 2 */

/* n pipelined SETs of the directory's index key of a node and a value the
 * size of an instance id; then their DELs (not timed). */
static uint64_t bare_sets(redisContext *c, unsigned first, unsigned n) {
  uint64_t t0 = bu_now_ns();
  for (unsigned i = first; i < first + n; i++) {
    char key[64];
    snprintf(key, sizeof(key), PREFIX "s:edge-node-%06u.prod", i);
    redisAppendCommand(c, "SET %s %s", key, INSTANCE);
  }
  for (unsigned i = 0; i < n; i++) {
    redisReply *r;
    if (redisGetReply(c, (void **)&r) != REDIS_OK)
      die("SET", c->errstr);
    freeReplyObject(r);
  }
  uint64_t t = bu_now_ns() - t0;
  for (unsigned i = first; i < first + n; i++) {
    char key[64];
    snprintf(key, sizeof(key), PREFIX "s:edge-node-%06u.prod", i);
    redisAppendCommand(c, "DEL %s", key);
  }
  for (unsigned i = 0; i < n; i++) {
    redisReply *r;
    if (redisGetReply(c, (void **)&r) != REDIS_OK)
      die("DEL", c->errstr);
    freeReplyObject(r);
  }
  return t;
}

/* Microseconds Redis spent in cmd so far (INFO commandstats). */
static double server_usec(redisContext *c, const char *cmd) {
  redisReply *r = redisCommand(c, "INFO commandstats");
  if (!r || r->type != REDIS_REPLY_STRING)
    die("INFO", c->errstr);
  char want[64];
  snprintf(want, sizeof(want), "cmdstat_%s:", cmd);
  const char *p = strstr(r->str, want), *u = p ? strstr(p, "usec=") : NULL;
  double v = u ? atof(u + 5) : 0;
  freeReplyObject(r);
  return v;
}

/* The handle's own cost of n registrations and closes, the directory
 * detached: what the directory's numbers are measured beyond. */
static uint64_t handle_alone(unsigned first, unsigned n) {
  attached = false;
  uint64_t t0 = bu_now_ns();
  register_range(first, n);
  uint64_t t = bu_now_ns() - t0;
  close_range(first, n);
  attached = true;
  return t;
}

static void per_registration(void) {
  struct timeval tv = {10, 0};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
  if (!c || c->err)
    die("redisConnect", c ? c->errstr : "no memory");
  double dir_ns[SAMPLES], set_ns[SAMPLES], ratio[SAMPLES], local_ns[SAMPLES];
  uint64_t trips = 0;
  double eval0 = 0, set0 = 0;
  for (int s = -1; s < SAMPLES; s++) { /* sample -1 warms up */
    unsigned first = 200000u + (unsigned)(s + 1) * SMALL;
    uint64_t alone = handle_alone(first, SMALL), q = 0;
    /* alternate which side goes first, so that slow periods hit both */
    if (s & 1)
      q = bare_sets(c, first, SMALL);
    uint64_t rt = stat("redis.round_trips"), t0 = bu_now_ns();
    register_range(first, SMALL);
    uint64_t local = bu_now_ns() - t0;
    run_until_published(SMALL + CLUSTERS);
    uint64_t total = bu_now_ns() - t0;
    trips = stat("redis.round_trips") - rt;
    if (!(s & 1))
      q = bare_sets(c, first, SMALL);
    close_range(first, SMALL);
    run_until_published(0);
    if (s < 0) {
      eval0 = server_usec(c, "evalsha"), set0 = server_usec(c, "set");
      continue;
    }
    /* the directory's share: everything beyond the handle's own work */
    dir_ns[s] = (double)(total > alone ? total - alone : 0) / SMALL;
    local_ns[s] = (double)(local > alone ? local - alone : 0) / SMALL;
    set_ns[s] = (double)q / SMALL;
    ratio[s] = dir_ns[s] / set_ns[s];
  }
  /* registrations and closes both run the publish script */
  double eval_ns = (server_usec(c, "evalsha") - eval0) * 1000 / (2.0 * SAMPLES * SMALL);
  double set_srv_ns = (server_usec(c, "set") - set0) * 1000 / ((double)SAMPLES * SMALL);
  redisFree(c);
  struct bu_summary sd = bu_summarize(dir_ns, SAMPLES), ss = bu_summarize(set_ns, SAMPLES);
  struct bu_summary sl = bu_summarize(local_ns, SAMPLES), sr = bu_summarize(ratio, SAMPLES);
  printf("10,000 registrations per sample (%llu round trip(s) each), %d samples,\n"
         "the handle's own registration cost subtracted:\n"
         "  directory, until acknowledged    %6.0f ns/registration (spread %.2f)\n"
         "    of which in the event callback %6.0f ns              (spread %.2f)\n"
         "  bare pipelined SET               %6.0f ns/SET          (spread %.2f)\n"
         "  ratio                            %6.2f                 (spread %.2f)\n",
         (unsigned long long)trips, SAMPLES, sd.median, sd.spread, sl.median, sl.spread, ss.median,
         ss.spread, sr.median, sr.spread);
  printf("  inside Redis: %.0f ns per registration or close (the publish script), %.0f ns per "
         "SET\n",
         eval_ns, set_srv_ns);
  bu_result("bench_redis", "ns per registration, until acked", sd.median, "ns", "-", BU_INFO);
  bu_result("bench_redis", "ns per registration, event callback", sl.median, "ns", "-", BU_INFO);
  bu_result("bench_redis", "ns per bare pipelined SET", ss.median, "ns", "-", BU_INFO);
  bu_result("bench_redis", "registration / bare SET", sr.median, "x", "-", BU_INFO);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  if (!rs_available()) {
    fprintf(stderr, "bench_redis: SKIP: redis-server is not on PATH\n");
    return 77;
  }
  bu_header("bench_redis", "fleet directory on Redis: round trips and cost per registration");
  char err[128];
  if (rs_start(&srv, 0, err, sizeof(err)))
    die("redis-server", err);
  base = event_base_new();
  setup();
  big_batch();
  per_registration();
  revtun_redis_free(dir);
  revtun_reg_free(reg);
  revtun_free(h);
  event_base_free(base);
  rs_kill(&srv);
  return 0;
}
