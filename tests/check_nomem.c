/* Allocation failure, curl "torture" style: fail the 1st, 2nd, ... allocation
 * of an operation until it succeeds. Each failure must return REVTUN_E_NOMEM,
 * leave the handle consistent and usable, and leak nothing (the allocator
 * counts live blocks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

struct failing {
  long countdown; /* fail when it reaches 0; negative: never */
  long live;      /* blocks currently allocated */
  long calls;
};

static void *f_malloc(size_t n, void *u) {
  struct failing *f = u;
  f->calls++;
  if (f->countdown >= 0 && f->countdown-- == 0)
    return NULL;
  void *p = malloc(n);
  if (p)
    f->live++;
  return p;
}

static void *f_realloc(void *p, size_t n, void *u) {
  struct failing *f = u;
  f->calls++;
  if (f->countdown >= 0 && f->countdown-- == 0)
    return NULL;
  void *q = realloc(p, n);
  if (q && !p)
    f->live++;
  return q;
}

static void f_free(void *p, void *u) {
  struct failing *f = u;
  if (p)
    f->live--;
  free(p);
}

static struct tu_rec rec;

static revtun_options_t *options(struct failing *f) {
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, &rec);
  ck_assert_int_eq(revtun_options_set_allocator(o, f_malloc, f_realloc, f_free, f), REVTUN_OK);
  return o;
}

static int ext_create(const char *type_url, const uint8_t *config, size_t config_len, void *user,
                      void **instance, char *errbuf, size_t errbuf_len) {
  (void)type_url, (void)config, (void)config_len, (void)user, (void)errbuf, (void)errbuf_len;
  *instance = NULL;
  return REVTUN_OK;
}

static void ext_event(void *instance, const revtun_event_t *ev) { (void)instance, (void)ev; }

/* revtun_options_new_with_allocator: the options object, its factory names
 * and module path come from the hooks and go back to them; each of those
 * allocations fails cleanly; handles created from it use the same hooks. */
