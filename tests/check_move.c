/* Idle sockets moving between handles and processes with their state
 * (revtun_export_socket, revtun_export_next, revtun_import_socket): real
 * socket pairs, injected time, and state blobs built by hand as hostile
 * input. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static struct tu_rec rec1, rec2;

#define EXP "reverse_tunnel_acceptor.socket_exported"
#define IMP "reverse_tunnel_acceptor.socket_imported"

static int reg_full(revtun_t *h, int fd, revtun_time_ms_t now, void *user) {
  revtun_reg_t *reg;
  ck_assert_int_eq(revtun_reg_new(h, &reg), REVTUN_OK);
  revtun_reg_set_ids(reg, "node-a", "cluster-a", "tenant-a");
  revtun_reg_set_ping_interval(reg, 1000);
  ck_assert_int_eq(revtun_reg_set_initiator(reg, 1234, "worker-7", "4242"), REVTUN_OK);
  revtun_reg_set_sock_user(reg, user);
  int rc = revtun_register_socket(h, fd, reg, now);
  revtun_reg_free(reg);
  return rc;
}

static void expect_silence(int peer) {
  char buf[16];
  errno = 0;
  ck_assert_int_eq(recv(peer, buf, sizeof(buf), MSG_DONTWAIT), -1);
  ck_assert_int_eq(errno, EAGAIN);
}

/* ------------------------------------------------------- one process */

