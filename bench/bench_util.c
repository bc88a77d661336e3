/* See bench_util.h. */
#define _DEFAULT_SOURCE 1 /* getloadavg */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "base/text.h"

uint64_t bu_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

struct bu_summary bu_summarize(const double *v, size_t n) {
  struct bu_summary s = {0, 0, 0, 0, n};
  if (!n)
    return s;
  double *c = malloc(n * sizeof(*c));
  if (!c) {
    s.median = s.min = s.max = v[0];
    return s;
  }
  memcpy(c, v, n * sizeof(*c));
  qsort(c, n, sizeof(*c), cmp_double);
  s.min = c[0];
  s.max = c[n - 1];
  s.median = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
  s.spread = s.median > 0 ? (s.max - s.min) / s.median : 0;
  free(c);
  return s;
}

/* ---------------------------------------------------------- allocator */

#define HDR 16u /* keeps malloc's 16-byte alignment for the caller */

void *bu_malloc(size_t n, void *user) {
  struct bu_alloc *a = user;
  a->calls++;
  unsigned char *p = malloc(n + HDR);
  if (!p)
    return NULL;
  memcpy(p, &n, sizeof(n));
  a->live_bytes += n;
  a->live_blocks++;
  if (a->live_bytes > a->peak_bytes)
    a->peak_bytes = a->live_bytes;
  return p + HDR;
}

void *bu_realloc(void *ptr, size_t n, void *user) {
  struct bu_alloc *a = user;
  if (!ptr)
    return bu_malloc(n, user);
  a->calls++;
  unsigned char *old = (unsigned char *)ptr - HDR;
  size_t was;
  memcpy(&was, old, sizeof(was));
  unsigned char *p = realloc(old, n + HDR);
  if (!p)
    return NULL;
  memcpy(p, &n, sizeof(n));
  a->live_bytes = a->live_bytes - was + n;
  if (a->live_bytes > a->peak_bytes)
    a->peak_bytes = a->live_bytes;
  return p + HDR;
}

void bu_free(void *ptr, void *user) {
  struct bu_alloc *a = user;
  if (!ptr)
    return;
  unsigned char *p = (unsigned char *)ptr - HDR;
  size_t was;
  memcpy(&was, p, sizeof(was));
  a->live_bytes -= was;
  a->live_blocks--;
  free(p);
}

/* ------------------------------------------------------------- output */

static void cpu_model(char *buf, size_t cap) {
  snprintf(buf, cap, "unknown cpu");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f)
    return;
  char line[256];
  while (fgets(line, sizeof(line), f)) {
    if (strncmp(line, "model name", 10) == 0) {
      const char *c = strchr(line, ':');
      if (c) {
        c++;
        while (*c == ' ')
          c++;
        snprintf(buf, cap, "%s", c);
        buf[strcspn(buf, "\n")] = '\0';
      }
      break;
    }
  }
  fclose(f);
}

void bu_header(const char *bench, const char *what) {
  struct utsname u;
  char cpu[128];
  cpu_model(cpu, sizeof(cpu));
  if (uname(&u))
    memset(&u, 0, sizeof(u));
  time_t t = time(NULL);
  char when[64];
  strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime(&t));
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) < 0)
    load[0] = -1;
  printf("== %s: %s\n", bench, what);
  printf("   %s, %ld cpus, %s %s, libupstream-revtun %s, %s, load %.2f\n", cpu,
         sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release, revtun_version(NULL), when, load[0]);
#if defined(__SANITIZE_ADDRESS__)
  printf("   WARNING: built with AddressSanitizer; the numbers are not meaningful\n");
#endif
#if !defined(__OPTIMIZE__)
  printf("   WARNING: built without optimisation; the numbers are not meaningful\n");
#endif
}

void bu_result(const char *bench, const char *metric, double value, const char *unit,
               const char *target, int within_target) {
  const char *note = within_target == BU_INFO ? "info" : within_target ? "within" : "over";
  printf("RESULT|%s|%s|%.4g|%s|%s|%s\n", bench, metric, value, unit, target ? target : "-", note);
}

size_t bu_u64_dec(char *buf, uint64_t v) {
  size_t n = rt_u64_dec(v, buf); /* the library's, linked in */
  buf[n] = '\0';
  return n;
}

/* Host hooks that do nothing: the benchmarks drive the library directly, and
 * the host closes its own fds (the library must not close the bench's). */
int bu_host_io(revtun_t *h, int fd, int events, void *su, void *ud) {
  (void)h, (void)fd, (void)events, (void)su, (void)ud;
  return 0;
}

int bu_host_timer(revtun_t *h, int64_t ms, void *ud) {
  (void)h, (void)ms, (void)ud;
  return 0;
}

void bu_host_close(revtun_t *h, int fd, void *su, void *ud) {
  (void)h, (void)fd, (void)su, (void)ud;
}

size_t bu_raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl))
    return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl))
      getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > SIZE_MAX ? SIZE_MAX : (size_t)rl.rlim_cur;
}

const char *bu_size_name(size_t n, char *buf) {
  if (n >= 1000000 && n % 1000000 == 0)
    snprintf(buf, 24, "%zuM", n / 1000000);
  else if (n >= 1000 && n % 1000 == 0)
    snprintf(buf, 24, "%zuk", n / 1000);
  else
    snprintf(buf, 24, "%zu", n);
  return buf;
}
