/* The libevent adapter against real loopback TCP peers: one echoes, one goes
 * silent, one answers garbage, one resets, one floods. The records say which
 * died, with which reason and at what loop time; the bounds checked are the
 * ones the keepalive rules make certain (never earlier than threshold x
 * (interval + interval/2)), plus the exact number of misses. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <revtun/adapters/libevent.h>

#include "testutil.h"

enum peer_kind { ECHO, SILENT, GARBAGE, RESET, FLOOD, N_PEERS };
static const char *const names[N_PEERS] = {"echo", "silent", "garbage", "reset", "flood"};

#define INTERVAL 100u

struct peer {
  enum peer_kind kind;
  int fd;     /* the initiator's end */
  int lib_fd; /* the library's end */
  struct event *ev;
  int pings;
};

struct world {
  struct event_base *base;
  struct revtun_libevent *le;
  revtun_t *h;
  struct peer peers[N_PEERS];
  revtun_time_ms_t start;
  revtun_time_ms_t died_at[N_PEERS];
  int reason[N_PEERS];
  int misses[N_PEERS];
  int closed;
  int free_on_close; /* revtun_free from inside the callback */
};

static struct peer *peer_of(struct world *w, int lib_fd) {
  for (int i = 0; i < N_PEERS; i++)
    if (w->peers[i].lib_fd == lib_fd)
      return &w->peers[i];
  return NULL;
}

static void on_record(revtun_t *h, const revtun_event_t *ev, void *user) {
  (void)h;
  struct world *w = revtun_libevent_user(user);
  struct peer *p = peer_of(w, revtun_event_fd(ev));
  if (!p)
    return;
  if (revtun_event_kind(ev) == REVTUN_EV_PING_MISS)
    w->misses[p->kind]++;
  if (revtun_event_kind(ev) == REVTUN_EV_TUNNEL_CLOSED) {
    w->died_at[p->kind] = revtun_event_time_ms(ev) - w->start;
    w->reason[p->kind] = revtun_event_close_reason(ev);
    if (++w->closed == N_PEERS - 1)
      event_base_loopexit(w->base, NULL);
    if (w->free_on_close) {
      revtun_free(w->h); /* deferred until the adapter's call returns */
      w->h = NULL;
      event_base_loopbreak(w->base);
    }
  }
}

