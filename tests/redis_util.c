/* See redis_util.h. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis_util.h"

static bool on_path(const char *prog) {
  const char *path = getenv("PATH");
  char buf[4096];
  while (path && *path) {
    size_t n = strcspn(path, ":");
    snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, prog);
    if (access(buf, X_OK) == 0)
      return true;
    path += n + (path[n] == ':');
  }
  return false;
}

void ru_require_redis_server(const char *prog) {
  if (on_path("redis-server"))
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

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_ge(fd, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  int port = ntohs(a.sin_port);
  ck_assert_int_ne(port, 6379);
  return port;
}

static bool answers_ping(int port) {
  struct timeval tv = {0, 200000};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
  bool ok = false;
  if (c && !c->err) {
    redisReply *r = redisCommand(c, "PING");
    ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r)
      freeReplyObject(r);
  }
  if (c)
    redisFree(c);
  return ok;
}

void ru_server_start(struct ru_server *s, int port) {
  s->port = port ? port : free_port();
  char portbuf[16];
  snprintf(portbuf, sizeof(portbuf), "%d", s->port);
  pid_t parent = getpid();
  s->pid = fork();
  ck_assert_int_ge(s->pid, 0);
  if (s->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
    if (getppid() != parent)
      _exit(1);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0), dup2(null, 1), dup2(null, 2);
    for (int fd = 3; fd < 1024; fd++)
      close(fd);
    execlp("redis-server", "redis-server", "--port", portbuf, "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--daemonize", "no", "--dir", "/tmp", "--logfile", "",
           "--loglevel", "warning", (char *)NULL);
    _exit(127);
  }
  uint64_t until = ru_now_ms() + 10000;
  while (!answers_ping(s->port)) {
    int st;
    ck_assert_msg(waitpid(s->pid, &st, WNOHANG) == 0, "redis-server on port %d exited", s->port);
    ck_assert_msg(ru_now_ms() < until, "redis-server on port %d does not answer", s->port);
    usleep(10000);
  }
}

void ru_server_kill(struct ru_server *s) {
  if (s->pid <= 0)
    return;
  kill(s->pid, SIGKILL);
  while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
    ;
  s->pid = 0;
}

void ru_server_signal(const struct ru_server *s, int sig) { kill(s->pid, sig); }

redisContext *ru_client(const struct ru_server *s) {
  struct timeval tv = {5, 0};
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
