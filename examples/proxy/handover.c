/*
 * revtun-upstream-proxy: restarting without dropping tunnels
 * (--handover-socket PATH, --takeover PATH).
 *
 *   old instance                          new instance (same flags + --takeover)
 *   listens on PATH (SOCK_SEQPACKET)  ◀── connects; both check SO_PEERCRED (same uid)
 *                                     ◀── HELLO (its version)
 *   LISTENERS: tunnel, client, admin  ──▶ accepts on them (the same sockets)
 *   TUNNELS: every parked tunnel with ──▶ revtun_import_socket: parked here, keepalive
 *     its state (revtun_export_next)        phase, ids and age as they were
 *   DONE (how many)                   ──▶
 *                                     ◀── SERVING
 *   stops accepting, drains clients,  ──▶ imports them too
 *   hands over tunnels that park
 *   meanwhile (TUNNELS), exits        ──▶ EOF: listens on PATH for the next restart
 *
 * Until SERVING arrives the old instance keeps a copy of every descriptor it
 * sent, with its state: if the new one goes away first (crash, bad message,
 * refusal), each tunnel is imported back, and the listeners never stopped,
 * so the old one keeps serving everything. One takeover at a time: a second
 * connection is refused while one is in progress.
 *
 * Pending handshakes stay with the old instance, which finishes them (it
 * does not exit before they end: proxy_check_done); the tunnels that park
 * from them (and any that park while it drains) are handed over as they
 * come, every SWEEP_MS. Both instances accept on the shared
 * listeners between SERVING being sent and received, which is harmless.
 *
 * Draining: HTTP/1.1 clients get "connection: close" on their next response
 * and the connection closes after it (an idle keep-alive connection is not
 * cut: a client that sends a request at that moment would see it fail).
 * h2c clients get GOAWAY halfway through --grace-period: a GOAWAY ends a
 * connection for good, and clients that do not reconnect on it (h2load
 * counts every request it has left as failed) should first get the chance
 * to finish on their own. At the end of the grace period what is left is cut.
 *
 * SIGTERM or SIGINT to the old instance during a takeover: before anything
 * was sent (no HELLO yet) the takeover is refused ("the old instance is
 * shutting down"); once everything is sent the old one waits up to
 * IO_TIMEOUT_S for SERVING, then drains and exits as after any handover;
 * if the new one goes away or stays silent instead, the tunnels park here
 * again and the shutdown goes on from there (they close with the pool).
 * Either way each tunnel is in exactly one pool. The new instance, if it
 * cannot say it serves, gives up what it imported without a close record.
 *
 * With --workers N the main thread runs the handover (the old instance's
 * and the new one's) and reaches the workers' pools through workers.c:
 * each worker exports its parked tunnels on its own thread, and a tunnel
 * that comes back (or arrives after SERVING) is imported on the thread of
 * the worker it joins. LISTENERS carries one tunnel and one client listener
 * per worker (SO_REUSEPORT group members: closing one would reset the
 * connections in its queue), so the new instance must run as many workers
 * as the old one; otherwise it gives up and the old one keeps serving. The
 * new instance imports the tunnels into its workers round robin before
 * their threads start (any worker serves any node).
 *
 * Tests: REVTUN_PROXY_TEST_TAKEOVER_PAUSE=STEP makes the new instance stop
 * (log "handover: test pause at STEP", then SIGSTOP) at a step of the
 * takeover: connected (HELLO not sent yet), hello (sent), listeners,
 * tunnels (the first tunnels parked), done (everything received, SERVING
 * not sent yet).
 */
#define _GNU_SOURCE /* struct ucred, accept4 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/listener.h>

#include "handover_wire.h"
#include "proxy.h"

#define SWEEP_MS 100        /* the old instance hands over newly parked tunnels this often */
#define IO_TIMEOUT_S 10     /* one message, either way, during the takeover */
#define TRANSIT_MAX 1000000 /* tunnels one takeover may carry */

enum ho_state {
  HO_ST_IDLE,   /* old: listening on PATH, no takeover in progress */
  HO_ST_SENT,   /* old: everything sent, waiting for SERVING */
  HO_ST_HANDED, /* old: the new instance serves; draining */
  HO_ST_TAKER,  /* new: took over, the old one is draining */
};

struct handover {
  struct proxy *p;
  enum ho_state state;
  int lfd; /* listening on PATH, or -1 */
  struct event *lev;
  dev_t dev; /* PATH as we bound it: unlinked at exit only if still ours */
  ino_t ino;
  int cfd; /* the connection to the other instance, or -1 */
  struct event *cev, *sweep_ev, *goaway_ev;
  struct event *stop_ev; /* a signal came mid-takeover: give up waiting at */
  const char *stop_why;  /* that signal, while the takeover finishes */
  struct ho_tunnel *tr;  /* sent, not yet confirmed: the old instance's copies */
  size_t ntr, cap;
  uint64_t moved;
  unsigned next_worker; /* new, --workers: round robin of the imports */
  uint8_t buf[HO_MAX_MESSAGE + 1];
};

