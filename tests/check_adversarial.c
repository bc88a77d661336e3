/* The library under attack: every defence against hostile input, driven
 * through the public API with real sockets and injected time, plus the
 * internal views (hash chains) that show a defence holds. Each test names the
 * attack it replays. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/handle.h" /* the hash chains: this suite links the convenience library */
#include "pool/pool.h"
#include "testutil.h"

static struct tu_rec rec;

static int make_pair(int *peer) {
  int sv[2];
  tu_socketpair(sv);
  *peer = sv[1];
  return sv[0];
}

static char *repeat(char c, size_t n) {
  char *s = malloc(n + 1);
  ck_assert_ptr_nonnull(s);
  memset(s, c, n);
  s[n] = '\0';
  return s;
}

/* ---------------------------------------------------------- long ids */

/* One HTTP request with a 16 KB node id used to crash a proxy: the lookups
 * hashed a key's untruncated length out of a 2 KiB stack buffer. */
START_TEST(huge_ids_at_every_entry_point) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new(_i ? "isolation" : "empty", &rec, 0);
  int peer, fd = make_pair(&peer);
  const char *tenant = _i ? "t" : NULL;
  ck_assert_int_eq(tu_register(h, fd, "n", "c", tenant, 0, 0), REVTUN_OK);
  char *big = repeat('x', 16 * 1024), *just_over = repeat('y', RT_MAX_ID_LEN + 1);
  char *longest = repeat('z', RT_MAX_ID_LEN);
  const char *bad[] = {big, just_over, ""};
  for (size_t i = 0; i < 3; i++) {
    const char *id = bad[i];
    int out = -7;
    const char *node = "untouched";
    ck_assert_int_eq(revtun_handoff(h, id, tenant, 1, &out, NULL), REVTUN_E_INVAL);
    ck_assert_int_eq(out, -1);
    ck_assert_int_eq(revtun_handoff_by_cluster(h, id, tenant, 1, &out, NULL), REVTUN_E_INVAL);
    ck_assert_int_eq(revtun_lookup_cluster(h, id, tenant, &node), REVTUN_E_INVAL);
    ck_assert_ptr_null(node);
    ck_assert_int_eq(revtun_idle_count(h, id, tenant), REVTUN_E_INVAL);
    ck_assert_int_eq(revtun_idle_count_cluster(h, id, tenant), REVTUN_E_INVAL);
    /* the same through the tenant */
    if (i < 2) {
      ck_assert_int_eq(revtun_handoff(h, "n", id, 1, &out, NULL), REVTUN_E_INVAL);
      ck_assert_int_eq(revtun_idle_count_cluster(h, "c", id), REVTUN_E_INVAL);
    }
    int p2, f2 = make_pair(&p2);
    ck_assert_int_eq(tu_register(h, f2, id, "c", tenant, 0, 0), REVTUN_E_INVAL);
    ck_assert_int_eq(tu_register(h, f2, "n", id, tenant, 0, 0), REVTUN_E_INVAL);
    if (i < 2)
      ck_assert_int_eq(tu_register(h, f2, "n", "c", id, 0, 0), REVTUN_E_INVAL);
    ck_assert(tu_fd_open(f2)); /* refused: the caller still owns it */
    close(f2), close(p2);
  }
  /* initiator ids ride along under the same bound */
  revtun_reg_t *reg;
  ck_assert_int_eq(revtun_reg_new(h, &reg), REVTUN_OK);
  int p3, f3 = make_pair(&p3);
  revtun_reg_set_ids(reg, "n", "c", tenant);
  revtun_reg_set_initiator(reg, 0, just_over, NULL);
  ck_assert_int_eq(revtun_register_socket(h, f3, reg, 0), REVTUN_E_INVAL);
  revtun_reg_set_initiator(reg, 0, NULL, just_over);
  ck_assert_int_eq(revtun_register_socket(h, f3, reg, 0), REVTUN_E_INVAL);
  /* exactly at the limit works end to end */
  revtun_reg_set_initiator(reg, 0, longest, longest);
  revtun_reg_set_ids(reg, longest, longest, _i ? longest : NULL);
  ck_assert_int_eq(revtun_register_socket(h, f3, reg, 0), REVTUN_OK);
  revtun_reg_free(reg);
  ck_assert_int_eq(revtun_idle_count(h, longest, _i ? longest : NULL), 1);
  int got;
  ck_assert_int_eq(revtun_handoff_by_cluster(h, longest, _i ? longest : NULL, 2, &got, NULL),
                   REVTUN_OK);
  ck_assert_int_eq(got, f3);
  const struct tu_event *e = tu_last(&rec, REVTUN_EV_SOCKET_HANDOFF);
  ck_assert_ptr_nonnull(e);
  ck_assert_int_eq(revtun_mark_dead(h, f3, REVTUN_CLOSE_LOCAL_CLOSE, 3), REVTUN_OK);
  close(f3), close(p3);
  free(big), free(just_over), free(longest);
  revtun_free(h);
  close(peer);
}
END_TEST

