/*
 * idle_floor: the floor for bench/idle.sh, the cost of keeping N idle TCP
 * connections alive with 5-byte pings and nothing else.
 *
 *   idle_floor echo --listen ADDR:PORT
 *   idle_floor ping --connect ADDR:PORT --count N [--interval-ms MS]
 *
 * "echo" accepts connections and sends every byte back (the agent's part).
 * "ping" opens N connections to the echo side, then, on a libevent loop as
 * the proxy's, sends 5 bytes on every connection once per interval (spread
 * over the interval in 10 ms slices, as a pool's staggered deadlines are)
 * and reads the echo with one recv(2) when the socket is readable: one
 * send, one readiness event and one recv per connection and interval,
 * which is the least any implementation of RPING keepalive can do.
 * bench/idle.sh reads this process's CPU time from /proc.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "common.h"

#define SLICE_MS 10

static struct event_base *base;

/* ------------------------------------------------------------------ echo */

static void echo_read(evutil_socket_t fd, short what, void *arg) {
  char buf[4096];
  ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

  (void)what;
  if (n > 0) {
    if (send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
      /* an idle connection's send buffer is empty: this is an error */
      event_free(arg);
      close(fd);
    }
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  event_free(arg);
  close(fd);
}

static void echo_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                        int salen, void *arg) {
  struct event *ev;
  int one = 1;

  (void)l, (void)sa, (void)salen, (void)arg;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  evutil_make_socket_nonblocking(fd);
  ev = event_new(base, fd, EV_READ | EV_PERSIST, echo_read, event_self_cbarg());
  if (!ev || event_add(ev, NULL) != 0) {
    if (ev)
      event_free(ev);
    close(fd);
  }
}

/* ------------------------------------------------------------------ ping */

static int *fds;
static unsigned count, next_slot, per_slice;

static void ping_read(evutil_socket_t fd, short what, void *arg) {
  char buf[64];
  ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

  (void)what, (void)arg;
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    fprintf(stderr, "idle_floor: connection lost\n");
    exit(1);
  }
}

static void ping_tick(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
  for (unsigned i = 0; i < per_slice; i++) {
    if (send(fds[next_slot], "RPING", 5, MSG_NOSIGNAL | MSG_DONTWAIT) != 5) {
      fprintf(stderr, "idle_floor: send: %s\n", strerror(errno));
      exit(1);
    }
    next_slot = (next_slot + 1) % count;
  }
}

static int ping_main(const char *to, unsigned n, unsigned interval_ms) {
  struct sockaddr_storage ss;
  socklen_t len;
  struct timeval slice = {0, SLICE_MS * 1000};
  struct event *tick;
  int one = 1;

  if (addr_resolve(to, 0, &ss, &len) < 0 || !(fds = calloc(n, sizeof(*fds))))
    return 2;
  count = n;
  for (unsigned i = 0; i < n; i++) {
    if ((fds[i] = socket(ss.ss_family, SOCK_STREAM, 0)) < 0 ||
        connect(fds[i], (struct sockaddr *)&ss, len) < 0) {
      fprintf(stderr, "idle_floor: connection %u: %s\n", i, strerror(errno));
      return 1;
    }
    setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    evutil_make_socket_nonblocking(fds[i]);
    struct event *ev = event_new(base, fds[i], EV_READ | EV_PERSIST, ping_read, NULL);
    if (!ev || event_add(ev, NULL) != 0)
      return 1;
  }
  /* every connection once per interval, spread over the interval's slices */
  per_slice = (unsigned)(((unsigned long)n * SLICE_MS + interval_ms - 1) / interval_ms);
  if (per_slice == 0)
    per_slice = 1;
  tick = event_new(base, -1, EV_PERSIST, ping_tick, NULL);
  event_add(tick, &slice);
  printf("ready %u\n", n);
  fflush(stdout);
  event_base_dispatch(base);
  return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)sig, (void)what;
  event_base_loopbreak(arg);
}

int main(int argc, char **argv) {
  const char *listen_at = NULL, *to = NULL;
  unsigned n = 0, interval_ms = 1000;

  if (argc < 2)
    goto usage;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--listen"))
      listen_at = argv[i + 1];
    else if (!strcmp(argv[i], "--connect"))
      to = argv[i + 1];
    else if (!strcmp(argv[i], "--count"))
      n = (unsigned)strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--interval-ms"))
      interval_ms = (unsigned)strtoul(argv[i + 1], NULL, 10);
  }
  signal(SIGPIPE, SIG_IGN);
  base = event_base_new();
  struct event *st = evsignal_new(base, SIGTERM, on_signal, base);
  event_add(st, NULL);
  if (!strcmp(argv[1], "echo") && listen_at) {
    struct sockaddr_storage ss;
    socklen_t len;
    if (addr_resolve(listen_at, 1, &ss, &len) < 0)
      goto usage;
    struct evconnlistener *l =
        evconnlistener_new_bind(base, echo_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                4096, (struct sockaddr *)&ss, (int)len);
    if (!l) {
      fprintf(stderr, "idle_floor: cannot listen on %s: %s\n", listen_at, strerror(errno));
      return 1;
    }
    event_base_dispatch(base);
    return 0;
  }
  if (!strcmp(argv[1], "ping") && to && n > 0 && interval_ms > 0)
    return ping_main(to, n, interval_ms);
usage:
  fprintf(stderr, "usage: idle_floor echo --listen ADDR:PORT\n"
                  "       idle_floor ping --connect ADDR:PORT --count N [--interval-ms MS]\n");
  return 2;
}