START_TEST(options_object_from_the_host_allocator) {
  struct failing f = {-1, 0, 0};
  revtun_options_t *o = (revtun_options_t *)&f;
  ck_assert_int_eq(revtun_options_new_with_allocator(&o, f_malloc, f_realloc, f_free, &f),
                   REVTUN_OK);
  ck_assert_int_eq(f.live, 1); /* the object itself */
  ck_assert_int_eq(revtun_reporter_register(o, "r", ext_create, ext_event, NULL, NULL), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_module_path(o, "/nowhere"), REVTUN_OK);
  ck_assert_int_eq(f.live, 4); /* and the factory table, its name, the path */
  revtun_t *h;
  long before = f.live;
  ck_assert_int_eq(revtun_new(&h, NULL, 0, o, 0, NULL, 0), REVTUN_OK);
  ck_assert_int_gt(f.live, before); /* the handle uses the same hooks */
  revtun_free(h);
  ck_assert_int_eq(f.live, before);
  revtun_options_free(o);
  ck_assert_int_eq(f.live, 0);

  for (long k = 0;; k++) { /* every allocation of the object's life fails cleanly */
    f = (struct failing){k, 0, 0};
    int rc = revtun_options_new_with_allocator(&o, f_malloc, f_realloc, f_free, &f);
    if (rc == REVTUN_OK) {
      rc = revtun_access_logger_register(o, "l", ext_create, ext_event, NULL, NULL);
      if (rc == REVTUN_OK)
        rc = revtun_options_set_module_path(o, "/nowhere");
      revtun_options_free(o);
    } else {
      ck_assert_ptr_null(o);
    }
    ck_assert_int_eq(f.live, 0);
    if (rc == REVTUN_OK)
      break;
    ck_assert_int_eq(rc, REVTUN_E_NOMEM);
  }

  /* all three hooks or none */
  ck_assert_int_eq(revtun_options_new_with_allocator(&o, f_malloc, NULL, f_free, &f),
                   REVTUN_E_INVAL);
  ck_assert_ptr_null(o);
  ck_assert_int_eq(revtun_options_new_with_allocator(NULL, NULL, NULL, NULL, NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_options_new_with_allocator(&o, NULL, NULL, NULL, NULL), REVTUN_OK);
  revtun_options_free(o); /* the C library's malloc and free */
}
END_TEST

START_TEST(create_fails_cleanly_at_every_allocation) {
  size_t len;
  uint8_t *cfg = tu_config("detailed_isolation", &len);
  struct failing f = {-1, 0, 0};
  tu_rec_init(&rec);
  revtun_options_t *o = options(&f);
  int successes = 0;
  for (long n = 0; n < 1000 && !successes; n++) {
    f.countdown = n;
    revtun_t *h = NULL;
    char err[256];
    int rc = revtun_new(&h, cfg, len, o, 0, err, sizeof(err));
    if (rc == REVTUN_OK) {
      successes++;
      revtun_free(h);
    } else {
      ck_assert_msg(rc == REVTUN_E_NOMEM, "allocation %ld: %s (%s)", n, revtun_status_name(rc),
                    err);
      ck_assert_ptr_null(h);
    }
    ck_assert_msg(f.live == 0, "allocation %ld: %ld blocks leaked", n, f.live);
  }
  ck_assert_int_eq(successes, 1);
  revtun_options_free(o);
  free(cfg);
}
END_TEST

START_TEST(register_and_handoff_fail_cleanly) {
  struct failing f = {-1, 0, 0};
  tu_rec_init(&rec);
  revtun_options_t *o = options(&f);
  revtun_t *h = tu_new_opts("detailed_isolation", o, 0);
  revtun_options_free(o);
  revtun_reg_t *reg;
  ck_assert_int_eq(revtun_reg_new(h, &reg), REVTUN_OK);
  int peers[64];
  int registered = 0;
  for (int round = 0; round < 3; round++) {
    /* fresh names each round so node, cluster and strings get allocated */
    char node[32], cluster[32], tenant[32], conn[32];
    snprintf(node, sizeof(node), "node-%d", round);
    snprintf(cluster, sizeof(cluster), "cluster-%d", round);
    snprintf(tenant, sizeof(tenant), "tenant-%d", round);
    snprintf(conn, sizeof(conn), "conn-%d", round);
    revtun_reg_set_ids(reg, node, cluster, tenant);
    revtun_reg_set_initiator(reg, 5, "worker_9", conn);
    int sv[2];
    tu_socketpair(sv);
    peers[round] = sv[1];
    int rc;
    for (long n = 0;; n++) {
      f.countdown = n;
      rc = revtun_register_socket(h, sv[0], reg, 1);
      if (rc == REVTUN_OK)
        break;
      ck_assert_msg(rc == REVTUN_E_NOMEM, "allocation %ld: %s", n, revtun_status_name(rc));
      ck_assert(tu_fd_open(sv[0])); /* still the caller's */
      /* nothing half-registered is left behind (hash tables may keep the
       * room they grew; the final free proves nothing leaked) */
      ck_assert_uint_eq(tu_stat(h, "rt.worker_0.total_nodes"), (uint64_t)round);
      ck_assert_uint_eq(tu_stat(h, "rt.worker_0.total_clusters"), (uint64_t)round);
      ck_assert_uint_eq(tu_stat(h, "rt.worker_0.live_sockets"), (uint64_t)round);
      ck_assert_int_eq(revtun_idle_count(h, node, tenant), 0);
      ck_assert_int_eq(revtun_socket_state(h, sv[0]), REVTUN_E_NOT_FOUND);
    }
    f.countdown = -1;
    registered++;
    ck_assert_int_eq(revtun_idle_count(h, node, tenant), 1);
  }
  ck_assert_uint_eq(tu_stat(h, "rt.nodes.node-2"), 1);
  /* handoff and mark_dead allocate nothing: even a failing allocator works */
  f.countdown = 0;
  int fd;
  ck_assert_int_eq(revtun_handoff(h, "node-1", "tenant-1", 2, &fd, NULL), REVTUN_OK);
  ck_assert_int_eq(revtun_mark_dead(h, fd, REVTUN_CLOSE_REMOTE_CLOSE, 3), REVTUN_OK);
  close(fd);
  ck_assert_int_eq(revtun_tick(h, 100000), REVTUN_OK);
  f.countdown = -1;
  ck_assert_int_eq(revtun_idle_count(h, "node-0", "tenant-0"), 1);
  revtun_reg_free(reg);
  revtun_free(h);
  ck_assert_int_eq(f.live, 0);
  for (int i = 0; i < registered; i++)
    close(peers[i]);
}
END_TEST

/* Phase one of an accepted handshake: when
 * the registration cannot be prepared the initiator gets 503, never a 200
 * for a socket that is not registered. */
START_TEST(handshake_503_when_registration_cannot_be_prepared) {
  struct failing f = {-1, 0, 0};
  tu_rec_init(&rec);
  revtun_options_t *o = options(&f);
  revtun_t *h = tu_new_opts("detailed_isolation", o, 0);
  revtun_options_free(o);
  revtun_acceptor_t *acc;
  ck_assert_int_eq(revtun_acceptor_new(&acc, h, NULL, 0, NULL, 0), REVTUN_OK);
  static const char req[] = "GET /reverse_connections/request HTTP/1.1\r\n"
                            "x-envoy-reverse-tunnel-node-id: fresh-node\r\n"
                            "x-envoy-reverse-tunnel-cluster-id: fresh-cluster\r\n"
                            "x-envoy-reverse-tunnel-tenant-id: fresh-tenant\r\n\r\n";
  int saw_503 = 0, saw_200 = 0;
  for (long n = 0; n < 200 && !saw_200; n++) {
    int sv[2];
    tu_socketpair(sv);
    tu_write(sv[1], req);
    f.countdown = n;
    int rc = revtun_acceptor_accept(acc, sv[0], NULL, 1);
    f.countdown = -1;
    char resp[1024];
    tu_read_all(sv[1], resp, sizeof(resp));
    if (rc != REVTUN_OK) {
      ck_assert_int_eq(rc, REVTUN_E_NOMEM);
      ck_assert(tu_fd_open(sv[0])); /* refused: still the caller's */
      close(sv[0]);
    } else if (strncmp(resp, "HTTP/1.1 503 ", 13) == 0) {
      saw_503++;
      ck_assert_ptr_nonnull(strstr(resp, "Reverse tunnel registration unavailable"));
      ck_assert_int_eq(revtun_idle_count(h, "fresh-node", "fresh-tenant"), 0);
    } else if (strncmp(resp, "HTTP/1.1 200 ", 13) == 0) {
      saw_200 = 1; /* enough allocations: registered */
      ck_assert_int_eq(revtun_idle_count(h, "fresh-node", "fresh-tenant"), 1);
    }
    close(sv[1]);
    revtun_tick(h, 100000 + (revtun_time_ms_t)n); /* let lingering rejects end */
  }
  ck_assert_int_gt(saw_503, 0);
  ck_assert_int_eq(saw_200, 1);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.registration_failed"), (uint64_t)saw_503);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.accepted"), 1);
  revtun_free(h);
  ck_assert_int_eq(f.live, 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("nomem");
  TCase *tc = tcase_create("nomem");
  tcase_add_test(tc, options_object_from_the_host_allocator);
  tcase_add_test(tc, create_fails_cleanly_at_every_allocation);
  tcase_add_test(tc, register_and_handoff_fail_cleanly);
  tcase_add_test(tc, handshake_503_when_registration_cannot_be_prepared);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
