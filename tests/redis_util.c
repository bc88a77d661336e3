/* See redis_util.h. */
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "redis_util.h"

void ru_require_redis_server(const char *prog) {
  if (rs_available())
    return;
  if (getenv("CI")) {
    fprintf(stderr, "%s: redis-server is not on PATH and CI is set: failing\n", prog);
    exit(1);
  }
  fprintf(stderr, "%s: SKIP: redis-server is not on PATH (Debian: redis-server)\n", prog);
  exit(77);
}

uint64_t ru_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ru_server_start(struct rs_server *s, int port) {
  char err[128];
  ck_assert_msg(rs_start(s, port, err, sizeof(err)) == 0, "%s", err);
}

void ru_server_kill(struct rs_server *s) { rs_kill(s); }

void ru_server_signal(const struct rs_server *s, int sig) { kill(s->pid, sig); }

redisContext *ru_client(const struct rs_server *s) {
  struct timeval tv = {30, 0}; /* Redis building 100 MB values on a loaded machine */
  redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
  ck_assert_msg(c && !c->err, "cannot connect to redis-server on port %d", s->port);
  redisSetTimeout(c, tv);
  return c;
}

long long ru_int(redisContext *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(c, fmt, ap);
  va_end(ap);
  ck_assert_msg(r != NULL, "redis command failed: %s", c->errstr);
  ck_assert_msg(r->type != REDIS_REPLY_ERROR, "redis error: %s", r->str);
  long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  freeReplyObject(r);
  return v;
}

long long ru_calls(redisContext *c, const char *cmd) {
  redisReply *r = redisCommand(c, "INFO commandstats");
  ck_assert_ptr_nonnull(r);
  ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
  char want[64];
  snprintf(want, sizeof(want), "cmdstat_%s:calls=", cmd);
  const char *p = strstr(r->str, want);
  long long v = p ? atoll(p + strlen(want)) : 0;
  freeReplyObject(r);
  return v;
}

static void tick(evutil_socket_t fd, short what, void *arg) { (void)fd, (void)what, (void)arg; }

bool ru_run_until(struct event_base *base, bool (*pred)(void *), void *arg, int timeout_ms) {
  /* a 2 ms ticker so the loop returns even when nothing else happens */
  struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
  struct timeval tv = {0, 2000};
  event_add(t, &tv);
  uint64_t until = ru_now_ms() + (uint64_t)timeout_ms;
  bool ok;
  while (!(ok = pred && pred(arg)) && ru_now_ms() < until)
    event_base_loop(base, EVLOOP_ONCE);
  event_free(t);
  return ok;
}

void ru_run_for(struct event_base *base, int ms) { ru_run_until(base, NULL, NULL, ms); }

long ru_rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, rss = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
      rss = 0;
    fclose(f);
  }
  return rss * (sysconf(_SC_PAGESIZE) / 1024);
}
