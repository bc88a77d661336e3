/* Handles of one process sharing a directory (revtun_directory_new,
 * revtun_handoff_request, revtun_handoff_cancel): real socket pairs, the
 * handles' wake fds pumped by hand on one thread, and a multi-thread stress
 * run (tag "stress", the one to run under ThreadSanitizer). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

/* ------------------------------------------------------------ arrivals */

struct arrival {
  revtun_t *h;
  uint64_t ticket;
  int status, fd;
  void *request_user;
};

static struct arrival arrivals[256];
static size_t n_arrivals;

static void on_arrival(revtun_t *h, uint64_t ticket, int status, int fd, revtun_strip_t strip,
                       void *request_user, void *user_data) {
  (void)strip;
  (void)user_data;
  ck_assert_uint_lt(n_arrivals, 256);
  arrivals[n_arrivals++] = (struct arrival){h, ticket, status, fd, request_user};
}

#define MAX_H (REVTUN_DIRECTORY_MAX_HANDLES + 1)
static struct tu_rec recs[4];

static revtun_t *new_h(revtun_directory_t *dir, const char *config, struct tu_rec *r) {
  tu_rec_init(r);
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, r);
  ck_assert_int_eq(revtun_options_set_directory(o, dir), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_arrival_cb(o, on_arrival), REVTUN_OK);
  revtun_t *h = tu_new_opts(config, o, 0);
  revtun_options_free(o);
  return h;
}

static bool is_eventfd(int fd) {
  char path[64], link[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, link, sizeof(link) - 1);
  if (n <= 0)
    return false;
  link[n] = '\0';
  return strstr(link, "eventfd") != NULL;
}

/* The fd the handle's io callback was asked to watch for reading that is
 * not a socket: its wake fd. */
static int wake_fd(const struct tu_rec *r) {
  int found = -1;
  for (int fd = 0; fd < 65536; fd++)
    if (r->io_events[fd] == REVTUN_IO_READ && is_eventfd(fd)) {
      ck_assert_int_eq(found, -1); /* one only */
      found = fd;
    }
  ck_assert_int_ge(found, 0);
  return found;
}

/* Runs the wake fds of hs until none is readable. */
static void pump(revtun_t **hs, struct tu_rec **rs, int n, revtun_time_ms_t now) {
  for (int round = 0; round < 16; round++) {
    bool any = false;
    for (int i = 0; i < n; i++) {
      if (!hs[i])
        continue;
      int fd = wake_fd(rs[i]);
      struct pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, 0) == 1) {
        any = true;
        ck_assert_int_eq(revtun_process_io(hs[i], fd, REVTUN_IO_READ, now), REVTUN_OK);
      }
    }
    if (!any)
      return;
  }
  ck_abort_msg("the handles kept waking each other");
}

static int pair_on(revtun_t *h, const char *node, const char *cluster, int *peer) {
  int sv[2];
  tu_socketpair(sv);
  *peer = sv[1];
  ck_assert_int_eq(tu_register(h, sv[0], node, cluster, NULL, 1000, 0), REVTUN_OK);
  return sv[0];
}

static void setup(void) { n_arrivals = 0; }

/* A directory with n handles on it, hs[i] recording into recs[i]. */
static revtun_directory_t *world(int n, revtun_t **hs, struct tu_rec **rs) {
  revtun_directory_t *dir;
  ck_assert_int_eq(revtun_directory_new(&dir), REVTUN_OK);
  for (int i = 0; i < n; i++)
    hs[i] = new_h(dir, "empty", rs[i] = &recs[i]);
  return dir;
}

/* A request that has to wait for another handle: its ticket. */
static uint64_t request_pending(revtun_t *h, int lookup, const char *id, void *user,
                                revtun_time_ms_t now) {
  int got;
  uint64_t ticket;
  revtun_strip_t st;
  ck_assert_int_eq(revtun_handoff_request(h, lookup, id, NULL, user, now, &got, &st, &ticket),
                   REVTUN_E_PENDING);
  ck_assert_int_eq(got, -1);
  ck_assert_uint_ne(ticket, 0);
  return ticket;
}

/* ---------------------------------------------------------------- tests */

