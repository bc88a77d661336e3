/* bench_pool: the pool's per-operation cost and memory.
 *
 * 1. One cycle = revtun_register_socket + revtun_handoff + revtun_mark_dead,
 *    run against pools that already hold 1k, 100k and 1M idle sockets (1000
 *    nodes, 10 clusters, a tenant, initiator "worker_3", decimal connection
 *    ids, interval 2000 ms). The pool size stays constant: each cycle
 *    registers one socket for a pseudo-random node and hands off that node's
 *    oldest idle socket (FIFO), which the host then closes (mark_dead).
 *    Reported: ns/cycle, the ratios 100k/1k and 1M/1k (target <= 1.5), and
 *    cycle/floor where the floor is a bare string-hash lookup of the node plus
 *    unlinking the head of its doubly linked FIFO and relinking it at the tail,
 *    on 192-byte records laid out like the pool's sockets (same N, same node
 *    sequence, so both see the same cache and TLB pressure).
 * 2. Library heap bytes per idle socket, counted through the allocator hooks.
 * 3. The same cycle on real socketpairs at 1k, and its syscalls alone.
 *
 * Pools above RLIMIT_NOFILE use fake fds (bench/fakefd.c): their fcntl,
 * getsockname, getpeername and poll (the handoff's liveness check) are
 * answered in user space, so
 * the fake-fd cycle measures library work only; (3) measures the syscalls. */
#define _GNU_SOURCE /* POLLRDHUP */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.h"

#define NODES 1000u
#define CLUSTERS 10u
#define TENANT "tenant-acme"
#define WORKER "worker_3"
#define INTERVAL_MS 2000u
#define INIT_TIME_MS INT64_C(1700000000000)
#define CONN_RING 4096u
#define ROUNDS 21
#define BATCH 20000u /* timed cycles per sample */
#define WARM 2000u   /* untimed cycles before each sample */
#define REAL_N 1000u /* real socketpairs, fewer if RLIMIT_NOFILE is low */
#define FLOOR_REC 192u

static char node_ids[NODES][32];
static char cluster_ids[CLUSTERS][32];
static char conn_ring[CONN_RING][24];

static void fail(const char *what, int rc) {
  fprintf(stderr, "bench_pool: %s: %s\n", what, revtun_status_name(rc));
  exit(1);
}

static revtun_t *new_handle(struct bu_alloc *counting) {
  revtun_options_t *o;
  int rc = revtun_options_new(&o);
  if (rc)
    fail("revtun_options_new", rc);
  if (counting)
    revtun_options_set_allocator(o, bu_malloc, bu_realloc, bu_free, counting);
  revtun_options_set_io_cb(o, bu_host_io);
  revtun_options_set_timer_cb(o, bu_host_timer);
  revtun_options_set_close_cb(o, bu_host_close);
  revtun_t *h;
  char err[256];
  if ((rc = revtun_new(&h, NULL, 0, o, 0, err, sizeof(err))))
    fail(err, rc);
  revtun_options_free(o);
  return h;
}

static void reg_one(revtun_t *h, revtun_reg_t *reg, int fd, unsigned node, const char *conn) {
  revtun_reg_set_ids(reg, node_ids[node], cluster_ids[node % CLUSTERS], TENANT);
  revtun_reg_set_initiator(reg, INIT_TIME_MS, WORKER, conn);
  int rc = revtun_register_socket(h, fd, reg, 0);
  if (rc)
    fail("revtun_register_socket", rc);
}

/* Registers fds[0..n) (or fake fds base+i when fds is NULL); socket i belongs
 * to node i % NODES and carries connection id 1000000+i. */
static void fill(revtun_t *h, revtun_reg_t *reg, const int *fds, size_t from, size_t n) {
  char conn[24];
  for (size_t i = from; i < n; i++) {
    bu_u64_dec(conn, 1000000u + i);
    reg_one(h, reg, fds ? fds[i] : BU_FAKE_FD_BASE + (int)i, (unsigned)(i % NODES), conn);
  }
}

