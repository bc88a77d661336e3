/* libFuzzer harness: the reverse-tunnel handshake.
 *
 * The input is an HTTP/1.1 request (or garbage). It is parsed directly at
 * every prefix length and in one piece, and the results must agree: a
 * prefix is never DONE unless the whole input is, the parser never consumes
 * more than it was given, and every header it returns lies inside the input.
 * Then the same bytes go through a real acceptor over a socketpair in chunks
 * whose size the first byte picks: whatever the acceptor does, it ends with
 * one answer or a registered tunnel, never both, and leaks nothing. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <revtun/revtun.h>

#include "acceptor/handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rt_hs_request req;

static void check_parser(const uint8_t *data, size_t size) {
  static const struct rt_hs_limits lim = {8192, 100};
  size_t scan = 0;
  enum rt_hs_result whole = rt_hs_parse(data, size, &lim, &scan, &req);
  if (whole == RT_HS_DONE) {
    if (req.consumed > size)
      __builtin_trap();
    const char *lo = (const char *)data, *hi = lo + size;
    for (size_t i = 0; i < req.n_headers; i++) {
      const struct rt_hs_header *hd = &req.headers[i];
      if (hd->name.p < lo || hd->name.p + hd->name.n > hi || hd->value.p < lo ||
          hd->value.p + hd->value.n > hi || hd->name.n == 0)
        __builtin_trap();
    }
  }
  /* incremental parsing, as the acceptor does it, reaches the same verdict */
  size_t whole_consumed = req.consumed;
  scan = 0;
  enum rt_hs_result r = RT_HS_NEED_MORE;
  size_t step = size > 64 ? size / 64 : 1;
  for (size_t n = 0; n < size && r == RT_HS_NEED_MORE; n += step)
    r = rt_hs_parse(data, n, &lim, &scan, &req);
  if (r == RT_HS_NEED_MORE)
    r = rt_hs_parse(data, size, &lim, &scan, &req);
  if (r != whole || (r == RT_HS_DONE && req.consumed != whole_consumed))
    __builtin_trap();
}

struct seen {
  int setups;
};

static void on_event(revtun_t *h, const revtun_event_t *ev, void *user) {
  (void)h;
  struct seen *s = user;
  if (revtun_event_kind(ev) == REVTUN_EV_TUNNEL_SETUP)
    s->setups++;
}

static void check_acceptor(const uint8_t *data, size_t size) {
  if (size < 1)
    return;
  size_t chunk = data[0] % 32 + 1;
  data++, size--;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
    return;
  int big = 1 << 20;
  setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  struct seen seen = {0};
  revtun_options_t *o;
  if (revtun_options_new(&o))
    abort();
  revtun_options_set_access_log_cb(o, on_event);
  revtun_options_set_user_data(o, &seen);
  revtun_t *h;
  /* tenant isolation on, so the ':' rules are exercised */
  static const uint8_t cfg[] = {0x2a, 0x02, 0x08, 0x01};
  if (revtun_new(&h, cfg, sizeof(cfg), o, 0, NULL, 0))
    abort();
  revtun_options_free(o);
  revtun_acceptor_t *acc;
  if (revtun_acceptor_new(&acc, h, NULL, 0, NULL, 0))
    abort();
  if (revtun_acceptor_accept(acc, sv[0], NULL, 1) != REVTUN_OK)
    abort();
  for (size_t off = 0; off < size; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    if (send(sv[1], data + off, n, MSG_NOSIGNAL) != (ssize_t)n)
      break;
    revtun_process_io(h, sv[0], REVTUN_IO_READ, 2);
    if (revtun_socket_state(h, sv[0]) > 0 || revtun_acceptor_pending(acc) == 0)
      break;
  }
  char answer[2048];
  ssize_t got = recv(sv[1], answer, sizeof(answer) - 1, MSG_DONTWAIT);
  if (got > 0) {
    answer[got] = '\0';
    int ok = strncmp(answer, "HTTP/1.1 200 OK\r\n", 17) == 0;
    /* a 200 always means a tunnel was set up, and nothing else does */
    if (ok != (seen.setups == 1) || seen.setups > 1)
      __builtin_trap();
    if (strncmp(answer, "HTTP/1.1 ", 9) != 0)
      __builtin_trap();
  } else if (seen.setups) {
    __builtin_trap();
  }
  revtun_tick(h, 1000000); /* timeouts and lingering connections end */
  revtun_free(h);          /* frees the acceptor and closes whatever it still holds */
  close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_parser(data, size);
  check_acceptor(data, size);
  return 0;
}
