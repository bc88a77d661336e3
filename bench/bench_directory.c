/* bench_directory: what a cross-worker handoff costs.
 *
 * Two threads, each with its own handle and poll loop, share a
 * revtun_directory_t. One parked socket (a real socketpair) for node "n"
 * bounces between them: the thread that does not hold it calls
 * revtun_handoff_request(), gets REVTUN_E_PENDING, and waits on its wake fd
 * until the arrival callback brings the socket (the holder gave it up on its
 * own thread after its wake fd fired); then it parks the socket on its own
 * handle and the roles swap. Timed: from the request to the arrival.
 *
 * Against:
 *   floor  the bare round trip the handoff cannot avoid: thread A writes B's
 *          eventfd and polls its own; B wakes from poll, reads, writes A's;
 *          A wakes and reads. Same two threads, same pinning.
 *   local  the same socket handed off and parked again on one handle
 *          (revtun_handoff + revtun_register_socket), one thread.
 *
 * Reported: median ns of each over ROUNDS samples taken in one run, and the
 * ratios cross/floor (target <= 2) and cross/local. --pin A,B puts the two
 * threads on those CPUs (default: 0 and 1 when there are two or more). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "revtun/revtun.h"

#define ROUNDS 15
#define PER_ROUND 4000u /* timed operations per sample */
#define WARM 500u

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static revtun_time_ms_t now_ms(void) { return now_ns() / 1000000u; }

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_directory: %s: %s\n", what, rc < 0 ? revtun_status_name(rc) : "failed");
  exit(1);
}