START_TEST(move_keeps_identity_and_an_outstanding_ping) {
  tu_rec_init(&rec1);
  tu_rec_init(&rec2);
  int fds0 = tu_open_fds();
  revtun_t *h1 = tu_new("empty", &rec1, 0);
  revtun_t *h2 = tu_new("empty", &rec2, 0);
  int sv[2], user = 7;
  tu_socketpair(sv);
  int fd = sv[0], peer = sv[1];
  ck_assert_int_eq(reg_full(h1, fd, 0, &user), REVTUN_OK);
  revtun_time_ms_t now = tu_tick_next(h1, 0); /* RPING out, its echo awaited */
  tu_expect_rping(peer);
  ck_assert_int_eq(revtun_next_timeout_ms(h1, now), 500);
  now += 100;

  static uint8_t blob[REVTUN_SOCKET_STATE_MAX];
  size_t len = 0;
  void *u = NULL;
  ck_assert_int_eq(revtun_export_socket(h1, fd, now, blob, sizeof(blob), &len, &u), REVTUN_OK);
  ck_assert_ptr_eq(u, &user);
  ck_assert_uint_gt(len, 38);
  ck_assert_uint_le(len, REVTUN_SOCKET_STATE_MAX);
  ck_assert(tu_fd_open(fd)); /* the caller's now */
  ck_assert_int_eq(rec1.io_events[fd], REVTUN_IO_REMOVE);
  ck_assert_int_lt(revtun_socket_state(h1, fd), 0);
  ck_assert_int_eq(revtun_idle_count(h1, "node-a", "tenant-a"), 0);
  ck_assert_int_eq(revtun_next_timeout_ms(h1, now), -1);
  ck_assert_uint_eq(tu_count(&rec1, REVTUN_EV_SOCKET_EXPORTED), 1);
  ck_assert_uint_eq(tu_count(&rec1, REVTUN_EV_TUNNEL_CLOSED), 0);
  ck_assert_uint_eq(tu_stat(h1, EXP), 1);
  ck_assert_uint_eq(tu_stat(h1, IMP), 0);
  /* a second export of the same fd finds nothing, and writes nothing */
  static uint8_t again[REVTUN_SOCKET_STATE_MAX];
  size_t len2 = 99;
  ck_assert_int_eq(revtun_export_socket(h1, fd, now, again, sizeof(again), &len2, &u),
                   REVTUN_E_NOT_FOUND);
  ck_assert_uint_eq(len2, 0);
  ck_assert_ptr_null(u);
  ck_assert_int_eq(revtun_export_socket(h1, fd, now, NULL, 0, &len2, NULL), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(revtun_export_socket(h1, 999, now, again, sizeof(again), &len2, NULL),
                   REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(revtun_export_socket(h1, fd, now, again, sizeof(again), NULL, NULL),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_export_socket(h1, fd, now, NULL, 10, &len2, NULL), REVTUN_E_INVAL);
  ck_assert_uint_eq(tu_stat(h1, EXP), 1);

  size_t setups2 = tu_count(&rec2, REVTUN_EV_TUNNEL_SETUP);
  int other = 9;
  ck_assert_int_eq(revtun_import_socket(h2, fd, blob, len, &other, now), REVTUN_OK);
  ck_assert_int_eq(revtun_socket_state(h2, fd), REVTUN_SOCK_IDLE);
  const char *n, *c, *t;
  ck_assert_int_eq(revtun_socket_identity(h2, fd, &n, &c, &t), REVTUN_OK);
  ck_assert_str_eq(n, "node-a");
  ck_assert_str_eq(c, "cluster-a");
  ck_assert_str_eq(t, "tenant-a");
  ck_assert_int_eq(revtun_idle_count(h2, "node-a", "tenant-a"), 1);
  ck_assert_uint_eq(tu_count(&rec2, REVTUN_EV_TUNNEL_SETUP), setups2);
  ck_assert_uint_eq(tu_count(&rec2, REVTUN_EV_SOCKET_IMPORTED), 1);
  const struct tu_event *e = tu_last(&rec2, REVTUN_EV_SOCKET_IMPORTED);
  ck_assert_str_eq(e->init_worker, "worker-7");
  ck_assert_str_eq(e->init_conn, "4242");
  ck_assert_int_eq(e->initiation_time, 1234);
  ck_assert_int_eq(e->fd, fd);
  ck_assert_ptr_eq(e->sock_user, &other);
  ck_assert_uint_eq(tu_stat(h2, IMP), 1);
  ck_assert_uint_eq(tu_stat(h2, EXP), 0);
  ck_assert_int_eq(rec2.io_events[fd], REVTUN_IO_READ);
  /* the reply deadline travelled: 400 ms left of the 500 */
  ck_assert_int_eq(revtun_next_timeout_ms(h2, now), 400);

  /* the echo of the ping h1 sent is h2's ack; no second RPING, no miss */
  tu_write(peer, "RPING");
  now += 50;
  ck_assert_int_eq(revtun_process_io(h2, fd, REVTUN_IO_READ, now), REVTUN_OK);
  ck_assert_uint_eq(tu_count(&rec2, REVTUN_EV_PING_ACK), 1);
  ck_assert_uint_eq(tu_count(&rec2, REVTUN_EV_PING_SENT), 0);
  ck_assert_uint_eq(tu_count(&rec2, REVTUN_EV_PING_MISS), 0);
  ck_assert_uint_eq(tu_count(&rec1, REVTUN_EV_PING_MISS), 0);
  expect_silence(peer);
  int64_t next = revtun_next_timeout_ms(h2, now); /* a send deadline again */
  ck_assert_int_ge(next, 1000);
  ck_assert_int_lt(next, 1150);
  now = tu_tick_next(h2, now);
  tu_expect_rping(peer);
  ck_assert_uint_eq(tu_count(&rec2, REVTUN_EV_PING_SENT), 1);
  ck_assert_uint_eq(
      tu_count(&rec1, REVTUN_EV_TUNNEL_CLOSED) + tu_count(&rec2, REVTUN_EV_TUNNEL_CLOSED), 0);

  revtun_free(h1);
  ck_assert(tu_fd_open(fd)); /* h1 no longer owns it */
  revtun_free(h2);
  ck_assert_uint_eq(tu_count(&rec2, REVTUN_EV_TUNNEL_CLOSED), 1);
  ck_assert(!tu_fd_open(fd));
  close(peer);
  ck_assert_int_eq(tu_open_fds(), fds0);
}
END_TEST

/* The time to the next RPING is kept, not restarted. */
START_TEST(move_keeps_the_next_ping_time) {
  tu_rec_init(&rec1);
  tu_rec_init(&rec2);
  revtun_t *h1 = tu_new("empty", &rec1, 0);
  revtun_t *h2 = tu_new("empty", &rec2, 0);
  int sv[2];
  tu_socketpair(sv);
  ck_assert_int_eq(tu_register(h1, sv[0], "n", "c", NULL, 1000, 0), REVTUN_OK);
  int64_t first = revtun_next_timeout_ms(h1, 0);
  ck_assert_int_ge(first, 1000);
  static uint8_t blob[REVTUN_SOCKET_STATE_MAX];
  size_t len;
  ck_assert_int_eq(revtun_export_socket(h1, sv[0], 700, blob, sizeof(blob), &len, NULL), REVTUN_OK);
  ck_assert_int_eq(revtun_import_socket(h2, sv[0], blob, len, NULL, 700), REVTUN_OK);
  ck_assert_int_eq(revtun_next_timeout_ms(h2, 700), first - 700);
  ck_assert_int_eq(revtun_tick(h2, (revtun_time_ms_t)first - 1), REVTUN_OK);
  expect_silence(sv[1]);
  ck_assert_int_eq(revtun_tick(h2, (revtun_time_ms_t)first), REVTUN_OK);
  tu_expect_rping(sv[1]);
  revtun_free(h1);
  revtun_free(h2);
  close(sv[1]);
}
END_TEST

/* Misses counted on the old handle count on the new one. */
START_TEST(move_keeps_the_miss_count) {
  tu_rec_init(&rec1);
  tu_rec_init(&rec2);
  revtun_t *h1 = tu_new("empty", &rec1, 0); /* threshold 3 */
  revtun_t *h2 = tu_new("empty", &rec2, 0);
  int sv[2];
  tu_socketpair(sv);
  ck_assert_int_eq(tu_register(h1, sv[0], "n", "c", NULL, 1000, 0), REVTUN_OK);
  revtun_time_ms_t now = 0;
  for (int i = 0; i < 2; i++) {
    now = tu_tick_next(h1, now);
    tu_expect_rping(sv[1]);
    now = tu_tick_next(h1, now);
  }
  ck_assert_uint_eq(tu_last(&rec1, REVTUN_EV_PING_MISS)->misses, 2);
  static uint8_t blob[REVTUN_SOCKET_STATE_MAX];
  size_t len;
  ck_assert_int_eq(revtun_export_socket(h1, sv[0], now, blob, sizeof(blob), &len, NULL), REVTUN_OK);
  ck_assert_int_eq(revtun_import_socket(h2, sv[0], blob, len, NULL, now), REVTUN_OK);
  now = tu_tick_next(h2, now);
  tu_expect_rping(sv[1]);
  now = tu_tick_next(h2, now); /* the third miss */
  const struct tu_event *t = tu_last(&rec2, REVTUN_EV_PING_TIMEOUT);
  ck_assert_ptr_nonnull(t);
  ck_assert_uint_eq(t->misses, 3);
  ck_assert_int_eq(tu_last(&rec2, REVTUN_EV_TUNNEL_CLOSED)->reason, REVTUN_CLOSE_IDLE_PING_TIMEOUT);
  revtun_free(h1);
  revtun_free(h2);
  close(sv[1]);
}
END_TEST

START_TEST(export_next_takes_the_oldest_and_keeps_on_nospace) {
  tu_rec_init(&rec1);
  revtun_t *h = tu_new("empty", &rec1, 0);
  int a[2], b[2], fd = -2;
  tu_socketpair(a);
  tu_socketpair(b);
  ck_assert_int_eq(tu_register(h, a[0], "n", "c", NULL, 1000, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, b[0], "n", "c", NULL, 1000, 10), REVTUN_OK);
  uint8_t small[16];
  size_t len = 0;
  ck_assert_int_eq(revtun_export_next(h, 20, &fd, small, sizeof(small), &len, NULL),
                   REVTUN_E_NOSPACE);
  ck_assert_int_eq(fd, -1);
  ck_assert_uint_gt(len, sizeof(small)); /* the length it needs */
  size_t need = len;
  ck_assert_int_eq(revtun_export_next(h, 20, &fd, NULL, 0, &len, NULL), REVTUN_E_NOSPACE);
  ck_assert_uint_eq(len, need);
  ck_assert_int_eq(revtun_idle_count(h, "n", NULL), 2); /* nothing lost */
  ck_assert_int_eq(revtun_socket_state(h, a[0]), REVTUN_SOCK_IDLE);
  ck_assert_uint_eq(tu_count(&rec1, REVTUN_EV_SOCKET_EXPORTED), 0);
  ck_assert_uint_eq(tu_stat(h, EXP), 0);
  ck_assert_int_eq(rec1.io_events[a[0]], REVTUN_IO_READ);
  /* the same on export_socket */
  ck_assert_int_eq(revtun_export_socket(h, b[0], 20, small, sizeof(small), &len, NULL),
                   REVTUN_E_NOSPACE);
  ck_assert_int_eq(revtun_socket_state(h, b[0]), REVTUN_SOCK_IDLE);

  static uint8_t blob[REVTUN_SOCKET_STATE_MAX];
  ck_assert_int_eq(revtun_export_next(h, 20, &fd, blob, need, &len, NULL), REVTUN_OK);
  ck_assert_int_eq(fd, a[0]);
  ck_assert_uint_eq(len, need);
  ck_assert_int_eq(revtun_export_next(h, 20, &fd, blob, sizeof(blob), &len, NULL), REVTUN_OK);
  ck_assert_int_eq(fd, b[0]);
  ck_assert_int_eq(revtun_export_next(h, 20, &fd, blob, sizeof(blob), &len, NULL),
                   REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(fd, -1);
  ck_assert_uint_eq(tu_stat(h, EXP), 2);
  ck_assert_uint_eq(tu_count(&rec1, REVTUN_EV_TUNNEL_CLOSED), 0);
  revtun_free(h);
  ck_assert(tu_fd_open(a[0]) && tu_fd_open(b[0]));
  close(a[0]), close(a[1]), close(b[0]), close(b[1]);
}
END_TEST

/* A handed-off socket is the host's: not exportable. */
START_TEST(export_of_a_handed_off_socket_is_refused) {
  tu_rec_init(&rec1);
  revtun_t *h = tu_new("empty", &rec1, 0);
  int sv[2], fd;
  tu_socketpair(sv);
  ck_assert_int_eq(tu_register(h, sv[0], "n", "c", NULL, 1000, 0), REVTUN_OK);
  revtun_strip_t st;
  ck_assert_int_eq(revtun_handoff(h, "n", NULL, 1, &fd, &st), REVTUN_OK);
  static uint8_t blob[REVTUN_SOCKET_STATE_MAX];
  size_t len;
  ck_assert_int_eq(revtun_export_socket(h, fd, 2, blob, sizeof(blob), &len, NULL), REVTUN_E_STATE);
  ck_assert_uint_eq(tu_stat(h, EXP), 0);
  revtun_free(h);
  close(sv[0]), close(sv[1]);
}
END_TEST

/* ------------------------------------------------------- hostile state */

/* A blob built by hand after the documented layout: "RVTS" u8 version u8
 * flags u16 total, u32 interval, u32 misses, u32 deadline_in, u64 age, i64
 * initiation, u8 partial, u8 awaiting, 5 x (u16 len, bytes). */
struct blob {
  uint8_t b[REVTUN_SOCKET_STATE_MAX + 64];
  size_t n;
};

static void put(struct blob *x, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--)
    x->b[x->n++] = (uint8_t)(v >> (8 * i));
}

static void put_str(struct blob *x, const char *s, size_t n) {
  put(x, n, 2);
  memcpy(x->b + x->n, s, n);
  x->n += n;
}

static void make_blob(struct blob *x, const char *node, size_t node_n) {
  x->n = 0;
  memcpy(x->b, "RVTS", 4);
  x->n = 4;
  put(x, 1, 1);
  put(x, 0, 1);
  put(x, 0, 2); /* total, filled below */
  put(x, 1000, 4);
  put(x, 0, 4);
  put(x, 300, 4);
  put(x, 5, 8);
  put(x, 77, 8);
  put(x, 0, 1);
  put(x, 0, 1);
  put_str(x, node, node_n);
  put_str(x, "cl", 2);
  put_str(x, "", 0);
  put_str(x, "w", 1);
  put_str(x, "9", 1);
  x->b[6] = (uint8_t)(x->n >> 8);
  x->b[7] = (uint8_t)x->n;
}

/* Imports x with a fresh socket pair on a fresh handle and checks that a
 * refusal leaves the fd the caller's and nothing registered. */
static int try_import(const uint8_t *b, size_t n) {
  tu_rec_init(&rec2);
  revtun_t *h = tu_new("empty", &rec2, 0);
  int sv[2];
  tu_socketpair(sv);
  int fl = fcntl(sv[0], F_GETFL);
  int rc = revtun_import_socket(h, sv[0], b, n, NULL, 0);
  if (rc != REVTUN_OK) {
    ck_assert_int_eq(fcntl(sv[0], F_GETFL), fl); /* untouched, open */
    ck_assert_int_lt(revtun_socket_state(h, sv[0]), 0);
    ck_assert_int_eq(revtun_next_timeout_ms(h, 0), -1);
    ck_assert_uint_eq(tu_stat(h, IMP), 0);
    ck_assert_uint_eq(tu_count(&rec2, REVTUN_EV_SOCKET_IMPORTED), 0);
    ck_assert_uint_eq(tu_count(&rec2, REVTUN_EV_TUNNEL_CLOSED), 0);
    ck_assert_int_eq(rec2.io_events[sv[0]], -1);
  } else {
    ck_assert_int_eq(revtun_socket_state(h, sv[0]), REVTUN_SOCK_IDLE);
  }
  revtun_free(h);
  if (rc != REVTUN_OK)
    ck_assert(tu_fd_open(sv[0]));
  close(sv[0]);
  close(sv[1]);
  return rc;
}

START_TEST(hand_made_blob_is_accepted) {
  static struct blob x;
  make_blob(&x, "nd", 2);
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_OK);
  make_blob(&x, "", 0); /* no node id */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
}
END_TEST

START_TEST(every_truncation_is_refused) {
  static struct blob x;
  make_blob(&x, "nd", 2);
  int fds0 = tu_open_fds();
  for (size_t n = 0; n < x.n; n++)
    ck_assert_msg(try_import(x.b, n) == REVTUN_E_INVAL, "truncated at %zu", n);
  /* and with the length field telling the truth about the truncation */
  for (size_t n = 8; n < x.n; n++) {
    static uint8_t c[sizeof(x.b)];
    memcpy(c, x.b, n);
    c[6] = (uint8_t)(n >> 8), c[7] = (uint8_t)n;
    ck_assert_msg(try_import(c, n) == REVTUN_E_INVAL, "truncated (consistent) at %zu", n);
  }
  ck_assert_int_eq(tu_open_fds(), fds0);
}
END_TEST

START_TEST(bad_magic_version_flags) {
  static struct blob x;
  make_blob(&x, "nd", 2);
  x.b[0] = 'X';
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  make_blob(&x, "nd", 2);
  x.b[4] = 2;
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_UNSUPPORTED);
  x.b[4] = 0;
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_UNSUPPORTED);
  make_blob(&x, "nd", 2);
  x.b[5] = 1;
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  make_blob(&x, "nd", 2);
  x.b[37] = 2; /* awaiting_reply is a bool */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  make_blob(&x, "nd", 2);
  x.b[36] = 5; /* a partial echo is at most 4 bytes */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
}
END_TEST

