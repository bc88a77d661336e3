/* bench_handshake: reverse-tunnel handshakes completed per second on
 * loopback, through the library's acceptor, against the floor of a bare
 * accept() + write(200) + close() server (target: at least 0.7x the floor).
 *
 * A forked client keeps CONCURRENCY connections in flight: connect, send the
 * exact Envoy handshake request, read until the whole 200 answer is in, close,
 * start the next. The same client runs against both servers, alternately, for
 * several rounds; the median of the per-round ratios is reported.
 *
 *   library server: poll(2) loop, every accepted fd to revtun_acceptor_accept;
 *                   each tunnel is closed again from its tunnel_setup record
 *                   (revtun_mark_dead) so the pool does not grow;
 *   floor server:   accept, write the same 200 bytes, close; it does not even
 *                   read the request.
 */
#include <arpa/inet.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <revtun/revtun.h>

#define CONCURRENCY 16
#define PER_ROUND 6000
#define ROUNDS 5
#define MAX_FDS 4096

static const char REQUEST[] = "GET /reverse_connections/request HTTP/1.1\r\n"
                              "host: 127.0.0.1:1\r\n"
                              "x-envoy-reverse-tunnel-node-id: bench-node\r\n"
                              "x-envoy-reverse-tunnel-cluster-id: bench-cluster\r\n"
                              "x-envoy-reverse-tunnel-tenant-id: bench\r\n"
                              "x-envoy-reverse-tunnel-initiation-time: 1795800725515\r\n"
                              "x-envoy-reverse-tunnel-worker-id: worker_0\r\n"
                              "x-envoy-reverse-tunnel-connection-id: 7\r\n"
                              "content-length: 0\r\n\r\n";
static const char ANSWER[] = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static revtun_time_ms_t now_ms(void) { return (revtun_time_ms_t)(now_s() * 1000.0); }

static int listener(struct sockaddr_in *sa) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sa->sin_family = AF_INET;
  sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa->sin_port = 0;
  socklen_t sl = sizeof(*sa);
  if (bind(fd, (struct sockaddr *)sa, sizeof(*sa)) || listen(fd, 1024) ||
      getsockname(fd, (struct sockaddr *)sa, &sl)) {
    perror("listen");
    exit(1);
  }
  return fd;
}

/* ------------------------------------------------------------ the client */

struct conn {
  int fd;
  size_t sent, got;
};

static int start(const struct sockaddr_in *sa) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) && errno != EINPROGRESS) {
    perror("connect");
    exit(1);
  }
  return fd;
}

/* Completes `total` handshakes with CONCURRENCY in flight; returns seconds. */
static double run_client(const struct sockaddr_in *sa, int total) {
  struct conn c[CONCURRENCY];
  struct pollfd p[CONCURRENCY];
  int done = 0, started = 0;
  double t0 = now_s();
  for (int i = 0; i < CONCURRENCY; i++, started++)
    c[i] = (struct conn){start(sa), 0, 0};
  while (done < total) {
    for (int i = 0; i < CONCURRENCY; i++)
      p[i] =
          (struct pollfd){c[i].fd, (short)(c[i].sent < sizeof(REQUEST) - 1 ? POLLOUT : POLLIN), 0};
    if (poll(p, CONCURRENCY, 5000) <= 0) {
      fprintf(stderr, "client stalled\n");
      exit(1);
    }
    for (int i = 0; i < CONCURRENCY; i++) {
      if (!p[i].revents)
        continue;
      if (c[i].sent < sizeof(REQUEST) - 1) {
        ssize_t w =
            send(c[i].fd, REQUEST + c[i].sent, sizeof(REQUEST) - 1 - c[i].sent, MSG_NOSIGNAL);
        if (w > 0)
          c[i].sent += (size_t)w;
        continue;
      }
      char buf[256];
      ssize_t r = recv(c[i].fd, buf, sizeof(buf), 0);
      if (r > 0)
        c[i].got += (size_t)r;
      if (r > 0 && c[i].got < sizeof(ANSWER) - 1)
        continue;
      if (c[i].got >= sizeof(ANSWER) - 1)
        done++;
      close(c[i].fd);
      c[i] = (struct conn){started < total + CONCURRENCY ? start(sa) : -1, 0, 0};
      started++;
    }
  }
  double dt = now_s() - t0;
  for (int i = 0; i < CONCURRENCY; i++)
    if (c[i].fd >= 0)
      close(c[i].fd);
  return dt;
}

/* ------------------------------------------------------------ the servers */

static volatile sig_atomic_t stop;
static void on_term(int sig) {
  (void)sig;
  stop = 1;
}

static void floor_server(int lfd) {
  struct pollfd p = {lfd, POLLIN, 0};
  while (!stop) {
    if (poll(&p, 1, 100) <= 0)
      continue;
    int fd;
    while ((fd = accept(lfd, NULL, NULL)) >= 0) {
      ssize_t w = write(fd, ANSWER, sizeof(ANSWER) - 1);
      (void)w;
      close(fd);
    }
  }
}