/* ------------------------------------------------------------ transport */

static void close_fds(int *fds, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= 0)
      close(fds[i]);
}

/* Receives one message with up to HO_MAX_MSG_FDS descriptors (close-on-exec).
 * Returns its length, 0 at EOF, -1 with errno (EAGAIN: nothing yet), or -2
 * with *why for a message that was cut (too long, too many descriptors):
 * then every descriptor that came with it is closed already. */
static ssize_t ho_recv(int fd, uint8_t *buf, size_t cap, int *fds, size_t *nfds, int flags,
                       const char **why) {
  union {
    struct cmsghdr h;
    uint8_t b[CMSG_SPACE(sizeof(int) * HO_MAX_MSG_FDS)];
  } ctl;
  struct iovec iov = {buf, cap};
  struct msghdr mh = {0};
  ssize_t n;

  *nfds = 0;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.b;
  mh.msg_controllen = sizeof(ctl.b);
  do
    n = recvmsg(fd, &mh, flags | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
      continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (*nfds < HO_MAX_MSG_FDS)
        fds[(*nfds)++] = got;
      else
        close(got);
    }
  }
  if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    close_fds(fds, *nfds);
    *nfds = 0;
    *why = mh.msg_flags & MSG_TRUNC ? "message longer than any handover message"
                                    : "more descriptors than a handover message carries";
    return -2;
  }
  if (n > 0 && (size_t)n >= cap) {
    close_fds(fds, *nfds);
    *nfds = 0;
    *why = "message longer than any handover message";
    return -2;
  }
  return n;
}

static int ho_send(int fd, const uint8_t *buf, size_t len, const int *fds, size_t nfds) {
  union {
    struct cmsghdr h;
    uint8_t b[CMSG_SPACE(sizeof(int) * HO_MAX_MSG_FDS)];
  } ctl;
  struct iovec iov = {(void *)buf, len};
  struct msghdr mh = {0};
  ssize_t n;

  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (nfds) {
    memset(&ctl, 0, sizeof(ctl));
    mh.msg_control = ctl.b;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  do
    n = sendmsg(fd, &mh, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t)len ? 0 : -1;
}

static int send_simple(int fd, uint16_t type, const void *payload, size_t len) {
  uint8_t b[HO_HEADER + HO_MAX_REASON];

  if (len > HO_MAX_REASON)
    len = HO_MAX_REASON;
  if (len)
    memcpy(b + HO_HEADER, payload, len);
  return ho_send(fd, b, ho_header(b, type, (uint32_t)len), NULL, 0);
}

/* The peer runs as our user (a handover gives away every tunnel). */
static int same_user(int fd, pid_t *pid) {
  struct ucred cr;
  socklen_t l = sizeof(cr);

  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0 || l != sizeof(cr))
    return 0;
  *pid = cr.pid;
  return cr.uid == geteuid();
}