/* -------------------------------------------------- cross-tenant keys */

/* With isolation, revtun_handoff(h, "t1:n", NULL) used to return tenant t1's
 * socket: the unscoped key spelled the scoped one. 10,000 randomized
 * hostile lookups must never hand out a socket of another tenant. */
#define N_TENANTS 4
#define N_NODES 3

static const char *pick(const char *const *v, size_t n, unsigned *seed) {
  *seed = *seed * 1103515245u + 12345u;
  return v[(*seed >> 16) % n];
}

START_TEST(no_cross_tenant_handoff_in_10000_hostile_attempts) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("isolation", &rec, 0);
  static const char *const tenants[N_TENANTS] = {"t1", "t2", "a", "b"};
  static const char *const nodes[N_NODES] = {"n", "edge-1", "x"};
  int peers[N_TENANTS][N_NODES];
  for (int t = 0; t < N_TENANTS; t++)
    for (int n = 0; n < N_NODES; n++) {
      int fd = make_pair(&peers[t][n]);
      ck_assert_int_eq(tu_register(h, fd, nodes[n], "c", tenants[t], 0, 0), REVTUN_OK);
    }
  /* ids an attacker would try: scoped spellings, prefixes, separators */
  static const char *const ids[] = {
      "n",    "t1:n", "t2:n", ":n",  "n:",  "t1:",   "t1",       "edge-1",   "a:b",
      "t1:c", "c",    "x",    "a:x", "b:x", "t1::n", "\x7ft1:n", "t1:n\xff", "N"};
  static const char *const hostile_tenants[] = {
      "t1", "t2", "a", "b", "", "t1:", ":", "t3", "A", "t1:n", "b:x"};
  unsigned seed = 12345;
  size_t handed = 0, refused = 0;
  for (int i = 0; i < 10000; i++) {
    const char *id = pick(ids, sizeof(ids) / sizeof(*ids), &seed);
    const char *tenant =
        (seed >> 8) % 7 == 0
            ? NULL
            : pick(hostile_tenants, sizeof(hostile_tenants) / sizeof(char *), &seed);
    bool by_cluster = (seed >> 4) & 1;
    int fd = -1;
    int rc = by_cluster ? revtun_handoff_by_cluster(h, id, tenant, (revtun_time_ms_t)i, &fd, NULL)
                        : revtun_handoff(h, id, tenant, (revtun_time_ms_t)i, &fd, NULL);
    bool valid = tenant && *tenant && !strchr(tenant, ':') && !strchr(id, ':');
    if (!valid) {
      ck_assert_int_eq(rc, REVTUN_E_INVAL);
      refused++;
      continue;
    }
    if (rc != REVTUN_OK) {
      ck_assert_int_eq(rc, REVTUN_E_NOT_FOUND);
      continue;
    }
    const char *got_node, *got_cluster, *got_tenant;
    ck_assert_int_eq(revtun_socket_identity(h, fd, &got_node, &got_cluster, &got_tenant),
                     REVTUN_OK);
    ck_assert_str_eq(got_tenant, tenant); /* never another tenant's socket */
    ck_assert_str_eq(by_cluster ? got_cluster : got_node, id);
    handed++;
    /* give it back and park a fresh one in its place, so the pool stays
     * populated */
    int t = 0, n = 0;
    while (strcmp(tenants[t], got_tenant))
      t++;
    while (strcmp(nodes[n], got_node))
      n++;
    ck_assert_int_eq(revtun_mark_dead(h, fd, REVTUN_CLOSE_LOCAL_CLOSE, (revtun_time_ms_t)i),
                     REVTUN_OK);
    close(fd);
    close(peers[t][n]);
    int again = make_pair(&peers[t][n]);
    ck_assert_int_eq(tu_register(h, again, nodes[n], "c", tenants[t], 0, (revtun_time_ms_t)i),
                     REVTUN_OK);
  }
  ck_assert_uint_gt(handed, 100);
  ck_assert_uint_gt(refused, 1000);
  revtun_free(h);
  for (int t = 0; t < N_TENANTS; t++)
    for (int n = 0; n < N_NODES; n++)
      close(peers[t][n]);
}
END_TEST

