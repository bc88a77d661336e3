/* RPING keepalive with real sockets and injected time. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static struct tu_rec rec;

static int pair_registered(revtun_t *h, int *peer, uint32_t interval, revtun_time_ms_t now) {
  int sv[2];
  tu_socketpair(sv);
  *peer = sv[1];
  ck_assert_int_eq(tu_register(h, sv[0], "node", "cluster", "tenant", interval, now), REVTUN_OK);
  return sv[0];
}

START_TEST(ping_schedule_and_ack) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int peer, fd = pair_registered(h, &peer, 1000, 0);
  int64_t first = revtun_next_timeout_ms(h, 0);
  ck_assert_int_ge(first, 1000);
  ck_assert_int_lt(first, 1150);
  ck_assert_int_eq(rec.timer_ms, first); /* the host timer follows */
  ck_assert_int_eq(revtun_tick(h, (revtun_time_ms_t)first - 1), REVTUN_OK);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_PING_SENT), 0);
  revtun_time_ms_t now = tu_tick_next(h, 0);
  tu_expect_rping(peer);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_PING_SENT), 1);
  ck_assert_int_eq(revtun_next_timeout_ms(h, now), 500); /* reply deadline interval/2 */
  ck_assert_int_eq(rec.timer_ms, 500);
  tu_write(peer, "RPING");
  now += 20;
  ck_assert_int_eq(revtun_process_io(h, fd, REVTUN_IO_READ, now), REVTUN_OK);
  const struct tu_event *e = tu_last(&rec, REVTUN_EV_PING_ACK);
  ck_assert_ptr_nonnull(e);
  ck_assert_uint_eq(e->time, now);
  int64_t next = revtun_next_timeout_ms(h, now); /* send timer again, from the ack */
  ck_assert_int_ge(next, 1000);
  ck_assert_int_lt(next, 1150);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.idle_ping_sent"), 1);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.idle_ping_ack"), 1);
  ck_assert_int_eq(revtun_process_io(h, 12345, REVTUN_IO_READ, now), REVTUN_E_NOT_FOUND);
  revtun_free(h);
  close(peer);
}
END_TEST

/* A silent peer (no FIN, no reply) dies after `threshold` misses. */
static revtun_time_ms_t run_silent(const char *config, uint32_t threshold, uint32_t interval) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new(config, &rec, 0);
  int peer;
  pair_registered(h, &peer, interval, 0);
  revtun_time_ms_t now = 0;
  for (uint32_t miss = 1; miss <= threshold; miss++) {
    now = tu_tick_next(h, now); /* send */
    tu_expect_rping(peer);
    now = tu_tick_next(h, now); /* reply deadline */
    if (miss < threshold) {
      const struct tu_event *e = tu_last(&rec, REVTUN_EV_PING_MISS);
      ck_assert_uint_eq(e->misses, miss);
      char want[32];
      snprintf(want, sizeof(want), "miss_count=%u;", miss);
      ck_assert_ptr_nonnull(strstr(e->meta, want));
      ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_TUNNEL_CLOSED), 0);
    }
  }
  const struct tu_event *t = tu_last(&rec, REVTUN_EV_PING_TIMEOUT);
  ck_assert_ptr_nonnull(t);
  ck_assert_uint_eq(t->misses, threshold);
  const struct tu_event *c = tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED);
  ck_assert_int_eq(c->reason, REVTUN_CLOSE_IDLE_PING_TIMEOUT);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_PING_MISS), threshold - 1);
  ck_assert(t < c); /* timeout record before the close */
  char b;
  ck_assert_int_eq(recv(peer, &b, 1, MSG_DONTWAIT), 0); /* closed */
  ck_assert_int_eq(revtun_next_timeout_ms(h, now), -1);
  revtun_free(h);
  close(peer);
  return now;
}

START_TEST(threshold_three_and_detection_bound) {
  revtun_time_ms_t died = run_silent("empty", 3, 2000);
  /* threshold x (interval*1.15 + interval/2) */
  ck_assert_uint_le(died, 3 * (2300 + 1000));
  ck_assert_uint_ge(died, 3 * (2000 + 1000));
}
END_TEST

