/* Helpers for the Redis directory tests: a private redis-server per test
 * (redis_server.h) with assertions, a synchronous hiredis client to inspect
 * and vandalize it, and a libevent loop driven until a condition holds. */
#ifndef REVTUN_REDIS_UTIL_H
#define REVTUN_REDIS_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "redis_server.h"

/* Exits the test program with 77 (skip) when redis-server is not on PATH, or
 * with 1 (fail) when the CI environment variable is set. */
void ru_require_redis_server(const char *prog);
/* Starts redis-server on port (0: a free one) and waits until it answers
 * PING; the server dies with the test process. Fails the test otherwise. */
void ru_server_start(struct rs_server *s, int port);
void ru_server_kill(struct rs_server *s); /* SIGKILL, waited for */
void ru_server_signal(const struct rs_server *s, int sig);

/* A synchronous client (fails the test if it cannot connect). */
redisContext *ru_client(const struct rs_server *s);
/* Runs a command and returns its integer reply (or -1 for nil or another type). */
long long ru_int(redisContext *c, const char *fmt, ...);
/* Sum of calls of cmd (e.g. "evalsha") in INFO commandstats. */
long long ru_calls(redisContext *c, const char *cmd);

/* Runs the loop until pred(arg) holds or timeout_ms passes; true if it held. */
bool ru_run_until(struct event_base *base, bool (*pred)(void *), void *arg, int timeout_ms);
/* Runs the loop for ms milliseconds. */
void ru_run_for(struct event_base *base, int ms);
uint64_t ru_now_ms(void);
/* Resident set size of this process, in KiB. */
long ru_rss_kib(void);

#endif
