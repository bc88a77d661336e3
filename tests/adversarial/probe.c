/*
 * probe: HTTP/1.1 clients for tests/adversarial/proxy.sh, each with
 * deadlines, reading answers with the examples' own HTTP/1 parser.
 *
 *   probe raw HOST:PORT
 *       sends stdin as it is (NUL bytes and all) and prints the status of
 *       the answer, or "closed" or "timeout" if none came.
 *   probe hammer HOST:PORT N [HEADER...]
 *       N keep-alive GET / requests with the given "name: value" headers;
 *       prints "<2xx count> <other count>".
 *   probe flood HOST:PORT N SECONDS
 *       opens N connections, sends nothing, holds them SECONDS, closes
 *       them; prints how many were connected.
 *   probe tenants HOST:PORT N SEED
 *       N requests with random mixes of node, cluster and tenant headers
 *       (ids with and without ':', tenants missing, empty, t1, t2, t3)
 *       against a proxy with tenant isolation and two agents: tenant t1
 *       node n cluster c behind a backend named t1-n, and the same for t2.
 *       A response from backend tX-n is right only for tenant header
 *       exactly tX and no ':' in any id; any other answer from a backend,
 *       or a 200 where 400 or 503 was due, is a confusion. Prints counts;
 *       exits 1 on any confusion.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define TIMEOUT_MS 10000

static struct sockaddr_storage target;
static socklen_t target_len;

static int dial(void) {
  int fd = socket(target.ss_family, SOCK_STREAM, 0), one = 1;

  if (fd < 0)
    return -1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (struct sockaddr *)&target, target_len) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* One response: its head parsed, its body (Content-Length only, which is
 * what the proxy sends for its own answers and the demo backend for its
 * small ones) in body. 0, or -1 closed/timeout/malformed (*why says). */
struct resp {
  int status;
  char backend[64]; /* x-backend */
  char body[4096];
  size_t body_len;
  int close;
};

static char inbuf[1 << 16];
static size_t inlen;

static int read_response(int fd, struct resp *r, const char **why) {
  struct h1_field fields[64];
  struct h1_head h;
  int rc;

  memset(r, 0, sizeof(*r));
  for (;;) {
    rc = h1_parse_response(inbuf, inlen, sizeof(inbuf), fields, 64, &h);
    if (rc == H1_OK) {
      size_t need = h.head_len + (h.content_length > 0 ? (size_t)h.content_length : 0);
      if (h.content_length < 0 || need > sizeof(inbuf)) {
        *why = "unsupported framing";
        return -1;
      }
      if (inlen >= need) {
        const struct h1_field *b = h1_find(&h, "x-backend");
        r->status = h.status;
        r->close = h.conn_close;
        if (b)
          snprintf(r->backend, sizeof(r->backend), "%.*s", (int)b->value.n, b->value.p);
        r->body_len = need - h.head_len < sizeof(r->body) ? need - h.head_len : sizeof(r->body);
        memcpy(r->body, inbuf + h.head_len, r->body_len);
        memmove(inbuf, inbuf + need, inlen - need);
        inlen -= need;
        return 0;
      }
    } else if (rc != H1_INCOMPLETE) {
      *why = "malformed response";
      return -1;
    }
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, TIMEOUT_MS) <= 0) {
      *why = "timeout";
      return -1;
    }
    ssize_t n = read(fd, inbuf + inlen, sizeof(inbuf) - inlen);
    if (n <= 0) {
      *why = "closed";
      return -1;
    }
    inlen += (size_t)n;
  }
}

static int run_raw(void) {
  static char req[1 << 20];
  size_t n = fread(req, 1, sizeof(req), stdin);
  const char *why = NULL;
  struct resp r;
  int fd = dial();

  if (fd < 0 || write_all(fd, req, n) < 0) {
    puts("closed");
    return 0;
  }
  if (read_response(fd, &r, &why) < 0)
    puts(why);
  else
    printf("%d\n", r.status);
  close(fd);
  return 0;
}

static int run_hammer(int n, char **headers, int nh) {
  char req[8192];
  int len = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nhost: probe\r\n"), ok = 0, other = 0;
  int fd = -1;

  for (int i = 0; i < nh; i++)
    len += snprintf(req + len, sizeof(req) - (size_t)len, "%s\r\n", headers[i]);
  len += snprintf(req + len, sizeof(req) - (size_t)len, "\r\n");
  for (int i = 0; i < n; i++) {
    struct resp r;
    const char *why = NULL;
    if (fd < 0 && (fd = dial()) < 0) {
      other++;
      continue;
    }
    inlen = 0;
    if (write_all(fd, req, (size_t)len) < 0 || read_response(fd, &r, &why) < 0) {
      other++;
      close(fd);
      fd = -1;
      continue;
    }
    if (r.status >= 200 && r.status < 300)
      ok++;
    else
      other++;
    if (r.close) {
      close(fd);
      fd = -1;
    }
  }
  if (fd >= 0)
    close(fd);
  printf("%d %d\n", ok, other);
  return 0;
}

static int run_flood(int n, int secs) {
  int *fds = calloc((size_t)n, sizeof(int)), up = 0;

  for (int i = 0; i < n; i++) {
    fds[i] = socket(target.ss_family, SOCK_STREAM, 0);
    if (fds[i] >= 0 && connect(fds[i], (struct sockaddr *)&target, target_len) == 0)
      up++;
  }
  printf("%d\n", up);
  fflush(stdout);
  sleep((unsigned)secs);
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  free(fds);
  return 0;
}