/* ---------------------------------------------------- hash flooding */

/* 32-bit FNV-1a, the unkeyed hash the tables used before: ids that collide in
 * its low bits are what a flooding attacker would send. */
static uint32_t fnv1a(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

START_TEST(ids_chosen_to_collide_do_not_share_a_chain) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  /* 1500 ids whose unkeyed hashes agree in the low 12 bits */
  enum { N = 1500 };
  static char ids[N][16];
  size_t found = 0;
  for (uint32_t k = 0; found < N; k++) {
    char id[16];
    snprintf(id, sizeof id, "n%u", k);
    if ((fnv1a(id) & 0xfff) == 0x5a5)
      memcpy(ids[found++], id, sizeof id);
  }
  for (size_t i = 0; i < N; i++) {
    revtun_reg_t *reg;
    ck_assert_int_eq(revtun_reg_new(h, &reg), REVTUN_OK);
    revtun_reg_set_ids(reg, ids[i], "c", NULL);
    int peer, fd = make_pair(&peer);
    close(peer);
    ck_assert_int_eq(revtun_register_socket(h, fd, reg, 0), REVTUN_OK);
    revtun_reg_free(reg);
  }
  /* 1500 entries in 2048 buckets: a fair hash gives chains of a handful; an
   * unkeyed one would have put them all in one bucket */
  size_t longest = rt_htable_max_chain(&h->pool->nodes);
  ck_assert_msg(longest <= 10, "longest chain %zu", longest);
  /* and the key is per handle: another handle hashes the same id apart */
  revtun_t *h2 = tu_new("empty", &rec, 0);
  ck_assert(h->hkey.k0 != h2->hkey.k0 || h->hkey.k1 != h2->hkey.k1);
  ck_assert_uint_ne(rt_siphash(&h->hkey, "n1", 2), rt_siphash(&h2->hkey, "n1", 2));
  revtun_free(h2);
  revtun_free(h);
}
END_TEST

/* ---------------------------------------------------------- keepalive */

/* ping_failure_threshold 70000 used to never close a dead peer: the miss
 * counter was 16 bits wide and wrapped first. */
START_TEST(threshold_above_65535_still_detects_a_dead_peer) {
  tu_rec_init(&rec);
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  revtun_t *h = tu_new_opts("threshold_70000", o, 0); /* no record callbacks: 140k events */
  revtun_options_free(o);
  int peer, fd = make_pair(&peer);
  ck_assert_int_eq(tu_register(h, fd, "n", "c", NULL, 2, 0), REVTUN_OK);
  revtun_time_ms_t now = 0;
  int64_t next;
  size_t ticks = 0;
  while (revtun_socket_state(h, fd) == REVTUN_SOCK_IDLE && ticks < 400000) {
    next = revtun_next_timeout_ms(h, now);
    ck_assert_int_ge(next, 0);
    now += (revtun_time_ms_t)next;
    ck_assert_int_eq(revtun_tick(h, now), REVTUN_OK);
    ticks++;
    if (ticks % 1000 == 0) { /* the silent peer never echoes; keep its buffer drained */
      static char junk[65536];
      while (recv(peer, junk, sizeof junk, MSG_DONTWAIT) > 0)
        ;
    }
  }
  ck_assert_int_eq(revtun_socket_state(h, fd), REVTUN_E_NOT_FOUND);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.tunnel_closed.idle_ping_timeout"), 1);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.idle_ping_miss"), 70000);
  revtun_free(h);
  close(peer);
}
END_TEST

/* After the host loop stalled (a 1.5 s SIGSTOP), reply deadlines fired before
 * the echoes' readable events were delivered, and healthy tunnels died as
 * idle_ping_timeout. Replayed: the peers echo at once, but the host delivers
 * no readiness before the deadlines come due. */