static void set_timeouts(int fd) {
  struct timeval tv = {IO_TIMEOUT_S, 0};

  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int path_addr(const char *path, struct sockaddr_un *sa) {
  size_t n = strlen(path);

  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  if (n == 0 || n >= sizeof(sa->sun_path)) {
    logmsg("handover: socket path '%s' is empty or longer than %zu bytes", path,
           sizeof(sa->sun_path) - 1);
    return -1;
  }
  memcpy(sa->sun_path, path, n);
  return 0;
}

/* ------------------------------------------------------------ the pools */

/* The tunnels in t[0..n) park in their pools (t->worker's with --workers,
 * else this loop's handle), each with its state; t->rc says how it went. */
static void import(struct proxy *p, struct ho_tunnel *t, size_t n) {
  if (p->all) {
    workers_import(p->all, t, n);
    return;
  }
  for (size_t i = 0; i < n; i++)
    t[i].rc =
        revtun_import_socket(p->h, t[i].fd, t[i].state, t[i].len, t[i].user, revtun_libevent_now());
}

/* Is the instance (every worker of it) stopping? */
static int stopping(const struct proxy *p) {
  return p->all ? workers_stopping(p->all) : p->stopping;
}

/* Stops serving: after a handover (handing_over: clients are drained as
 * such), or for a signal that came during a takeover. */
static void stop_serving(struct proxy *p, const char *why, int handing_over) {
  if (p->all) {
    workers_shutdown(p, why, handing_over);
    return;
  }
  p->handing_over = handing_over;
  proxy_begin_shutdown(p, why);
}

/* ------------------------------------------------- the old instance's side */

static void transit_push(void *arg, unsigned worker, int fd, void *user, const uint8_t *st,
                         size_t len) {
  struct handover *ho = arg;
  uint8_t *copy;

  if (ho->ntr == ho->cap) {
    size_t cap = ho->cap ? ho->cap * 2 : 64;
    struct ho_tunnel *t = realloc(ho->tr, cap * sizeof(*t));
    if (!t)
      goto fail;
    ho->tr = t;
    ho->cap = cap;
  }
  if (!(copy = malloc(len)))
    goto fail;
  memcpy(copy, st, len);
  ho->tr[ho->ntr++] = (struct ho_tunnel){fd, worker, user, len, copy, REVTUN_OK};
  return;
fail : {
  /* out of memory: this one goes back into its pool at once */
  struct ho_tunnel back = {fd, worker, user, len, (uint8_t *)st, REVTUN_OK};
  import(ho->p, &back, 1);
  if (back.rc != REVTUN_OK)
    close(fd);
}
}

/* The new instance did not take them: every tunnel in transit parks here
 * again (in the pool it left), its keepalive where it stood. */
static void transit_restore(struct handover *ho) {
  size_t back = 0;

  import(ho->p, ho->tr, ho->ntr);
  for (size_t i = 0; i < ho->ntr; i++) {
    struct ho_tunnel *t = &ho->tr[i];
    if (t->rc == REVTUN_OK)
      back++;
    else {
      logmsg("handover: tunnel fd %d cannot be parked again: %s", t->fd, revtun_strerror(t->rc));
      close(t->fd);
    }
    free(t->state);
  }
  if (ho->ntr)
    logmsg("handover: %zu of %zu tunnel(s) parked here again", back, ho->ntr);
  ho->ntr = 0;
}

/* The new instance has them: our copies go. */
static void transit_release(struct handover *ho) {
  for (size_t i = 0; i < ho->ntr; i++) {
    close(ho->tr[i].fd);
    free(ho->tr[i].state);
  }
  ho->ntr = 0;
}

/* Sends the tunnels in transit from index from on, HO_MAX_FDS a message. */
static int send_tunnels(struct handover *ho, size_t from) {
  while (from < ho->ntr) {
    size_t n = ho->ntr - from < HO_MAX_FDS ? ho->ntr - from : HO_MAX_FDS, off = HO_HEADER + 2;
    int fds[HO_MAX_MSG_FDS];

    ho->buf[HO_HEADER] = (uint8_t)(n >> 8);
    ho->buf[HO_HEADER + 1] = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
      struct ho_tunnel *t = &ho->tr[from + i];
      fds[i] = t->fd;
      ho->buf[off] = (uint8_t)(t->len >> 8);
      ho->buf[off + 1] = (uint8_t)t->len;
      memcpy(ho->buf + off + 2, t->state, t->len);
      off += 2 + t->len;
    }
    ho_header(ho->buf, HO_TUNNELS, (uint32_t)(off - HO_HEADER));
    if (ho_send(ho->cfd, ho->buf, off, fds, n) < 0)
      return -1;
    from += n;
  }
  return 0;
}

/* Every tunnel parked here now leaves its pool into transit (with
 * --workers, each worker's on its own thread). */
static void export_all(struct handover *ho) {
  uint8_t st[REVTUN_SOCKET_STATE_MAX];

  if (ho->p->all) {
    workers_export(ho->p->all, TRANSIT_MAX - ho->ntr, transit_push, ho);
    return;
  }
  while (ho->ntr < TRANSIT_MAX) {
    int fd;
    size_t len;
    void *user;
    if (revtun_export_next(ho->p->h, revtun_libevent_now(), &fd, st, sizeof(st), &len, &user) !=
        REVTUN_OK)
      break;
    transit_push(ho, 0, fd, user, st, len);
  }
}

static void conn_close(struct handover *ho) {
  if (ho->cev)
    event_free(ho->cev);
  ho->cev = NULL;
  if (ho->cfd >= 0)
    close(ho->cfd);
  ho->cfd = -1;
}

/* The takeover in progress ends without the new instance serving. */
static void abort_takeover(struct handover *ho, const char *why) {
  const char *stop = ho->stop_why;

  logmsg("handover: takeover abandoned (%s): %s", why,
         stop ? "the tunnels park here again and close at exit" : "this instance keeps serving");
  transit_restore(ho);
  conn_close(ho);
  ho->state = HO_ST_IDLE;
  if (stop) {
    ho->stop_why = NULL;
    evtimer_del(ho->stop_ev);
    stop_serving(ho->p, stop, 0);
  }
}

