/* bench_accesslog: one lifecycle record through a built-in file logger
 * against its floor.
 *
 *   logger: rt_enter + rt_pool_emit(idle_ping_sent) + rt_leave per record --
 *           render the default format (START_TIME reads CLOCK_REALTIME, eight
 *           more operators), append to the logger's buffer, and the flushes
 *           the library does on its own (at 64 KiB at the end of a call; the
 *           rest at the flush deadline, which the sample includes);
 *   floor:  one bare write(2) of the same bytes per record to a file opened
 *           the same way (O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC, same fs).
 * Reported: the median of per-sample ratios logger/floor (the two measured
 * back to back, in alternating order), and both absolute costs. A ratio
 * below 1 means the buffered logger costs less than even one write() per
 * record; the library never makes the host's loop wait on a log.
 *
 * Build: like the other benchmarks it links the library's convenience archive,
 * so it can emit records without driving real keepalive traffic, and the
 * bench helpers (fake-fd wrappers included); see bench/local.mk.
 *
 * Run: scripts/bench accesslog, or build/bench/bench_accesslog [records-per-sample].
 * It writes into a fresh directory under $TMPDIR (default /tmp) and removes it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.h"
#include "core/fdtable.h"
#include "core/handle.h"
#include "core/reentry.h"
#include "pool/pool_int.h"

#define SAMPLES 15
#define WARMUP 2
#define DEFAULT_RECORDS 20000u

/* ------------------------------------------- a config, encoded by hand
 * UpstreamReverseConnectionSocketInterface {
 *   access_log { name: "envoy.access_loggers.file"
 *     typed_config { [FileAccessLog] { path: <path> } } } }   (default format) */

struct pb {
  uint8_t buf[1024];
  size_t len;
};