static struct pollfd fds[MAX_FDS];
static nfds_t nfds = 1;

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
  fds[i] = (struct pollfd){fd,
                           (short)(((events & REVTUN_IO_READ) ? POLLIN : 0) |
                                   ((events & REVTUN_IO_WRITE) ? POLLOUT : 0)),
                           0};
  return 0;
}

/* A real proxy keeps the tunnel; here it is closed again at once. */
static void on_record(revtun_t *h, const revtun_event_t *ev, void *user) {
  (void)user;
  if (revtun_event_kind(ev) == REVTUN_EV_TUNNEL_SETUP)
    revtun_mark_dead(h, revtun_event_fd(ev), REVTUN_CLOSE_EXPLICIT_CLOSE, revtun_event_time_ms(ev));
}

static void library_server(int lfd) {
  revtun_options_t *o;
  revtun_t *h;
  revtun_acceptor_t *acc;
  if (revtun_options_new(&o) || revtun_options_set_io_cb(o, on_io) ||
      revtun_options_set_access_log_cb(o, on_record) ||
      revtun_new(&h, NULL, 0, o, now_ms(), NULL, 0) ||
      revtun_acceptor_new(&acc, h, NULL, 0, NULL, 0))
    exit(1);
  revtun_options_free(o);
  fds[0] = (struct pollfd){lfd, POLLIN, 0};
  static revtun_io_event_t ready[MAX_FDS]; /* too large for the stack */
  while (!stop) {
    if (poll(fds, nfds, 100) <= 0)
      continue;
    revtun_time_ms_t now = now_ms();
    size_t n = 0;
    for (nfds_t i = 1; i < nfds; i++)
      if (fds[i].revents)
        ready[n++] = (revtun_io_event_t){
            fds[i].fd, ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) ? REVTUN_IO_READ : 0) |
                           ((fds[i].revents & POLLOUT) ? REVTUN_IO_WRITE : 0)};
    if (fds[0].revents) {
      int fd;
      while ((fd = accept(lfd, NULL, NULL)) >= 0)
        if (revtun_acceptor_accept(acc, fd, NULL, now) != REVTUN_OK)
          close(fd);
    }
    revtun_process_io_batch(h, ready, n, now);
  }
  uint64_t accepted = 0;
  revtun_stats_get(h, "reverse_tunnel.handshake.accepted", &accepted);
  fprintf(stderr, "  library server: %llu handshakes accepted\n", (unsigned long long)accepted);
  revtun_free(h);
}

static pid_t serve(void (*fn)(int), struct sockaddr_in *sa) {
  int lfd = listener(sa);
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGTERM, on_term);
    fn(lfd);
    _exit(0);
  }
  close(lfd);
  return pid;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  struct sockaddr_in lib_sa, floor_sa;
  pid_t lib = serve(library_server, &lib_sa), flo = serve(floor_server, &floor_sa);
  run_client(&lib_sa, 500); /* warm-up */
  run_client(&floor_sa, 500);
  double ratios[ROUNDS], lib_rate[ROUNDS], floor_rate[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    /* alternate the order so drift in the machine hits both alike */
    double tl, tf;
    if (r % 2) {
      tf = run_client(&floor_sa, PER_ROUND);
      tl = run_client(&lib_sa, PER_ROUND);
    } else {
      tl = run_client(&lib_sa, PER_ROUND);
      tf = run_client(&floor_sa, PER_ROUND);
    }
    lib_rate[r] = PER_ROUND / tl;
    floor_rate[r] = PER_ROUND / tf;
    ratios[r] = lib_rate[r] / floor_rate[r];
    printf("  round %d: library %.0f/s, floor %.0f/s, ratio %.3f\n", r + 1, lib_rate[r],
           floor_rate[r], ratios[r]);
  }
  kill(lib, SIGTERM);
  kill(flo, SIGTERM);
  waitpid(lib, NULL, 0);
  waitpid(flo, NULL, 0);
  qsort(ratios, ROUNDS, sizeof(double), cmp);
  qsort(lib_rate, ROUNDS, sizeof(double), cmp);
  qsort(floor_rate, ROUNDS, sizeof(double), cmp);
  double median = ratios[ROUNDS / 2];
  printf("handshakes/s (median of %d rounds of %d, %d in flight): library %.0f, "
         "accept+write+close floor %.0f\n",
         ROUNDS, PER_ROUND, CONCURRENCY, lib_rate[ROUNDS / 2], floor_rate[ROUNDS / 2]);
  printf("RESULT|handshake|handshakes/s library/floor|%.3f|x|>= 0.7|%s\n", median,
         median >= 0.7 ? "within" : "under");
  return 0;
}