static void send_everything(struct handover *ho, pid_t pid) {
  int fds[HO_MAX_LISTENERS];
  uint8_t *b = ho->buf;
  size_t n = 0;
  struct proxy *p = ho->p;
  uint8_t total[4];

  /* the tunnel and client listeners (one of each per worker), the admin one */
  if (p->all)
    n = workers_listener_fds(p->all, fds, b + HO_HEADER + 1);
  else if (p->tunnel_l.l && p->client_l.l) {
    fds[n] = evconnlistener_get_fd(p->tunnel_l.l);
    b[HO_HEADER + 1 + n++] = HO_L_TUNNEL;
    fds[n] = evconnlistener_get_fd(p->client_l.l);
    b[HO_HEADER + 1 + n++] = HO_L_CLIENT;
  }
  if (p->admin_l.l) {
    fds[n] = evconnlistener_get_fd(p->admin_l.l);
    b[HO_HEADER + 1 + n++] = HO_L_ADMIN;
  }
  b[HO_HEADER] = (uint8_t)n;
  if (ho_send(ho->cfd, b, ho_header(b, HO_LISTENERS, (uint32_t)(1 + n)), fds, n) < 0) {
    abort_takeover(ho, strerror(errno));
    return;
  }
  export_all(ho);
  if (send_tunnels(ho, 0) < 0) {
    abort_takeover(ho, strerror(errno));
    return;
  }
  total[0] = (uint8_t)(ho->ntr >> 24);
  total[1] = (uint8_t)(ho->ntr >> 16);
  total[2] = (uint8_t)(ho->ntr >> 8);
  total[3] = (uint8_t)ho->ntr;
  if (send_simple(ho->cfd, HO_DONE, total, 4) < 0) {
    abort_takeover(ho, strerror(errno));
    return;
  }
  ho->state = HO_ST_SENT;
  logmsg("handover: sent %zu listener(s) and %zu parked tunnel(s) to pid %ld; waiting for it to "
         "serve",
         n, ho->ntr, (long)pid);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg);
static void goaway_cb(evutil_socket_t fd, short what, void *arg);

/* SERVING: the new instance accepts on the listeners and holds the tunnels. */
static void handed_over(struct handover *ho) {
  struct proxy *p = ho->p;
  struct timeval sweep = {0, SWEEP_MS * 1000};
  struct timeval half = {(time_t)(p->cfg.grace_ms / 2000),
                         (suseconds_t)(p->cfg.grace_ms / 2 % 1000) * 1000};

  ho->moved += ho->ntr;
  transit_release(ho);
  ho->state = HO_ST_HANDED;
  if (ho->stop_why) {
    logmsg("handover: %s came during the takeover: draining as after any handover", ho->stop_why);
    ho->stop_why = NULL;
    evtimer_del(ho->stop_ev);
  }
  if (ho->lev)
    event_free(ho->lev);
  ho->lev = NULL;
  close(ho->lfd); /* a third instance talks to the new one */
  ho->lfd = -1;
  stop_serving(p, "handed over to the new instance", 1);
  evtimer_add(ho->sweep_ev, &sweep);
  evtimer_add(ho->goaway_ev, &half);
}

/* Old instance: tunnels that parked since are handed over too. */
static void sweep(struct handover *ho) {
  size_t n;

  if (ho->cfd < 0)
    return;
  export_all(ho);
  n = ho->ntr;
  if (send_tunnels(ho, 0) < 0) {
    logmsg("handover: the new instance stopped taking tunnels (%s): %zu kept here", strerror(errno),
           n);
    transit_restore(ho);
    conn_close(ho);
    return;
  }
  if (n)
    logmsg("handover: %zu more tunnel(s) handed over", n);
  ho->moved += n;
  transit_release(ho);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg) {
  struct handover *ho = arg;
  struct timeval again = {0, SWEEP_MS * 1000};

  (void)fd, (void)what;
  sweep(ho);
  if (ho->cfd >= 0)
    evtimer_add(ho->sweep_ev, &again);
}

static void goaway_cb(evutil_socket_t fd, short what, void *arg) {
  struct handover *ho = arg;

  (void)fd, (void)what;
  if (ho->p->all)
    workers_goaway(ho->p->all);
  else
    proxy_goaway(ho->p);
}