START_TEST(threshold_one) { run_silent("threshold_one", 1, 2000); }
END_TEST

START_TEST(threshold_large) {
  revtun_time_ms_t died = run_silent("threshold_large", 50, 100);
  ck_assert_uint_le(died, 50 * (115 + 50));
}
END_TEST

START_TEST(only_an_ack_resets_the_count) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int peer, fd = pair_registered(h, &peer, 1000, 0);
  revtun_time_ms_t now = 0;
  for (int round = 0; round < 5; round++) {
    for (int miss = 0; miss < 2; miss++) {
      now = tu_tick_next(h, now);
      tu_expect_rping(peer);
      now = tu_tick_next(h, now);
    }
    ck_assert_uint_eq(tu_last(&rec, REVTUN_EV_PING_MISS)->misses, 2);
    now = tu_tick_next(h, now);
    tu_expect_rping(peer);
    tu_write(peer, "RPING");
    ck_assert_int_eq(revtun_process_io(h, fd, REVTUN_IO_READ, now + 1), REVTUN_OK);
    now += 1;
  }
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_TUNNEL_CLOSED), 0);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_PING_ACK), 5);
  revtun_free(h);
  close(peer);
}
END_TEST

START_TEST(eagain_on_write_counts_a_miss) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("threshold_one", &rec, 0);
  int sv[2];
  tu_socketpair(sv);
  fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  char junk[4096];
  memset(junk, 'x', sizeof(junk));
  while (send(sv[0], junk, sizeof(junk), MSG_DONTWAIT) > 0) /* fill the pipe */
    ;
  ck_assert_int_eq(tu_register(h, sv[0], "n", "c", NULL, 1000, 0), REVTUN_OK);
  revtun_time_ms_t now = tu_tick_next(h, 0);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_PING_SENT), 0); /* nothing written */
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_TUNNEL_CLOSED), 0);
  ck_assert_int_eq(revtun_next_timeout_ms(h, now), 500);
  tu_tick_next(h, now);
  ck_assert_int_eq(tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED)->reason, REVTUN_CLOSE_IDLE_PING_TIMEOUT);
  revtun_free(h);
  close(sv[1]);
}
END_TEST

START_TEST(hard_write_error_closes) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int peer;
  pair_registered(h, &peer, 1000, 0);
  close(peer);
  tu_tick_next(h, 0); /* send -> EPIPE */
  const struct tu_event *c = tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED);
  ck_assert_ptr_nonnull(c);
  ck_assert_int_eq(c->reason, REVTUN_CLOSE_IDLE_PING_WRITE_FAILURE);
  ck_assert_int_eq(c->sys_errno, EPIPE);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.tunnel_closed.idle_ping_write_failure"), 1);
  revtun_free(h);
}
END_TEST

static int close_reason_after(const char *bytes, size_t n) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int peer, fd = pair_registered(h, &peer, 1000, 0);
  ck_assert_int_eq(send(peer, bytes, n, 0), (ssize_t)n);
  revtun_process_io(h, fd, REVTUN_IO_READ, 5);
  const struct tu_event *c = tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED);
  int reason = c ? c->reason : 0;
  revtun_free(h);
  close(peer);
  return reason;
}

START_TEST(unexpected_data_closes_at_once) {
  ck_assert_int_eq(close_reason_after("HELLO", 5), REVTUN_CLOSE_IDLE_UNEXPECTED_DATA);
  ck_assert_int_eq(close_reason_after("RPINX", 5), REVTUN_CLOSE_IDLE_UNEXPECTED_DATA);
  ck_assert_int_eq(close_reason_after("RPINGX", 6), REVTUN_CLOSE_IDLE_UNEXPECTED_DATA);
  ck_assert_int_eq(close_reason_after("PING", 4), REVTUN_CLOSE_IDLE_UNEXPECTED_DATA);
  ck_assert_int_eq(close_reason_after("RPINGRPING", 10), 0);
  ck_assert_int_eq(close_reason_after("RPI", 3), 0);         /* a proper prefix is held */
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_PING_MISS), 0); /* never a miss */
}
END_TEST

