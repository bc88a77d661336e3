/* libFuzzer harness: host selection (revtun_hostsel_*, revtun_handoff_select)
 * with hostile formats and hostile headers against a populated pool, on one
 * handle with tenant isolation and one without. Invariants:
 *   - a format either compiles or is refused with a sentence;
 *   - only documented statuses come back, and fd_out is -1 on failure;
 *   - render and select agree: a handed-off socket is the node, or a member
 *     of the cluster, the rendered key names, and under isolation belongs to
 *     the rendered tenant; a key that renders empty or "-" finds nothing;
 *   - no socket is lost.
 *
 * Input: the host-id format (a length byte, then its bytes), the tenant-id
 * format (a length byte, 255 = none, then its bytes), then headers, each a
 * name (a length byte, then its bytes) and a value (a length byte, then its
 * bytes; 255 means 1100 bytes of the next byte). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <revtun/revtun.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_NODES 4
#define MAX_HEADERS (REVTUN_HEADER_MAX_COUNT + 4)
#define LONG_VALUE 1100

static const char *const nodes[N_NODES] = {"n0", "n1", "c1", "-"};
static const char *const clusters[N_NODES] = {"c0", "c0", "c2", "c1"};
static const char *const tenant = "t0";

struct pool {
  revtun_t *h;
  int isolation;
  int peer[N_NODES];
  revtun_time_ms_t now;
};

static struct pool pools[2];

static void check(int cond, const char *what) {
  if (!cond) {
    fprintf(stderr, "invariant broken: %s\n", what);
    abort();
  }
}

static void park(struct pool *p, int n) {
  int sv[2];
  check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
  revtun_reg_t *reg;
  check(revtun_reg_new(p->h, &reg) == REVTUN_OK, "reg_new");
  revtun_reg_set_ids(reg, nodes[n], clusters[n], tenant);
  check(revtun_register_socket(p->h, sv[0], reg, p->now) == REVTUN_OK, "register");
  revtun_reg_free(reg);
  p->peer[n] = sv[1];
}

static void setup(void) {
  static const uint8_t isolation_config[] = {0x2a, 0x02, 0x08, 0x01}; /* field 5 {value: true} */
  for (int i = 0; i < 2; i++) {
    struct pool *p = &pools[i];
    p->isolation = i;
    check(revtun_new(&p->h, i ? isolation_config : NULL, i ? sizeof(isolation_config) : 0, NULL, 0,
                     NULL, 0) == REVTUN_OK,
          "revtun_new");
    for (int n = 0; n < N_NODES; n++)
      park(p, n);
  }
}

static size_t take(const uint8_t **d, size_t *n, size_t want) {
  size_t k = want < *n ? want : *n;
  *d += k;
  *n -= k;
  return k;
}

/* A NUL-terminated copy of a length-prefixed string (an embedded NUL ends it). */
static char *format_operand(const uint8_t **d, size_t *n, int allow_none) {
  if (!*n)
    return NULL;
  uint8_t len = **d;
  take(d, n, 1);
  if (allow_none && len == 255)
    return NULL;
  const uint8_t *start = *d;
  size_t k = take(d, n, len);
  char *s = malloc(k + 1);
  check(s != NULL, "malloc");
  memcpy(s, start, k);
  s[k] = '\0';
  return s;
}

static int idle_total(struct pool *p) {
  int sum = 0;
  for (int n = 0; n < N_NODES; n++) {
    int c = revtun_idle_count(p->h, nodes[n], tenant);
    check(c >= 0, "idle_count");
    sum += c;
  }
  return sum;
}

