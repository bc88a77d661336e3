/* See redis_server.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_server.h"

bool rs_available(void) {
  const char *path = getenv("PATH");
  char buf[4096];
  while (path && *path) {
    size_t n = strcspn(path, ":");
    snprintf(buf, sizeof(buf), "%.*s/redis-server", (int)n, path);
    if (access(buf, X_OK) == 0)
      return true;
    path += n + (path[n] == ':');
  }
  return false;
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port == 6379 ? -1 : port;
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

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rs_start(struct rs_server *s, int port, char *err, size_t errlen) {
  s->port = port ? port : free_port();
  if (s->port <= 0) {
    snprintf(err, errlen, "no free loopback port");
    return -1;
  }
  char portbuf[16];
  snprintf(portbuf, sizeof(portbuf), "%d", s->port);
  pid_t parent = getpid();
  s->pid = fork();
  if (s->pid < 0) {
    snprintf(err, errlen, "fork: %s", strerror(errno));
    return -1;
  }
  if (s->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the caller */
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
  long long until = now_ms() + 10000;
  while (!answers_ping(s->port)) {
    int st;
    if (waitpid(s->pid, &st, WNOHANG) != 0) {
      snprintf(err, errlen, "redis-server on port %d exited", s->port);
      s->pid = 0;
      return -1;
    }
    if (now_ms() > until) {
      snprintf(err, errlen, "redis-server on port %d does not answer", s->port);
      rs_kill(s);
      return -1;
    }
    usleep(10000);
  }
  return 0;
}

void rs_kill(struct rs_server *s) {
  if (s->pid <= 0)
    return;
  kill(s->pid, SIGKILL);
  while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
    ;
  s->pid = 0;
}