START_TEST(echo_split_across_reads) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int peer, fd = pair_registered(h, &peer, 1000, 0);
  tu_write(peer, "RP");
  ck_assert_int_eq(revtun_process_io(h, fd, REVTUN_IO_READ, 1), REVTUN_OK);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_PING_ACK), 0);
  tu_write(peer, "I");
  revtun_process_io(h, fd, REVTUN_IO_READ, 2);
  tu_write(peer, "NGRP");
  revtun_process_io(h, fd, REVTUN_IO_READ, 3);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_PING_ACK), 1);
  tu_write(peer, "X"); /* "RPX": not an echo */
  revtun_process_io(h, fd, REVTUN_IO_READ, 4);
  ck_assert_int_eq(tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED)->reason,
                   REVTUN_CLOSE_IDLE_UNEXPECTED_DATA);
  revtun_free(h);
  close(peer);
}
END_TEST

START_TEST(peer_close_is_seen) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int peer, fd = pair_registered(h, &peer, 1000, 0);
  close(peer);
  revtun_process_io(h, fd, REVTUN_IO_READ, 9);
  ck_assert_int_eq(tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED)->reason, REVTUN_CLOSE_IDLE_PEER_CLOSE);
  ck_assert(!tu_fd_open(fd));
  revtun_free(h);
}
END_TEST

START_TEST(reset_is_a_read_error) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  bind(ls, (struct sockaddr *)&sa, sizeof(sa));
  listen(ls, 1);
  getsockname(ls, (struct sockaddr *)&sa, &sl);
  int cl = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_eq(connect(cl, (struct sockaddr *)&sa, sizeof(sa)), 0);
  int fd = accept(ls, NULL, NULL);
  ck_assert_int_eq(tu_register(h, fd, "n", "c", NULL, 1000, 0), REVTUN_OK);
  struct linger lg = {1, 0};
  setsockopt(cl, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(cl); /* RST */
  struct pollfd p = {fd, POLLIN, 0};
  poll(&p, 1, 2000);
  revtun_process_io(h, fd, REVTUN_IO_READ, 9);
  const struct tu_event *c = tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED);
  ck_assert_int_eq(c->reason, REVTUN_CLOSE_IDLE_READ_ERROR);
  ck_assert_int_eq(c->sys_errno, ECONNRESET);
  revtun_free(h);
  close(ls);
}
END_TEST

static void send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, 0);
    ck_assert_int_gt(w, 0);
    p += w;
    n -= (size_t)w;
  }
}

static char *pings(size_t count) {
  char *b = malloc(count * 5);
  for (size_t i = 0; i < count; i++)
    memcpy(b + 5 * i, "RPING", 5);
  return b;
}

START_TEST(flood_cap) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int big = 1 << 20;
  int peer, fd = pair_registered(h, &peer, 1000, 0);
  setsockopt(peer, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
  char *b = pings(13107); /* 65535 bytes: below the cap */
  int fl = fcntl(peer, F_GETFL);
  fcntl(peer, F_SETFL, fl & ~O_NONBLOCK);
  send_all(peer, b, 13107 * 5);
  revtun_process_io(h, fd, REVTUN_IO_READ, 1);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_TUNNEL_CLOSED), 0);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_PING_ACK), 1); /* one ack per wake */
  free(b);
  b = pings(13108); /* 65540 bytes in one wake */
  send_all(peer, b, 13108 * 5);
  revtun_process_io(h, fd, REVTUN_IO_READ, 2);
  ck_assert_int_eq(tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED)->reason,
                   REVTUN_CLOSE_IDLE_KEEPALIVE_FLOOD);
  free(b);
  revtun_free(h);
  close(peer);
}
END_TEST

