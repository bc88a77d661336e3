/* bench_keepalive: RPING keepalive cost against its floors.
 *
 * 1. Ping tick, real sockets: N idle sockets (N = 1000 and 9000), AF_UNIX
 *    socketpairs and loopback TCP (TCP_NODELAY on both ends, as Envoy sets),
 *    all due at the same injected time: one revtun_tick() vs the floor of N
 *    bare send(fd, "RPING", 5, MSG_NOSIGNAL|MSG_DONTWAIT) on the same sockets.
 *    Target tick/floor <= 1.3. Only one fd per socket lives in this process:
 *    the peer ends are in a forked process, which sleeps on a pipe while we
 *    measure (no reader wake-ups inside timed sends) and drains between
 *    samples so buffers never fill. RLIMIT_NOFILE is 20000 here, so 9000 is
 *    the largest real pool (9000 unix pairs = 18000 fds until the fork).
 * 2. Library work per due socket with fake fds (bench/fakefd.c answers send()
 *    in user space, so only the library is measured) at pool sizes 1k, 10k,
 *    100k, 1M: (a) all N due at once, (b) 1000 due among N (the others have a
 *    one-day interval). Flat (b) means a tick touches only due sockets.
 * 3. revtun_process_io throughput: each sample the peer writes "RPING" to all
 *    N sockets; once all are readable (untimed), time (a) revtun_process_io on
 *    each, (b) one bare recv() of 5 bytes on each, (c) recv() until EAGAIN on
 *    each. Reported as (a)/(b) and (a)/(c) throughput ratios.
 *
 * Misses instead of echoes: the config sets ping_failure_threshold to 1000 and
 * the peer discards pings, so after each timed tick an untimed tick at the
 * reply deadline counts a miss and re-arms every socket's send timer. */
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
#include <unistd.h>

#include "bench_util.h"

#define NODES 1000u
#define CLUSTERS 10u
#define TENANT "tenant-acme"
#define WORKER "worker_3"
#define INTERVAL_MS 2000u    /* real sockets */
#define FAKE_INTERVAL_MS 20u /* due fake sockets: a fake run spans seconds of injected time */
/* The library's longest interval: the fake sockets that are not due, never
 * due within a run. */
#define LONG_INTERVAL_MS 300000u
/* A round: the tick that sends the pings, then the one at their reply deadline. */
#define FIRST_DUE_MS(interval) ((interval)*115 / 100 + 1) /* every first send timer is due */
#define REPLY_MS(interval) ((interval) / 2)
#define ROUND_MS(interval) (REPLY_MS(interval) + FIRST_DUE_MS(interval))
#define REAL_REPS 21
#define IO_REPS 15
#define FAKE_ROUNDS 7
#define DUE_K 1000u
#define REAL_EVENTS 9000u   /* sockets handled per real sample (several ticks at 1k) */
#define FAKE_EVENTS 100000u /* due sockets per fake sample */

/* UpstreamReverseConnectionSocketInterface{ ping_failure_threshold: {value: 1000} } */
static const uint8_t config_threshold_1000[] = {0x12, 0x03, 0x08, 0xE8, 0x07};
static const char *const STAT_SENT = "reverse_tunnel_acceptor.idle_ping_sent";
static const char *const STAT_ACK = "reverse_tunnel_acceptor.idle_ping_ack";

static char node_ids[NODES][32];
static char cluster_ids[CLUSTERS][32];

static void fail(const char *what, int rc) {
  fprintf(stderr, "bench_keepalive: %s: %s\n", what, revtun_status_name(rc));
  exit(1);
}

static void die(const char *what) {
  fprintf(stderr, "bench_keepalive: %s: %s\n", what, strerror(errno));
  exit(1);
}

static revtun_t *new_handle(void) {
  revtun_options_t *o;
  int rc = revtun_options_new(&o);
  if (rc)
    fail("revtun_options_new", rc);
  revtun_options_set_io_cb(o, bu_host_io);
  revtun_options_set_timer_cb(o, bu_host_timer);
  revtun_options_set_close_cb(o, bu_host_close);
  revtun_t *h;
  char err[256];
  if ((rc = revtun_new(&h, config_threshold_1000, sizeof(config_threshold_1000), o, 0, err,
                       sizeof(err))))
    fail(err, rc);
  revtun_options_free(o);
  return h;
}