START_TEST(lengths_that_lie) {
  static struct blob x;
  make_blob(&x, "nd", 2);
  size_t n = x.n;
  x.b[7]++; /* total says one more */
  ck_assert_int_eq(try_import(x.b, n), REVTUN_E_INVAL);
  x.b[7] -= 2; /* one less */
  ck_assert_int_eq(try_import(x.b, n), REVTUN_E_INVAL);
  make_blob(&x, "nd", 2);
  x.b[39] = 3; /* node string runs into the next */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  x.b[38] = 0xff, x.b[39] = 0xff; /* far past the end */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  make_blob(&x, "nd", 2);
  x.b[x.n - 2] = 0; /* last string shorter: a trailing byte */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  /* trailing garbage with an honest total */
  make_blob(&x, "nd", 2);
  x.b[x.n++] = 'z';
  x.b[6] = (uint8_t)(x.n >> 8), x.b[7] = (uint8_t)x.n;
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
}
END_TEST

START_TEST(out_of_range_numbers) {
  static struct blob x;
  make_blob(&x, "nd", 2);
  memset(x.b + 8, 0, 4); /* interval 0 */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  make_blob(&x, "nd", 2);
  memset(x.b + 8, 0xff, 4); /* interval huge */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  make_blob(&x, "nd", 2);
  memset(x.b + 12, 0xff, 4); /* misses that would wrap */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  make_blob(&x, "nd", 2);
  memset(x.b + 16, 0xff, 4); /* a deadline days away */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  make_blob(&x, "nd", 2);
  memset(x.b + 20, 0xff, 8); /* age */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  make_blob(&x, "nd", 2);
  x.b[28] = 0x80; /* negative initiation time */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
}
END_TEST