static void pb_varint(struct pb *b, uint64_t v) {
  while (v >= 0x80 && b->len < sizeof(b->buf)) {
    b->buf[b->len++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  if (b->len < sizeof(b->buf))
    b->buf[b->len++] = (uint8_t)v;
}

static void pb_bytes(struct pb *b, unsigned field, const void *p, size_t n) {
  pb_varint(b, (uint64_t)field << 3 | 2);
  pb_varint(b, n);
  if (n <= sizeof(b->buf) - b->len) {
    memcpy(b->buf + b->len, p, n);
    b->len += n;
  }
}

static size_t make_config(const char *path, uint8_t *out, size_t cap) {
  struct pb fal = {.len = 0}, any = {.len = 0}, al = {.len = 0}, top = {.len = 0};
  pb_bytes(&fal, 1, path, strlen(path));
  static const char type[] = "type.googleapis.com/envoy.extensions.access_loggers.file.v3."
                             "FileAccessLog";
  pb_bytes(&any, 1, type, sizeof(type) - 1);
  pb_bytes(&any, 2, fal.buf, fal.len);
  static const char name[] = "envoy.access_loggers.file";
  pb_bytes(&al, 1, name, sizeof(name) - 1);
  pb_bytes(&al, 4, any.buf, any.len);
  pb_bytes(&top, 6, al.buf, al.len);
  if (top.len > cap)
    return 0;
  memcpy(out, top.buf, top.len);
  return top.len;
}

/* ------------------------------------------------------------- samples */

struct rig {
  revtun_t *h;
  struct rt_sock *s;
  revtun_time_ms_t now;
  char log_path[512], floor_path[512];
  int floor_fd;
  char record[1024]; /* one real record, for the floor */
  size_t record_len;
};

/* N records through the logger, including the final flush. */
static double logger_sample(struct rig *r, unsigned n) {
  if (truncate(r->log_path, 0) != 0)
    perror("truncate");
  uint64_t t0 = bu_now_ns();
  for (unsigned i = 0; i < n; i++) {
    if (rt_enter(r->h, r->now) != REVTUN_OK)
      abort();
    rt_pool_emit(r->h, REVTUN_EV_PING_SENT, r->s, r->now);
    rt_leave(r->h);
  }
  r->now += r->h->opts.limits.log_flush_ms; /* the deadline: the rest goes out */
  revtun_tick(r->h, r->now);
  uint64_t t1 = bu_now_ns();
  return (double)(t1 - t0) / n;
}

static double floor_sample(struct rig *r, unsigned n) {
  if (ftruncate(r->floor_fd, 0) != 0)
    perror("ftruncate");
  uint64_t t0 = bu_now_ns();
  for (unsigned i = 0; i < n; i++)
    if (write(r->floor_fd, r->record, r->record_len) != (ssize_t)r->record_len)
      abort();
  uint64_t t1 = bu_now_ns();
  return (double)(t1 - t0) / n;
}

/* The last record the logger wrote, as the floor's bytes. */
static int capture_record(struct rig *r) {
  FILE *f = fopen(r->log_path, "r");
  if (!f)
    return -1;
  char line[1024];
  r->record_len = 0;
  while (fgets(line, sizeof(line), f)) {
    r->record_len = strlen(line);
    memcpy(r->record, line, r->record_len);
  }
  fclose(f);
  return r->record_len ? 0 : -1;
}

int main(int argc, char **argv) {
  unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : DEFAULT_RECORDS;
  if (!n)
    n = DEFAULT_RECORDS;
  bu_header("bench_accesslog", "one lifecycle record through a file logger vs one write() of it");

  char dir[256];
  snprintf(dir, sizeof(dir), "%s/revtun-bench-al-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  struct rig r = {.now = 1};
  snprintf(r.log_path, sizeof(r.log_path), "%s/access.log", dir);
  snprintf(r.floor_path, sizeof(r.floor_path), "%s/floor.log", dir);
  uint8_t cfg[1024];
  size_t cfg_len = make_config(r.log_path, cfg, sizeof(cfg));
  char err[256];
  if (!cfg_len || revtun_new(&r.h, cfg, cfg_len, NULL, r.now, err, sizeof(err)) != REVTUN_OK) {
    fprintf(stderr, "revtun_new: %s\n", err);
    return 1;
  }
  /* One real socket whose records are logged, never pinged: the run advances
   * the injected time by (WARMUP + SAMPLES) flush intervals, far less than the
   * longest ping interval. */
  int sv[2];
  revtun_reg_t *reg;
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || revtun_reg_new(r.h, &reg) ||
      revtun_reg_set_ids(reg, "edge-node-0042.prod", "cluster-7", "tenant-acme") ||
      revtun_reg_set_ping_interval(reg, 300000u) ||
      revtun_register_socket(r.h, sv[0], reg, r.now)) {
    fprintf(stderr, "cannot register a socket\n");
    return 1;
  }
  revtun_reg_free(reg);
  r.s = (struct rt_sock *)rt_fd_get(r.h, sv[0]);
  r.floor_fd = open(r.floor_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (!r.s || r.floor_fd < 0) {
    perror("setup");
    return 1;
  }

  logger_sample(&r, 1000); /* warm-up, and a record for the floor */
  if (capture_record(&r)) {
    fprintf(stderr, "the logger wrote nothing to %s\n", r.log_path);
    return 1;
  }
  printf("record (%zu bytes): %s", r.record_len, r.record);

  double lg[SAMPLES], fl[SAMPLES], ratio[SAMPLES];
  for (int i = 0; i < WARMUP + SAMPLES; i++) {
    double a, b;
    if (i % 2) { /* alternate the order so slow periods hit both sides */
      b = floor_sample(&r, n);
      a = logger_sample(&r, n);
    } else {
      a = logger_sample(&r, n);
      b = floor_sample(&r, n);
    }
    if (i >= WARMUP) {
      lg[i - WARMUP] = a;
      fl[i - WARMUP] = b;
      ratio[i - WARMUP] = a / b;
    }
  }
  struct bu_summary sl = bu_summarize(lg, SAMPLES), sf = bu_summarize(fl, SAMPLES),
                    sr = bu_summarize(ratio, SAMPLES);
  uint64_t dropped = 0, errors = 0;
  revtun_stats_get(r.h, "reverse_tunnel_acceptor.access_log.dropped_records", &dropped);
  revtun_stats_get(r.h, "reverse_tunnel_acceptor.access_log.write_errors", &errors);
  printf("%u records per sample, %d samples\n", n, SAMPLES);
  printf("  logger (render + buffer + flush): median %.0f ns/record (spread %.2f)\n", sl.median,
         sl.spread);
  printf("  floor  (one write() per record):  median %.0f ns/record (spread %.2f)\n", sf.median,
         sf.spread);
  printf("  logger / floor: median %.2f (min %.2f, max %.2f)\n", sr.median, sr.min, sr.max);
  printf("  dropped records %llu, write errors %llu\n", (unsigned long long)dropped,
         (unsigned long long)errors);
  bu_result("accesslog", "record ns (file logger)", sl.median, "ns", "-", BU_INFO);
  bu_result("accesslog", "record ns (bare write)", sf.median, "ns", "-", BU_INFO);
  bu_result("accesslog", "logger/write per record", sr.median, "x", "<= 1.0", sr.median <= 1.0);

  revtun_free(r.h);
  close(sv[1]);
  close(r.floor_fd);
  unlink(r.log_path);
  unlink(r.floor_path);
  rmdir(dir);
  return dropped || errors ? 1 : 0;
}