/* Socket i: node i % 1000, its cluster, connection id 1000000+i. */
static void register_all(revtun_t *h, const int *fds, size_t n, size_t short_every,
                         uint32_t interval) {
  revtun_reg_t *reg;
  int rc = revtun_reg_new(h, &reg);
  if (rc)
    fail("revtun_reg_new", rc);
  char conn[24];
  for (size_t i = 0; i < n; i++) {
    unsigned node = (unsigned)(i % NODES);
    bu_u64_dec(conn, 1000000u + i);
    revtun_reg_set_ids(reg, node_ids[node], cluster_ids[node % CLUSTERS], TENANT);
    revtun_reg_set_initiator(reg, INT64_C(1700000000000), WORKER, conn);
    if ((rc =
             revtun_reg_set_ping_interval(reg, i % short_every == 0 ? interval : LONG_INTERVAL_MS)))
      fail("revtun_reg_set_ping_interval", rc);
    int fd = fds ? fds[i] : BU_FAKE_FD_BASE + (int)i;
    if ((rc = revtun_register_socket(h, fd, reg, 0)))
      fail("revtun_register_socket", rc);
  }
  revtun_reg_free(reg);
}

static uint64_t stat_get(const revtun_t *h, const char *name) {
  uint64_t v = 0;
  if (revtun_stats_get(h, name, &v))
    fprintf(stderr, "bench_keepalive: stat %s missing\n", name);
  return v;
}

/* Times one tick at *now (everything armed by the previous round is due),
 * then ticks untimed at the reply deadline (a miss re-arms the send timer)
 * and moves *now to the next round. Returns ns; *sent gets the pings sent. */
static double timed_tick(revtun_t *h, revtun_time_ms_t *now, uint32_t interval, uint64_t *sent) {
  uint64_t s0 = stat_get(h, STAT_SENT);
  uint64_t t0 = bu_now_ns();
  int rc = revtun_tick(h, *now);
  uint64_t t1 = bu_now_ns();
  if (rc)
    fail("revtun_tick", rc);
  *sent = stat_get(h, STAT_SENT) - s0;
  if ((rc = revtun_tick(h, *now + REPLY_MS(interval))))
    fail("revtun_tick", rc);
  *now += ROUND_MS(interval);
  return (double)(t1 - t0);
}

/* ---------------------------------------------------------- the peer */

/* A forked child holds the peer end of every socket. It sleeps on its command
 * pipe while the parent measures (so no reader wake-up lands in a timed send)
 * and between samples drains what the pings wrote ('D') or writes "RPING" to
 * every socket ('W'). Each command is answered with one uint64_t. */
struct peer {
  pid_t pid;
  int cmd, done;
};

static void peer_serve(const int *fds, size_t n, int cmd, int done) {
  static char buf[65536];
  for (;;) {
    char op;
    if (read(cmd, &op, 1) != 1 || op == 'Q')
      _exit(0);
    uint64_t count = 0;
    for (size_t i = 0; i < n; i++) {
      if (op == 'W') {
        count += send(fds[i], "RPING", 5, MSG_NOSIGNAL | MSG_DONTWAIT) == 5;
      } else {
        ssize_t r;
        while ((r = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT)) > 0)
          count += (uint64_t)r;
      }
    }
    if (write(done, &count, sizeof(count)) != sizeof(count))
      _exit(4);
  }
}

static uint64_t peer_ask(struct peer *p, char op) {
  uint64_t v = 0;
  if (write(p->cmd, &op, 1) != 1 || read(p->done, &v, sizeof(v)) != sizeof(v))
    die("peer process");
  return v;
}

static void peer_stop(struct peer *p) {
  char q = 'Q';
  if (write(p->cmd, &q, 1) != 1)
    kill(p->pid, SIGKILL);
  waitpid(p->pid, NULL, 0);
  close(p->cmd);
  close(p->done);
}

static void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Opens n sockets of the given kind; returns this side's fds, the peer ends
 * live in p's process only. */
