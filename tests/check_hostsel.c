/* Host selection (revtun_hostsel_*, revtun_handoff_select): the cases of
 * Envoy's reverse-connection cluster tests (header formats, composite keys,
 * a missing header, "-" and empty keys, cluster before node, tenant-scoped
 * lookups), the checks on hostile headers, and the limits at their edges,
 * against a real pool of socketpairs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static struct tu_rec rec;

#define HDR(n, v)                                                                                  \
  { (n), sizeof(n) - 1, (v), sizeof(v) - 1 }

static int park(revtun_t *h, const char *node, const char *cluster, const char *tenant, int *peer) {
  int sv[2];
  tu_socketpair(sv);
  *peer = sv[1];
  ck_assert_int_eq(tu_register(h, sv[0], node, cluster, tenant, 0, 0), REVTUN_OK);
  return sv[0];
}

static revtun_hostsel_t *sel_new(const char *host_fmt, const char *tenant_fmt) {
  revtun_hostsel_t *sel = NULL;
  char err[256];
  ck_assert_int_eq(revtun_hostsel_new(host_fmt, tenant_fmt, &sel, err, sizeof(err)), REVTUN_OK);
  ck_assert_str_eq(err, "");
  return sel;
}

/* The fd handed off, or the status; *lookup the kind of lookup made. */
static int pick(revtun_t *h, const revtun_hostsel_t *sel, const revtun_header_t *hd, size_t n,
                int *lookup) {
  int fd = -7, lk = -7;
  int rc = revtun_handoff_select(h, sel, hd, n, 10, &fd, NULL, &lk);
  if (lookup)
    *lookup = lk;
  if (rc != REVTUN_OK)
    ck_assert_int_eq(fd, -1);
  return rc == REVTUN_OK ? fd : rc;
}

static const char *render(const revtun_hostsel_t *sel, const revtun_header_t *hd, size_t n) {
  static char key[REVTUN_HOSTSEL_KEY_MAX + 1];
  size_t len = 99;
  ck_assert_int_eq(revtun_hostsel_render(sel, hd, n, key, sizeof(key), &len, NULL, 0, NULL),
                   REVTUN_OK);
  ck_assert_uint_eq(len, strlen(key));
  return key;
}

START_TEST(header_format_picks_the_node) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p, fd = park(h, "production-node", "cluster-production", NULL, &p);
  revtun_hostsel_t *sel = sel_new("%REQ(x-node-id)%", NULL);
  revtun_header_t hd[] = {HDR("X-Node-Id", "production-node")}; /* names match in any case */
  int lookup;
  ck_assert_int_eq(pick(h, sel, hd, 1, &lookup), fd);
  ck_assert_int_eq(lookup, REVTUN_LOOKUP_NODE);
  ck_assert_int_eq(revtun_socket_state(h, fd), REVTUN_SOCK_IN_USE); /* handed off */
  /* its only socket is gone: a miss, counted as Envoy counts it */
  ck_assert_int_eq(pick(h, sel, hd, 1, &lookup), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(lookup, REVTUN_LOOKUP_NODE);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.fallback_no_reverse_socket"), 1);
  revtun_hostsel_free(sel);
  revtun_free(h);
  close(fd), close(p);
}
END_TEST

