/* minimal-poll: the smallest complete embedding of libupstream-revtun, with
 * poll(2) and no event library.
 *
 * It listens for reverse-tunnel initiators, lets the library's acceptor
 * answer their handshakes, keeps the parked sockets alive with RPING, and
 * prints every lifecycle record. Every 5 seconds it hands off one idle
 * socket of the node named with --handoff (if any), writes a line on it and
 * gives it back with revtun_mark_dead(), to show the ownership round trip.
 *
 *   minimal-poll [--listen 127.0.0.1:15000] [--handoff NODE] [--seconds N]
 *
 * Build against an installed library:
 *   cc minimal-poll.c $(pkg-config --cflags --libs upstream-revtun) -o minimal-poll
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <revtun/revtun.h>

#include "common.h"

#define MAX_FDS 1024

static struct pollfd fds[MAX_FDS]; /* fds[0] is the listener */
static nfds_t nfds = 1;
static volatile sig_atomic_t stop;

static revtun_time_ms_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (revtun_time_ms_t)ts.tv_sec * 1000 + (revtun_time_ms_t)ts.tv_nsec / 1000000;
}

/* The library tells us which fds to watch; we keep a flat pollfd array. */
static int on_io(revtun_t *h, int fd, int events, void *sock_user, void *user) {
  (void)h, (void)sock_user, (void)user;
  nfds_t i = 1;
  while (i < nfds && fds[i].fd != fd)
    i++;
  if (events & REVTUN_IO_REMOVE) {
    if (i < nfds)
      fds[i] = fds[--nfds];
    return 0;
  }
  if (i == nfds) {
    if (nfds == MAX_FDS)
      return -1;
    nfds++;
  }
  fds[i].fd = fd;
  fds[i].events = (short)(((events & REVTUN_IO_READ) ? POLLIN : 0) |
                          ((events & REVTUN_IO_WRITE) ? POLLOUT : 0));
  return 0;
}

static void on_record(revtun_t *h, const revtun_event_t *ev, void *user) {
  (void)h, (void)user;
  printf("%s node=%s cluster=%s tenant=%s fd=%d", revtun_event_kind_name(revtun_event_kind(ev)),
         revtun_event_node_id(ev, NULL), revtun_event_cluster_id(ev, NULL),
         revtun_event_tenant_id(ev, NULL), revtun_event_fd(ev));
  if (revtun_event_close_reason(ev))
    printf(" reason=%s", revtun_close_reason_name(revtun_event_close_reason(ev)));
  printf("\n");
  fflush(stdout);
}

static int listen_on(const char *spec) {
  struct sockaddr_storage ss;
  socklen_t len;
  int fd, one = 1;

  if (addr_resolve(spec, 1, &ss, &len) < 0)
    return -1;
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 128)) {
    close(fd);
    return -1;
  }
  return fd;
}

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

int main(int argc, char **argv) {
  const char *addr = "127.0.0.1:15000", *handoff_node = NULL;
  long seconds = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--listen") && i + 1 < argc)
      addr = argv[++i];
    else if (!strcmp(argv[i], "--handoff") && i + 1 < argc)
      handoff_node = argv[++i];
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
      uint64_t v;
      if (parse_u64(argv[++i], 86400 * 365, &v) < 0) {
        fprintf(stderr, "%s: --seconds takes a number of seconds\n", argv[0]);
        return 2;
      }
      seconds = (long)v;
    } else {
      fprintf(stderr, "usage: %s [--listen ADDR:PORT] [--handoff NODE] [--seconds N]\n", argv[0]);
      return strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  int lfd = listen_on(addr);
  if (lfd < 0) {
    perror(addr);
    return 1;
  }
  fds[0] = (struct pollfd){lfd, POLLIN, 0};

  revtun_options_t *opts;
  revtun_t *h;
  revtun_acceptor_t *acc;
  char err[256];
  if (revtun_options_new(&opts) || revtun_options_set_io_cb(opts, on_io) ||
      revtun_options_set_access_log_cb(opts, on_record))
    return 1;
  /* An empty config is Envoy's defaults; a real host passes the serialized
   * UpstreamReverseConnectionSocketInterface and ReverseTunnel messages. */
  if (revtun_new(&h, NULL, 0, opts, now_ms(), err, sizeof(err)) ||
      revtun_acceptor_new(&acc, h, NULL, 0, err, sizeof(err))) {
    fprintf(stderr, "revtun: %s\n", err);
    return 1;
  }
  revtun_options_free(opts);
  printf("listening for reverse tunnels on %s\n", addr);
  fflush(stdout);

  revtun_time_ms_t start = now_ms(), next_handoff = start + 5000;
  while (!stop && (!seconds || now_ms() - start < (revtun_time_ms_t)seconds * 1000)) {
    int64_t wait = revtun_next_timeout_ms(h, now_ms());
    if (wait < 0 || wait > 1000)
      wait = 1000;
    int n = poll(fds, nfds, (int)wait);
    if (n < 0 && errno != EINTR)
      break;
    revtun_time_ms_t now = now_ms();
    if (fds[0].revents & POLLIN) {
      int c = accept(lfd, NULL, NULL);
      if (c >= 0 && revtun_acceptor_accept(acc, c, NULL, now) != REVTUN_OK)
        close(c);
    }
    /* Snapshot the ready fds: callbacks reshape fds[] while we process. */
    revtun_io_event_t ready[MAX_FDS];
    size_t nready = 0;
    for (nfds_t i = 1; i < nfds; i++)
      if (fds[i].revents)
        ready[nready++] = (revtun_io_event_t){
            fds[i].fd, ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) ? REVTUN_IO_READ : 0) |
                           ((fds[i].revents & POLLOUT) ? REVTUN_IO_WRITE : 0)};
    revtun_process_io_batch(h, ready, nready, now);
    revtun_tick(h, now);
    if (handoff_node && now >= next_handoff) {
      next_handoff = now + 5000;
      int fd;
      if (revtun_handoff(h, handoff_node, NULL, now, &fd, NULL) == REVTUN_OK) {
        /* The socket is ours now; a real proxy would speak HTTP/2 on it. */
        static const char hello[] = "hello from minimal-poll\n";
        ssize_t w = write(fd, hello, sizeof(hello) - 1);
        (void)w;
        revtun_mark_dead(h, fd, REVTUN_CLOSE_LOCAL_CLOSE, now);
        close(fd);
      }
    }
  }
  revtun_free(h); /* closes every idle tunnel, each with its tunnel_closed record */
  close(lfd);
  return 0;
}
