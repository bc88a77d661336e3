/*
 * relay: a plain libevent TCP relay, the floor for bench/e2e.sh.
 *
 *   relay --listen ADDR:PORT --to ADDR:PORT
 *
 * Every accepted connection gets its own connection to --to, and bytes move
 * between the two without parsing: read(2) straight into the other side's
 * output evbuffer (64 KiB per call), written at once, with EV_WRITE asked
 * for only when the kernel is full. Two of them in a row (client -> relay ->
 * relay -> backend) are what any two-hop path costs before doing any work of
 * its own. (bufferevents would read 4 KiB per syscall: libevent 2.1 caps
 * evbuffer_read there.)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#define CHUNK (64 * 1024)
#define HIGH (1024 * 1024) /* bytes waiting for the slower side before we stop reading */

struct side {
  int fd;
  struct event *rev, *wev;
  struct evbuffer *out; /* bytes for this side's socket */
  struct side *peer;
  int connected, eof_sent, read_paused;
};

struct pair {
  struct side a, b; /* a: accepted, b: towards --to */
};

static struct event_base *base;
static struct sockaddr_storage to_addr;
static socklen_t to_len;

static int resolve(const char *spec, struct sockaddr_storage *ss, socklen_t *len) {
  const char *colon = strrchr(spec, ':');
  char host[256];
  struct addrinfo hints, *res = NULL;
  size_t hl;

  if (!colon || (hl = (size_t)(colon - spec)) == 0 || hl >= sizeof(host))
    return -1;
  memcpy(host, spec, hl);
  host[hl] = '\0';
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
    return -1;
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

static struct pair *pair_of(struct side *s) {
  return s->peer > s ? (struct pair *)(void *)s : (struct pair *)(void *)s->peer;
}

static void pair_free(struct pair *p) {
  struct side *sides[2] = {&p->a, &p->b};
  for (int i = 0; i < 2; i++) {
    if (sides[i]->rev)
      event_free(sides[i]->rev);
    if (sides[i]->wev)
      event_free(sides[i]->wev);
    if (sides[i]->out)
      evbuffer_free(sides[i]->out);
    if (sides[i]->fd >= 0)
      close(sides[i]->fd);
  }
  free(p);
}

/* Writes s->out; 0 ok (maybe with bytes left and EV_WRITE armed), -1 error. */
static int flush(struct side *s) {
  if (!s->connected)
    return 0; /* on_write flushes once the connect completes */
  while (evbuffer_get_length(s->out) > 0) {
    int n = evbuffer_write(s->out, s->fd);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno != EAGAIN)
      return -1;
    if (n <= 0) {
      event_add(s->wev, NULL);
      return 0;
    }
  }
  event_del(s->wev);
  if (s->peer->read_paused && evbuffer_get_length(s->out) < HIGH) {
    s->peer->read_paused = 0;
    event_add(s->peer->rev, NULL);
  }
  /* the other side has ended and everything it sent is out: pass the FIN on */
  if (s->peer->eof_sent == 1 && evbuffer_get_length(s->out) == 0) {
    shutdown(s->fd, SHUT_WR);
    s->peer->eof_sent = 2;
  }
  return 0;
}

static void on_read(evutil_socket_t fd, short what, void *arg) {
  struct side *s = arg, *d = s->peer;
  size_t got = 0;

  (void)fd, (void)what;
  while (got < HIGH) {
    struct evbuffer_iovec v;
    ssize_t n;
    if (evbuffer_reserve_space(d->out, CHUNK, &v, 1) < 1)
      break;
    n = read(s->fd, v.iov_base, v.iov_len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 0) { /* EOF: stop reading, forward the FIN after the bytes */
      event_del(s->rev);
      s->eof_sent = 1;
      break;
    }
    if (n < 0) {
      if (errno == EAGAIN)
        break;
      pair_free(pair_of(s));
      return;
    }
    v.iov_len = (size_t)n;
    evbuffer_commit_space(d->out, &v, 1);
    got += (size_t)n;
    if (n < CHUNK)
      break;
  }
  if (flush(d) < 0) {
    pair_free(pair_of(s));
    return;
  }
  if (s->eof_sent && d->eof_sent) { /* both directions are over */
    if (evbuffer_get_length(s->out) == 0 && evbuffer_get_length(d->out) == 0) {
      pair_free(pair_of(s));
      return;
    }
  }
  if (evbuffer_get_length(d->out) >= HIGH && !s->read_paused && !s->eof_sent) {
    s->read_paused = 1;
    event_del(s->rev);
  }
}

static void on_write(evutil_socket_t fd, short what, void *arg) {
  struct side *s = arg;
  int err = 0;
  socklen_t el = sizeof(err);

  (void)fd, (void)what;
  if (!s->connected) { /* the connect to --to finished */
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
      pair_free(pair_of(s));
      return;
    }
    s->connected = 1;
    event_add(s->rev, NULL);
    event_add(s->peer->rev, NULL);
  }
  if (flush(s) < 0)
    pair_free(pair_of(s));
  else if (s->eof_sent && s->peer->eof_sent && !evbuffer_get_length(s->out) &&
           !evbuffer_get_length(s->peer->out))
    pair_free(pair_of(s));
}

static int side_init(struct side *s, int fd, struct side *peer) {
  int one = 1;

  s->fd = fd;
  s->peer = peer;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  s->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_read, s);
  s->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_write, s);
  s->out = evbuffer_new();
  return s->rev && s->wev && s->out ? 0 : -1;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg) {
  struct pair *p = calloc(1, sizeof(*p));
  int up;

  (void)l, (void)sa, (void)salen, (void)arg;
  if (!p) {
    close(fd);
    return;
  }
  p->a.fd = p->b.fd = -1;
  up = socket(to_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (up < 0 || side_init(&p->a, fd, &p->b) < 0 || side_init(&p->b, up, &p->a) < 0) {
    if (p->a.fd < 0)
      close(fd);
    if (up >= 0 && p->b.fd < 0)
      close(up);
    pair_free(p);
    return;
  }
  p->a.connected = 1;
  if (connect(up, (struct sockaddr *)&to_addr, to_len) < 0 && errno != EINPROGRESS) {
    pair_free(p);
    return;
  }
  event_add(p->b.wev, NULL); /* connect completion; then both sides read */
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)sig, (void)what;
  event_base_loopbreak(arg);
}

int main(int argc, char **argv) {
  const char *listen_at = NULL, *to = NULL;
  struct sockaddr_storage ss;
  socklen_t len;

  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--listen"))
      listen_at = argv[i + 1];
    else if (!strcmp(argv[i], "--to"))
      to = argv[i + 1];
  }
  if (!listen_at || !to || resolve(listen_at, &ss, &len) < 0 ||
      resolve(to, &to_addr, &to_len) < 0) {
    fprintf(stderr, "usage: relay --listen ADDR:PORT --to ADDR:PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  base = event_base_new();
  struct evconnlistener *l =
      evconnlistener_new_bind(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                              1024, (struct sockaddr *)&ss, (int)len);
  if (!l) {
    fprintf(stderr, "relay: cannot listen on %s: %s\n", listen_at, strerror(errno));
    return 1;
  }
  struct event *si = evsignal_new(base, SIGINT, on_signal, base);
  struct event *st = evsignal_new(base, SIGTERM, on_signal, base);
  event_add(si, NULL);
  event_add(st, NULL);
  event_base_dispatch(base);
  event_free(si);
  event_free(st);
  evconnlistener_free(l);
  event_base_free(base);
  return 0;
}
