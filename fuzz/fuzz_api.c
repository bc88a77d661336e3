/* libFuzzer harness: the public lookup, handoff and introspection API fed
 * hostile ids (any bytes, any length, scoped spellings, NULL tenants)
 * against a populated pool, on one handle with tenant isolation and one
 * without. Invariants checked after every call:
 *   - only documented statuses come back;
 *   - a handed-off socket is the node or cluster asked for and, under
 *     isolation, belongs to the tenant asked for;
 *   - no socket is lost: the pool always holds every socket it was given.
 *
 * Input: a sequence of operations. Each is one opcode byte, then the id and
 * the tenant, each as a length byte followed by that many bytes (length 255
 * means a 4000-byte id of the next byte repeated; for the tenant, 254 means
 * NULL). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <revtun/revtun.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_TENANTS 2
#define N_NODES 3
#define HUGE_ID 4000

static const char *const tenants[N_TENANTS] = {"t0", "t1"};
static const char *const nodes[N_NODES] = {"n0", "n1", "t0:n0"};
static const char *const clusters[N_NODES] = {"c0", "c0", "c1"};

struct pool {
  revtun_t *h;
  int isolation;
  int peer[N_TENANTS][N_NODES]; /* the agent end of each parked socket */
  revtun_time_ms_t now;
};

static struct pool pools[2];

static void check(int cond, const char *what) {
  if (!cond) {
    fprintf(stderr, "invariant broken: %s\n", what);
    abort();
  }
}

static void park(struct pool *p, int t, int n) {
  int sv[2];
  check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
  revtun_reg_t *reg;
  check(revtun_reg_new(p->h, &reg) == REVTUN_OK, "reg_new");
  revtun_reg_set_ids(reg, nodes[n], clusters[n], tenants[t]);
  int rc = revtun_register_socket(p->h, sv[0], reg, p->now);
  revtun_reg_free(reg);
  if (p->isolation && strchr(nodes[n], ':')) { /* refused, and still ours */
    check(rc == REVTUN_E_INVAL, "a ':' id registered under isolation");
    close(sv[0]);
    close(sv[1]);
    p->peer[t][n] = -1;
    return;
  }
  check(rc == REVTUN_OK, "register");
  p->peer[t][n] = sv[1];
}

static void setup(void) {
  static const uint8_t isolation_config[] = {0x2a, 0x02, 0x08, 0x01}; /* field 5 {value: true} */
  for (int i = 0; i < 2; i++) {
    struct pool *p = &pools[i];
    p->isolation = i;
    check(revtun_new(&p->h, i ? isolation_config : NULL, i ? sizeof(isolation_config) : 0, NULL, 0,
                     NULL, 0) == REVTUN_OK,
          "revtun_new");
    check(revtun_config_tenant_isolation(p->h) == i, "isolation config");
    for (int t = 0; t < N_TENANTS; t++)
      for (int n = 0; n < N_NODES; n++)
        park(p, t, n);
  }
}

/* Reads one string operand; NULL for a NULL tenant. */
static const char *operand(const uint8_t **d, size_t *n, char *buf, int allow_null) {
  if (!*n)
    return "";
  uint8_t len = *(*d)++;
  (*n)--;
  if (allow_null && len == 254)
    return NULL;
  if (len == 255) {
    char c = *n ? (char)**d : 'x';
    memset(buf, c ? c : 'x', HUGE_ID);
    buf[HUGE_ID] = '\0';
    return buf;
  }
  if (len > *n)
    len = (uint8_t)*n;
  memcpy(buf, *d, len);
  buf[len] = '\0'; /* an embedded NUL ends the C string early, as it would */
  *d += len;
  *n -= len;
  return buf;
}

static int sum_idle(struct pool *p) {
  int sum = 0;
  for (int t = 0; t < N_TENANTS; t++)
    for (int n = 0; n < N_NODES; n++) {
      if (p->isolation && strchr(nodes[n], ':'))
        continue;             /* never registered */
      if (!p->isolation && t) /* without isolation the id alone is the key */
        continue;
      int c = revtun_idle_count(p->h, nodes[n], tenants[t]);
      check(c >= 0, "idle_count of a valid id");
      sum += c;
    }
  return sum;
}