START_TEST(a_stalled_host_loop_does_not_evict_healthy_tunnels) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("threshold_one", &rec, 0); /* one miss would kill */
  enum { N = 300 };
  int fds[N], peers[N];
  for (int i = 0; i < N; i++) {
    fds[i] = make_pair(&peers[i]);
    ck_assert_int_eq(tu_register(h, fds[i], "n", "c", NULL, 1000, 0), REVTUN_OK);
  }
  revtun_time_ms_t now = 2000; /* past every send time: all pings go out */
  ck_assert_int_eq(revtun_tick(h, now), REVTUN_OK);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.idle_ping_sent"), N);
  for (int i = 0; i < N; i++) { /* every agent echoes promptly */
    char ping[5];
    ck_assert_int_eq(read(peers[i], ping, 5), 5);
    ck_assert_int_eq(write(peers[i], ping, 5), 5);
  }
  /* the host wakes up late: deadlines first, readiness never delivered */
  now += 1500;
  ck_assert_int_eq(revtun_tick(h, now), REVTUN_OK);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.idle_ping_miss"), 0);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.idle_ping_ack"), N);
  ck_assert_int_eq(revtun_idle_count(h, "n", NULL), N);
  /* a peer that really stays silent is still found out */
  ck_assert_int_eq(revtun_tick(h, now + 1200), REVTUN_OK); /* next pings */
  for (int i = 1; i < N; i++) {
    char ping[5];
    ck_assert_int_eq(read(peers[i], ping, 5), 5);
    ck_assert_int_eq(write(peers[i], ping, 5), 5);
  }
  ck_assert_int_eq(revtun_tick(h, now + 2400), REVTUN_OK);
  ck_assert_int_eq(revtun_idle_count(h, "n", NULL), N - 1);
  ck_assert_int_eq(revtun_socket_state(h, fds[0]), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED)->reason, REVTUN_CLOSE_IDLE_PING_TIMEOUT);
  revtun_free(h);
  for (int i = 0; i < N; i++)
    close(peers[i]);
}
END_TEST

/* The pre-handoff check peeked one byte, so a FIN queued behind an unread
 * echo looked alive and a dead socket was handed off. */
START_TEST(a_fin_behind_unread_bytes_is_never_handed_off) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p1, a = make_pair(&p1), p2, b = make_pair(&p2);
  ck_assert_int_eq(tu_register(h, a, "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, b, "n", "c", NULL, 0, 0), REVTUN_OK);
  tu_write(p1, "RPI"); /* part of a late echo, then the agent is gone */
  ck_assert_int_eq(shutdown(p1, SHUT_WR), 0);
  int fd;
  ck_assert_int_eq(revtun_handoff(h, "n", NULL, 5, &fd, NULL), REVTUN_OK);
  ck_assert_int_eq(fd, b); /* a was skipped ... */
  const struct tu_event *e = tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED);
  ck_assert_ptr_nonnull(e); /* ... and closed with its record */
  ck_assert_int_eq(e->fd, a);
  ck_assert_int_eq(e->reason, REVTUN_CLOSE_IDLE_PEER_CLOSE);
  /* a reset peer is refused too */
  int p3, c = make_pair(&p3);
  ck_assert_int_eq(tu_register(h, c, "m", "c", NULL, 0, 6), REVTUN_OK);
  tu_write(p3, "RPING");
  close(p3);
  ck_assert_int_eq(revtun_handoff(h, "m", NULL, 7, &fd, NULL), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED)->fd, c);
  revtun_mark_dead(h, b, REVTUN_CLOSE_LOCAL_CLOSE, 8);
  close(b);
  close(p1), close(p2);
  revtun_free(h);
}
END_TEST

/* ----------------------------------------------------------------- time */