START_TEST(composite_formats) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p1, p2, p3;
  int a = park(h, "prod-node-123", "cluster-prod", NULL, &p1);
  int b = park(h, "dev-node-456", "cluster-dev", NULL, &p2);
  int c = park(h, "svc-api-env-prod", "cluster-complex", NULL, &p3);
  revtun_hostsel_t *sel = sel_new("%REQ(x-env)%-%REQ(x-node-id)%", NULL);
  revtun_header_t prod[] = {HDR("x-env", "prod"), HDR("x-node-id", "node-123")};
  revtun_header_t dev[] = {HDR("x-env", "dev"), HDR("x-node-id", "node-456")};
  ck_assert_int_eq(pick(h, sel, prod, 2, NULL), a);
  ck_assert_int_eq(pick(h, sel, dev, 2, NULL), b);
  /* a missing operand renders "-" inside the key, which is then "prod--" */
  ck_assert_str_eq(render(sel, prod, 1), "prod--");
  ck_assert_int_eq(pick(h, sel, prod, 1, NULL), REVTUN_E_NOT_FOUND);
  revtun_hostsel_free(sel);
  sel = sel_new("svc-%REQ(x-service)%-env-%REQ(x-env)%", NULL);
  revtun_header_t svc[] = {HDR("x-service", "api"), HDR("x-env", "prod")};
  ck_assert_int_eq(pick(h, sel, svc, 2, NULL), c);
  revtun_hostsel_free(sel);
  revtun_free(h);
  close(a), close(b), close(c), close(p1), close(p2), close(p3);
}
END_TEST

START_TEST(alternatives_truncation_and_first_value) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p1, p2;
  int a = park(h, "edge-1", "c", NULL, &p1);
  int b = park(h, "edge", "c2", NULL, &p2);
  revtun_hostsel_t *sel = sel_new("%REQ(x-primary?x-fallback)%", NULL);
  revtun_header_t only_fallback[] = {HDR("x-other", "zz"), HDR("x-fallback", "edge-1")};
  ck_assert_str_eq(render(sel, only_fallback, 2), "edge-1");
  revtun_header_t both[] = {HDR("x-fallback", "nope"), HDR("x-primary", "edge-1"),
                            HDR("x-primary", "second")};
  ck_assert_str_eq(render(sel, both, 3), "edge-1"); /* the primary, its first value */
  ck_assert_int_eq(pick(h, sel, both, 3, NULL), a);
  revtun_hostsel_free(sel);
  sel = sel_new("%REQ(x-node):4%", NULL);
  revtun_header_t longer[] = {HDR("x-node", "edge-99")};
  ck_assert_int_eq(pick(h, sel, longer, 1, NULL), b);
  revtun_hostsel_free(sel);
  revtun_free(h);
  close(a), close(b), close(p1), close(p2);
}
END_TEST