static int expected_idle(struct pool *p) {
  int want = 0;
  for (int t = 0; t < N_TENANTS; t++)
    for (int n = 0; n < N_NODES; n++)
      want += p->peer[t][n] >= 0;
  return want;
}

static int count_node(const char *node, const char *tenant, const char *cluster, size_t idle,
                      size_t live, void *user) {
  (void)node, (void)tenant, (void)cluster;
  check(idle <= live, "idle <= live");
  *(size_t *)user += idle;
  return 0;
}

/* Takes a handed-off socket back, checks whom it belongs to and parks a
 * fresh one in its place. */
static void returned(struct pool *p, int fd, const char *id, const char *tenant, int by_cluster) {
  const char *node, *cluster, *tn;
  check(revtun_socket_identity(p->h, fd, &node, &cluster, &tn) == REVTUN_OK, "identity");
  check(strcmp(by_cluster ? cluster : node, id) == 0, "handed off the id asked for");
  if (p->isolation)
    check(tenant && strcmp(tn, tenant) == 0, "handed off another tenant's socket");
  int t = 0, n = 0;
  while (t < N_TENANTS && strcmp(tenants[t], tn))
    t++;
  while (n < N_NODES && strcmp(nodes[n], node))
    n++;
  check(t < N_TENANTS && n < N_NODES, "a socket the harness registered");
  check(revtun_mark_dead(p->h, fd, REVTUN_CLOSE_LOCAL_CLOSE, p->now) == REVTUN_OK, "mark_dead");
  close(fd);
  close(p->peer[t][n]);
  park(p, t, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    setup();
    ready = 1;
  }
  static char idbuf[HUGE_ID + 1], tbuf[HUGE_ID + 1];
  while (size) {
    uint8_t op = *data++;
    size--;
    struct pool *p = &pools[op & 1];
    const char *id = operand(&data, &size, idbuf, 0);
    const char *tenant = operand(&data, &size, tbuf, 1);
    p->now++;
    int fd = -1, rc;
    const char *node = NULL;
    switch ((op >> 1) % 6) {
    case 0:
    case 1: {
      int by_cluster = (op >> 1) % 6 == 1;
      rc = by_cluster ? revtun_handoff_by_cluster(p->h, id, tenant, p->now, &fd, NULL)
                      : revtun_handoff(p->h, id, tenant, p->now, &fd, NULL);
      check(rc == REVTUN_OK || rc == REVTUN_E_NOT_FOUND || rc == REVTUN_E_INVAL, "handoff status");
      if (rc == REVTUN_OK)
        returned(p, fd, id, tenant, by_cluster);
      else
        check(fd == -1, "fd_out on failure");
      break;
    }
    case 2:
      rc = revtun_lookup_cluster(p->h, id, tenant, &node);
      check(rc == REVTUN_OK || rc == REVTUN_E_NOT_FOUND || rc == REVTUN_E_INVAL, "lookup status");
      check((rc == REVTUN_OK) == (node != NULL), "node_out set iff found");
      break;
    case 3:
      rc = revtun_idle_count(p->h, id, tenant);
      check(rc >= 0 || rc == REVTUN_E_INVAL, "idle_count status");
      break;
    case 4:
      rc = revtun_idle_count_cluster(p->h, id, tenant);
      check(rc >= 0 || rc == REVTUN_E_INVAL, "idle_count_cluster status");
      break;
    default: {
      size_t idle = 0;
      check(revtun_foreach_node(p->h, count_node, &idle) == REVTUN_OK, "foreach_node");
      check(idle == (size_t)expected_idle(p), "foreach_node sees every socket");
      int any = (int)(unsigned char)id[0];
      rc = revtun_socket_state(p->h, any);
      check(rc == REVTUN_SOCK_IDLE || rc == REVTUN_E_NOT_FOUND, "socket_state status");
      break;
    }
    }
    check(sum_idle(p) == expected_idle(p), "no socket lost");
  }
  return 0;
}