static void old_conn_cb(evutil_socket_t fd, short what, void *arg) {
  struct handover *ho = arg;
  int fds[HO_MAX_MSG_FDS];
  size_t nfds;
  const char *why = NULL;
  struct ho_msg m;
  ssize_t n = ho_recv((int)fd, ho->buf, sizeof(ho->buf), fds, &nfds, MSG_DONTWAIT, &why);
  char text[300];
  pid_t pid = 0;
  int rc;

  (void)what;
  if (n < 0 && n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return;
  if (n <= 0) {
    snprintf(text, sizeof(text), "%s",
             n == 0    ? "the new instance went away"
             : n == -2 ? why
                       : strerror(errno));
    if (ho->state == HO_ST_HANDED) {
      logmsg("handover: connection to the new instance closed (%s)", text);
      conn_close(ho);
    } else
      abort_takeover(ho, text);
    return;
  }
  rc = ho_decode(ho->buf, (size_t)n, nfds, &m, &why);
  close_fds(fds, nfds); /* the new instance never sends descriptors */
  if (rc == HO_BAD_VERSION) {
    snprintf(text, sizeof(text), "new instance speaks handover version %u, this one %u", m.version,
             HO_VERSION);
    (void)send_simple(ho->cfd, HO_REFUSE, text, strlen(text));
    abort_takeover(ho, text);
    return;
  }
  if (rc != HO_OK || nfds) {
    snprintf(text, sizeof(text), "bad message from the new instance: %s",
             rc != HO_OK ? why : "descriptors on a message that carries none");
    if (ho->state == HO_ST_HANDED) {
      logmsg("handover: %s", text);
      conn_close(ho);
    } else
      abort_takeover(ho, text);
    return;
  }
  if (m.type == HO_HELLO && ho->state == HO_ST_IDLE) {
    (void)same_user(ho->cfd, &pid);
    send_everything(ho, pid);
  } else if (m.type == HO_SERVING && ho->state == HO_ST_SENT) {
    logmsg("handover: the new instance serves: not accepting any more, draining");
    handed_over(ho);
  } else {
    snprintf(text, sizeof(text), "unexpected message type %u from the new instance", m.type);
    if (ho->state == HO_ST_HANDED) {
      logmsg("handover: %s", text);
      conn_close(ho);
    } else
      abort_takeover(ho, text);
  }
}

/* A refusal must be read: closing a unix socket with its peer's HELLO
 * unread makes the peer's next read fail with ECONNRESET, the REFUSE lost.
 * So the HELLO is read first, waiting at most REFUSE_WAIT_MS for it (only
 * our own user can connect: the socket is mode 0600). */
#define REFUSE_WAIT_MS 200
static void refuse_after_hello(int fd, const char *why) {
  struct timeval tv = {0, REFUSE_WAIT_MS * 1000};
  uint8_t b[HO_HEADER];
  int fds[HO_MAX_MSG_FDS];
  size_t nfds;
  const char *ignored;

  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (ho_recv(fd, b, sizeof(b), fds, &nfds, 0, &ignored) >= 0)
    close_fds(fds, nfds);
  (void)send_simple(fd, HO_REFUSE, why, strlen(why));
  close(fd);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg) {
  struct handover *ho = arg;
  int fd = accept4((int)lfd, NULL, NULL, SOCK_CLOEXEC);
  pid_t pid = 0;
  const char *busy = "another takeover is in progress";

  (void)what;
  if (fd < 0)
    return;
  if (!same_user(fd, &pid)) {
    logmsg("handover: refused a connection from pid %ld: not our user", (long)pid);
    refuse_after_hello(fd, "not the same user");
    return;
  }
  if (stopping(ho->p)) {
    logmsg("handover: refused a takeover from pid %ld: shutting down", (long)pid);
    refuse_after_hello(fd, "the old instance is shutting down");
    return;
  }
  if (ho->cfd >= 0 || ho->state != HO_ST_IDLE) {
    logmsg("handover: refused a takeover from pid %ld: %s", (long)pid, busy);
    refuse_after_hello(fd, busy);
    return;
  }
  set_timeouts(fd); /* blocking sends, bounded; reads are MSG_DONTWAIT */
  ho->cfd = fd;
  if (!(ho->cev = event_new(ho->p->base, fd, EV_READ | EV_PERSIST, old_conn_cb, ho)) ||
      event_add(ho->cev, NULL) < 0) {
    conn_close(ho);
    return;
  }
  logmsg("handover: takeover by pid %ld started", (long)pid);
}

/* Binds PATH; a file left there by an instance that is gone is replaced. */
static int bind_path(struct handover *ho, const char *path) {
  struct sockaddr_un sa;
  struct stat stt;
  int fd;

  if (path_addr(path, &sa) < 0)
    return -1;
  if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
    goto fail;
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    int probe;
    if (errno != EADDRINUSE)
      goto fail;
    probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
      close(probe);
      logmsg("handover: %s: another instance listens there", path);
      close(fd);
      return -1;
    }
    if (probe >= 0)
      close(probe);
    if (lstat(path, &stt) == 0 && S_ISSOCK(stt.st_mode))
      unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
      goto fail;
  }
  chmod(path, 0600);
  if (listen(fd, 4) < 0 || stat(path, &stt) < 0)
    goto fail;
  ho->dev = stt.st_dev;
  ho->ino = stt.st_ino;
  ho->lfd = fd;
  return 0;
fail:
  logmsg("handover: cannot listen on %s: %s", path, strerror(errno));
  if (fd >= 0)
    close(fd);
  return -1;
}

static int listen_path(struct handover *ho) {
  struct proxy *p = ho->p;

  if (bind_path(ho, p->cfg.handover_path) < 0)
    return -1;
  if (!(ho->lev = event_new(p->base, ho->lfd, EV_READ | EV_PERSIST, accept_cb, ho)) ||
      event_add(ho->lev, NULL) < 0)
    return -1;
  ho->state = HO_ST_IDLE;
  logmsg("handover: a new instance can take over through %s", p->cfg.handover_path);
  return 0;
}