START_TEST(empty_and_dash_keys_find_nothing) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p1, p2;
  int a = park(h, "-", "c", NULL, &p1); /* even a node named "-" is never picked */
  int b = park(h, "n", "c2", NULL, &p2);
  revtun_hostsel_t *sel = sel_new("%REQ(x-missing-header)%", NULL);
  revtun_header_t other[] = {HDR("x-other-header", "value")};
  int lookup;
  ck_assert_str_eq(render(sel, other, 1), "-");
  ck_assert_int_eq(pick(h, sel, other, 1, &lookup), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(lookup, 0);
  ck_assert_int_eq(pick(h, sel, NULL, 0, &lookup), REVTUN_E_NOT_FOUND);
  revtun_header_t empty[] = {{"x-missing-header", 16, NULL, 0}};
  ck_assert_str_eq(render(sel, empty, 1), "");
  ck_assert_int_eq(pick(h, sel, empty, 1, &lookup), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(lookup, 0);
  revtun_header_t dash[] = {HDR("x-missing-header", "-")};
  ck_assert_int_eq(pick(h, sel, dash, 1, &lookup), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(lookup, 0);
  revtun_hostsel_free(sel);
  sel = sel_new("-", NULL); /* a literal "-" too */
  ck_assert_int_eq(pick(h, sel, NULL, 0, NULL), REVTUN_E_NOT_FOUND);
  revtun_hostsel_free(sel);
  ck_assert_int_eq(revtun_idle_count(h, "-", NULL), 1);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.fallback_no_reverse_socket"), 0);
  revtun_free(h);
  close(p1), close(p2);
  (void)a, (void)b;
}
END_TEST

/* Envoy's getNodeWithSocket: a key that names a cluster with members is a
 * cluster (round robin over them), otherwise it is a node id. */
START_TEST(cluster_first_then_node) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int pa, pb, pk, pk2;
  int a = park(h, "n1", "k", NULL, &pa);
  int b = park(h, "n2", "k", NULL, &pb);
  int k = park(h, "k", "z", NULL, &pk); /* a node with the cluster's name */
  revtun_hostsel_t *sel = sel_new("%REQ(x-remote-node-id)%", NULL);
  revtun_header_t key_k[] = {HDR("x-remote-node-id", "k")};
  revtun_header_t key_z[] = {HDR("x-remote-node-id", "z")};
  int lookup, first, second;
  first = pick(h, sel, key_k, 1, &lookup);
  ck_assert_int_eq(lookup, REVTUN_LOOKUP_CLUSTER);
  second = pick(h, sel, key_k, 1, &lookup);
  ck_assert_int_eq(lookup, REVTUN_LOOKUP_CLUSTER);
  /* round robin: one socket of each member, never node "k"'s */
  ck_assert((first == a && second == b) || (first == b && second == a));
  /* cluster "k" still has members (handed-off sockets keep them) but none
   * idle: the key stays a cluster and misses, it does not fall to node "k" */
  ck_assert_int_eq(pick(h, sel, key_k, 1, &lookup), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(lookup, REVTUN_LOOKUP_CLUSTER);
  ck_assert_int_eq(revtun_idle_count(h, "k", NULL), 1);
  /* once the cluster is gone, the same key is node "k" */
  ck_assert_int_eq(revtun_mark_dead(h, a, REVTUN_CLOSE_NONE, 11), REVTUN_OK);
  ck_assert_int_eq(revtun_mark_dead(h, b, REVTUN_CLOSE_NONE, 11), REVTUN_OK);
  ck_assert_int_eq(pick(h, sel, key_k, 1, &lookup), k);
  ck_assert_int_eq(lookup, REVTUN_LOOKUP_NODE);
  int k2 = park(h, "k", "z", NULL, &pk2);
  ck_assert_int_eq(pick(h, sel, key_z, 1, &lookup), k2); /* cluster z's member is node k */
  ck_assert_int_eq(lookup, REVTUN_LOOKUP_CLUSTER);
  revtun_hostsel_free(sel);
  revtun_free(h);
  close(a), close(b), close(k), close(k2), close(pa), close(pb), close(pk), close(pk2);
}
END_TEST

START_TEST(tenant_scoped_under_isolation) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("isolation", &rec, 0);
  int pa, pb, pc;
  int a = park(h, "node-1", "cluster-1", "tenant-alpha", &pa);
  int b = park(h, "node-1", "cluster-1", "tenant-beta", &pb);
  int c = park(h, "node-2", "cluster-1", "tenant-beta", &pc);
  /* Envoy refuses isolation without a tenant format */
  revtun_hostsel_t *no_tenant = sel_new("%REQ(x-remote-node-id)%", NULL);
  revtun_header_t beta_node[] = {HDR("x-remote-node-id", "node-1"),
                                 HDR("x-remote-tenant-id", "tenant-beta")};
  ck_assert_int_eq(pick(h, no_tenant, beta_node, 2, NULL), REVTUN_E_CONFIG);
  revtun_hostsel_free(no_tenant);
  revtun_hostsel_t *sel = sel_new("%REQ(x-remote-node-id)%", "%REQ(x-remote-tenant-id)%");
  int lookup;
  ck_assert_int_eq(pick(h, sel, beta_node, 2, &lookup), b);
  ck_assert_int_eq(lookup, REVTUN_LOOKUP_NODE);
  ck_assert_int_eq(pick(h, sel, beta_node, 2, NULL), REVTUN_E_NOT_FOUND); /* not alpha's */
  ck_assert_int_eq(revtun_idle_count(h, "node-1", "tenant-alpha"), 1);
  revtun_header_t beta_cluster[] = {HDR("x-remote-node-id", "cluster-1"),
                                    HDR("x-remote-tenant-id", "tenant-beta")};
  ck_assert_int_eq(pick(h, sel, beta_cluster, 2, &lookup), c);
  ck_assert_int_eq(lookup, REVTUN_LOOKUP_CLUSTER);
  /* a tenant that renders nothing finds nothing */
  revtun_header_t no_tenant_hdr[] = {HDR("x-remote-node-id", "node-1")};
  ck_assert_int_eq(pick(h, sel, no_tenant_hdr, 1, &lookup), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(lookup, 0);
  revtun_header_t dash_tenant[] = {HDR("x-remote-node-id", "node-1"),
                                   HDR("x-remote-tenant-id", "-")};
  ck_assert_int_eq(pick(h, sel, dash_tenant, 2, NULL), REVTUN_E_NOT_FOUND);
  /* a key or tenant cannot spell another tenant's scoped key */
  revtun_header_t spelled[] = {HDR("x-remote-node-id", "tenant-alpha:node-1"),
                               HDR("x-remote-tenant-id", "tenant-beta")};
  ck_assert_int_eq(pick(h, sel, spelled, 2, &lookup), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(lookup, 0);
  revtun_header_t spelled2[] = {HDR("x-remote-node-id", "node-1"),
                                HDR("x-remote-tenant-id", "x:tenant-alpha")};
  ck_assert_int_eq(pick(h, sel, spelled2, 2, NULL), REVTUN_E_NOT_FOUND);
  revtun_header_t alpha[] = {HDR("x-remote-node-id", "node-1"),
                             HDR("x-remote-tenant-id", "tenant-alpha")};
  ck_assert_int_eq(pick(h, sel, alpha, 2, NULL), a);
  char key[64], tenant[64];
  size_t kl, tl;
  ck_assert_int_eq(
      revtun_hostsel_render(sel, alpha, 2, key, sizeof(key), &kl, tenant, sizeof(tenant), &tl),
      REVTUN_OK);
  ck_assert_str_eq(key, "node-1");
  ck_assert_str_eq(tenant, "tenant-alpha");
  ck_assert_uint_eq(tl, 12);
  revtun_hostsel_free(sel);
  revtun_free(h);
  /* without isolation the tenant format takes no part */
  tu_rec_init(&rec);
  h = tu_new("empty", &rec, 0);
  int d = park(h, "node-1", "cluster-1", "tenant-alpha", &pa);
  sel = sel_new("%REQ(x-remote-node-id)%", "%REQ(x-remote-tenant-id)%");
  ck_assert_int_eq(pick(h, sel, beta_node, 2, NULL), d);
  revtun_hostsel_free(sel);
  revtun_free(h);
  close(a), close(b), close(c), close(d), close(pa), close(pb), close(pc);
}
END_TEST

START_TEST(formats_are_checked_at_compile) {
  revtun_hostsel_t *sel = (revtun_hostsel_t *)1;
  char err[256];
  ck_assert_int_eq(revtun_hostsel_new("", NULL, &sel, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_ptr_null(sel);
  ck_assert_ptr_nonnull(strstr(err, "host_id_format"));
  ck_assert_int_eq(revtun_hostsel_new(NULL, NULL, &sel, err, sizeof(err)), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_hostsel_new("%REQ(x)%", NULL, NULL, err, sizeof(err)), REVTUN_E_INVAL);
  /* request headers are all a selection sees: other operators are refused by name */
  ck_assert_int_eq(
      revtun_hostsel_new("conn-%DOWNSTREAM_REMOTE_ADDRESS%", NULL, &sel, err, sizeof(err)),
      REVTUN_E_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "DOWNSTREAM_REMOTE_ADDRESS"));
  ck_assert_int_eq(revtun_hostsel_new("%REQ(x)%", "%REQ(bad name)%", &sel, err, sizeof(err)),
                   REVTUN_E_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "tenant_id_format"));
  ck_assert_int_eq(revtun_hostsel_new("%REQ(x", NULL, &sel, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_int_eq(revtun_hostsel_new("%REQ()%", NULL, &sel, err, sizeof(err)), REVTUN_E_CONFIG);
  /* the length limit, at its edge */
  char *big = malloc(REVTUN_HOSTSEL_FORMAT_MAX + 2);
  memset(big, 'a', REVTUN_HOSTSEL_FORMAT_MAX + 1);
  big[REVTUN_HOSTSEL_FORMAT_MAX + 1] = '\0';
  ck_assert_int_eq(revtun_hostsel_new(big, NULL, &sel, err, sizeof(err)), REVTUN_E_CONFIG);
  big[REVTUN_HOSTSEL_FORMAT_MAX] = '\0';
  ck_assert_int_eq(revtun_hostsel_new(big, NULL, &sel, err, sizeof(err)), REVTUN_OK);
  revtun_hostsel_free(sel);
  free(big);
  revtun_hostsel_free(NULL);
  ck_assert_int_eq(revtun_hostsel_new("%%", NULL, &sel, NULL, 0), REVTUN_OK);
  ck_assert_str_eq(render(sel, NULL, 0), "%");
  revtun_hostsel_free(sel);
}
END_TEST

START_TEST(hostile_headers_are_refused) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p, fd = park(h, "n", "c", NULL, &p);
  revtun_hostsel_t *sel = sel_new("%REQ(x-node)%", NULL);
  int out;
  revtun_header_t good[] = {HDR("x-node", "n")};
  ck_assert_int_eq(revtun_handoff_select(h, sel, good, 1, 0, NULL, NULL, NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_handoff_select(NULL, sel, good, 1, 0, &out, NULL, NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(out, -1);
  ck_assert_int_eq(revtun_handoff_select(h, NULL, good, 1, 0, &out, NULL, NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_handoff_select(h, sel, NULL, 1, 0, &out, NULL, NULL), REVTUN_E_INVAL);
  revtun_header_t bad[][1] = {
      {{"x node", 6, "n", 1}},         /* space in a name */
      {{"x-node", 6, "n\r\nx: y", 7}}, /* CR LF in a value */
      {{"x-node", 6, "n\0", 2}},       /* NUL in a value */
      {{"x-no\0e", 6, "n", 1}},        /* NUL in a name */
      {{"", 0, "n", 1}},               /* empty name */
      {{NULL, 6, "n", 1}},             /* no name */
      {{"x-node", 6, NULL, 1}},        /* a length without bytes */
      {{"x-node:", 7, "n", 1}},        /* ':' is not a name byte */
  };
  char key[16];
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ck_assert_int_eq(revtun_handoff_select(h, sel, bad[i], 1, 0, &out, NULL, NULL), REVTUN_E_INVAL);
    ck_assert_int_eq(revtun_hostsel_render(sel, bad[i], 1, key, sizeof(key), NULL, NULL, 0, NULL),
                     REVTUN_E_INVAL);
  }
  ck_assert_int_eq(revtun_hostsel_render(sel, good, 1, NULL, 4, NULL, NULL, 0, NULL),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_hostsel_render(sel, good, 1, key, sizeof(key), NULL, NULL, 4, NULL),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_hostsel_render(NULL, good, 1, key, sizeof(key), NULL, NULL, 0, NULL),
                   REVTUN_E_INVAL);
  /* nothing was handed off by the refusals */
  ck_assert_int_eq(revtun_idle_count(h, "n", NULL), 1);
  ck_assert_int_eq(pick(h, sel, good, 1, NULL), fd);
  revtun_hostsel_free(sel);
  revtun_free(h);
  close(fd), close(p);
}
END_TEST

START_TEST(limits_at_their_edges) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_hostsel_t *sel = sel_new("%REQ(x-node)%", NULL);
  /* REVTUN_HEADER_MAX_COUNT headers pass, one more does not */
  revtun_header_t many[REVTUN_HEADER_MAX_COUNT + 1];
  for (size_t i = 0; i < REVTUN_HEADER_MAX_COUNT + 1; i++)
    many[i] = (revtun_header_t){"x-pad", 5, "v", 1};
  many[REVTUN_HEADER_MAX_COUNT - 1] = (revtun_header_t){"x-node", 6, "last", 4};
  ck_assert_str_eq(render(sel, many, REVTUN_HEADER_MAX_COUNT), "last");
  char key[REVTUN_HOSTSEL_KEY_MAX + 1];
  ck_assert_int_eq(revtun_hostsel_render(sel, many, REVTUN_HEADER_MAX_COUNT + 1, key, sizeof(key),
                                         NULL, NULL, 0, NULL),
                   REVTUN_E_INVAL);
  int out;
  ck_assert_int_eq(
      revtun_handoff_select(h, sel, many, REVTUN_HEADER_MAX_COUNT + 1, 0, &out, NULL, NULL),
      REVTUN_E_INVAL);
  /* REVTUN_HEADER_MAX_BYTES of names and values pass, one more byte does not */
  char *blob = malloc(REVTUN_HEADER_MAX_BYTES);
  memset(blob, 'v', REVTUN_HEADER_MAX_BYTES);
  revtun_header_t big[2] = {{"x-node", 6, "n", 1},
                            {"x-big", 5, blob, REVTUN_HEADER_MAX_BYTES - 12}};
  ck_assert_str_eq(render(sel, big, 2), "n");
  big[1].value_len++;
  ck_assert_int_eq(revtun_hostsel_render(sel, big, 2, key, sizeof(key), NULL, NULL, 0, NULL),
                   REVTUN_E_INVAL);
  /* a key of REVTUN_HOSTSEL_KEY_MAX bytes is found; one byte longer names nothing */
  char *id = malloc(REVTUN_HOSTSEL_KEY_MAX + 2);
  memset(id, 'k', REVTUN_HOSTSEL_KEY_MAX + 1);
  id[REVTUN_HOSTSEL_KEY_MAX] = '\0';
  int p, fd = park(h, id, "c", NULL, &p);
  revtun_header_t at_max[] = {{"x-node", 6, id, REVTUN_HOSTSEL_KEY_MAX}};
  ck_assert_uint_eq(strlen(render(sel, at_max, 1)), REVTUN_HOSTSEL_KEY_MAX);
  ck_assert_int_eq(pick(h, sel, at_max, 1, NULL), fd);
  revtun_header_t over[] = {{"x-node", 6, blob, REVTUN_HOSTSEL_KEY_MAX + 1}};
  size_t len = 0;
  ck_assert_int_eq(revtun_hostsel_render(sel, over, 1, key, sizeof(key), &len, NULL, 0, NULL),
                   REVTUN_E_NOSPACE);
  int lookup;
  ck_assert_int_eq(pick(h, sel, over, 1, &lookup), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(lookup, 0);
  /* the caller's buffer: the key and its NUL must fit */
  revtun_header_t four[] = {HDR("x-node", "abcd")};
  char small[5];
  ck_assert_int_eq(revtun_hostsel_render(sel, four, 1, small, 4, NULL, NULL, 0, NULL),
                   REVTUN_E_NOSPACE);
  ck_assert_int_eq(revtun_hostsel_render(sel, four, 1, small, 5, NULL, NULL, 0, NULL), REVTUN_OK);
  ck_assert_str_eq(small, "abcd");
  revtun_hostsel_free(sel);
  revtun_free(h);
  free(blob), free(id);
  close(fd), close(p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("hostsel");
  TCase *tc = tcase_create("hostsel");
  tcase_add_test(tc, header_format_picks_the_node);
  tcase_add_test(tc, composite_formats);
  tcase_add_test(tc, alternatives_truncation_and_first_value);
  tcase_add_test(tc, empty_and_dash_keys_find_nothing);
  tcase_add_test(tc, cluster_first_then_node);
  tcase_add_test(tc, tenant_scoped_under_isolation);
  tcase_add_test(tc, formats_are_checked_at_compile);
  tcase_add_test(tc, hostile_headers_are_refused);
  tcase_add_test(tc, limits_at_their_edges);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