START_TEST(local_socket_is_served_at_once) {
  revtun_directory_t *dir;
  ck_assert_int_eq(revtun_directory_new(&dir), REVTUN_OK);
  revtun_t *a = new_h(dir, "empty", &recs[0]);
  revtun_t *b = new_h(dir, "empty", &recs[1]);
  revtun_directory_free(dir); /* the handles keep it */
  int peer, fd = pair_on(a, "n", "c", &peer), got = -1;
  uint64_t ticket = 99;
  revtun_strip_t st;
  ck_assert_int_eq(
      revtun_handoff_request(a, REVTUN_LOOKUP_NODE, "n", NULL, NULL, 1, &got, &st, &ticket),
      REVTUN_OK);
  ck_assert_int_eq(got, fd);
  ck_assert_uint_eq(ticket, 0);
  ck_assert_int_eq(revtun_socket_state(a, fd), REVTUN_SOCK_IN_USE);
  /* nothing left anywhere: not found at once, no ticket */
  ck_assert_int_eq(
      revtun_handoff_request(a, REVTUN_LOOKUP_NODE, "n", NULL, NULL, 1, &got, &st, &ticket),
      REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(got, -1);
  ck_assert_uint_eq(ticket, 0);
  ck_assert_int_eq(revtun_handoff_request(a, 7, "n", NULL, NULL, 1, &got, &st, &ticket),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(
      revtun_handoff_request(a, REVTUN_LOOKUP_NODE, "", NULL, NULL, 1, &got, &st, &ticket),
      REVTUN_E_INVAL);
  revtun_free(a);
  revtun_free(b);
  close(fd), close(peer);
}
END_TEST

START_TEST(remote_socket_arrives) {
  int fds0 = tu_open_fds();
  revtun_t *hs[2];
  struct tu_rec *rs[2];
  revtun_directory_t *dir = world(2, hs, rs);
  int peer, fd = pair_on(hs[1], "n", "c", &peer), got = -1, user = 5;
  uint64_t ticket = 0;
  ticket = request_pending(hs[0], REVTUN_LOOKUP_NODE, "n", &user, 10);
  ck_assert_int_eq(got, -1);
  ck_assert_uint_ne(ticket, 0);
  ck_assert_uint_eq(n_arrivals, 0);
  pump(hs, rs, 2, 20);
  ck_assert_uint_eq(n_arrivals, 1);
  ck_assert_ptr_eq(arrivals[0].h, hs[0]);
  ck_assert_uint_eq(arrivals[0].ticket, ticket);
  ck_assert_int_eq(arrivals[0].status, REVTUN_OK);
  ck_assert_ptr_eq(arrivals[0].request_user, &user);
  ck_assert_int_eq(arrivals[0].fd, fd); /* the very socket b held */
  tu_write(arrivals[0].fd, "through");
  char buf[16];
  ck_assert_uint_eq(tu_read_all(peer, buf, sizeof(buf)), 7);
  ck_assert_str_eq(buf, "through");
  ck_assert_int_eq(revtun_socket_state(hs[0], fd), REVTUN_SOCK_IN_USE);
  ck_assert_int_lt(revtun_socket_state(hs[1], fd), 0);
  ck_assert_int_eq(revtun_idle_count(hs[1], "n", NULL), 0);
  ck_assert_uint_eq(tu_count(&recs[1], REVTUN_EV_SOCKET_EXPORTED), 1);
  ck_assert_uint_eq(tu_count(&recs[0], REVTUN_EV_SOCKET_IMPORTED), 1);
  ck_assert_uint_eq(tu_count(&recs[0], REVTUN_EV_SOCKET_HANDOFF), 1);
  ck_assert_uint_eq(
      tu_count(&recs[0], REVTUN_EV_TUNNEL_CLOSED) + tu_count(&recs[1], REVTUN_EV_TUNNEL_CLOSED), 0);
  ck_assert_uint_eq(tu_stat(hs[0], "reverse_tunnel_acceptor.remote_handoff"), 1);
  ck_assert_int_eq(revtun_handoff_cancel(hs[0], ticket), REVTUN_E_NOT_FOUND); /* answered */
  revtun_free(hs[0]);
  revtun_free(hs[1]);
  revtun_directory_free(dir);
  close(fd), close(peer);
  ck_assert_int_eq(tu_open_fds(), fds0);
}
END_TEST

START_TEST(cancel_parks_the_socket_here) {
  revtun_t *hs[2];
  struct tu_rec *rs[2];
  revtun_directory_t *dir = world(2, hs, rs);
  int peer, fd = pair_on(hs[1], "n", "c", &peer), got;
  uint64_t ticket;
  revtun_strip_t st;
  ticket = request_pending(hs[0], REVTUN_LOOKUP_NODE, "n", NULL, 10);
  ck_assert_int_eq(revtun_handoff_cancel(hs[0], ticket), REVTUN_OK);
  ck_assert_int_eq(revtun_handoff_cancel(hs[0], ticket), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(revtun_handoff_cancel(hs[0], ticket + 1), REVTUN_E_NOT_FOUND);
  pump(hs, rs, 2, 20);
  ck_assert_uint_eq(n_arrivals, 0);
  ck_assert_int_eq(revtun_idle_count(hs[0], "n", NULL), 1);
  ck_assert_int_eq(revtun_idle_count(hs[1], "n", NULL), 0);
  ck_assert_int_eq(revtun_socket_state(hs[0], fd), REVTUN_SOCK_IDLE);
  ck_assert_uint_eq(tu_stat(hs[0], "reverse_tunnel_acceptor.remote_handoff"), 0);
  /* alive there: its keepalive runs on a */
  int64_t ms = revtun_next_timeout_ms(hs[0], 20);
  ck_assert_int_ge(ms, 0);
  ck_assert_int_eq(revtun_tick(hs[0], 20 + (revtun_time_ms_t)ms), REVTUN_OK);
  char buf[8];
  ck_assert_uint_eq(tu_read_all(peer, buf, sizeof(buf)), 5);
  ck_assert_str_eq(buf, "RPING");
  /* and a's next local request takes it at once */
  ck_assert_int_eq(
      revtun_handoff_request(hs[0], REVTUN_LOOKUP_NODE, "n", NULL, NULL, 30, &got, &st, &ticket),
      REVTUN_OK);
  ck_assert_int_eq(got, fd);
  revtun_free(hs[0]);
  revtun_free(hs[1]);
  revtun_directory_free(dir);
  close(fd), close(peer);
}
END_TEST

/* b's socket died before b served the request: b answers none, and the
 * request goes on to c, the next holder; without c, not found. */
START_TEST(dead_in_transit_goes_to_the_next_holder) {
  revtun_t *hs[3];
  struct tu_rec *rs[3];
  revtun_directory_t *dir = world(3, hs, rs);
  int pb, pc, fb = pair_on(hs[1], "n", "c", &pb), fc = pair_on(hs[2], "n", "c", &pc);
  for (int round = 0; round < 2; round++) {
    close(pb); /* b's socket dies, b has not noticed */
    request_pending(hs[0], REVTUN_LOOKUP_NODE, "n", NULL, 10);
    pump(hs, rs, 3, 20);
    ck_assert_uint_eq(n_arrivals, 1);
    ck_assert_int_eq(arrivals[0].status, REVTUN_OK);
    ck_assert_int_eq(arrivals[0].fd, fc);
    /* b was asked first (b and c left the directory's index when their
     * sockets went, so each round starts the turns afresh) */
    ck_assert_uint_eq(tu_count(&recs[1], REVTUN_EV_TUNNEL_CLOSED), (size_t)round + 1);
    ck_assert_int_eq(tu_last(&recs[1], REVTUN_EV_TUNNEL_CLOSED)->fd, fb);
    ck_assert_int_eq(revtun_mark_dead(hs[0], fc, REVTUN_CLOSE_LOCAL_CLOSE, 20), REVTUN_OK);
    close(fc), close(pc);
    if (round == 0) {
      n_arrivals = 0;
      fb = pair_on(hs[1], "n", "c", &pb);
      fc = pair_on(hs[2], "n", "c", &pc);
    }
  }
  /* a dead socket only: not found */
  n_arrivals = 0;
  fb = pair_on(hs[1], "n", "c", &pb);
  close(pb);
  request_pending(hs[0], REVTUN_LOOKUP_NODE, "n", NULL, 30);
  pump(hs, rs, 3, 40);
  ck_assert_uint_eq(n_arrivals, 1);
  ck_assert_int_eq(arrivals[0].status, REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(arrivals[0].fd, -1);
  ck_assert_uint_eq(tu_count(&recs[1], REVTUN_EV_TUNNEL_CLOSED), 3);
  ck_assert(!tu_fd_open(fb));
  for (int i = 0; i < 3; i++)
    revtun_free(hs[i]);
  revtun_directory_free(dir);
}
END_TEST

/* The socket reached a but could not join its pool (the host's io callback
 * refused its fd): the request is not left hanging. */
START_TEST(socket_that_cannot_join_ends_the_request) {
  int fds0 = tu_open_fds();
  revtun_t *hs[2];
  struct tu_rec *rs[2];
  revtun_directory_t *dir = world(2, hs, rs);
  int peer, fd = pair_on(hs[1], "n", "c", &peer);
  uint64_t ticket = request_pending(hs[0], REVTUN_LOOKUP_NODE, "n", NULL, 10);
  recs[0].io_fail_fd = fd;
  pump(hs, rs, 2, 20);
  ck_assert_uint_eq(n_arrivals, 1);
  ck_assert_uint_eq(arrivals[0].ticket, ticket);
  ck_assert_int_eq(arrivals[0].status, REVTUN_E_NOT_FOUND);
  const struct tu_event *c = tu_last(&recs[0], REVTUN_EV_TUNNEL_CLOSED);
  ck_assert_ptr_nonnull(c);
  ck_assert_int_eq(c->reason, REVTUN_CLOSE_MOVE_FAILED);
  /* Counted under its reason like every other close. */
  ck_assert_uint_eq(tu_stat(hs[0], "reverse_tunnel_acceptor.tunnel_closed.move_failed"), 1);
  ck_assert(!tu_fd_open(fd));
  recs[0].io_fail_fd = -2;
  revtun_free(hs[0]);
  revtun_free(hs[1]);
  revtun_directory_free(dir);
  close(peer);
  ck_assert_int_eq(tu_open_fds(), fds0);
}
END_TEST

static size_t closed_total(int n) {
  size_t t = 0;
  for (int i = 0; i < n; i++)
    t += tu_count(&recs[i], REVTUN_EV_TUNNEL_CLOSED);
  return t;
}

START_TEST(holder_freed_while_a_request_waits) {
  int fds0 = tu_open_fds();
  revtun_t *hs[2];
  struct tu_rec *rs[2];
  revtun_directory_t *dir = world(2, hs, rs);
  int peer;
  pair_on(hs[1], "n", "c", &peer);
  request_pending(hs[0], REVTUN_LOOKUP_NODE, "n", NULL, 10);
  revtun_free(hs[1]);
  hs[1] = NULL;
  ck_assert_uint_eq(closed_total(2), 1); /* b's socket, closed with b */
  pump(hs, rs, 2, 20);
  ck_assert_uint_eq(n_arrivals, 1);
  ck_assert_int_eq(arrivals[0].status, REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(arrivals[0].fd, -1);
  revtun_free(hs[0]);
  revtun_directory_free(dir);
  ck_assert_uint_eq(closed_total(2), 1);
  close(peer);
  ck_assert_int_eq(tu_open_fds(), fds0);
}
END_TEST

/* The socket is on its way to a when a is freed: it closes with a. */
START_TEST(requester_freed_with_a_socket_on_its_way) {
  int fds0 = tu_open_fds();
  revtun_t *hs[2];
  struct tu_rec *rs[2];
  revtun_directory_t *dir = world(2, hs, rs);
  int peer, fd;
  fd = pair_on(hs[1], "n", "c", &peer);
  request_pending(hs[0], REVTUN_LOOKUP_NODE, "n", NULL, 10);
  pump(hs + 1, rs + 1, 1, 20); /* b sends it */
  ck_assert_uint_eq(tu_count(&recs[1], REVTUN_EV_SOCKET_EXPORTED), 1);
  revtun_free(hs[0]);
  ck_assert_uint_eq(n_arrivals, 0);
  ck_assert_uint_eq(closed_total(2), 1);
  ck_assert_int_eq(tu_last(&recs[0], REVTUN_EV_TUNNEL_CLOSED)->fd, fd);
  ck_assert(!tu_fd_open(fd));
  revtun_free(hs[1]);
  revtun_directory_free(dir);
  close(peer);
  ck_assert_int_eq(tu_open_fds(), fds0);
}
END_TEST

/* a asks b for n and is freed; c joins in a's place and asks d for x. b's
 * answer to a must not reach c as the answer to c's request. */
START_TEST(answer_to_a_freed_requester_does_not_reach_its_successor) {
  int fds0 = tu_open_fds();
  revtun_directory_t *dir;
  ck_assert_int_eq(revtun_directory_new(&dir), REVTUN_OK);
  revtun_t *a = new_h(dir, "empty", &recs[0]);
  revtun_t *hs[3] = {new_h(dir, "empty", &recs[1]), NULL, new_h(dir, "empty", &recs[2])};
  int pn, px, fn = pair_on(hs[0], "n", "c", &pn), fx = pair_on(hs[2], "x", "c", &px);
  uint64_t tc;
  request_pending(a, REVTUN_LOOKUP_NODE, "n", NULL, 10);
  revtun_free(a);
  hs[1] = new_h(dir, "empty", &recs[3]); /* a's place in the directory */
  struct tu_rec *rs[3] = {&recs[1], &recs[3], &recs[2]};
  tc = request_pending(hs[1], REVTUN_LOOKUP_NODE, "x", NULL, 10);
  pump(hs, rs, 3, 20);
  ck_assert_uint_eq(n_arrivals, 1);
  ck_assert_ptr_eq(arrivals[0].h, hs[1]);
  ck_assert_uint_eq(arrivals[0].ticket, tc);
  ck_assert_int_eq(arrivals[0].status, REVTUN_OK);
  ck_assert_int_eq(arrivals[0].fd, fx); /* x, what c asked for */
  const char *n, *c, *t;
  ck_assert_int_eq(revtun_socket_identity(hs[1], fx, &n, &c, &t), REVTUN_OK);
  ck_assert_str_eq(n, "x");
  /* n went back to b, or stayed there */
  ck_assert_int_eq(revtun_idle_count(hs[0], "n", NULL), 1);
  ck_assert_int_eq(revtun_socket_state(hs[0], fn), REVTUN_SOCK_IDLE);
  ck_assert_int_eq(revtun_idle_count(hs[1], "n", NULL), 0);
  for (int i = 0; i < 3; i++)
    revtun_free(hs[i]);
  revtun_directory_free(dir);
  close(fx), close(pn), close(px);
  ck_assert(!tu_fd_open(fn));
  ck_assert_int_eq(tu_open_fds(), fds0);
}
END_TEST

START_TEST(isolation_must_match) {
  revtun_directory_t *dir;
  ck_assert_int_eq(revtun_directory_new(&dir), REVTUN_OK);
  revtun_t *a = new_h(dir, "isolation", &recs[0]);
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, &recs[1]);
  ck_assert_int_eq(revtun_options_set_directory(o, dir), REVTUN_OK);
  size_t len;
  uint8_t *cfg = tu_config("empty", &len);
  revtun_t *b = (revtun_t *)&len;
  char err[256] = "";
  int fds0 = tu_open_fds();
  ck_assert_int_eq(revtun_new(&b, cfg, len, o, 0, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_ptr_null(b);
  ck_assert_ptr_nonnull(strstr(err, "isolation"));
  ck_assert_int_eq(tu_open_fds(), fds0);
  revtun_free(a); /* the last handle of that isolation: the next may differ */
  ck_assert_int_eq(revtun_new(&b, cfg, len, o, 0, err, sizeof(err)), REVTUN_OK);
  revtun_free(b);
  free(cfg);
  revtun_options_free(o);
  revtun_directory_free(dir);
}
END_TEST

START_TEST(at_most_max_handles) {
  static struct tu_rec many[MAX_H];
  static revtun_t *hs[MAX_H];
  int fds0 = tu_open_fds();
  revtun_directory_t *dir;
  ck_assert_int_eq(revtun_directory_new(&dir), REVTUN_OK);
  for (int i = 0; i < REVTUN_DIRECTORY_MAX_HANDLES; i++)
    hs[i] = new_h(dir, NULL, &many[i]);
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, &many[REVTUN_DIRECTORY_MAX_HANDLES]);
  ck_assert_int_eq(revtun_options_set_directory(o, dir), REVTUN_OK);
  revtun_t *extra = NULL;
  char err[256] = "";
  ck_assert_int_eq(revtun_new(&extra, NULL, 0, o, 0, err, sizeof(err)), REVTUN_E_LIMIT);
  ck_assert_ptr_null(extra);
  ck_assert_ptr_nonnull(strstr(err, "directory"));
  revtun_free(hs[17]);
  ck_assert_int_eq(revtun_new(&hs[17], NULL, 0, o, 0, err, sizeof(err)), REVTUN_OK);
  revtun_options_free(o);
  for (int i = 0; i < REVTUN_DIRECTORY_MAX_HANDLES; i++)
    revtun_free(hs[i]);
  revtun_directory_free(dir);
  ck_assert_int_eq(tu_open_fds(), fds0);
}
END_TEST

/* Requests by cluster take turns between the handles that hold it. */
START_TEST(cluster_round_robin_across_handles) {
  revtun_t *hs[3];
  struct tu_rec *rs[3];
  revtun_directory_t *dir = world(3, hs, rs);
  int owner[1024], peers[40], n_peers = 0;
  memset(owner, -1, sizeof(owner));
  for (int i = 0; i < 10; i++)
    for (int k = 1; k <= 2; k++) {
      char node[16];
      snprintf(node, sizeof(node), "n%d-%d", k, i);
      int fd = pair_on(hs[k], node, "shared", &peers[n_peers++]);
      owner[fd] = k;
    }
  int from[3] = {0, 0, 0};
  for (int i = 0; i < 20; i++) {
    int got;
    uint64_t ticket;
    revtun_strip_t st;
    n_arrivals = 0;
    ck_assert_int_eq(revtun_handoff_request(hs[0], REVTUN_LOOKUP_CLUSTER, "shared", NULL, NULL, 10,
                                            &got, &st, &ticket),
                     REVTUN_E_PENDING);
    pump(hs, rs, 3, 10);
    ck_assert_uint_eq(n_arrivals, 1);
    ck_assert_int_eq(arrivals[0].status, REVTUN_OK);
    ck_assert_int_ge(owner[arrivals[0].fd], 1);
    from[owner[arrivals[0].fd]]++;
    ck_assert_int_eq(revtun_mark_dead(hs[0], arrivals[0].fd, REVTUN_CLOSE_LOCAL_CLOSE, 10),
                     REVTUN_OK);
    /* strict turns */
    if (i > 0)
      ck_assert_int_eq(from[1] - from[2], (i % 2) ? 0 : (from[1] > from[2] ? 1 : -1));
    close(arrivals[0].fd);
  }
  ck_assert_int_eq(from[1], 10);
  ck_assert_int_eq(from[2], 10);
  for (int i = 0; i < 3; i++)
    revtun_free(hs[i]);
  revtun_directory_free(dir);
  for (int i = 0; i < n_peers; i++)
    close(peers[i]);
}
END_TEST

/* --------------------------------------------------------------- stress */

#define ST_THREADS 4
#define ST_ITER 3000
#define ST_NODES 3

static atomic_int handed[65536]; /* 1 while an fd is the host's */
static atomic_long st_setup, st_closed, st_handoff, st_exported, st_imported, st_moves_failed;
static atomic_long st_double;
static revtun_directory_t *st_dir;

struct st_thread {
  unsigned seed;
  int wake;
  revtun_t *h;
  int peers[4096];
  int n_peers;
  long arrivals, requests, cancels, frees;
  revtun_time_ms_t now;
};

/* The host's use of a socket handed to it: done with it at once. */
static void st_take(revtun_t *h, int fd, revtun_time_ms_t now) {
  if (atomic_exchange(&handed[fd], 1) != 0)
    atomic_fetch_add(&st_double, 1);
  revtun_mark_dead(h, fd, REVTUN_CLOSE_LOCAL_CLOSE, now);
  atomic_store(&handed[fd], 0); /* before the close: the number may be reused */
  close(fd);
}

static void st_record(revtun_t *h, const revtun_event_t *ev, void *user) {
  (void)h, (void)user;
  switch (revtun_event_kind(ev)) {
  case REVTUN_EV_TUNNEL_SETUP: atomic_fetch_add(&st_setup, 1); break;
  case REVTUN_EV_TUNNEL_CLOSED:
    /* a handed-off socket's end is counted by its handoff */
    if (revtun_event_socket_state(ev) == REVTUN_SOCK_IDLE)
      atomic_fetch_add(&st_closed, 1);
    if (revtun_event_close_reason(ev) == REVTUN_CLOSE_MOVE_FAILED)
      atomic_fetch_add(&st_moves_failed, 1);
    break;
  case REVTUN_EV_SOCKET_HANDOFF: atomic_fetch_add(&st_handoff, 1); break;
  case REVTUN_EV_SOCKET_EXPORTED: atomic_fetch_add(&st_exported, 1); break;
  case REVTUN_EV_SOCKET_IMPORTED: atomic_fetch_add(&st_imported, 1); break;
  default: break;
  }
}

static void st_arrival(revtun_t *h, uint64_t ticket, int status, int fd, revtun_strip_t strip,
                       void *request_user, void *user_data) {
  (void)ticket, (void)strip, (void)request_user;
  struct st_thread *t = user_data;
  t->arrivals++;
  if (status == REVTUN_OK)
    st_take(h, fd, t->now);
}

static int st_io(revtun_t *h, int fd, int events, void *sock_user, void *user) {
  (void)h, (void)sock_user;
  struct st_thread *t = user;
  if (t->wake < 0 && events == REVTUN_IO_READ && is_eventfd(fd))
    t->wake = fd;
  return 0;
}

static revtun_t *st_new(struct st_thread *t) {
  revtun_options_t *o;
  if (revtun_options_new(&o))
    return NULL;
  revtun_options_set_user_data(o, t);
  revtun_options_set_access_log_cb(o, st_record);
  revtun_options_set_io_cb(o, st_io);
  revtun_options_set_directory(o, st_dir);
  revtun_options_set_arrival_cb(o, st_arrival);
  revtun_options_set_seed(o, t->seed);
  revtun_t *h = NULL;
  t->wake = -1;
  int rc = revtun_new(&h, NULL, 0, o, 0, NULL, 0);
  revtun_options_free(o);
  return rc ? NULL : h;
}

static void *st_run(void *arg) {
  struct st_thread *t = arg;
  t->h = st_new(t);
  uint64_t tickets[64];
  int n_tickets = 0;
  for (int i = 0; i < ST_ITER && t->h; i++) {
    revtun_time_ms_t now = t->now = (revtun_time_ms_t)i;
    int what = rand_r(&t->seed) % 100;
    char node[8];
    snprintf(node, sizeof(node), "n%d", rand_r(&t->seed) % ST_NODES);
    if (what < 35 && t->n_peers < 4096) {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
        revtun_reg_t *reg;
        if (revtun_reg_new(t->h, &reg) == REVTUN_OK) {
          revtun_reg_set_ids(reg, node, "c", NULL);
          if (revtun_register_socket(t->h, sv[0], reg, now) != REVTUN_OK)
            close(sv[0]);
          revtun_reg_free(reg);
        }
        t->peers[t->n_peers++] = sv[1];
      }
    } else if (what < 70) {
      int fd;
      uint64_t ticket;
      revtun_strip_t st;
      t->requests++;
      int rc = revtun_handoff_request(t->h, what % 2 ? REVTUN_LOOKUP_NODE : REVTUN_LOOKUP_CLUSTER,
                                      what % 2 ? node : "c", NULL, NULL, now, &fd, &st, &ticket);
      if (rc == REVTUN_OK)
        st_take(t->h, fd, now);
      else if (rc == REVTUN_E_PENDING && n_tickets < 64)
        tickets[n_tickets++] = ticket;
    } else if (what < 78 && n_tickets) {
      int k = rand_r(&t->seed) % n_tickets;
      if (revtun_handoff_cancel(t->h, tickets[k]) == REVTUN_OK)
        t->cancels++;
      tickets[k] = tickets[--n_tickets];
    } else if (what < 80) {
      revtun_free(t->h); /* sockets close with it, its requests end */
      t->frees++;
      n_tickets = 0;
      t->h = st_new(t);
    } else if (t->wake >= 0) {
      struct pollfd p = {t->wake, POLLIN, 0};
      if (poll(&p, 1, what % 2) == 1)
        revtun_process_io(t->h, t->wake, REVTUN_IO_READ, now);
    }
  }
  /* answer the others a while longer, so that their requests end */
  t->now = ST_ITER;
  for (int i = 0; i < 200 && t->h && t->wake >= 0; i++) {
    struct pollfd p = {t->wake, POLLIN, 0};
    if (poll(&p, 1, 1) == 1)
      revtun_process_io(t->h, t->wake, REVTUN_IO_READ, ST_ITER);
  }
  return NULL;
}

START_TEST(stress_threads_share_a_directory) {
  int fds0 = tu_open_fds();
  atomic_store(&st_setup, 0), atomic_store(&st_closed, 0), atomic_store(&st_handoff, 0);
  atomic_store(&st_exported, 0), atomic_store(&st_imported, 0);
  atomic_store(&st_moves_failed, 0), atomic_store(&st_double, 0);
  ck_assert_int_eq(revtun_directory_new(&st_dir), REVTUN_OK);
  static struct st_thread ts[ST_THREADS];
  pthread_t th[ST_THREADS];
  for (int i = 0; i < ST_THREADS; i++) {
    memset(&ts[i], 0, sizeof(ts[i]));
    ts[i].seed = 1000u + (unsigned)i * 7919u + (unsigned)_i;
    ck_assert_int_eq(pthread_create(&th[i], NULL, st_run, &ts[i]), 0);
  }
  for (int i = 0; i < ST_THREADS; i++)
    ck_assert_int_eq(pthread_join(th[i], NULL), 0);
  long requests = 0, answers = 0;
  for (int i = 0; i < ST_THREADS; i++) {
    requests += ts[i].requests;
    answers += ts[i].arrivals;
    if (ts[i].h)
      revtun_free(ts[i].h);
    for (int k = 0; k < ts[i].n_peers; k++)
      close(ts[i].peers[k]);
  }
  revtun_directory_free(st_dir);
  ck_assert_int_eq(atomic_load(&st_double), 0);
  ck_assert_int_gt(requests, 0);
  ck_assert_int_gt(atomic_load(&st_exported), 0); /* sockets did move */
  /* every socket ends once: handed to a host, or closed with a record */
  ck_assert_int_eq(atomic_load(&st_setup), atomic_load(&st_handoff) + atomic_load(&st_closed));
  ck_assert_int_eq(atomic_load(&st_exported),
                   atomic_load(&st_imported) + atomic_load(&st_moves_failed));
  for (int fd = 0; fd < 65536; fd++)
    ck_assert_int_eq(atomic_load(&handed[fd]), 0);
  ck_assert_int_eq(tu_open_fds(), fds0);
  (void)answers;
}
END_TEST

int main(void) {
  Suite *s = suite_create("directory");
  TCase *tc = tcase_create("directory");
  tcase_add_checked_fixture(tc, setup, NULL);
  tcase_set_timeout(tc, 60); /* 65 handles, a fork per test, a loaded machine */
  tcase_add_test(tc, local_socket_is_served_at_once);
  tcase_add_test(tc, remote_socket_arrives);
  tcase_add_test(tc, cancel_parks_the_socket_here);
  tcase_add_test(tc, dead_in_transit_goes_to_the_next_holder);
  tcase_add_test(tc, socket_that_cannot_join_ends_the_request);
  tcase_add_test(tc, holder_freed_while_a_request_waits);
  tcase_add_test(tc, requester_freed_with_a_socket_on_its_way);
  tcase_add_test(tc, answer_to_a_freed_requester_does_not_reach_its_successor);
  tcase_add_test(tc, isolation_must_match);
  tcase_add_test(tc, at_most_max_handles);
  tcase_add_test(tc, cluster_round_robin_across_handles);
  suite_add_tcase(s, tc);
  TCase *stress = tcase_create("stress");
  tcase_set_tags(stress, "stress");
  tcase_set_timeout(stress, 120);
  tcase_add_loop_test(stress, stress_threads_share_a_directory, 0, 3);
  suite_add_tcase(s, stress);
  return tu_run(s);
}