START_TEST(oversized_and_bad_ids) {
  static char big[2000];
  memset(big, 'a', sizeof(big));
  static struct blob x;
  make_blob(&x, big, 1024); /* the longest id: fine */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_OK);
  make_blob(&x, big, 1025); /* one too long */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  make_blob(&x, "n\0d", 3); /* NUL inside */
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  make_blob(&x, "\0", 1);
  ck_assert_int_eq(try_import(x.b, x.n), REVTUN_E_INVAL);
  /* a whole buffer of REVTUN_SOCKET_STATE_MAX + 1 bytes */
  static uint8_t huge[REVTUN_SOCKET_STATE_MAX + 1];
  memset(huge, 'a', sizeof(huge));
  memcpy(huge, "RVTS\1\0", 6);
  huge[6] = (uint8_t)(sizeof(huge) >> 8), huge[7] = (uint8_t)sizeof(huge);
  ck_assert_int_eq(try_import(huge, sizeof(huge)), REVTUN_E_INVAL);
  ck_assert_int_eq(try_import(huge, SIZE_MAX), REVTUN_E_INVAL);
}
END_TEST

/* Ids a handle with tenant isolation refuses: no tenant, a ':' inside. */
START_TEST(ids_against_isolation) {
  tu_rec_init(&rec2);
  revtun_t *h = tu_new("isolation", &rec2, 0);
  static struct blob x;
  make_blob(&x, "nd", 2); /* no tenant */
  int sv[2];
  tu_socketpair(sv);
  ck_assert_int_eq(revtun_import_socket(h, sv[0], x.b, x.n, NULL, 0), REVTUN_E_INVAL);
  ck_assert(tu_fd_open(sv[0]));
  ck_assert_int_lt(revtun_socket_state(h, sv[0]), 0);
  ck_assert_uint_eq(tu_count(&rec2, REVTUN_EV_TUNNEL_CLOSED), 0);
  revtun_free(h);
  close(sv[0]), close(sv[1]);
}
END_TEST