START_TEST(jitter_bounds) {
  for (uint64_t seed = 0; seed < 200; seed++) {
    tu_rec_init(&rec);
    revtun_options_t *o;
    ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
    tu_options(&*o, &rec);
    revtun_options_set_seed(o, seed);
    revtun_t *h = tu_new_opts("empty", o, 0);
    revtun_options_free(o);
    int peer;
    pair_registered(h, &peer, 10000, 0);
    int64_t t = revtun_next_timeout_ms(h, 0);
    ck_assert_int_ge(t, 10000);
    ck_assert_int_lt(t, 11500);
    revtun_free(h);
    close(peer);
  }
  /* below 7 ms the 15 % window is empty: no jitter */
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int peer;
  pair_registered(h, &peer, 6, 0);
  ck_assert_int_eq(revtun_next_timeout_ms(h, 0), 6);
  revtun_free(h);
  close(peer);
}
END_TEST

START_TEST(deadline_arithmetic) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p1, p2;
  pair_registered(h, &p1, 1, 100); /* interval 1: send at 101, reply deadline max(1, 0) = 1 */
  ck_assert_int_eq(revtun_next_timeout_ms(h, 100), 1);
  ck_assert_int_eq(revtun_tick(h, 101), REVTUN_OK);
  ck_assert_int_eq(revtun_next_timeout_ms(h, 101), 1);
  pair_registered(h, &p2, 3, 101); /* interval 3: reply deadline 1 */
  ck_assert_int_eq(revtun_next_timeout_ms(h, 101), 1);
  ck_assert_int_eq(revtun_next_timeout_ms(h, 500), 0); /* overdue is 0, never negative */
  int64_t t = 77;
  ck_assert_int_eq(revtun_next_timeout(h, 101, &t), REVTUN_OK);
  ck_assert_int_eq(t, 1);
  ck_assert_int_eq(revtun_next_timeout(h, 500, &t), REVTUN_OK);
  ck_assert_int_eq(t, 0);
  revtun_free(h);
  ck_assert_int_eq(rec.timer_ms, -1);
  close(p1), close(p2);
  tu_rec_init(&rec);
  h = tu_new("empty", &rec, 0);
  ck_assert_int_eq(revtun_next_timeout_ms(h, 0), -1);
  ck_assert_int_eq(revtun_next_timeout_ms(NULL, 0), REVTUN_E_INVAL); /* also -1 */
  /* revtun_next_timeout tells "no deadline" from "no handle" */
  ck_assert_int_eq(revtun_next_timeout(h, 0, &t), REVTUN_OK);
  ck_assert_int_eq(t, -1);
  t = 77;
  ck_assert_int_eq(revtun_next_timeout(NULL, 0, &t), REVTUN_E_INVAL);
  ck_assert_int_eq(t, 77); /* not written */
  ck_assert_int_eq(revtun_next_timeout(h, 0, NULL), REVTUN_E_INVAL);
  revtun_free(h);
}
END_TEST

/* revtun_process_io_events agrees with revtun_process_io: an entry whose fd
 * the handle does not know when it is reached (a stale event after REMOVE,
 * or an fd an earlier entry closed) is counted and makes the call
 * REVTUN_E_NOT_FOUND; every other entry is handled. revtun_process_io_batch
 * skips such entries silently. */
static int nested_rc;
static void io_events_from_a_callback(revtun_t *h, const revtun_event_t *ev, struct tu_rec *r) {
  (void)ev, (void)r;
  revtun_io_event_t e = {0, REVTUN_IO_READ};
  nested_rc = revtun_process_io_events(h, &e, 1, 5, NULL);
}