/* A signal during a takeover that was sent: no SERVING in IO_TIMEOUT_S. */
static void stop_timeout_cb(evutil_socket_t fd, short what, void *arg) {
  struct handover *ho = arg;

  (void)fd, (void)what;
  if (ho->state == HO_ST_SENT && ho->cfd >= 0)
    old_conn_cb(ho->cfd, EV_READ, ho); /* a SERVING that already came counts */
  if (ho->state == HO_ST_SENT)
    abort_takeover(ho, "the new instance did not say it serves in time");
}

int handover_on_signal(struct proxy *p, const char *why) {
  struct handover *ho = p->ho;
  struct timeval tv = {IO_TIMEOUT_S, 0};

  if (!ho || ho->cfd < 0)
    return 0;
  if (ho->state == HO_ST_IDLE) {
    /* connected, nothing sent yet: the new instance gets nothing */
    logmsg("handover: %s: refusing the takeover that was starting", why);
    if (ho->cev)
      event_free(ho->cev);
    ho->cev = NULL;
    refuse_after_hello(ho->cfd, "the old instance is shutting down");
    ho->cfd = -1;
    return 0;
  }
  if (ho->state != HO_ST_SENT)
    return 0;
  if (ho->stop_why) {
    abort_takeover(ho, "a second signal"); /* shutdown begins */
    logmsg("second signal: exiting now");
    if (p->all)
      workers_stop_now(p->all);
    else
      event_base_loopbreak(p->base);
    return 1;
  }
  /* every tunnel is with the new instance now: stopping here would close
   * sockets it holds; it either serves soon or the tunnels come back */
  ho->stop_why = why;
  evtimer_add(ho->stop_ev, &tv);
  logmsg("handover: %s during a takeover: finishing it first (up to %d s)", why, IO_TIMEOUT_S);
  return 1;
}

/* ------------------------------------------------- the new instance's side */

/* REVTUN_PROXY_TEST_TAKEOVER_PAUSE=STEP: SIGSTOP at STEP (a test then
 * kills it, or lets it go on with SIGCONT). */
static void test_pause(const char *step) {
  const char *want = getenv("REVTUN_PROXY_TEST_TAKEOVER_PAUSE");

  if (!want || strcmp(want, step) != 0)
    return;
  logmsg("handover: test pause at %s", step);
  raise(SIGSTOP);
}

/* The tunnels of one TUNNELS message park here (with --workers, round
 * robin over the workers). */
static void import_tunnels(struct handover *ho, const struct ho_msg *m, int *fds) {
  struct ho_tunnel t[HO_MAX_FDS];
  unsigned n_workers = ho->p->all ? ho->p->cfg.workers : 1;

  for (size_t i = 0; i < m->n; i++) {
    t[i] = (struct ho_tunnel){fds[i],          ho->next_worker,        NULL,
                              m->state_len[i], (uint8_t *)m->state[i], REVTUN_OK};
    ho->next_worker = (ho->next_worker + 1) % n_workers;
  }
  import(ho->p, t, m->n);
  for (size_t i = 0; i < m->n; i++)
    if (t[i].rc != REVTUN_OK) {
      logmsg("handover: a tunnel's state was refused: %s", revtun_strerror(t[i].rc));
      close(fds[i]);
    } else
      ho->moved++;
}

static void new_conn_cb(evutil_socket_t fd, short what, void *arg) {
  struct handover *ho = arg;
  int fds[HO_MAX_MSG_FDS];
  size_t nfds;
  const char *why = NULL;
  struct ho_msg m;
  ssize_t n = ho_recv((int)fd, ho->buf, sizeof(ho->buf), fds, &nfds, MSG_DONTWAIT, &why);

  (void)what;
  if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return;
  if (n > 0 && ho_decode(ho->buf, (size_t)n, nfds, &m, &why) == HO_OK && m.type == HO_TUNNELS) {
    import_tunnels(ho, &m, fds);
    return;
  }
  close_fds(fds, nfds);
  if (n != 0)
    logmsg("handover: bad message from the old instance (%s)", n == -1 ? strerror(errno)
                                                               : why   ? why
                                                                       : "unexpected message type");
  else
    logmsg("handover: the old instance is gone: %llu tunnel(s) taken over in all",
           (unsigned long long)ho->moved);
  conn_close(ho);
  if (ho->p->cfg.handover_path && !stopping(ho->p))
    (void)listen_path(ho);
}

/* Undoes a takeover that failed half-way: tunnels imported so far leave
 * our pool again without a close record (the old instance still holds
 * them and parks them again), listeners received are closed. */
