/*
 * A non-blocking socket on a libevent loop, without bufferevents.
 *
 * bufferevents read 4 KiB per syscall (libevent 2.1's evbuffer_read cap),
 * ask the kernel how much is readable first (ioctl FIONREAD), and add and
 * remove write interest around every write: two epoll_ctl per request on a
 * busy connection. A sock reads as much as its caller's buffer holds with
 * one read(2), writes at once with one writev(2), and changes its epoll
 * interest only when it really changes: read interest stays on (unless the
 * caller pauses it for backpressure), write interest is asked for only
 * while the kernel refuses bytes.
 *
 * Shared by the upstream proxy and the downstream agent.
 *
 * A filter (examples/tls.c: TLS) may sit between the buffers and the fd:
 * sock_read() then returns the filter's plaintext and sock_write() hands
 * the buffer to it. Without one, both are the syscalls.
 */
#ifndef REVTUN_EXAMPLES_SOCK_H
#define REVTUN_EXAMPLES_SOCK_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <event2/buffer.h>
#include <event2/event.h>

/* A byte filter over the fd. read: like read(2) (-1 with errno EAGAIN when
 * nothing is there yet). write: takes bytes from the front of out, like
 * writev(2) (-1 with errno EAGAIN when the fd is full). */
struct sock_filter {
  ssize_t (*read)(void *ctx, void *buf, size_t len);
  int (*write)(void *ctx, struct evbuffer *out);
};

struct sock {
  int fd;
  const struct sock_filter *filter; /* NULL: the fd itself */
  void *filter_ctx;
  struct event *rev, *wev;
  struct evbuffer *out; /* bytes the kernel has not taken yet */
  int writing;          /* write interest is on */
  int read_paused;      /* read interest is off */
};

/* Watches fd for reading (on_read) and, when asked, writing (on_write). 0,
 * or -1 with nothing left allocated. The fd stays the caller's. */
int sock_init(struct sock *s, struct event_base *base, int fd, event_callback_fn on_read,
              event_callback_fn on_write, void *arg);

/* Puts a filter (NULL: none) between the buffers and the fd. */
void sock_set_filter(struct sock *s, const struct sock_filter *f, void *ctx);

/* Frees the events and the buffer; the fd stays open (its owner closes it). */
void sock_close(struct sock *s);

void sock_pause_read(struct sock *s, int pause);

/* A non-blocking TCP socket (TCP_NODELAY) connecting to sa, bound first to
 * src when src is not NULL: the fd, or -1 with errno. Completion shows as
 * write readiness. */
int sock_dial(const struct sockaddr *sa, socklen_t len, const struct sockaddr *src,
              socklen_t src_len);

/* Asks for write readiness once (a connect in progress). */
void sock_want_write(struct sock *s);

/* Writes what the kernel takes: 0 all out, 1 some left (write interest on),
 * -1 error (errno). */
int sock_write(struct sock *s);

/* One read(2): bytes, 0 at EOF, -1 with errno (EAGAIN: nothing there). */
ssize_t sock_read(struct sock *s, void *buf, size_t len);

/* Appends up to max bytes to in, chunk bytes per read(2), without copying.
 * Returns the bytes read, 0 at EOF, -1 with errno (EAGAIN: nothing there). */
ssize_t sock_read_evbuffer(struct sock *s, struct evbuffer *in, size_t chunk, size_t max);

#endif