START_TEST(io_events_count_unknown_fds) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p1, p2, p3;
  int a = pair_registered(h, &p1, 1000, 0), b = pair_registered(h, &p2, 1000, 0);
  tu_write(p1, "RPING"); /* a: an echo */
  close(p2);             /* b: the peer is gone */
  revtun_io_event_t evs[] = {
      {a, REVTUN_IO_READ}, {b, REVTUN_IO_READ}, {b, REVTUN_IO_READ}, {9999, REVTUN_IO_READ}};
  size_t unknown = 7;
  ck_assert_int_eq(revtun_process_io_events(h, evs, 4, 1, &unknown), REVTUN_E_NOT_FOUND);
  ck_assert_uint_eq(unknown, 2); /* b once it was closed, and 9999 */
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_PING_ACK), 1);
  ck_assert_int_eq(tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED)->fd, b);
  ck_assert_int_eq(revtun_process_io(h, b, REVTUN_IO_READ, 2), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(revtun_process_io_events(h, evs, 1, 2, &unknown), REVTUN_OK);
  ck_assert_uint_eq(unknown, 0);
  ck_assert_int_eq(revtun_process_io_batch(h, evs + 2, 2, 3), REVTUN_OK);
  ck_assert_int_eq(revtun_process_io_events(h, NULL, 0, 3, NULL), REVTUN_OK);
  ck_assert_int_eq(revtun_process_io_events(h, NULL, 1, 3, &unknown), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_process_io_events(NULL, evs, 1, 3, &unknown), REVTUN_E_INVAL);
  rec.on_event = io_events_from_a_callback; /* refused from a callback, like the single one */
  nested_rc = 0;
  pair_registered(h, &p3, 1000, 4);
  rec.on_event = NULL;
  ck_assert_int_eq(nested_rc, REVTUN_E_RECURSIVE);
  revtun_free(h);
  close(p1), close(p3);
}
END_TEST

START_TEST(partial_echo_travels_with_the_handoff) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int peer, fd = pair_registered(h, &peer, 1000, 0);
  tu_write(peer, "RPI");
  revtun_process_io(h, fd, REVTUN_IO_READ, 1);
  revtun_strip_t st;
  int got;
  ck_assert_int_eq(revtun_handoff(h, "node", "tenant", 2, &got, &st), REVTUN_OK);
  ck_assert_int_eq(got, fd);
  tu_write(peer, "NG value");
  char in[64], out[80];
  size_t n = tu_read_all(fd, in, sizeof(in)), olen, np;
  ck_assert_int_eq(revtun_rping_strip(&st, (uint8_t *)in, n, (uint8_t *)out, &olen, &np),
                   REVTUN_OK);
  ck_assert_uint_eq(np, 1);
  ck_assert_uint_eq(olen, 6);
  ck_assert_mem_eq(out, " value", 6);
  ck_assert_int_eq(revtun_rping_strip_active(st), 0);
  revtun_mark_dead(h, fd, REVTUN_CLOSE_REMOTE_CLOSE, 3);
  revtun_free(h);
  close(fd), close(peer);
}
END_TEST

/* ------------------------------------------------------- strip helper */

static size_t strip(revtun_strip_t *st, const char *in, char *out, size_t *pings_out) {
  size_t olen = 0, np = 0;
  ck_assert_int_eq(
      revtun_rping_strip(st, (const uint8_t *)in, strlen(in), (uint8_t *)out, &olen, &np),
      REVTUN_OK);
  out[olen] = '\0';
  if (pings_out)
    *pings_out = np;
  return olen;
}

START_TEST(strip_helper_behaviours) {
  char out[128];
  size_t np;
  revtun_strip_t st = 0;
  ck_assert_uint_eq(strip(&st, "RPING", out, &np), 0);
  ck_assert_uint_eq(np, 1);
  ck_assert(revtun_rping_strip_active(st));
  st = 0;
  ck_assert_uint_eq(strip(&st, "RPI", out, &np), 0);
  ck_assert_uint_eq(np, 0);
  ck_assert_uint_eq(strip(&st, "NG", out, &np), 0);
  ck_assert_uint_eq(np, 1);
  st = 0;
  strip(&st, "RPING value", out, &np);
  ck_assert_str_eq(out, " value");
  ck_assert_uint_eq(np, 1);
  st = 0;
  strip(&st, "RPING", out, NULL);
  strip(&st, "GET /", out, NULL);
  ck_assert_str_eq(out, "GET /");
  st = 0;
  strip(&st, "HELLO", out, &np);
  ck_assert_str_eq(out, "HELLO");
  strip(&st, "RPING", out, &np);
  ck_assert_str_eq(out, "RPING");
  ck_assert_uint_eq(np, 0);
  st = 0;
  strip(&st, "RPINGRPING value", out, &np);
  ck_assert_str_eq(out, " value");
  ck_assert_uint_eq(np, 2);
  st = 3; /* a seeded "RPI" */
  strip(&st, "NG value", out, &np);
  ck_assert_str_eq(out, " value");
  ck_assert_uint_eq(np, 1);
  st = 0; /* "RPX" is application data, all of it */
  strip(&st, "RP", out, NULL);
  strip(&st, "X", out, NULL);
  ck_assert_str_eq(out, "RPX");
  st = 0;
  strip(&st, "PING", out, NULL);
  ck_assert_str_eq(out, "PING");
  st = 0;
  ck_assert_uint_eq(strip(&st, "", out, &np), 0);
  ck_assert(revtun_rping_strip_active(st));
  size_t olen;
  st = 7; /* not a valid state */
  ck_assert_int_eq(revtun_rping_strip(&st, (const uint8_t *)"x", 1, (uint8_t *)out, &olen, NULL),
                   REVTUN_E_INVAL);
}
END_TEST