START_TEST(every_time_value_is_bounded) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  const revtun_time_ms_t far = (UINT64_C(1) << 62) + 1;
  int peer, fd = make_pair(&peer), out;
  ck_assert_int_eq(tu_register(h, fd, "n", "c", NULL, 0, far), REVTUN_E_INVAL);
  ck_assert_int_eq(tu_register(h, fd, "n", "c", NULL, 0, UINT64_MAX), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_tick(h, far), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_process_io(h, fd, REVTUN_IO_READ, far), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_handoff(h, "n", NULL, far, &out, NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_mark_dead(h, fd, REVTUN_CLOSE_NONE, far), REVTUN_E_INVAL);
  /* the largest accepted time still leaves room for every deadline */
  ck_assert_int_eq(tu_register(h, fd, "n", "c", NULL, 300000, UINT64_C(1) << 62), REVTUN_OK);
  int64_t next = revtun_next_timeout_ms(h, UINT64_C(1) << 62);
  ck_assert_int_ge(next, 300000);
  ck_assert_int_lt(next, 345000);
  revtun_free(h);
  close(peer);
  revtun_t *h2 = NULL;
  ck_assert_int_eq(revtun_new(&h2, NULL, 0, NULL, far, NULL, 0), REVTUN_E_INVAL);
  ck_assert_ptr_null(h2);

  revtun_reg_t *reg;
  h = tu_new("empty", &rec, 0);
  ck_assert_int_eq(revtun_reg_new(h, &reg), REVTUN_OK);
  ck_assert_int_eq(revtun_reg_set_ping_interval(reg, 300001), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_reg_set_ping_interval(reg, 300000), REVTUN_OK);
  revtun_reg_free(reg);
  size_t len;
  uint8_t *cfg = tu_config("acc_default", &len);
  revtun_acceptor_t *acc;
  ck_assert_int_eq(revtun_acceptor_new(&acc, h, cfg, len, NULL, 0), REVTUN_OK);
  free(cfg);
  ck_assert_int_eq(revtun_acceptor_set_limit(acc, REVTUN_ACCEPTOR_HANDSHAKE_TIMEOUT_MS, 3600001),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_acceptor_set_limit(acc, REVTUN_ACCEPTOR_HANDSHAKE_TIMEOUT_MS, UINT64_MAX),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_acceptor_set_limit(acc, REVTUN_ACCEPTOR_HANDSHAKE_TIMEOUT_MS, 3600000),
                   REVTUN_OK);
  ck_assert_int_eq(revtun_acceptor_set_limit(acc, REVTUN_ACCEPTOR_MAX_PENDING, (1u << 20) + 1),
                   REVTUN_E_INVAL);
  revtun_free(h);

  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_limit(o, REVTUN_LIMIT_LOG_FLUSH_MS, 3600001), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_options_set_limit(o, REVTUN_LIMIT_CONFIG_BYTES, UINT64_MAX),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_options_set_limit(o, REVTUN_LIMIT_ACCESS_LOGS, 1025), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_options_set_limit(o, REVTUN_LIMIT_LOG_BUFFER_BYTES, (1ull << 30) + 1),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_options_set_limit(o, REVTUN_LIMIT_LOG_FLUSH_MS, 3600000), REVTUN_OK);
  revtun_options_free(o);
}
END_TEST

/* ----------------------------------------------- handshake memory budget */

/* Slow, large handshakes share one buffer budget: beyond it a request is
 * answered 431 while small ones still get through. */
static void run_loop(revtun_t *h, revtun_time_ms_t now) {
  for (int round = 0; round < 50; round++) {
    bool any = false;
    for (int fd = 0; fd < 1024; fd++)
      if (rec.io_events[fd] & (REVTUN_IO_READ | REVTUN_IO_WRITE)) {
        struct pollfd p = {fd, 0, 0};
        if (rec.io_events[fd] & REVTUN_IO_READ)
          p.events |= POLLIN;
        if (rec.io_events[fd] & REVTUN_IO_WRITE)
          p.events |= POLLOUT;
        if (poll(&p, 1, 0) == 1) {
          int ev = (p.revents & (POLLIN | POLLHUP | POLLERR) ? REVTUN_IO_READ : 0) |
                   (p.revents & POLLOUT ? REVTUN_IO_WRITE : 0);
          if (revtun_process_io(h, fd, ev, now) == REVTUN_OK)
            any = true;
        }
      }
    if (!any)
      break;
  }
}