static void abandon(struct handover *ho) {
  uint8_t st[REVTUN_SOCKET_STATE_MAX];
  unsigned n_workers = ho->p->all ? ho->p->cfg.workers : 1;

  /* with --workers, before the workers' threads run: each pool is ours */
  for (unsigned w = 0; w < n_workers; w++) {
    struct proxy *p = ho->p->all ? workers_proxy(ho->p->all, w) : ho->p;
    int fd;
    size_t len;
    while (revtun_export_next(p->h, revtun_libevent_now(), &fd, st, sizeof(st), &len, NULL) ==
           REVTUN_OK)
      close(fd);
    for (int k = 0; k <= HO_L_MAX; k++)
      if (p->inherited_fd[k] >= 0) {
        close(p->inherited_fd[k]);
        p->inherited_fd[k] = -1;
      }
  }
  for (int k = 0; k <= HO_L_MAX; k++)
    if (ho->p->inherited_fd[k] >= 0) {
      close(ho->p->inherited_fd[k]);
      ho->p->inherited_fd[k] = -1;
    }
  conn_close(ho);
}

static int takeover_fail(struct handover *ho, const char *what, const char *detail) {
  fprintf(stderr, PROG ": --takeover %s: %s%s%s\n", ho->p->cfg.takeover_path, what,
          detail ? ": " : "", detail ? detail : "");
  abandon(ho);
  return -1;
}

static int is_listening_stream(int fd) {
  int v = 0;
  socklen_t l = sizeof(v);

  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) < 0 || !v)
    return 0;
  l = sizeof(v);
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) == 0 && v == SOCK_STREAM;
}

/* LISTENERS: the k-th tunnel and client listeners are worker k's (the
 * proxy's own without --workers), the admin one the admin port's. */
static void take_listeners(struct proxy *p, const struct ho_msg *m, const int *fds) {
  unsigned next[HO_L_MAX + 1] = {0};

  for (size_t i = 0; i < m->n; i++) {
    unsigned kind = m->kinds[i], k = next[kind]++;
    struct proxy *to = kind == HO_L_ADMIN || !p->all ? p : workers_proxy(p->all, k);
    to->inherited_fd[kind] = fds[i];
  }
}

/* Receives everything up to DONE, blocking (each message within
 * IO_TIMEOUT_S). */
static int receive_all(struct handover *ho) {
  int got_listeners = 0;
  uint64_t tunnels = 0;

  for (;;) {
    int fds[HO_MAX_MSG_FDS];
    size_t nfds;
    const char *why = NULL;
    struct ho_msg m;
    ssize_t n = ho_recv(ho->cfd, ho->buf, sizeof(ho->buf), fds, &nfds, 0, &why);
    int rc;
    char reason[HO_MAX_REASON + 1];

    if (n == 0)
      return takeover_fail(ho, "the old instance closed the connection", NULL);
    if (n < 0)
      return takeover_fail(ho, "receiving", n == -1 ? strerror(errno) : why);
    rc = ho_decode(ho->buf, (size_t)n, nfds, &m, &why);
    if (rc != HO_OK) {
      close_fds(fds, nfds);
      if (rc == HO_BAD_VERSION) {
        snprintf(reason, sizeof(reason), "version %u (this one speaks %u)", m.version, HO_VERSION);
        return takeover_fail(ho, "the old instance speaks another handover version", reason);
      }
      return takeover_fail(ho, "bad message from the old instance", why);
    }
    switch (m.type) {
    case HO_REFUSE:
      log_safe(reason, sizeof(reason), (const char *)m.reason, m.reason_len);
      return takeover_fail(ho, "refused by the old instance", reason);
    case HO_LISTENERS:
      if (got_listeners++) {
        close_fds(fds, nfds);
        return takeover_fail(ho, "bad message from the old instance", "LISTENERS twice");
      }
      if (m.workers != ho->p->cfg.workers) {
        close_fds(fds, nfds);
        snprintf(reason, sizeof(reason),
                 "it runs %u worker(s) and this one %u: start this one with --workers %u",
                 m.workers, ho->p->cfg.workers, m.workers);
        return takeover_fail(ho, "the old instance has another number of workers", reason);
      }
      take_listeners(ho->p, &m, fds);
      test_pause("listeners");
      for (size_t i = 0; i < m.n; i++)
        if (!is_listening_stream(fds[i]))
          return takeover_fail(ho, "bad message from the old instance",
                               "a listener that is not a listening TCP socket");
      break;
    case HO_TUNNELS:
      if (!got_listeners) {
        close_fds(fds, nfds);
        return takeover_fail(ho, "bad message from the old instance", "TUNNELS before LISTENERS");
      }
      import_tunnels(ho, &m, fds);
      tunnels += m.n;
      test_pause("tunnels");
      break;
    case HO_DONE:
      if (!got_listeners || m.total != tunnels)
        return takeover_fail(ho, "bad message from the old instance",
                             got_listeners ? "DONE counts other tunnels than were sent"
                                           : "DONE before LISTENERS");
      logmsg("handover: received %llu parked tunnel(s), %llu parked here",
             (unsigned long long)tunnels, (unsigned long long)ho->moved);
      test_pause("done");
      return 0;
    default:
      close_fds(fds, nfds);
      return takeover_fail(ho, "bad message from the old instance", "unexpected message type");
    }
  }
}