START_TEST(strip_flood_and_slow_stream) {
  char *b = pings(13200);
  uint8_t *out = malloc(13200 * 5 + 4);
  size_t olen, np;
  revtun_strip_t st = 0;
  ck_assert_int_eq(revtun_rping_strip(&st, (uint8_t *)b, 13108 * 5, out, &olen, &np),
                   REVTUN_E_PROTOCOL); /* 29/30 */
  ck_assert_uint_eq(np, 13108);
  st = 0;
  ck_assert_int_eq(revtun_rping_strip(&st, (uint8_t *)b, 13107 * 5, out, &olen, &np), REVTUN_OK);
  st = 0;
  size_t total = 0;
  for (int i = 0; i < 14000; i++) { /* slow steady stream never trips */
    ck_assert_int_eq(revtun_rping_strip(&st, (uint8_t *)b, 5, out, &olen, &np), REVTUN_OK);
    total += np;
  }
  ck_assert_uint_eq(total, 14000);
  free(b);
  free(out);
}
END_TEST

/* ---------------------- 10,000 healthy sockets for one simulated hour */

#define HOUR_SOCKETS 10000
#define HOUR_INTERVAL 30000u
#define HOUR_MS 3600000u

static int *hour_pinged;
static size_t hour_n_pinged;
static unsigned *hour_count; /* pings per fd */

static void hour_on_event(revtun_t *h, const revtun_event_t *ev, struct tu_rec *r) {
  (void)h, (void)r;
  if (revtun_event_kind(ev) == REVTUN_EV_PING_SENT) {
    hour_pinged[hour_n_pinged++] = revtun_event_fd(ev);
    hour_count[revtun_event_fd(ev)]++;
  }
}

/* An echo server in a child process holds the peer ends, so the 10,000
 * library sockets fit in this process's descriptor limit. */
static pid_t start_echo_server(int *port) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  ck_assert_int_eq(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
  ck_assert_int_eq(listen(ls, 4096), 0);
  getsockname(ls, (struct sockaddr *)&sa, &sl);
  *port = ntohs(sa.sin_port);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid > 0) {
    close(ls);
    return pid;
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        int c = accept(ls, NULL, NULL);
        if (c >= 0) {
          struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
        }
        continue;
      }
      char buf[512];
      ssize_t r = recv(fd, buf, sizeof(buf), 0);
      if (r <= 0)
        close(fd);
      else if (send(fd, buf, (size_t)r, MSG_NOSIGNAL) != r)
        _exit(3);
    }
  }
}