static void select_on(struct pool *p, const revtun_hostsel_t *sel, const revtun_header_t *hd,
                      size_t n, int headers_ok) {
  char key[REVTUN_HOSTSEL_KEY_MAX + 1], tn[REVTUN_HOSTSEL_KEY_MAX + 1];
  size_t kl = 0, tl = 0;
  int rrc = revtun_hostsel_render(sel, hd, n, key, sizeof(key), &kl, tn, sizeof(tn), &tl);
  check(rrc == REVTUN_OK || rrc == REVTUN_E_NOSPACE || rrc == REVTUN_E_INVAL, "render status");
  check((rrc == REVTUN_E_INVAL) == !headers_ok, "render refuses exactly the bad headers");
  if (rrc == REVTUN_OK)
    check(kl == strlen(key) && tl == strlen(tn), "rendered lengths");
  int fd = 7, lookup = 9;
  p->now++;
  int rc = revtun_handoff_select(p->h, sel, hd, n, p->now, &fd, NULL, &lookup);
  check(rc == REVTUN_OK || rc == REVTUN_E_NOT_FOUND || rc == REVTUN_E_INVAL ||
            rc == REVTUN_E_CONFIG,
        "select status");
  check((rc == REVTUN_E_INVAL) == !headers_ok, "select refuses exactly the bad headers");
  if (rc != REVTUN_OK) {
    check(fd == -1, "fd_out on failure");
    return;
  }
  check(rrc == REVTUN_OK, "a handoff for a key that did not render");
  check(kl > 0 && strcmp(key, "-") != 0, "a handoff for an empty key");
  const char *node, *cluster, *t;
  check(revtun_socket_identity(p->h, fd, &node, &cluster, &t) == REVTUN_OK, "identity");
  check(strcmp(lookup == REVTUN_LOOKUP_CLUSTER ? cluster : node, key) == 0,
        "handed off what the key names");
  if (p->isolation)
    check(strcmp(t, tn) == 0, "handed off another tenant's socket");
  int k = 0;
  while (k < N_NODES && strcmp(nodes[k], node))
    k++;
  check(k < N_NODES, "a socket the harness registered");
  check(revtun_mark_dead(p->h, fd, REVTUN_CLOSE_LOCAL_CLOSE, p->now) == REVTUN_OK, "mark_dead");
  close(fd);
  close(p->peer[k]);
  park(p, k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    setup();
    ready = 1;
  }
  char *host_fmt = format_operand(&data, &size, 0);
  char *tenant_fmt = format_operand(&data, &size, 1);
  static revtun_header_t hd[MAX_HEADERS];
  static char names[MAX_HEADERS][256], values[MAX_HEADERS][LONG_VALUE];
  size_t n = 0;
  int headers_ok = 1;
  size_t total = 0;
  while (size && n < MAX_HEADERS) {
    uint8_t nl = *data;
    take(&data, &size, 1);
    const uint8_t *ns = data;
    nl = (uint8_t)take(&data, &size, nl);
    memcpy(names[n], ns, nl);
    size_t vl = 0;
    if (size) {
      uint8_t v = *data;
      take(&data, &size, 1);
      if (v == 255) {
        memset(values[n], size ? *data : 'v', LONG_VALUE);
        vl = LONG_VALUE;
      } else {
        const uint8_t *vs = data;
        vl = take(&data, &size, v);
        memcpy(values[n], vs, vl);
      }
    }
    hd[n] = (revtun_header_t){names[n], nl, values[n], vl};
    /* the rules the library must apply, restated */
    if (nl == 0)
      headers_ok = 0;
    for (size_t i = 0; i < nl; i++) {
      unsigned char c = (unsigned char)names[n][i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c && strchr("!#$%&'*+-.^_`|~", c))))
        headers_ok = 0;
    }
    for (size_t i = 0; i < vl; i++)
      if (values[n][i] == '\0' || values[n][i] == '\r' || values[n][i] == '\n')
        headers_ok = 0;
    total += nl + vl;
    n++;
  }
  if (n > REVTUN_HEADER_MAX_COUNT || total > REVTUN_HEADER_MAX_BYTES)
    headers_ok = 0;

  revtun_hostsel_t *sel = NULL;
  char err[256] = "x";
  int rc =
      host_fmt ? revtun_hostsel_new(host_fmt, tenant_fmt, &sel, err, sizeof(err)) : REVTUN_E_INVAL;
  check(rc == REVTUN_OK || rc == REVTUN_E_CONFIG || rc == REVTUN_E_INVAL, "compile status");
  check((rc == REVTUN_OK) == (sel != NULL), "selector iff compiled");
  if (host_fmt)
    check(rc == REVTUN_OK ? err[0] == '\0' : err[0] != '\0', "a sentence for every refusal");
  if (sel) {
    for (int i = 0; i < 2; i++) {
      int before = idle_total(&pools[i]);
      select_on(&pools[i], sel, hd, n, headers_ok);
      check(idle_total(&pools[i]) == before, "a socket was lost");
    }
    revtun_hostsel_free(sel);
  }
  free(host_fmt);
  free(tenant_fmt);
  return 0;
}
