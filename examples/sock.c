/* A non-blocking socket on a libevent loop, without bufferevents (sock.h). */
#define _POSIX_C_SOURCE 200809L

#include "sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

int sock_init(struct sock *s, struct event_base *base, int fd, event_callback_fn on_read,
              event_callback_fn on_write, void *arg) {
  s->fd = fd;
  s->writing = s->read_paused = 0;
  s->filter = NULL;
  s->filter_ctx = NULL;
  s->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_read, arg);
  s->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_write, arg);
  s->out = evbuffer_new();
  if (!s->rev || !s->wev || !s->out || event_add(s->rev, NULL) != 0) {
    sock_close(s);
    return -1;
  }
  return 0;
}

void sock_set_filter(struct sock *s, const struct sock_filter *f, void *ctx) {
  s->filter = f;
  s->filter_ctx = ctx;
}

void sock_close(struct sock *s) {
  if (s->rev)
    event_free(s->rev);
  if (s->wev)
    event_free(s->wev);
  if (s->out)
    evbuffer_free(s->out);
  s->rev = s->wev = NULL;
  s->out = NULL;
  s->writing = 0;
  s->filter = NULL;
  s->filter_ctx = NULL;
}

void sock_pause_read(struct sock *s, int pause) {
  if (pause == s->read_paused)
    return;
  s->read_paused = pause;
  if (pause)
    event_del(s->rev);
  else
    event_add(s->rev, NULL);
}

void sock_want_write(struct sock *s) {
  if (!s->writing && event_add(s->wev, NULL) == 0)
    s->writing = 1;
}

int sock_write(struct sock *s) {
  while (evbuffer_get_length(s->out) > 0) {
    int n = s->filter ? s->filter->write(s->filter_ctx, s->out) : evbuffer_write(s->out, s->fd);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      return -1;
    if (n <= 0) {
      sock_want_write(s);
      return 1;
    }
  }
  if (s->writing) {
    event_del(s->wev);
    s->writing = 0;
  }
  return 0;
}

ssize_t sock_read(struct sock *s, void *buf, size_t len) {
  ssize_t n;

  if (s->filter)
    return s->filter->read(s->filter_ctx, buf, len);
  do
    n = read(s->fd, buf, len);
  while (n < 0 && errno == EINTR);
  return n;
}

ssize_t sock_read_evbuffer(struct sock *s, struct evbuffer *in, size_t chunk, size_t max) {
  size_t total = 0;

  while (total < max) {
    struct evbuffer_iovec v;
    ssize_t n;
    if (evbuffer_reserve_space(in, (ev_ssize_t)chunk, &v, 1) < 1) {
      errno = ENOMEM;
      return total ? (ssize_t)total : -1;
    }
    n = sock_read(s, v.iov_base, v.iov_len < chunk ? v.iov_len : chunk);
    if (n <= 0)
      return total ? (ssize_t)total : n;
    v.iov_len = (size_t)n;
    evbuffer_commit_space(in, &v, 1);
    total += (size_t)n;
    if ((size_t)n < chunk && !s->filter)
      break; /* drained (a filter may hold more than the fd shows) */
  }
  return (ssize_t)total;
}

int sock_dial(const struct sockaddr *sa, socklen_t len, const struct sockaddr *src,
              socklen_t src_len) {
  int one = 1, e, fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

  if (fd < 0)
    return -1;
  /* RPING echoes and HTTP/2 frames are latency bound, never batch them. */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if ((src && bind(fd, src, src_len) < 0) || (connect(fd, sa, len) < 0 && errno != EINPROGRESS)) {
    e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}