START_TEST(ten_thousand_sockets_for_an_hour) {
  tu_rec_init(&rec);
  rec.on_event = hour_on_event;
  hour_pinged = calloc(HOUR_SOCKETS + 16, sizeof(int));
  hour_count = calloc(65536, sizeof(unsigned));
  int port;
  pid_t child = start_echo_server(&port);
  revtun_t *h = tu_new("empty", &rec, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                           .sin_port = htons((uint16_t)port)};
  int *fds = calloc(HOUR_SOCKETS, sizeof(int));
  for (int i = 0; i < HOUR_SOCKETS; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fds[i], 0);
    ck_assert_int_eq(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
    char node[32];
    snprintf(node, sizeof(node), "node-%d", i % 1000);
    ck_assert_int_eq(tu_register(h, fds[i], node, "cluster", NULL, HOUR_INTERVAL, 0), REVTUN_OK);
  }
  revtun_time_ms_t now = 0;
  struct pollfd *pfd = calloc(HOUR_SOCKETS, sizeof(*pfd));
  for (;;) {
    int64_t ms = revtun_next_timeout_ms(h, now);
    if (ms < 0 || now + (revtun_time_ms_t)ms > HOUR_MS)
      break;
    now += (revtun_time_ms_t)ms;
    hour_n_pinged = 0;
    ck_assert_int_eq(revtun_tick(h, now), REVTUN_OK);
    /* wait (real time, no assertion on it) for every echo, then feed them in
     * at the same injected time: a healthy peer answers before the deadline */
    size_t pending = hour_n_pinged;
    for (size_t i = 0; i < pending; i++)
      pfd[i] = (struct pollfd){hour_pinged[i], POLLIN, 0};
    while (pending) {
      ck_assert_int_gt(poll(pfd, pending, 10000), 0);
      for (size_t i = 0; i < pending;) {
        if (pfd[i].revents) {
          revtun_process_io(h, pfd[i].fd, REVTUN_IO_READ, now);
          pfd[i] = pfd[--pending];
        } else {
          i++;
        }
      }
    }
  }
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_TUNNEL_CLOSED), 0);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.worker_0.idle_sockets"), HOUR_SOCKETS);
  uint64_t sent = tu_stat(h, "reverse_tunnel_acceptor.idle_ping_sent");
  ck_assert_uint_eq(sent, tu_stat(h, "reverse_tunnel_acceptor.idle_ping_ack"));
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.idle_ping_miss"), 0);
  /* each socket pings every [interval, 1.15 interval) after its last ack */
  unsigned lo = HOUR_MS / (HOUR_INTERVAL * 115 / 100), hi = HOUR_MS / HOUR_INTERVAL;
  for (int i = 0; i < HOUR_SOCKETS; i++) {
    ck_assert_uint_ge(hour_count[fds[i]], lo);
    ck_assert_uint_le(hour_count[fds[i]], hi);
  }
  ck_assert_uint_ge(sent, (uint64_t)lo * HOUR_SOCKETS);
  ck_assert_uint_le(sent, (uint64_t)hi * HOUR_SOCKETS);
  revtun_free(h);
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  free(fds), free(pfd), free(hour_pinged), free(hour_count);
}
END_TEST

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  Suite *s = suite_create("keepalive");
  TCase *tc = tcase_create("keepalive");
  tcase_add_test(tc, ping_schedule_and_ack);
  tcase_add_test(tc, threshold_three_and_detection_bound);
  tcase_add_test(tc, threshold_one);
  tcase_add_test(tc, threshold_large);
  tcase_add_test(tc, only_an_ack_resets_the_count);
  tcase_add_test(tc, eagain_on_write_counts_a_miss);
  tcase_add_test(tc, hard_write_error_closes);
  tcase_add_test(tc, unexpected_data_closes_at_once);
  tcase_add_test(tc, echo_split_across_reads);
  tcase_add_test(tc, peer_close_is_seen);
  tcase_add_test(tc, reset_is_a_read_error);
  tcase_add_test(tc, flood_cap);
  tcase_add_test(tc, jitter_bounds);
  tcase_add_test(tc, deadline_arithmetic);
  tcase_add_test(tc, io_events_count_unknown_fds);
  tcase_add_test(tc, partial_echo_travels_with_the_handoff);
  tcase_add_test(tc, strip_helper_behaviours);
  tcase_add_test(tc, strip_flood_and_slow_stream);
  suite_add_tcase(s, tc);
  TCase *slow = tcase_create("scale");
  tcase_set_tags(slow, "slow");
  tcase_set_timeout(slow, 600);
  tcase_add_test(slow, ten_thousand_sockets_for_an_hour);
  suite_add_tcase(s, slow);
  return tu_run(s);
}