START_TEST(not_a_stream_socket) {
  static struct blob x;
  make_blob(&x, "nd", 2);
  tu_rec_init(&rec2);
  revtun_t *h = tu_new("empty", &rec2, 0);
  int p[2];
  ck_assert_int_eq(pipe(p), 0);
  ck_assert_int_eq(revtun_import_socket(h, p[0], x.b, x.n, NULL, 0), REVTUN_E_INVAL);
  ck_assert(tu_fd_open(p[0]));
  int dg = socket(AF_INET, SOCK_DGRAM, 0);
  ck_assert_int_ge(dg, 0);
  ck_assert_int_eq(revtun_import_socket(h, dg, x.b, x.n, NULL, 0), REVTUN_E_INVAL);
  ck_assert(tu_fd_open(dg));
  ck_assert_int_eq(revtun_import_socket(h, 12345, x.b, x.n, NULL, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_import_socket(h, -1, x.b, x.n, NULL, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_import_socket(h, p[0], NULL, 0, NULL, 0), REVTUN_E_INVAL);
  ck_assert_uint_eq(tu_stat(h, IMP), 0);
  ck_assert_int_lt(revtun_socket_state(h, p[0]), 0);
  revtun_free(h);
  close(p[0]), close(p[1]), close(dg);
}
END_TEST

START_TEST(already_registered_fd) {
  static struct blob x;
  make_blob(&x, "nd", 2);
  tu_rec_init(&rec2);
  revtun_t *h = tu_new("empty", &rec2, 0);
  int sv[2];
  tu_socketpair(sv);
  ck_assert_int_eq(tu_register(h, sv[0], "other", "c", NULL, 1000, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_import_socket(h, sv[0], x.b, x.n, NULL, 0), REVTUN_E_EXISTS);
  const char *n, *c, *t;
  ck_assert_int_eq(revtun_socket_identity(h, sv[0], &n, &c, &t), REVTUN_OK);
  ck_assert_str_eq(n, "other"); /* the registration is untouched */
  ck_assert_uint_eq(tu_stat(h, IMP), 0);
  ck_assert_int_eq(revtun_idle_count(h, "nd", NULL), 0);
  revtun_free(h);
  close(sv[1]);
}
END_TEST

/* --------------------------------------------------- another process */

static void send_fd(int via, int fd, const void *blob, size_t len) {
  char ctl[CMSG_SPACE(sizeof(int))];
  memset(ctl, 0, sizeof(ctl));
  struct iovec iov = {(void *)blob, len};
  struct msghdr mh = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  ck_assert_int_eq(sendmsg(via, &mh, 0), (ssize_t)len);
}

static int recv_fd(int via, void *blob, size_t cap, size_t *len) {
  char ctl[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {blob, cap};
  struct msghdr mh = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
  ssize_t r = recvmsg(via, &mh, 0);
  if (r <= 0)
    return -1;
  *len = (size_t)r;
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  if (!cm || cm->cmsg_type != SCM_RIGHTS)
    return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(cm), sizeof(int));
  return fd;
}

/* The child: imports, answers the echo the parent's RPING gets, sends its
 * own RPING at the kept time. Exit codes name the step that failed. */
static int child(int via, revtun_time_ms_t now) {
  static struct tu_rec r;
  tu_rec_init(&r);
  revtun_t *h = tu_new("empty", &r, now);
  static uint8_t blob[REVTUN_SOCKET_STATE_MAX];
  size_t len = 0;
  int fd = recv_fd(via, blob, sizeof(blob), &len);
  if (fd < 0)
    return 10;
  if (revtun_import_socket(h, fd, blob, len, NULL, now) != REVTUN_OK)
    return 11;
  if (revtun_next_timeout_ms(h, now) != 400) /* 500 ms reply wait, 100 spent */
    return 12;
  if (write(via, "i", 1) != 1) /* imported: the parent may echo */
    return 13;
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 5000) != 1)
    return 14;
  now += 10;
  if (revtun_process_io(h, fd, REVTUN_IO_READ, now) != REVTUN_OK ||
      tu_count(&r, REVTUN_EV_PING_ACK) != 1 || tu_count(&r, REVTUN_EV_PING_SENT) != 0)
    return 15;
  int64_t ms = revtun_next_timeout_ms(h, now);
  if (ms < 1000 || ms >= 1150)
    return 16;
  if (revtun_tick(h, now + (revtun_time_ms_t)ms) != REVTUN_OK ||
      tu_count(&r, REVTUN_EV_PING_SENT) != 1 || tu_count(&r, REVTUN_EV_TUNNEL_CLOSED) != 0)
    return 17;
  if (tu_count(&r, REVTUN_EV_SOCKET_IMPORTED) != 1 || tu_count(&r, REVTUN_EV_TUNNEL_SETUP) != 0)
    return 18;
  revtun_free(h);
  return 0;
}

START_TEST(move_to_another_process) {
  tu_rec_init(&rec1);
  int fds0 = tu_open_fds();
  revtun_t *h = tu_new("empty", &rec1, 0);
  int sv[2], via[2];
  tu_socketpair(sv);
  ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, via), 0);
  ck_assert_int_eq(reg_full(h, sv[0], 0, NULL), REVTUN_OK);
  revtun_time_ms_t now = tu_tick_next(h, 0);
  tu_expect_rping(sv[1]);
  now += 100;
  static uint8_t blob[REVTUN_SOCKET_STATE_MAX];
  size_t len;
  ck_assert_int_eq(revtun_export_socket(h, sv[0], now, blob, sizeof(blob), &len, NULL), REVTUN_OK);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    revtun_free(h); /* the parent's, empty since the export */
    close(via[0]);
    close(sv[1]);
    _exit(child(via[1], now));
  }
  close(via[1]);
  send_fd(via[0], sv[0], blob, len);
  close(sv[0]); /* the child's now */
  char c;
  ck_assert_int_eq(read(via[0], &c, 1), 1);
  tu_write(sv[1], "RPING"); /* the echo of the parent's ping */
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert(WIFEXITED(st));
  ck_assert_int_eq(WEXITSTATUS(st), 0);
  tu_expect_rping(sv[1]); /* the child's own ping, one only */
  char b;
  ck_assert_int_eq(recv(sv[1], &b, 1, MSG_DONTWAIT), 0); /* then the child's free closed it */
  ck_assert_uint_eq(tu_count(&rec1, REVTUN_EV_SOCKET_EXPORTED), 1);
  ck_assert_uint_eq(tu_count(&rec1, REVTUN_EV_TUNNEL_CLOSED), 0);
  revtun_free(h);
  close(sv[1]);
  close(via[0]);
  ck_assert_int_eq(tu_open_fds(), fds0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("move");
  TCase *tc = tcase_create("move");
  tcase_add_test(tc, move_keeps_identity_and_an_outstanding_ping);
  tcase_add_test(tc, move_keeps_the_next_ping_time);
  tcase_add_test(tc, move_keeps_the_miss_count);
  tcase_add_test(tc, export_next_takes_the_oldest_and_keeps_on_nospace);
  tcase_add_test(tc, export_of_a_handed_off_socket_is_refused);
  tcase_add_test(tc, hand_made_blob_is_accepted);
  tcase_add_test(tc, every_truncation_is_refused);
  tcase_add_test(tc, bad_magic_version_flags);
  tcase_add_test(tc, lengths_that_lie);
  tcase_add_test(tc, out_of_range_numbers);
  tcase_add_test(tc, oversized_and_bad_ids);
  tcase_add_test(tc, ids_against_isolation);
  tcase_add_test(tc, not_a_stream_socket);
  tcase_add_test(tc, already_registered_fd);
  tcase_add_test(tc, move_to_another_process);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