static inline uint32_t xorshift(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

/* ---------------------------------------------------------- the cycle */

struct pool {
  revtun_t *h;
  revtun_reg_t *reg;
  int spare; /* the fd the next cycle registers */
  uint32_t rng;
  uint64_t n;
};

static void pool_open(struct pool *p, const int *fds, size_t n, struct bu_alloc *counting) {
  p->h = new_handle(counting);
  int rc = revtun_reg_new(p->h, &p->reg);
  if (rc)
    fail("revtun_reg_new", rc);
  revtun_reg_set_ping_interval(p->reg, INTERVAL_MS);
  fill(p->h, p->reg, fds, 0, n);
  p->spare = fds ? fds[n] : BU_FAKE_FD_BASE + (int)n;
  p->rng = 2463534242u;
  p->n = 0;
}

static void pool_close(struct pool *p) {
  revtun_reg_free(p->reg);
  revtun_free(p->h);
}

/* ns per register + handoff + mark_dead cycle, over `cycles` cycles. */
static double run_cycles(struct pool *p, size_t cycles) {
  revtun_t *h = p->h;
  uint64_t t0 = bu_now_ns();
  for (size_t c = 0; c < cycles; c++) {
    unsigned node = xorshift(&p->rng) % NODES;
    reg_one(h, p->reg, p->spare, node, conn_ring[p->n++ % CONN_RING]);
    int out = -1, rc = revtun_handoff(h, node_ids[node], TENANT, 0, &out, NULL);
    if (rc)
      fail("revtun_handoff", rc);
    if ((rc = revtun_mark_dead(h, out, REVTUN_CLOSE_LOCAL_CLOSE, 0)))
      fail("revtun_mark_dead", rc);
    p->spare = out;
  }
  return (double)(bu_now_ns() - t0) / (double)cycles;
}

/* ---------------------------------------------------------- the floor */

struct frec {
  struct frec *prev, *next;
  uint64_t seq;
  int fd;
  char pad[FLOOR_REC - 2 * sizeof(void *) - sizeof(uint64_t) - sizeof(int)];
};

struct fnode {
  struct fnode *chain;
  const char *key;
  size_t keylen;
  uint32_t hash;
  struct frec *head, *tail;
};

#define FBUCKETS 2048u

struct floor {
  struct fnode nodes[NODES];
  struct fnode *buckets[FBUCKETS];
  struct frec **recs;
  size_t n;
  uint32_t rng;
  uint64_t seq;
};

static uint32_t fnv1a(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 16777619u;
  }
  return h;
}

static struct floor *floor_open(size_t n) {
  struct floor *f = calloc(1, sizeof(*f));
  if (!f || !(f->recs = malloc(n * sizeof(*f->recs)))) {
    fprintf(stderr, "bench_pool: out of memory\n");
    exit(1);
  }
  for (unsigned i = 0; i < NODES; i++) {
    struct fnode *nd = &f->nodes[i];
    nd->key = node_ids[i];
    nd->keylen = strlen(nd->key);
    nd->hash = fnv1a(nd->key, nd->keylen);
    nd->chain = f->buckets[nd->hash & (FBUCKETS - 1)];
    f->buckets[nd->hash & (FBUCKETS - 1)] = nd;
  }
  for (size_t i = 0; i < n; i++) { /* one malloc per record, in pool order */
    struct frec *r = calloc(1, sizeof(*r));
    if (!r) {
      fprintf(stderr, "bench_pool: out of memory\n");
      exit(1);
    }
    struct fnode *nd = &f->nodes[i % NODES];
    r->fd = (int)i;
    r->prev = nd->tail;
    if (nd->tail)
      nd->tail->next = r;
    else
      nd->head = r;
    nd->tail = r;
    f->recs[i] = r;
  }
  f->n = n;
  f->rng = 2463534242u;
  return f;
}

static void floor_close(struct floor *f) {
  for (size_t i = 0; i < f->n; i++)
    free(f->recs[i]);
  free(f->recs);
  free(f);
}

static double run_floor(struct floor *f, size_t cycles) {
  uint64_t t0 = bu_now_ns();
  for (size_t c = 0; c < cycles; c++) {
    const char *key = node_ids[xorshift(&f->rng) % NODES];
    size_t len = strlen(key);
    uint32_t hv = fnv1a(key, len);
    struct fnode *nd = f->buckets[hv & (FBUCKETS - 1)];
    while (nd && !(nd->hash == hv && nd->keylen == len && memcmp(nd->key, key, len) == 0))
      nd = nd->chain;
    if (!nd || !nd->head)
      abort();
    struct frec *r = nd->head; /* unlink the oldest ... */
    nd->head = r->next;
    if (r->next)
      r->next->prev = NULL;
    else
      nd->tail = NULL;
    r->seq = ++f->seq; /* ... and relink it as the newest */
    r->next = NULL;
    r->prev = nd->tail;
    if (nd->tail)
      nd->tail->next = r;
    else
      nd->head = r;
    nd->tail = r;
  }
  uint64_t t1 = bu_now_ns();
  __asm__ volatile("" : : "r"(f->seq) : "memory");
  return (double)(t1 - t0) / (double)cycles;
}

/* ------------------------------------------------------------ memory */

