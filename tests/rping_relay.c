/* rping_relay LISTEN_PORT UPSTREAM_PORT: a one-connection-at-a-time TCP
 * relay between an agent (which dials LISTEN_PORT on 127.0.0.1) and a
 * proxy's tunnel listener (127.0.0.1:UPSTREAM_PORT) that puts RPING bytes
 * where only timing puts them otherwise, at the handoff:
 *
 *   once the proxy has sent an RPING (the tunnel is parked) and then sends
 *   anything else (the handoff: its ClientHello), the relay first writes
 *   "RPING" to the proxy (a late echo, below the TLS session the proxy
 *   starts) and "RPING" to the agent (a keepalive right before the
 *   ClientHello, which the agent must echo and strip), then forwards.
 *
 * Each connection is served by a child process; the relay counts nothing
 * and parses nothing else. For tests/e2e_tls_handoff.sh. */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char RPING[5] = {'R', 'P', 'I', 'N', 'G'};

static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;

  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void serve(int agent, uint16_t up_port) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(up_port)};
  int proxy = socket(AF_INET, SOCK_STREAM, 0);
  int parked = 0, injected = 0;
  char buf[65536];

  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (proxy < 0 || connect(proxy, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    _exit(1);
  for (;;) {
    struct pollfd p[2] = {{.fd = agent, .events = POLLIN}, {.fd = proxy, .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      _exit(1);
    }
    if (p[0].revents) {
      ssize_t n = read(agent, buf, sizeof(buf));
      if (n <= 0 || write_all(proxy, buf, (size_t)n) < 0)
        _exit(0);
    }
    if (p[1].revents) {
      ssize_t n = read(proxy, buf, sizeof(buf));
      if (n <= 0)
        _exit(0);
      size_t pings = 0; /* whole RPINGs at the front of this read */
      while (!injected && (pings + 1) * 5 <= (size_t)n && !memcmp(buf + pings * 5, RPING, 5))
        pings++;
      if (pings)
        parked = 1;
      if (!injected && parked && pings * 5 < (size_t)n) {
        injected = 1;
        if (write_all(agent, buf, pings * 5) < 0 || write_all(proxy, RPING, 5) < 0 ||
            write_all(agent, RPING, 5) < 0 ||
            write_all(agent, buf + pings * 5, (size_t)n - pings * 5) < 0)
          _exit(0);
        fprintf(stderr, "rping_relay: injected RPING both ways at the handoff\n");
        continue;
      }
      if (write_all(agent, buf, (size_t)n) < 0)
        _exit(0);
    }
  }
}

int main(int argc, char **argv) {
  struct sockaddr_in sa = {.sin_family = AF_INET};
  int one = 1, l;
  long lp, up;

  if (argc != 3 || (lp = strtol(argv[1], NULL, 10)) <= 0 || lp > 65535 ||
      (up = strtol(argv[2], NULL, 10)) <= 0 || up > 65535) {
    fprintf(stderr, "usage: rping_relay LISTEN_PORT UPSTREAM_PORT\n");
    return 2;
  }
  signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
  sa.sin_port = htons((uint16_t)lp);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if ((l = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
      setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 64) < 0) {
    perror("rping_relay: listen");
    return 1;
  }
  for (;;) {
    int c = accept(l, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR)
        continue;
      perror("rping_relay: accept");
      return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
      close(l);
      serve(c, (uint16_t)up);
    }
    close(c);
  }
}