/* ------------------------------------------------------------ the API */

static struct handover *ho_new(struct proxy *p) {
  struct handover *ho = calloc(1, sizeof(*ho));

  if (!ho)
    return NULL;
  ho->p = p;
  ho->lfd = ho->cfd = -1;
  if (!(ho->sweep_ev = evtimer_new(p->base, sweep_cb, ho)) ||
      !(ho->goaway_ev = evtimer_new(p->base, goaway_cb, ho)) ||
      !(ho->stop_ev = evtimer_new(p->base, stop_timeout_cb, ho))) {
    if (ho->sweep_ev)
      event_free(ho->sweep_ev);
    if (ho->goaway_ev)
      event_free(ho->goaway_ev);
    free(ho);
    return NULL;
  }
  p->ho = ho;
  return ho;
}

int handover_takeover(struct proxy *p) {
  struct handover *ho;
  struct sockaddr_un sa;
  pid_t pid = 0;
  uint8_t hello[HO_HEADER];

  if (!p->cfg.takeover_path)
    return 0;
  if (!(ho = ho_new(p)) || path_addr(p->cfg.takeover_path, &sa) < 0)
    return -1;
  ho->state = HO_ST_TAKER;
  if ((ho->cfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) < 0 ||
      connect(ho->cfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    return takeover_fail(ho, "cannot connect", strerror(errno));
  if (!same_user(ho->cfd, &pid))
    return takeover_fail(ho, "the instance listening there is not our user", NULL);
  set_timeouts(ho->cfd);
  test_pause("connected");
  /* EPIPE: the old instance closed after a REFUSE, which is still to be read */
  if (ho_send(ho->cfd, hello, ho_header(hello, HO_HELLO, 0), NULL, 0) < 0 && errno != EPIPE)
    return takeover_fail(ho, "sending", strerror(errno));
  logmsg("handover: taking over from pid %ld", (long)pid);
  test_pause("hello");
  return receive_all(ho);
}

int handover_start(struct proxy *p) {
  struct handover *ho = p->ho;

  if (ho && ho->state == HO_ST_TAKER) {
    /* a listener this instance has no flag for (an admin port without
     * --admin-listen) is closed, not left with connections nobody accepts */
    for (int k = 1; k <= HO_L_MAX; k++)
      if (p->inherited_fd[k] >= 0) {
        logmsg("handover: closing the old instance's %s listener: not configured here",
               k == HO_L_ADMIN ? "admin" : "other");
        close(p->inherited_fd[k]);
        p->inherited_fd[k] = -1;
      }
    /* listening on the inherited sockets already: the old one may stop */
    if (send_simple(ho->cfd, HO_SERVING, NULL, 0) < 0) {
      /* the old one gave up (a signal and no SERVING in time): it parked
       * the tunnels again, so they leave here without a close record */
      fprintf(stderr, PROG ": --takeover %s: telling the old instance we serve: %s\n",
              p->cfg.takeover_path, strerror(errno));
      abandon(ho);
      return -1;
    }
    evutil_make_socket_nonblocking(ho->cfd);
    if (!(ho->cev = event_new(p->base, ho->cfd, EV_READ | EV_PERSIST, new_conn_cb, ho)) ||
        event_add(ho->cev, NULL) < 0)
      return -1;
    logmsg("handover: serving; %s is ours once the old instance has drained",
           p->cfg.handover_path ? p->cfg.handover_path : "the handover socket");
    return 0;
  }
  if (!p->cfg.handover_path)
    return 0;
  if (!ho && !(ho = ho_new(p)))
    return -1;
  return listen_path(ho);
}

void handover_free(struct proxy *p) {
  struct handover *ho = p->ho;
  struct stat st;

  if (!ho)
    return;
  if (ho->state == HO_ST_HANDED)
    sweep(ho); /* the last tunnels that parked while draining */
  else if (ho->ntr)
    transit_restore(ho); /* exiting mid-takeover: they close with the pool */
  conn_close(ho);
  if (ho->lev)
    event_free(ho->lev);
  if (ho->lfd >= 0) {
    close(ho->lfd);
    /* the path is unlinked only if it is still the socket we bound */
    if (p->cfg.handover_path && stat(p->cfg.handover_path, &st) == 0 && st.st_dev == ho->dev &&
        st.st_ino == ho->ino)
      unlink(p->cfg.handover_path);
  }
  if (ho->state == HO_ST_HANDED)
    logmsg("handover: %llu tunnel(s) handed over in all", (unsigned long long)ho->moved);
  event_free(ho->sweep_ev);
  event_free(ho->goaway_ev);
  event_free(ho->stop_ev);
  free(ho->tr);
  free(ho);
  p->ho = NULL;
}