static int *open_sockets(int tcp, size_t n, struct peer *p) {
  int *fds = malloc(n * sizeof(int)), *peers = malloc(n * sizeof(int));
  int cmd[2], done[2], ls = -1;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (!fds || !peers || pipe(cmd) || pipe(done))
    die("setup");
  if (tcp) {
    socklen_t sl = sizeof(sa);
    int one = 1;
    ls = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 4096) ||
        getsockname(ls, (struct sockaddr *)&sa, &sl))
      die("listen");
  } else {
    for (size_t i = 0; i < n; i++) {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        die("socketpair");
      fds[i] = sv[0];
      peers[i] = sv[1];
    }
  }
  p->pid = fork();
  if (p->pid < 0)
    die("fork");
  if (p->pid == 0) {
    close(cmd[1]);
    close(done[0]);
    if (tcp) {
      for (size_t i = 0; i < n; i++) {
        if ((peers[i] = accept(ls, NULL, NULL)) < 0)
          _exit(3);
        set_nodelay(peers[i]);
      }
      close(ls);
    } else {
      for (size_t i = 0; i < n; i++)
        close(fds[i]);
    }
    for (size_t i = 0; i < n; i++)
      set_nonblock(peers[i]);
    peer_serve(peers, n, cmd[0], done[1]);
  }
  close(cmd[0]);
  close(done[1]);
  p->cmd = cmd[1];
  p->done = done[0];
  if (tcp) {
    close(ls);
    for (size_t i = 0; i < n; i++) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
        die("connect");
      set_nodelay(fd);
      fds[i] = fd;
    }
  } else {
    for (size_t i = 0; i < n; i++)
      close(peers[i]);
  }
  for (size_t i = 0; i < n; i++)
    set_nonblock(fds[i]);
  peer_ask(p, 'D'); /* answered once the peer holds every connection */
  free(peers);
  return fds;
}

/* Waits (real time, untimed) until every fd is readable. */
static void wait_readable(const int *fds, size_t n, struct pollfd *pfd) {
  size_t pending = n;
  for (size_t i = 0; i < n; i++)
    pfd[i] = (struct pollfd){fds[i], POLLIN, 0};
  while (pending) {
    if (poll(pfd, pending, 10000) <= 0)
      die("poll (peer data never arrived)");
    for (size_t i = 0; i < pending;) {
      if (pfd[i].revents)
        pfd[i] = pfd[--pending];
      else
        i++;
    }
  }
}

/* -------------------------------------------------- 1 + 3: real sockets */

struct real_row {
  int tcp;
  size_t n;
  struct bu_summary tick, floor, ratio; /* ns per socket; per-rep tick/floor */
  struct bu_summary io[3];              /* events/s: process_io, recv 5, recv until EAGAIN */
  struct bu_summary io_ab, io_ac;       /* per-round throughput ratios */
  uint64_t short_reps;                  /* reps where some send hit EAGAIN */
};

static double floor_sends(const int *fds, size_t n, size_t *ok) {
  size_t good = 0;
  uint64_t t0 = bu_now_ns();
  for (size_t i = 0; i < n; i++)
    good += send(fds[i], "RPING", 5, MSG_NOSIGNAL | MSG_DONTWAIT) == 5;
  uint64_t t1 = bu_now_ns();
  *ok = good;
  return (double)(t1 - t0);
}

/* One process_io sample: m rounds of "peer writes RPING everywhere, wait until
 * all readable, then time the reads"; returns events per second. */
static double io_sample(revtun_t *h, struct peer *p, const int *fds, size_t n, struct pollfd *pfd,
                        int kind, revtun_time_ms_t now, size_t m) {
  char buf[1024];
  double ns = 0;
  for (size_t j = 0; j < m; j++) {
    if (peer_ask(p, 'W') != n)
      die("peer wrote to fewer sockets than expected");
    wait_readable(fds, n, pfd);
    size_t bad = 0;
    uint64_t a0 = stat_get(h, STAT_ACK);
    uint64_t t0 = bu_now_ns();
    if (kind == 0) {
      for (size_t i = 0; i < n; i++)
        bad += revtun_process_io(h, fds[i], REVTUN_IO_READ, now) != REVTUN_OK;
    } else if (kind == 1) {
      for (size_t i = 0; i < n; i++)
        bad += recv(fds[i], buf, 5, MSG_DONTWAIT) != 5;
    } else {
      for (size_t i = 0; i < n; i++) {
        ssize_t r, got = 0;
        while ((r = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT)) > 0)
          got += r;
        bad += got != 5;
      }
    }
    uint64_t t1 = bu_now_ns();
    if (bad || (kind == 0 && stat_get(h, STAT_ACK) - a0 != n))
      die("a process_io round did not see exactly one RPING per socket");
    ns += (double)(t1 - t0);
  }
  return (double)(n * m) * 1e9 / ns;
}