struct mem_result {
  double total;    /* (after N - empty handle) / N: includes node/cluster structures */
  double marginal; /* per socket once every node, cluster and string exists; < 0 if n/a */
  double blocks;   /* allocations per marginal socket */
  size_t leaked;   /* bytes still live after revtun_free */
};

/* With fake fds the fd table (direct index, 8 B per fd number) is sized up
 * front to cover every fake fd, so it is not in these numbers; the real-fd
 * line measures it. */
static struct mem_result measure_memory(size_t n, const int *real_fds) {
  struct bu_alloc a = {0, 0, 0, 0};
  struct mem_result m = {0, -1, 0, 0};
  revtun_t *h = new_handle(&a);
  revtun_reg_t *reg;
  int rc = revtun_reg_new(h, &reg);
  if (rc)
    fail("revtun_reg_new", rc);
  revtun_reg_set_ping_interval(reg, INTERVAL_MS);
  if (!real_fds) { /* size the fd table for fds up to base + 2^20 - 1 */
    reg_one(h, reg, BU_FAKE_FD_BASE, 0, "1");
    if ((rc = revtun_mark_dead(h, BU_FAKE_FD_BASE, REVTUN_CLOSE_LOCAL_CLOSE, 0)))
      fail("revtun_mark_dead", rc);
  }
  size_t b0 = a.live_bytes;
  fill(h, reg, real_fds, 0, n < NODES ? n : NODES);
  size_t b1 = a.live_bytes, k1 = a.live_blocks;
  fill(h, reg, real_fds, NODES, n);
  size_t b2 = a.live_bytes, k2 = a.live_blocks;
  m.total = (double)(b2 - b0) / (double)n;
  if (n > NODES) {
    m.marginal = (double)(b2 - b1) / (double)(n - NODES);
    m.blocks = (double)(k2 - k1) / (double)(n - NODES);
  }
  revtun_reg_free(reg);
  revtun_free(h);
  m.leaked = a.live_bytes;
  return m;
}

/* ------------------------------------------------------------ main */

#define NSIZES 3
static const size_t sizes[NSIZES] = {1000, 100000, 1000000};
static const char *const size_names[NSIZES] = {"1k", "100k", "1M"};

/* The syscalls of one cycle on real fds: fcntl(F_GETFL), getsockname and
 * getpeername at registration, the liveness poll at handoff. */
static double run_syscalls(const int *fds, size_t n, size_t cycles, uint32_t *rng) {
  struct sockaddr_storage ss;
  socklen_t sl;
  uint64_t t0 = bu_now_ns();
  for (size_t i = 0; i < cycles; i++) {
    int fd = fds[xorshift(rng) % n];
    int fl = fcntl(fd, F_GETFL);
    sl = sizeof(ss);
    int a = getsockname(fd, (struct sockaddr *)&ss, &sl);
    sl = sizeof(ss);
    int b = getpeername(fd, (struct sockaddr *)&ss, &sl);
    struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
    int r = poll(&pfd, 1, 0);
    if (fl < 0 || a || b || r != 0)
      abort();
  }
  return (double)(bu_now_ns() - t0) / (double)cycles;
}

static double sample_cycles(struct pool *p) {
  run_cycles(p, WARM);
  return run_cycles(p, BATCH);
}