static void pin(int cpu) {
  if (cpu < 0)
    return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET((size_t)cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, size_t n) {
  qsort(v, n, sizeof(*v), cmp_u64);
  return v[n / 2];
}

/* ------------------------------------------------------------------ worker */

struct worker {
  int id, cpu;
  revtun_t *h;
  revtun_reg_t *reg;
  int wake_fd; /* the one fd the handle asks to watch before any socket */
  int arrived_fd;
  bool arrived;
  uint64_t *samples; /* per round, ns per handoff (requests this thread made) */
};

static pthread_barrier_t barrier;
static unsigned n_ops;
/* Op k may start once the socket from op k - 1 is parked again, or the
 * request would find no holder. */
static atomic_uint turn;

static int host_io(revtun_t *h, int fd, int events, void *sock_user, void *user_data) {
  (void)h, (void)sock_user;
  struct worker *w = user_data;
  if (w->wake_fd < 0 && (events & REVTUN_IO_READ))
    w->wake_fd = fd;
  return 0;
}

static int host_timer(revtun_t *h, int64_t ms, void *user_data) {
  (void)h, (void)ms, (void)user_data;
  return 0;
}

static void host_close(revtun_t *h, int fd, void *sock_user, void *user_data) {
  (void)h, (void)sock_user, (void)user_data;
  close(fd);
}

static void arrival(revtun_t *h, uint64_t ticket, int status, int fd, revtun_strip_t strip,
                    void *request_user, void *user_data) {
  (void)h, (void)ticket, (void)strip, (void)request_user;
  struct worker *w = user_data;
  if (status != REVTUN_OK)
    die("arrival", status);
  w->arrived_fd = fd;
  w->arrived = true;
}

static revtun_t *new_handle(struct worker *w, revtun_directory_t *dir) {
  revtun_options_t *o;
  int rc = revtun_options_new(&o);
  if (rc)
    die("revtun_options_new", rc);
  revtun_options_set_user_data(o, w);
  revtun_options_set_io_cb(o, host_io);
  revtun_options_set_timer_cb(o, host_timer);
  revtun_options_set_close_cb(o, host_close);
  if (dir) {
    revtun_options_set_directory(o, dir);
    revtun_options_set_arrival_cb(o, arrival);
  }
  revtun_t *h;
  char err[256];
  if ((rc = revtun_new(&h, NULL, 0, o, 0, err, sizeof(err)))) {
    fprintf(stderr, "bench_directory: %s\n", err);
    exit(1);
  }
  revtun_options_free(o);
  if ((rc = revtun_reg_new(h, &w->reg)) || (rc = revtun_reg_set_ids(w->reg, "n", "c", NULL)) ||
      (rc = revtun_reg_set_ping_interval(w->reg, 300000)))
    die("registration", rc);
  return h;
}

/* A handed-off socket is the host's but still known to the handle until
 * revtun_mark_dead() (which leaves the fd open); then it can park again. */
static void park(struct worker *w, int fd) {
  (void)revtun_mark_dead(w->h, fd, REVTUN_CLOSE_LOCAL_CLOSE, now_ms());
  int rc = revtun_register_socket(w->h, fd, w->reg, now_ms());
  if (rc)
    die("revtun_register_socket", rc);
}

/* Waits for the wake fd and lets the handle run its mailbox. */
static void pump(struct worker *w) {
  struct pollfd p = {.fd = w->wake_fd, .events = POLLIN};
  while (poll(&p, 1, -1) < 0)
    if (errno != EINTR)
      die("poll", 0);
  revtun_process_io(w->h, w->wake_fd, REVTUN_IO_READ, now_ms());
}

/* Op k is requested by thread k % 2; the socket starts on thread 1. */
static void *run(void *arg) {
  struct worker *w = arg;
  pin(w->cpu);
  pthread_barrier_wait(&barrier);
  for (unsigned k = 0; k < n_ops; k++) {
    if (k % 2 == (unsigned)w->id) {
      while (atomic_load(&turn) != k)
        sched_yield();
      uint64_t t0 = now_ns();
      int fd = -1;
      revtun_strip_t strip;
      uint64_t ticket;
      w->arrived = false;
      int rc = revtun_handoff_request(w->h, REVTUN_LOOKUP_NODE, "n", NULL, NULL, now_ms(), &fd,
                                      &strip, &ticket);
      if (rc == REVTUN_E_PENDING) {
        while (!w->arrived)
          pump(w);
        fd = w->arrived_fd;
      } else if (rc != REVTUN_OK) {
        die("revtun_handoff_request", rc);
      }
      uint64_t dt = now_ns() - t0;
      if (k >= WARM)
        w->samples[k - WARM] = dt;
      park(w, fd);
      atomic_store(&turn, k + 1);
    } else {
      /* The holder: answer the request when it comes. */
      while (revtun_idle_count(w->h, "n", NULL) > 0)
        pump(w);
    }
  }
  return NULL;
}

static uint64_t cross_round(revtun_directory_t *dir, int cpu_a, int cpu_b, int sv[2]) {
  static struct worker w[2];
  uint64_t *s = calloc(n_ops, sizeof(uint64_t));
  if (!s)
    die("calloc", 0);
  for (int i = 0; i < 2; i++) {
    w[i] = (struct worker){.id = i, .cpu = i ? cpu_b : cpu_a, .wake_fd = -1, .samples = s};
    w[i].h = new_handle(&w[i], dir);
  }
  park(&w[1], sv[0]);
  atomic_store(&turn, 0);
  pthread_t t[2];
  pthread_barrier_init(&barrier, NULL, 2);
  for (int i = 0; i < 2; i++)
    pthread_create(&t[i], NULL, run, &w[i]);
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  pthread_barrier_destroy(&barrier);
  /* The socket is parked on one of them; take it back so the next round can
   * use it (a handoff leaves the fd to us). */
  for (int i = 0; i < 2; i++) {
    int fd;
    revtun_strip_t strip;
    if (revtun_handoff(w[i].h, "n", NULL, now_ms(), &fd, &strip) == REVTUN_OK)
      sv[0] = fd;
    revtun_reg_free(w[i].reg);
    revtun_free(w[i].h);
  }
  uint64_t m = median(s, n_ops - WARM);
  free(s);
  return m;
}

/* ------------------------------------------------------------------- floor */

struct floor_side {
  int cpu, mine, theirs;
  bool starts;
  uint64_t *samples;
};

static void efd_wait(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  while (poll(&p, 1, -1) < 0)
    if (errno != EINTR)
      die("poll", 0);
  uint64_t v;
  if (read(fd, &v, sizeof(v)) != sizeof(v))
    die("eventfd read", 0);
}

static void efd_kick(int fd) {
  uint64_t one = 1;
  if (write(fd, &one, sizeof(one)) != sizeof(one))
    die("eventfd write", 0);
}

static void *floor_run(void *arg) {
  struct floor_side *f = arg;
  pin(f->cpu);
  pthread_barrier_wait(&barrier);
  for (unsigned k = 0; k < n_ops; k++) {
    if (f->starts) {
      uint64_t t0 = now_ns();
      efd_kick(f->theirs);
      efd_wait(f->mine);
      if (k >= WARM)
        f->samples[k - WARM] = now_ns() - t0;
    } else {
      efd_wait(f->mine);
      efd_kick(f->theirs);
    }
  }
  return NULL;
}

static uint64_t floor_round(int cpu_a, int cpu_b) {
  int a = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), b = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  uint64_t *s = calloc(n_ops, sizeof(uint64_t));
  if (a < 0 || b < 0 || !s)
    die("eventfd", 0);
  struct floor_side f[2] = {{cpu_a, a, b, true, s}, {cpu_b, b, a, false, s}};
  pthread_t t[2];
  pthread_barrier_init(&barrier, NULL, 2);
  for (int i = 0; i < 2; i++)
    pthread_create(&t[i], NULL, floor_run, &f[i]);
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  pthread_barrier_destroy(&barrier);
  close(a), close(b);
  uint64_t m = median(s, n_ops - WARM);
  free(s);
  return m;
}