static struct real_row run_real(int tcp, size_t n) {
  struct real_row row;
  memset(&row, 0, sizeof(row));
  row.tcp = tcp;
  row.n = n;
  struct peer p;
  int *fds = open_sockets(tcp, n, &p);
  struct pollfd *pfd = malloc(n * sizeof(*pfd));
  if (!pfd)
    die("malloc");
  revtun_t *h = new_handle();
  register_all(h, fds, n, 1, INTERVAL_MS);
  revtun_time_ms_t now = FIRST_DUE_MS(INTERVAL_MS);
  size_t m = REAL_EVENTS / n ? REAL_EVENTS / n : 1;

  double tk[REAL_REPS + 1], fl[REAL_REPS + 1], ra[REAL_REPS];
  for (int r = -1; r < REAL_REPS; r++) { /* r == -1: warm-up */
    double t = 0, f = 0;
    int bad = 0;
    for (size_t j = 0; j < m; j++) {
      uint64_t sent;
      size_t ok;
      if ((r + (int)j) % 2) {
        f += floor_sends(fds, n, &ok);
        t += timed_tick(h, &now, INTERVAL_MS, &sent);
      } else {
        t += timed_tick(h, &now, INTERVAL_MS, &sent);
        f += floor_sends(fds, n, &ok);
      }
      bad |= sent != n || ok != n;
      peer_ask(&p, 'D'); /* untimed: the peer's buffers never fill */
    }
    if (r < 0)
      continue;
    tk[r] = t / (double)(n * m);
    fl[r] = f / (double)(n * m);
    ra[r] = t / f;
    row.short_reps += bad ? 1u : 0u;
  }
  row.tick = bu_summarize(tk, REAL_REPS);
  row.floor = bu_summarize(fl, REAL_REPS);
  row.ratio = bu_summarize(ra, REAL_REPS);

  double io[3][IO_REPS], ab[IO_REPS], ac[IO_REPS];
  for (int kind = 0; kind < 3; kind++) /* warm-up */
    io_sample(h, &p, fds, n, pfd, kind, now, m);
  for (int r = 0; r < IO_REPS; r++) {
    for (int k = 0; k < 3; k++) {
      int kind = (k + r) % 3; /* rotate the order */
      io[kind][r] = io_sample(h, &p, fds, n, pfd, kind, now, m);
    }
    ab[r] = io[0][r] / io[1][r];
    ac[r] = io[0][r] / io[2][r];
  }
  for (int k = 0; k < 3; k++)
    row.io[k] = bu_summarize(io[k], IO_REPS);
  row.io_ab = bu_summarize(ab, IO_REPS);
  row.io_ac = bu_summarize(ac, IO_REPS);

  revtun_free(h); /* the close callback leaves the fds to us */
  peer_stop(&p);  /* the peer closes first: TIME_WAIT stays off our ephemeral ports */
  for (size_t i = 0; i < n; i++)
    close(fds[i]);
  free(fds);
  free(pfd);
  return row;
}

/* ------------------------------------------------------ 2: fake fds */

struct fake {
  revtun_t *h;
  revtun_time_ms_t now;
  size_t n, due, m;
};

static void fake_open(struct fake *f, size_t n, size_t due) {
  f->h = new_handle();
  f->n = n;
  f->due = due;
  f->m = FAKE_EVENTS / due ? FAKE_EVENTS / due : 1;
  f->now = FIRST_DUE_MS(FAKE_INTERVAL_MS);
  register_all(f->h, NULL, n, n / due, FAKE_INTERVAL_MS);
}

/* ns per due socket over m timed ticks. */
static double fake_sample(struct fake *f) {
  double ns = 0;
  for (size_t j = 0; j < f->m; j++) {
    uint64_t sent;
    ns += timed_tick(f->h, &f->now, FAKE_INTERVAL_MS, &sent);
    if (sent != f->due) {
      fprintf(stderr, "bench_keepalive: %zu of %zu fake sockets pinged\n", (size_t)sent, f->due);
      exit(1);
    }
  }
  return ns / (double)(f->due * f->m);
}