START_TEST(pending_handshakes_share_a_buffer_budget) {
  tu_rec_init(&rec);
  memset(rec.io_events, 0, sizeof(rec.io_events));
  revtun_t *h = tu_new("empty", &rec, 0);
  size_t len;
  uint8_t *cfg = tu_config("acc_default", &len);
  revtun_acceptor_t *acc;
  ck_assert_int_eq(revtun_acceptor_new(&acc, h, cfg, len, NULL, 0), REVTUN_OK);
  free(cfg);
  ck_assert_int_eq(revtun_acceptor_set_limit(acc, REVTUN_ACCEPTOR_MAX_BUFFERED_BYTES, 16384),
                   REVTUN_OK);
  /* three clients each send 12 KB of a head and stall */
  int clients[3], servers[3];
  char *chunk = repeat('a', 12 * 1024);
  memcpy(chunk, "GET /x HTTP/1.1\r\nx-pad: ", 24);
  for (int i = 0; i < 3; i++) {
    servers[i] = make_pair(&clients[i]);
    ck_assert_int_eq(revtun_acceptor_accept(acc, servers[i], NULL, 0), REVTUN_OK);
    ck_assert_int_eq(write(clients[i], chunk, strlen(chunk)), (ssize_t)strlen(chunk));
  }
  run_loop(h, 1);
  /* the budget holds 16 KiB beyond 1 KiB each: the first grows to 16 KiB,
   * the others cannot and are answered 431 */
  int answered = 0;
  for (int i = 0; i < 3; i++) {
    char buf[512];
    size_t n = tu_read_all(clients[i], buf, sizeof buf);
    if (n) {
      ck_assert_msg(strncmp(buf, "HTTP/1.1 431 ", 13) == 0, "%s", buf);
      answered++;
    }
  }
  ck_assert_int_eq(answered, 2);
  /* a normal handshake still gets in */
  int cl, sv = make_pair(&cl);
  ck_assert_int_eq(revtun_acceptor_accept(acc, sv, NULL, 2), REVTUN_OK);
  tu_write(cl, "GET /reverse_connections/request HTTP/1.1\r\nhost: x\r\n"
               "x-envoy-reverse-tunnel-node-id: n\r\nx-envoy-reverse-tunnel-cluster-id: c\r\n"
               "x-envoy-reverse-tunnel-tenant-id: t\r\ncontent-length: 0\r\n\r\n");
  run_loop(h, 3);
  char buf[256];
  tu_read_all(cl, buf, sizeof buf);
  ck_assert_str_eq(buf, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
  ck_assert_int_eq(revtun_idle_count(h, "n", NULL), 1);
  free(chunk);
  revtun_free(h);
  for (int i = 0; i < 3; i++)
    close(clients[i]);
  close(cl);
}
END_TEST

/* ------------------------------------------------- fixed jitter seed */

/* A host or test may fix the keepalive jitter seed; that must not fix the id
 * hash key, or every handle with that seed would hash ids alike and one set
 * of colliding ids would fit them all. */
START_TEST(a_fixed_jitter_seed_leaves_the_hash_key_random) {
  tu_rec_init(&rec);
  revtun_options_t *o1, *o2;
  ck_assert_int_eq(revtun_options_new(&o1), REVTUN_OK);
  ck_assert_int_eq(revtun_options_new(&o2), REVTUN_OK);
  tu_options(o1, &rec);
  tu_options(o2, &rec);
  ck_assert_int_eq(revtun_options_set_seed(o1, 7), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_seed(o2, 7), REVTUN_OK);
  revtun_t *a = tu_new_opts("empty", o1, 0);
  revtun_t *b = tu_new_opts("empty", o2, 0);
  /* the seed took: both jitter generators run alike */
  ck_assert_uint_eq(a->rng, b->rng);
  ck_assert_uint_eq(rt_random(a), rt_random(b));
  /* and the hash keys were drawn apart from it */
  ck_assert_msg(a->hkey.k0 != b->hkey.k0 || a->hkey.k1 != b->hkey.k1,
                "same seed, same hash key %016llx%016llx", (unsigned long long)a->hkey.k0,
                (unsigned long long)a->hkey.k1);
  ck_assert_uint_ne(rt_siphash(&a->hkey, "node-1", 6), rt_siphash(&b->hkey, "node-1", 6));
  revtun_free(a);
  revtun_free(b);
  revtun_options_free(o1);
  revtun_options_free(o2);
}
END_TEST

int main(void) {
  Suite *s = suite_create("adversarial");
  TCase *tc = tcase_create("library");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, huge_ids_at_every_entry_point, 0, 2);
  tcase_add_test(tc, no_cross_tenant_handoff_in_10000_hostile_attempts);
  tcase_add_test(tc, ids_chosen_to_collide_do_not_share_a_chain);
  tcase_add_test(tc, threshold_above_65535_still_detects_a_dead_peer);
  tcase_add_test(tc, a_stalled_host_loop_does_not_evict_healthy_tunnels);
  tcase_add_test(tc, a_fin_behind_unread_bytes_is_never_handed_off);
  tcase_add_test(tc, every_time_value_is_bounded);
  tcase_add_test(tc, pending_handshakes_share_a_buffer_budget);
  tcase_add_test(tc, a_fixed_jitter_seed_leaves_the_hash_key_random);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