/* ------------------------------------------------------------------- local */

static uint64_t local_round(int cpu, int sv[2]) {
  struct worker w = {.wake_fd = -1};
  pin(cpu);
  w.h = new_handle(&w, NULL);
  park(&w, sv[0]);
  uint64_t *s = calloc(n_ops, sizeof(uint64_t));
  if (!s)
    die("calloc", 0);
  for (unsigned k = 0; k < n_ops; k++) {
    uint64_t t0 = now_ns();
    int fd, rc;
    revtun_strip_t strip;
    if ((rc = revtun_handoff(w.h, "n", NULL, now_ms(), &fd, &strip)))
      die("revtun_handoff", rc);
    uint64_t dt = now_ns() - t0;
    if (k >= WARM)
      s[k - WARM] = dt;
    park(&w, fd);
  }
  int fd;
  revtun_strip_t strip;
  if (revtun_handoff(w.h, "n", NULL, now_ms(), &fd, &strip) == REVTUN_OK)
    sv[0] = fd;
  revtun_reg_free(w.reg);
  revtun_free(w.h);
  uint64_t m = median(s, n_ops - WARM);
  free(s);
  return m;
}

static void usage(void) {
  fputs("usage: bench_directory [--pin A,B] [--no-pin] [--rounds N]\n"
        "  Cross-worker handoff latency (two threads, two handles, one directory)\n"
        "  against a bare eventfd round trip between the same two threads and a\n"
        "  handoff on one handle. --pin: the two threads' CPUs (default 0,1 when\n"
        "  there are at least two CPUs).\n",
        stderr);
}

int main(int argc, char **argv) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int cpu_a = ncpu >= 2 ? 0 : -1, cpu_b = ncpu >= 2 ? 1 : -1;
  unsigned rounds = ROUNDS;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--pin") && i + 1 < argc) {
      if (sscanf(argv[++i], "%d,%d", &cpu_a, &cpu_b) != 2)
        return usage(), 2;
    } else if (!strcmp(argv[i], "--no-pin")) {
      cpu_a = cpu_b = -1;
    } else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
      rounds = (unsigned)strtoul(argv[++i], NULL, 10);
      if (rounds < 1 || rounds > 1000)
        return usage(), 2;
    } else {
      return usage(), !!strcmp(argv[i], "--help") * 2;
    }
  }
  n_ops = WARM + PER_ROUND;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
    die("socketpair", 0);
  revtun_directory_t *dir;
  int rc = revtun_directory_new(&dir);
  if (rc)
    die("revtun_directory_new", rc);

  uint64_t *fl = calloc(rounds, 8), *cr = calloc(rounds, 8), *lo = calloc(rounds, 8);
  if (!fl || !cr || !lo)
    die("calloc", 0);
  /* Interleaved, so that a noisy neighbour slows all three alike. */
  for (unsigned r = 0; r < rounds; r++) {
    fl[r] = floor_round(cpu_a, cpu_b);
    cr[r] = cross_round(dir, cpu_a, cpu_b, sv);
    lo[r] = local_round(cpu_a, sv);
  }
  uint64_t f = median(fl, rounds), c = median(cr, rounds), l = median(lo, rounds);
  printf("threads on CPUs %d,%d; %u rounds of %u operations; medians\n", cpu_a, cpu_b, rounds,
         PER_ROUND);
  printf("eventfd round trip, two threads (floor)   %8.0f ns\n", (double)f);
  printf("cross-worker handoff (directory)          %8.0f ns\n", (double)c);
  printf("same-worker handoff                       %8.0f ns\n", (double)l);
  printf("RESULT cross_worker_handoff/eventfd_round_trip %.2f (target <= 2)\n",
         (double)c / (double)f);
  printf("RESULT cross_worker_handoff/same_worker_handoff %.2f\n", (double)c / (double)l);
  free(fl), free(cr), free(lo);
  revtun_directory_free(dir);
  close(sv[0]), close(sv[1]);
  return 0;
}
