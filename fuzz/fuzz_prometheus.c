/* libFuzzer harness: the Prometheus exporter fed hostile ids. Sockets are
 * registered with node, cluster and tenant ids of any bytes (detailed stats,
 * tenant isolation), some handed off and closed, then every flag
 * combination of revtun_stats_prometheus_ex() is rendered and must be valid
 * Prometheus text by the strict parser of the tests (tests/prom_parse.h):
 * names, label escaping, UTF-8, one TYPE per family, no duplicate series.
 *
 * Input: records of one opcode byte (even: register, odd: hand off the
 * node's oldest socket and close it), then node, cluster and tenant, each a
 * length byte and that many bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <revtun/revtun.h>

#include "prom_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SOCKETS 32

static void check(int ok, const char *what, const char *text) {
  if (!ok) {
    fprintf(stderr, "fuzz_prometheus: %s\n%s\n", what, text ? text : "");
    abort();
  }
}

static const char *operand(const uint8_t **d, size_t *n, char *buf) {
  size_t len = *n ? **d : 0;
  if (*n)
    (*d)++, (*n)--;
  if (len > *n)
    len = *n;
  memcpy(buf, *d, len);
  buf[len] = '\0';
  *d += len;
  *n -= len;
  return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* enable_detailed_stats: true, enable_tenant_isolation: {value: true} */
  static const uint8_t config[] = {0x18, 0x01, 0x2a, 0x02, 0x08, 0x01};
  revtun_t *h;
  check(revtun_new(&h, config, sizeof(config), NULL, 0, NULL, 0) == REVTUN_OK, "revtun_new", NULL);
  int peers[MAX_SOCKETS];
  size_t n_peers = 0;
  revtun_time_ms_t now = 0;
  char node[256], cluster[256], tenant[256];
  while (size) {
    uint8_t op = *data++;
    size--;
    operand(&data, &size, node);
    operand(&data, &size, cluster);
    operand(&data, &size, tenant);
    now += op;
    if (!(op & 1) && n_peers < MAX_SOCKETS) {
      int sv[2];
      check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair", NULL);
      revtun_reg_t *reg;
      check(revtun_reg_new(h, &reg) == REVTUN_OK, "reg_new", NULL);
      int rc = revtun_reg_set_ids(reg, node, cluster, tenant);
      if (rc == REVTUN_OK)
        rc = revtun_register_socket(h, sv[0], reg, now);
      revtun_reg_free(reg);
      if (rc != REVTUN_OK)
        close(sv[0]);
      peers[n_peers++] = sv[1];
    } else if (op & 1) {
      int fd = -1;
      if (revtun_handoff(h, node, tenant, now, &fd, NULL) == REVTUN_OK) {
        check(revtun_mark_dead(h, fd, REVTUN_CLOSE_REMOTE_CLOSE, now) == REVTUN_OK, "mark_dead",
              NULL);
        close(fd);
      }
    }
  }
  for (unsigned flags = 0; flags < 4; flags++) {
    size_t len = 0;
    int rc = revtun_stats_prometheus_ex(h, flags, NULL, 0, &len);
    check(rc == REVTUN_E_NOSPACE, "size query", NULL);
    char *text = malloc(len + 1);
    check(text && revtun_stats_prometheus_ex(h, flags, text, len + 1, &len) == REVTUN_OK, "render",
          NULL);
    struct prom_result r;
    int bad = prom_parse(text, len, &r);
    check(!bad, bad ? r.err : "", text);
    prom_free(&r);
    free(text);
  }
  revtun_free(h);
  for (size_t i = 0; i < n_peers; i++)
    close(peers[i]);
  return 0;
}