#define NFAKE 4
static const size_t fake_sizes[NFAKE] = {1000, 10000, 100000, 1000000};
static const char *const fake_names[NFAKE] = {"1k", "10k", "100k", "1M"};

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (unsigned i = 0; i < NODES; i++)
    snprintf(node_ids[i], sizeof(node_ids[i]), "edge-node-%04u.prod", i);
  for (unsigned i = 0; i < CLUSTERS; i++)
    snprintf(cluster_ids[i], sizeof(cluster_ids[i]), "edge-cluster-%02u", i);

  bu_header("bench_keepalive", "ping tick vs bare send(), process_io vs bare recv()");
  if (bu_fake_selfcheck())
    return 1;
  printf("   Real sockets: AF_UNIX socketpairs and loopback TCP (TCP_NODELAY both ends); the peer\n"
         "   ends live in a forked process that sleeps while we measure and drains between\n"
         "   samples. Interval %u ms, all N due at one injected time. %d samples after a warm-up,\n"
         "   each = %u sockets (several ticks at 1k) with tick and floor back to back in\n"
         "   alternating order; medians; ratios are medians of per-sample ratios;\n"
         "   spread = (max-min)/median.\n\n",
         INTERVAL_MS, REAL_REPS, REAL_EVENTS);

  /* 9000 is the most that fits RLIMIT_NOFILE = 20000 as unix pairs (2 fds each
   * until the fork); smaller limits get smaller pools, named accordingly */
  size_t limit = bu_raise_nofile(), max_real = limit > 256 ? (limit - 128) / 2 : 64;
  size_t real_sizes[2] = {1000 < max_real ? 1000 : max_real, 9000 < max_real ? 9000 : max_real};
  char rname[2][24];
  bu_size_name(real_sizes[0], rname[0]);
  bu_size_name(real_sizes[1], rname[1]);
  if (real_sizes[1] < 9000)
    printf("   NOTE: RLIMIT_NOFILE is %zu, so real pools are limited to %zu sockets\n\n", limit,
           real_sizes[1]);
  struct real_row real[2][2]; /* [unix, tcp][1k, 9k] */
  printf("%-5s %7s %13s %7s %13s %7s %10s %7s\n", "kind", "sockets", "tick ns/sock", "spread",
         "send() ns", "spread", "tick/floor", "spread");
  for (int tcp = 0; tcp < 2; tcp++)
    for (size_t i = 0; i < 2; i++) {
      real[tcp][i] = run_real(tcp, real_sizes[i]);
      struct real_row *r = &real[tcp][i];
      printf("%-5s %7zu %13.1f %6.1f%% %13.1f %6.1f%% %10.3f %6.1f%%\n", tcp ? "tcp" : "unix", r->n,
             r->tick.median, 100 * r->tick.spread, r->floor.median, 100 * r->floor.spread,
             r->ratio.median, 100 * r->ratio.spread);
      if (r->short_reps)
        printf("   WARNING: %llu samples where a send hit EAGAIN\n",
               (unsigned long long)r->short_reps);
    }

  printf("\n   Library work per due socket with FAKE fds (send() answered in user space, so not\n"
         "   measured); %d rounds over all pools (rotating order), %u due sockets per sample;\n"
         "   \"vs 1k\" = median of per-round ratios:\n",
         FAKE_ROUNDS, FAKE_EVENTS);
  struct fake all[NFAKE], sub[NFAKE];
  for (size_t i = 0; i < NFAKE; i++) {
    fake_open(&all[i], fake_sizes[i], fake_sizes[i]);
    fake_open(&sub[i], fake_sizes[i], DUE_K);
  }
  double va[NFAKE][FAKE_ROUNDS], vs[NFAKE][FAKE_ROUNDS], ra[NFAKE][FAKE_ROUNDS],
      rs[NFAKE][FAKE_ROUNDS];
  for (size_t i = 0; i < NFAKE; i++) { /* warm-up */
    fake_sample(&all[i]);
    fake_sample(&sub[i]);
  }
  for (int r = 0; r < FAKE_ROUNDS; r++) {
    for (size_t k = 0; k < NFAKE; k++) {
      size_t i = (k + (size_t)r) % NFAKE;
      va[i][r] = fake_sample(&all[i]);
      vs[i][r] = fake_sample(&sub[i]);
    }
    for (size_t i = 0; i < NFAKE; i++) {
      ra[i][r] = va[i][r] / va[0][r];
      rs[i][r] = vs[i][r] / vs[0][r];
    }
  }
  struct bu_summary sa[NFAKE], ss[NFAKE], sra[NFAKE], srs[NFAKE];
  printf("%6s %15s %7s %7s %22s %7s %7s\n", "pool", "all due: ns/sock", "spread", "vs 1k",
         "1000 due: ns/due sock", "spread", "vs 1k");
  for (size_t i = 0; i < NFAKE; i++) {
    sa[i] = bu_summarize(va[i], FAKE_ROUNDS);
    ss[i] = bu_summarize(vs[i], FAKE_ROUNDS);
    sra[i] = bu_summarize(ra[i], FAKE_ROUNDS);
    srs[i] = bu_summarize(rs[i], FAKE_ROUNDS);
    printf("%6s %15.1f %6.1f%% %7.2f %22.1f %6.1f%% %7.2f\n", fake_names[i], sa[i].median,
           100 * sa[i].spread, sra[i].median, ss[i].median, 100 * ss[i].spread, srs[i].median);
    revtun_free(all[i].h);
    revtun_free(sub[i].h);
  }
  for (int tcp = 0; tcp < 2; tcp++) {
    double send9k = real[tcp][1].floor.median;
    printf("   %s: real tick - send() at %s = %.1f ns/socket (fake-fd work at 10k: %.1f ns).\n"
           "        ESTIMATE, not measured (no 100k real fds here): all-due tick/floor = (send()\n"
           "        at %s + fake-fd work at N) / send() at %s = %.3f at 100k, %.3f at 1M\n",
           tcp ? "tcp " : "unix", rname[1], real[tcp][1].tick.median - send9k, sa[1].median,
           rname[1], rname[1], (send9k + sa[2].median) / send9k, (send9k + sa[3].median) / send9k);
  }

  printf("\n   revtun_process_io (a) vs one recv() of 5 bytes (b) vs recv() until EAGAIN (c): the\n"
         "   peer writes \"RPING\" to every socket and all are readable before timing starts;\n"
         "   events per second, %d samples of %u events, ratios = medians of per-round ratios:\n",
         IO_REPS, REAL_EVENTS);
  printf("%-5s %7s %13s %13s %13s %8s %8s %17s\n", "kind", "sockets", "(a) ev/s", "(b) ev/s",
         "(c) ev/s", "(a)/(b)", "(a)/(c)", "spread a/b/c");
  for (int tcp = 0; tcp < 2; tcp++)
    for (size_t i = 0; i < 2; i++) {
      struct real_row *r = &real[tcp][i];
      printf("%-5s %7zu %13.0f %13.0f %13.0f %8.3f %8.3f %5.0f/%3.0f/%3.0f%%\n",
             tcp ? "tcp" : "unix", r->n, r->io[0].median, r->io[1].median, r->io[2].median,
             r->io_ab.median, r->io_ac.median, 100 * r->io[0].spread, 100 * r->io[1].spread,
             100 * r->io[2].spread);
    }
  printf("   process_io reads until EAGAIN: two recv() calls per event where (b) makes one and\n"
         "   (c) makes the same two.\n\n");

  for (int tcp = 0; tcp < 2; tcp++)
    for (size_t i = 0; i < 2; i++) {
      char m[96];
      snprintf(m, sizeof(m), "tick/send() @%s %s", rname[i], tcp ? "tcp" : "unix");
      bu_result("keepalive", m, real[tcp][i].ratio.median, "x", "<= 1.3",
                real[tcp][i].ratio.median <= 1.3);
    }
  bu_result("keepalive", "fake tick ns/due sock @1k", sa[0].median, "ns", "-", BU_INFO);
  for (size_t i = 2; i < NFAKE; i++) {
    char m[96];
    snprintf(m, sizeof(m), "fake all-due ns/sock %s/1k", fake_names[i]);
    bu_result("keepalive", m, sra[i].median, "x", "-", BU_INFO);
    snprintf(m, sizeof(m), "fake 1000-due ns/sock %s/1k", fake_names[i]);
    bu_result("keepalive", m, srs[i].median, "x", "-", BU_INFO);
  }
  for (int tcp = 0; tcp < 2; tcp++)
    for (size_t i = 0; i < 2; i++) {
      char m[96];
      snprintf(m, sizeof(m), "process_io/recv(5) @%s %s", rname[i], tcp ? "tcp" : "unix");
      bu_result("keepalive", m, real[tcp][i].io_ab.median, "x", "-", BU_INFO);
      snprintf(m, sizeof(m), "process_io/recv-EAGAIN @%s %s", rname[i], tcp ? "tcp" : "unix");
      bu_result("keepalive", m, real[tcp][i].io_ac.median, "x", "-", BU_INFO);
    }
  return 0;
}