/* ---------------------------------------------------------------- tenants */

static const char *const NODES[] = {"n", "t1:n", "t2:n", ":n", "t1:", "n:", "t1::n", "nx"};
static const char *const CLUSTERS[] = {NULL, "c", "t1:c", "t2:c", ":c"};
static const char *const TENANTS[] = {NULL, "", "t1", "t2", "t3", "t1:", ":t1", "t1:n"};
#define COUNT(a) (sizeof(a) / sizeof(a[0]))

static int run_tenants(int n, unsigned seed) {
  int fd = -1, confused = 0, reached[2] = {0, 0}, statuses[6] = {0};
  srand(seed);
  for (int i = 0; i < n; i++) {
    const char *node = rand() % 4 ? NODES[(size_t)rand() % COUNT(NODES)] : NULL;
    const char *cluster = CLUSTERS[(size_t)rand() % COUNT(CLUSTERS)];
    const char *tenant = TENANTS[(size_t)rand() % COUNT(TENANTS)];
    char req[1024];
    int len = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nhost: probe\r\n");
    struct resp r;
    const char *why = NULL;
    int colon, want_tenant;

    if (node)
      len += snprintf(req + len, sizeof(req) - (size_t)len, "x-remote-node-id: %s\r\n", node);
    if (cluster)
      len += snprintf(req + len, sizeof(req) - (size_t)len, "x-remote-cluster-id: %s\r\n", cluster);
    if (tenant)
      len += snprintf(req + len, sizeof(req) - (size_t)len, "x-remote-tenant-id: %s\r\n", tenant);
    len += snprintf(req + len, sizeof(req) - (size_t)len, "\r\n");
    if (fd < 0 && (fd = dial()) < 0) {
      fprintf(stderr, "probe: cannot connect\n");
      return 1;
    }
    inlen = 0;
    if (write_all(fd, req, (size_t)len) < 0 || read_response(fd, &r, &why) < 0) {
      fprintf(stderr, "probe: request %d: %s\n", i, why ? why : "write failed");
      return 1;
    }
    if (r.close) {
      close(fd);
      fd = -1;
    }
    colon = (node && strchr(node, ':')) || (cluster && strchr(cluster, ':')) ||
            (tenant && strchr(tenant, ':'));
    want_tenant = !tenant || colon || !(node || cluster) ? 0
                  : !strcmp(tenant, "t1")                ? 1
                  : !strcmp(tenant, "t2")                ? 2
                                                         : 0;
    /* only node n (or, without a node header, cluster c) exists */
    if (node && strcmp(node, "n"))
      want_tenant = 0;
    if (!node && cluster && strcmp(cluster, "c"))
      want_tenant = 0;
    statuses[r.status == 200   ? 0
             : r.status == 400 ? 1
             : r.status == 431 ? 2
             : r.status == 503 ? 3
                               : 4]++;
    if (r.backend[0]) {
      int got = !strcmp(r.backend, "t1-n") ? 1 : !strcmp(r.backend, "t2-n") ? 2 : -1;
      if (got > 0)
        reached[got - 1]++;
      if (got != want_tenant) {
        confused++;
        fprintf(stderr, "confused: node=%s cluster=%s tenant=%s reached %s\n",
                node ? node : "(none)", cluster ? cluster : "(none)", tenant ? tenant : "(none)",
                r.backend);
      }
    } else if (want_tenant) {
      confused++;
      fprintf(stderr, "refused: node=%s cluster=%s tenant=%s got %d, want backend t%d-n\n",
              node ? node : "(none)", cluster ? cluster : "(none)", tenant ? tenant : "(none)",
              r.status, want_tenant);
    } else if ((colon || (tenant == NULL || !*tenant)) && r.status != 400) {
      confused++;
      fprintf(stderr, "not 400: node=%s cluster=%s tenant=%s got %d\n", node ? node : "(none)",
              cluster ? cluster : "(none)", tenant ? tenant : "(none)", r.status);
    }
  }
  if (fd >= 0)
    close(fd);
  printf("%d requests: %d reached t1-n, %d reached t2-n (each only with its own tenant); "
         "200=%d 400=%d 431=%d 503=%d other=%d; %d confused\n",
         n, reached[0], reached[1], statuses[0], statuses[1], statuses[2], statuses[3], statuses[4],
         confused);
  return confused ? 1 : 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  alarm(300); /* never hang a test */
  if (argc < 3 || addr_resolve(argv[2], 0, &target, &target_len) < 0) {
    fprintf(stderr, "usage: probe raw|hammer|flood|tenants HOST:PORT ...\n");
    return 2;
  }
  if (!strcmp(argv[1], "raw"))
    return run_raw();
  if (!strcmp(argv[1], "hammer") && argc >= 4)
    return run_hammer(atoi(argv[3]), argv + 4, argc - 4);
  if (!strcmp(argv[1], "flood") && argc >= 5)
    return run_flood(atoi(argv[3]), atoi(argv[4]));
  if (!strcmp(argv[1], "tenants") && argc >= 5)
    return run_tenants(atoi(argv[3]), (unsigned)atoi(argv[4]));
  fprintf(stderr, "usage: probe raw|hammer|flood|tenants HOST:PORT ...\n");
  return 2;
}