static double sample_floor(struct floor *f) {
  run_floor(f, WARM);
  return run_floor(f, BATCH);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (unsigned i = 0; i < NODES; i++)
    snprintf(node_ids[i], sizeof(node_ids[i]), "edge-node-%04u.prod", i);
  for (unsigned i = 0; i < CLUSTERS; i++)
    snprintf(cluster_ids[i], sizeof(cluster_ids[i]), "edge-cluster-%02u", i);
  for (unsigned i = 0; i < CONN_RING; i++)
    bu_u64_dec(conn_ring[i], 5000000u + i);

  bu_header("bench_pool", "register + handoff + mark_dead cycle vs pool size, heap per socket");
  if (bu_fake_selfcheck())
    return 1;
  printf(
      "   ids: %u nodes, %u clusters, tenant \"%s\", initiator \"%s\", decimal connection ids,\n"
      "   interval %u ms; trivial host io/timer/close callbacks. All pools and floors live at\n"
      "   once; %d rounds, each timing every size (rotating order) for %u cycles after %u\n"
      "   untimed ones, cycle and floor back to back. Reported: medians over rounds; ratios are\n"
      "   medians of per-round ratios (a round times every size within seconds),\n"
      "   spread = (max-min)/median of the samples.\n",
      NODES, CLUSTERS, TENANT, WORKER, INTERVAL_MS, ROUNDS, BATCH, WARM);
  printf("   Pools use FAKE fds (>= %d): their fcntl/getsockname/getpeername/poll are\n"
         "   answered in user space and NOT measured here; see the real-socket lines below.\n\n",
         BU_FAKE_FD_BASE);

  struct mem_result mem[NSIZES];
  struct pool pools[NSIZES];
  struct floor *floors[NSIZES];
  for (size_t i = 0; i < NSIZES; i++) {
    mem[i] = measure_memory(sizes[i], NULL);
    pool_open(&pools[i], NULL, sizes[i], NULL);
    floors[i] = floor_open(sizes[i]);
  }
  double cyc[NSIZES][ROUNDS], flo[NSIZES][ROUNDS], cf[NSIZES][ROUNDS], vs1k[NSIZES][ROUNDS],
      fvs1k[NSIZES][ROUNDS];
  for (size_t i = 0; i < NSIZES; i++) /* warm-up */
    for (int w = 0; w < 5; w++) {
      sample_cycles(&pools[i]);
      sample_floor(floors[i]);
    }
  for (int r = 0; r < ROUNDS; r++) {
    for (size_t k = 0; k < NSIZES; k++) {
      size_t i = (k + (size_t)r) % NSIZES;
      if (r % 2) {
        flo[i][r] = sample_floor(floors[i]);
        cyc[i][r] = sample_cycles(&pools[i]);
      } else {
        cyc[i][r] = sample_cycles(&pools[i]);
        flo[i][r] = sample_floor(floors[i]);
      }
    }
    for (size_t i = 0; i < NSIZES; i++) {
      cf[i][r] = cyc[i][r] / flo[i][r];
      vs1k[i][r] = cyc[i][r] / cyc[0][r];
      fvs1k[i][r] = flo[i][r] / flo[0][r];
    }
  }
  struct bu_summary sc[NSIZES], sf[NSIZES], scf[NSIZES], sv[NSIZES], sfv[NSIZES];
  printf("%6s %9s %7s %8s %7s %11s %10s %10s %10s %10s\n", "pool", "cycle ns", "spread", "floor ns",
         "spread", "cycle/floor", "cycle/1k", "floor/1k", "B/sock all", "B/sock mrg");
  for (size_t i = 0; i < NSIZES; i++) {
    sc[i] = bu_summarize(cyc[i], ROUNDS);
    sf[i] = bu_summarize(flo[i], ROUNDS);
    scf[i] = bu_summarize(cf[i], ROUNDS);
    sv[i] = bu_summarize(vs1k[i], ROUNDS);
    sfv[i] = bu_summarize(fvs1k[i], ROUNDS);
    char marg[32] = "-";
    if (mem[i].marginal >= 0)
      snprintf(marg, sizeof(marg), "%.1f", mem[i].marginal);
    printf("%6s %9.1f %6.1f%% %8.1f %6.1f%% %11.2f %10.2f %10.2f %10.1f %10s\n", size_names[i],
           sc[i].median, 100 * sc[i].spread, sf[i].median, 100 * sf[i].spread, scf[i].median,
           sv[i].median, sfv[i].median, mem[i].total, marg);
    if (mem[i].leaked)
      printf("   WARNING: %zu bytes still allocated after revtun_free\n", mem[i].leaked);
  }
  printf("   per-round cycle/1k ranges: 100k %.2f..%.2f, 1M %.2f..%.2f\n", sv[1].min, sv[1].max,
         sv[2].min, sv[2].max);
  printf("   heap per socket (requested bytes; malloc adds ~8-16 B per block): \"all\" = (bytes\n"
         "   after N - empty handle) / N, so it includes the 1000 nodes' and 10 clusters'\n"
         "   structures; \"mrg\" = per socket beyond the first 1000, once nodes, clusters and\n"
         "   interned strings exist (%.2f allocations per socket). The fd table (8 B per fd\n"
         "   number, direct index) is pre-sized for fake fds; the real-fd line includes it.\n",
         mem[2].blocks);
  for (size_t i = 1; i < NSIZES; i++) {
    floor_close(floors[i]);
    pool_close(&pools[i]);
  }
  floor_close(floors[0]);

  /* --------------------- real sockets, small pool, vs the fake 1k pool */
  size_t limit = bu_raise_nofile(), real_n = REAL_N;
  if (limit < 2 * (REAL_N + 1) + 64) {
    real_n = limit > 2 * 64 + 64 ? (limit - 64) / 2 - 1 : 64;
    printf("\n   NOTE: RLIMIT_NOFILE is %zu, so the real pool is limited to %zu sockets\n", limit,
           real_n);
  }
  int *fds = malloc((real_n + 1) * sizeof(int)), *peers = malloc((real_n + 1) * sizeof(int));
  if (!fds || !peers)
    return 1;
  for (size_t i = 0; i <= real_n; i++) {
    int sv2[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv2)) {
      perror("socketpair");
      return 1;
    }
    fcntl(sv2[0], F_SETFL, fcntl(sv2[0], F_GETFL) | O_NONBLOCK);
    fds[i] = sv2[0];
    peers[i] = sv2[1];
  }
  struct mem_result rm = measure_memory(real_n, fds);
  struct pool rp;
  pool_open(&rp, fds, real_n, NULL);
  double rc[ROUNDS], rs[ROUNDS], rf[ROUNDS], comp[ROUNDS];
  uint32_t srng = 88172645u;
  sample_cycles(&rp);
  run_syscalls(fds, real_n, BATCH, &srng);
  for (int r = 0; r < ROUNDS; r++) {
    if (r % 2) {
      rs[r] = run_syscalls(fds, real_n, BATCH, &srng);
      rf[r] = sample_cycles(&pools[0]);
      rc[r] = sample_cycles(&rp);
    } else {
      rc[r] = sample_cycles(&rp);
      rf[r] = sample_cycles(&pools[0]);
      rs[r] = run_syscalls(fds, real_n, BATCH, &srng);
    }
    comp[r] = rc[r] / (rf[r] + rs[r]);
  }
  pool_close(&rp);
  pool_close(&pools[0]);
  for (size_t i = 0; i <= real_n; i++)
    close(fds[i]), close(peers[i]);
  free(fds);
  free(peers);
  struct bu_summary real = bu_summarize(rc, ROUNDS), sys = bu_summarize(rs, ROUNDS),
                    fake = bu_summarize(rf, ROUNDS), sco = bu_summarize(comp, ROUNDS);
  printf("\n   real AF_UNIX socketpairs, pool of %zu (same rounds as the fake 1k pool):\n", real_n);
  printf("   %-56s %8.1f ns (spread %.0f%%)\n", "cycle with real syscalls", real.median,
         100 * real.spread);
  printf("   %-56s %8.1f ns (spread %.0f%%)\n",
         "its syscalls alone: fcntl+getsockname+getpeername+poll", sys.median, 100 * sys.spread);
  printf("   %-56s %8.1f ns (spread %.0f%%)\n", "fake-fd cycle, pool of 1k (library work only)",
         fake.median, 100 * fake.spread);
  printf("   real cycle / (fake cycle + syscalls) = %.2f (per-round median); syscalls are %.0f%%\n"
         "   of the real cycle\n",
         sco.median, 100 * sys.median / real.median);
  printf("   heap per socket with %zu real fds, all included (nodes, clusters, fd table): %.1f B\n",
         real_n, rm.total);

  printf("\n");
  bu_result("pool", "cycle ns @1k (fake fds)", sc[0].median, "ns", "-", BU_INFO);
  bu_result("pool", "cycle ns @1M (fake fds)", sc[2].median, "ns", "-", BU_INFO);
  bu_result("pool", "cycle 100k/1k", sv[1].median, "x", "<= 1.5", sv[1].median <= 1.5);
  bu_result("pool", "cycle 1M/1k", sv[2].median, "x", "<= 1.5", sv[2].median <= 1.5);
  bu_result("pool", "floor 100k/1k (memory hierarchy)", sfv[1].median, "x", "-", BU_INFO);
  bu_result("pool", "floor 1M/1k (memory hierarchy)", sfv[2].median, "x", "-", BU_INFO);
  for (size_t i = 0; i < NSIZES; i++) {
    char m[96];
    snprintf(m, sizeof(m), "cycle/floor @%s", size_names[i]);
    bu_result("pool", m, scf[i].median, "x", "-", BU_INFO);
  }
  bu_result("pool", "heap B/idle socket @1M (mrg)", mem[2].marginal, "B", "< 256",
            mem[2].marginal < 256);
  bu_result("pool", "heap B/idle socket @1M (all)", mem[2].total, "B", "-", BU_INFO);
  char rn[24], m2[64];
  bu_size_name(real_n, rn);
  snprintf(m2, sizeof(m2), "heap B/idle socket @%s real fds (all)", rn);
  bu_result("pool", m2, rm.total, "B", "-", BU_INFO);
  snprintf(m2, sizeof(m2), "real-fd cycle ns @%s", rn);
  bu_result("pool", m2, real.median, "ns", "-", BU_INFO);
  bu_result("pool", "real-fd cycle/(lib+syscalls)", sco.median, "x", "-", BU_INFO);
  return 0;
}