/* Each initiator reacts to RPING the way its kind says. */
static void on_peer(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  struct peer *p = arg;
  char buf[4096];
  ssize_t n = recv((int)fd, buf, sizeof(buf), MSG_DONTWAIT);
  if (n <= 0) {
    event_del(p->ev);
    return;
  }
  p->pings += (int)(n / 5);
  switch (p->kind) {
  case ECHO: send((int)fd, buf, (size_t)n, MSG_NOSIGNAL); break;
  case SILENT: /* reads, never answers, never closes */ break;
  case GARBAGE: send((int)fd, "HELLO", 5, MSG_NOSIGNAL); break;
  case RESET: {
    struct linger lg = {1, 0};
    setsockopt((int)fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    event_del(p->ev);
    close((int)fd);
    p->fd = -1;
    break;
  }
  case FLOOD: {
    static char flood[70000];
    for (size_t i = 0; i + 5 <= sizeof(flood); i += 5)
      memcpy(flood + i, "RPING", 5);
    size_t off = 0;
    while (off < sizeof(flood)) {
      ssize_t w = send((int)fd, flood + off, sizeof(flood) - off, MSG_NOSIGNAL);
      if (w <= 0)
        break;
      off += (size_t)w;
    }
    break;
  }
  default: break;
  }
}

static void setup(struct world *w, int free_on_close) {
  memset(w, 0, sizeof(*w));
  w->free_on_close = free_on_close;
  w->base = event_base_new();
  ck_assert_ptr_nonnull(w->base);
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  w->le = revtun_libevent_new(w->base, o, w);
  ck_assert_ptr_nonnull(w->le);
  revtun_options_set_access_log_cb(o, on_record);
  w->start = revtun_libevent_now();
  w->h = tu_new_opts("empty", o, w->start);
  revtun_options_free(o);
  revtun_libevent_bind(w->le, w->h);

  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  ck_assert_int_eq(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
  ck_assert_int_eq(listen(ls, 8), 0);
  getsockname(ls, (struct sockaddr *)&sa, &sl);
  int big = 1 << 20;
  for (int i = 0; i < N_PEERS; i++) {
    struct peer *p = &w->peers[i];
    p->kind = (enum peer_kind)i;
    p->fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(p->fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    ck_assert_int_eq(connect(p->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    p->lib_fd = accept(ls, NULL, NULL);
    setsockopt(p->lib_fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    ck_assert_int_eq(tu_register(w->h, p->lib_fd, names[i], "loop", NULL, INTERVAL, w->start),
                     REVTUN_OK);
    p->ev = event_new(w->base, p->fd, EV_READ | EV_PERSIST, on_peer, p);
    event_add(p->ev, NULL);
  }
  close(ls);
}

static void teardown(struct world *w) {
  if (w->h)
    revtun_free(w->h);
  revtun_libevent_free(w->le);
  for (int i = 0; i < N_PEERS; i++) {
    event_free(w->peers[i].ev);
    if (w->peers[i].fd >= 0)
      close(w->peers[i].fd);
  }
  event_base_free(w->base);
}

START_TEST(five_peers) {
  struct world w;
  setup(&w, 0);
  struct timeval limit = {10, 0}; /* a safety net only: the last death ends the loop */
  event_base_loopexit(w.base, &limit);
  ck_assert_int_eq(event_base_dispatch(w.base), 0);

  ck_assert_int_eq(w.closed, N_PEERS - 1);
  ck_assert_int_eq(w.reason[ECHO], 0); /* still alive */
  ck_assert_int_ge(w.peers[ECHO].pings, 3);
  ck_assert_int_eq(revtun_idle_count(w.h, "echo", NULL), 1);
  ck_assert_int_eq(w.misses[ECHO], 0);

  ck_assert_int_eq(w.reason[SILENT], REVTUN_CLOSE_IDLE_PING_TIMEOUT);
  ck_assert_int_eq(w.misses[SILENT], 2); /* threshold 3: two misses, then the timeout */
  ck_assert_uint_ge(w.died_at[SILENT], 3 * (INTERVAL + INTERVAL / 2));

  ck_assert_int_eq(w.reason[GARBAGE], REVTUN_CLOSE_IDLE_UNEXPECTED_DATA);
  ck_assert_int_eq(w.reason[RESET], REVTUN_CLOSE_IDLE_READ_ERROR);
  ck_assert_int_eq(w.reason[FLOOD], REVTUN_CLOSE_IDLE_KEEPALIVE_FLOOD);
  /* each of these died answering its first ping, so no earlier than it */
  ck_assert_uint_ge(w.died_at[GARBAGE], INTERVAL);
  ck_assert_uint_ge(w.died_at[RESET], INTERVAL);
  ck_assert_uint_ge(w.died_at[FLOOD], INTERVAL);
  ck_assert_int_eq(w.misses[GARBAGE] + w.misses[RESET] + w.misses[FLOOD], 0);
  teardown(&w);
}
END_TEST

START_TEST(free_during_dispatch) {
  struct world w;
  setup(&w, 1);
  struct timeval limit = {10, 0};
  event_base_loopexit(w.base, &limit);
  ck_assert_int_eq(event_base_dispatch(w.base), 0);
  ck_assert_ptr_null(w.h);
  /* the first death freed the handle: the others got their shutdown records
   * and every fd was removed from the loop, so nothing fired afterwards */
  ck_assert_int_eq(w.closed, N_PEERS);
  int shutdowns = 0;
  for (int i = 0; i < N_PEERS; i++)
    shutdowns += w.reason[i] == REVTUN_CLOSE_SHUTDOWN;
  ck_assert_int_eq(shutdowns, N_PEERS - 1);
  for (size_t fd = 0; fd < w.le->cap; fd++)
    ck_assert_ptr_null(w.le->fd_events[fd]);
  teardown(&w);
}
END_TEST

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  Suite *s = suite_create("loop");
  TCase *tc = tcase_create("libevent");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, five_peers);
  tcase_add_test(tc, free_during_dispatch);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
