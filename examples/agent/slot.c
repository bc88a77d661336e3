/*
 * revtun-downstream-agent: tunnel slots. Each slot dials the upstream's
 * tunnel listener, sends the reverse-tunnel handshake, reads the answer
 * (200 or 101 parks the socket; a rejection is logged and retried with
 * backoff, or after its Retry-After), echoes RPING while parked, and hands
 * the socket to the HTTP/2 side (tunnel.c) at the first other byte, then
 * dials again so --count tunnels stay parked.
 *
 * Failover: with several --upstream proxies, every slot dials the current
 * one. A dial that is refused, reset or times out, a handshake cut short
 * and a 429 or 5xx answer make the next one current (once per failure of
 * the current one, however many slots saw it), so the agent's tunnels
 * reappear under another proxy of the fleet without a restart. A parked
 * tunnel closed by its proxy is re-dialed at the same proxy first: a live
 * proxy closes tunnels too, and a dead one refuses that dial. The backoff
 * grows once per round through the list, so a dead proxy costs one short
 * delay before the next one is tried.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <netinet/tcp.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

static const char RPING[5] = {'R', 'P', 'I', 'N', 'G'};

static void slot_read_cb(evutil_socket_t fd, short what, void *arg);
static void slot_write_cb(evutil_socket_t fd, short what, void *arg);

/* A non-blocking TCP socket with its connect to a started, from src when
 * src->len is not 0: the fd, or -1 (errno). Completion shows as write
 * readiness. */
int agent_dial(const struct addr *a, const struct addr *src) {
  return sock_dial((const struct sockaddr *)&a->ss, a->len,
                   src && src->len ? (const struct sockaddr *)&src->ss : NULL, src ? src->len : 0);
}

/* Closes the slot's socket, if any. */
void slot_close(struct slot *sl) {
  if (sl->sk.fd < 0)
    return;
  if (sl->ssl)
    slot_tls_park(sl); /* no close_notify on a failed session either */
  sock_close(&sl->sk);
  close(sl->sk.fd);
  sl->sk.fd = -1;
  if (sl->in)
    evbuffer_drain(sl->in, evbuffer_get_length(sl->in));
}

void slot_retry(struct slot *sl, int64_t delay_ms, const char *why) {
  struct agent *ag = sl->ag;
  struct timeval tv;

  slot_close(sl);
  evtimer_del(sl->timer);
  sl->state = SLOT_WAIT;
  if (ag->stopping)
    return;
  if (delay_ms < 0) {
    uint64_t d =
        ag->cfg.max_backoff_ms < BACKOFF_BASE_MS ? ag->cfg.max_backoff_ms : BACKOFF_BASE_MS;
    unsigned i, rounds = sl->failures / ag->cfg.n_upstreams;

    for (i = 0; i < rounds && d < ag->cfg.max_backoff_ms; i++)
      d *= 2;
    if (d > ag->cfg.max_backoff_ms)
      d = ag->cfg.max_backoff_ms;
    /* Jitter spreads a fleet of agents after an upstream restart. */
    delay_ms = (int64_t)(d + (uint64_t)rand() % (d * 15 / 100 + 1));
  }
  sl->failures++;
  if (ag->ever_parked)
    ag->reconnects++;
  logmsg("slot %u: %s; retrying in %.2fs", sl->idx, why, (double)delay_ms / 1000.0);
  tv = ms_tv((uint64_t)delay_ms);
  evtimer_add(sl->timer, &tv);
}

/* The upstream sl dialed did not take it (why): when that one is still the
 * current upstream, the next one becomes current; then the slot retries
 * after delay_ms (-1: the backoff). */
void slot_upstream_failed(struct slot *sl, int64_t delay_ms, const char *why) {
  struct agent *ag = sl->ag;
  unsigned n = ag->cfg.n_upstreams;

  if (n > 1 && sl->up == ag->cur_up && !ag->stopping) {
    ag->cur_up = (ag->cur_up + 1) % n;
    logmsg("upstream %s failed (%s): switching to %s", ag->cfg.upstream[sl->up].text, why,
           ag->cfg.upstream[ag->cur_up].text);
  }
  slot_retry(sl, delay_ms, why);
}

static void slot_send_handshake(struct slot *sl) {
  const struct config *c = &sl->ag->cfg;
  struct evbuffer *out = sl->sk.out;

  /* Byte for byte what Envoy's HTTP/1 client codec produces for it. */
  evbuffer_add_printf(out, "GET %s HTTP/1.1\r\nhost: %s\r\n", c->path, c->upstream[sl->up].text);
  if (c->upgrade)
    evbuffer_add_printf(out, "connection: upgrade\r\n"
                             "upgrade: reverse-tunnel\r\n");
  evbuffer_add_printf(out,
                      "x-envoy-reverse-tunnel-node-id: %s\r\n"
                      "x-envoy-reverse-tunnel-cluster-id: %s\r\n"
                      "x-envoy-reverse-tunnel-tenant-id: %s\r\n",
                      c->node, c->cluster, c->tenant);
  if (c->upstream_cluster)
    evbuffer_add_printf(out, "x-envoy-reverse-tunnel-upstream-cluster-name: %s\r\n",
                        c->upstream_cluster);
  evbuffer_add_printf(out,
                      "x-envoy-reverse-tunnel-initiation-time: %" PRIu64 "\r\n"
                      "x-envoy-reverse-tunnel-worker-id: worker_0\r\n"
                      "x-envoy-reverse-tunnel-connection-id: %" PRIu64 "\r\n"
                      "content-length: 0\r\n\r\n",
                      sl->episode_ms, sl->conn_id);
}

/* Decodes the chunked rejection body held in the input buffer (at most
 * MAX_HEAD bytes are looked at): up to cap bytes of it into out. 1 when
 * the body is complete (or malformed: nothing more is worth waiting for),
 * 0 when more bytes may come. */
static int rejection_chunked(struct slot *sl, char *out, size_t cap, size_t *outlen) {
  struct evbuffer *in = sl->in;
  size_t n = evbuffer_get_length(in), pos = 0;
  const char *d;
  struct h1_chunked c;

  memset(&c, 0, sizeof(c));
  *outlen = 0;
  if (n > MAX_HEAD)
    n = MAX_HEAD;
  if (!(d = (const char *)evbuffer_pullup(in, (ev_ssize_t)n)))
    return 1;
  while (pos < n && !h1_chunked_done(&c)) {
    size_t off, len;
    ssize_t used = h1_chunked_decode(&c, d + pos, n - pos, n, &off, &len);
    if (used <= 0)
      return 1;
    if (len && *outlen < cap) {
      size_t take = cap - *outlen < len ? cap - *outlen : len;
      memcpy(out + *outlen, d + pos + off, take);
      *outlen += take;
    }
    pos += (size_t)used;
  }
  return h1_chunked_done(&c) || n == MAX_HEAD;
}

static void slot_finish_rejection(struct slot *sl, int complete) {
  struct evbuffer *in = sl->in;
  size_t n = evbuffer_get_length(in), blen = 0;
  char body[201], shown[201], why[400];
  int64_t delay = -1;

  if (sl->body == BODY_CHUNKED) {
    rejection_chunked(sl, body, sizeof(body) - 1, &blen);
  } else {
    if (sl->body == BODY_LENGTH && n > sl->body_len)
      n = (size_t)sl->body_len;
    blen = n < sizeof(body) - 1 ? n : sizeof(body) - 1;
    evbuffer_copyout(in, body, blen);
  }
  snprintf(why, sizeof(why), "handshake rejected: %d %s%s \"%s\"", sl->status, sl->reason,
           complete ? "" : " (body cut short)", log_safe(shown, sizeof(shown), body, blen));
  if (sl->status == 429 && sl->retry_after_s > 0) {
    int64_t s = sl->retry_after_s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : sl->retry_after_s;

    delay = s * 1000;
    if (delay > (int64_t)sl->ag->cfg.max_backoff_ms)
      delay = sl->ag->cfg.max_backoff_ms;
  }
  /* An overloaded or failing proxy: another one of the fleet may take it. A
   * policy answer (403, 400, ...) would be the same everywhere. */
  if (sl->status == 429 || sl->status >= 500) {
    if (sl->ag->cfg.n_upstreams > 1)
      delay = -1; /* the next proxy need not wait for this one's Retry-After */
    slot_upstream_failed(sl, delay, why);
    return;
  }
  slot_retry(sl, delay, why);
}

/* Returns 1 once the whole rejection body is in the input buffer, or
 * MAX_HEAD bytes of it: an endless body is not waited for. */
static int slot_rejection_complete(struct slot *sl) {
  struct evbuffer *in = sl->in;
  size_t n = evbuffer_get_length(in), dummy;
  char scratch[1];

  if (n >= MAX_HEAD)
    return 1;
  switch (sl->body) {
  case BODY_NONE: return 1;
  case BODY_LENGTH: return n >= sl->body_len;
  case BODY_CHUNKED: return rejection_chunked(sl, scratch, 0, &dummy);
  case BODY_CLOSE: break;
  }
  return 0;
}

/* Echoes RPINGs: straight to the kernel when nothing waits before them
 * (a parked socket's send buffer is empty), else behind what waits. */
static int slot_echo(struct slot *sl, size_t echoes) {
  char out[5 * 16];

  while (echoes) {
    size_t k = echoes < 16 ? echoes : 16, len = k * 5;
    ssize_t n = 0;

    for (size_t i = 0; i < k; i++)
      memcpy(out + i * 5, RPING, 5);
    if (evbuffer_get_length(sl->sk.out) == 0) {
      n = send(sl->sk.fd, out, len, MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return -1;
      if (n < 0)
        n = 0;
    }
    if ((size_t)n < len && evbuffer_add(sl->sk.out, out + n, len - (size_t)n) < 0)
      return -1;
    echoes -= k;
  }
  return evbuffer_get_length(sl->sk.out) && sock_write(&sl->sk) < 0 ? -1 : 0;
}

/* Parked bytes: RPINGs are echoed until the first other byte, which hands
 * the socket (and the bytes from there on) to HTTP/2. 0, or -1 once the
 * slot is gone (retry or handoff). */
static int slot_parked_bytes(struct slot *sl, const uint8_t *p, size_t n) {
  size_t echoes = 0;

  for (size_t i = 0; i < n; i++) {
    if (p[i] != (uint8_t)RPING[sl->ping_match]) {
      size_t held = sl->ping_match;

      if (echoes && slot_echo(sl, echoes) < 0) {
        slot_retry(sl, -1, "parked tunnel: write failed");
        return -1;
      }
      /* A held partial RPING was application data after all. */
      tunnel_start(sl, RPING, held, p + i, n - i);
      return -1;
    }
    if (++sl->ping_match == sizeof(RPING)) {
      sl->ping_match = 0;
      echoes++;
    }
  }
  if (echoes) {
    VLOG("slot %u: echoed %zu RPING", sl->idx, echoes);
    if (slot_echo(sl, echoes) < 0) {
      slot_retry(sl, -1, "parked tunnel: write failed");
      return -1;
    }
  }
  return 0;
}

static void slot_parked_read(struct slot *sl) {
  static uint8_t buf[MAX_READ];

  for (;;) {
    ssize_t n = sock_read(&sl->sk, buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      slot_retry(sl, -1, n == 0 ? "parked tunnel closed by upstream" : strerror(errno));
      return;
    }
    if (n < 0 || slot_parked_bytes(sl, buf, (size_t)n) < 0 || (size_t)n < sizeof(buf))
      return;
  }
}

/* A decimal field value (digits only, below 2^31), or -1. */
static long field_decimal(const struct h1_field *f) {
  long v = 0;

  if (!f || f->value.n == 0 || f->value.n > 9)
    return -1;
  for (size_t i = 0; i < f->value.n; i++) {
    if (f->value.p[i] < '0' || f->value.p[i] > '9')
      return -1;
    v = v * 10 + (f->value.p[i] - '0');
  }
  return v;
}

/* What the handshake read left in the input buffer (at most MAX_HEAD plus
 * one read), as parked bytes: all of them, since a handoff feeds the rest
 * to HTTP/2 at once. */
static void slot_parked_evbuffer(struct slot *sl) {
  struct evbuffer *in = sl->in;
  size_t n = evbuffer_get_length(in);
  const uint8_t *p;

  if (n == 0)
    return;
  if (!(p = evbuffer_pullup(in, -1))) {
    slot_retry(sl, -1, "out of memory");
    return;
  }
  slot_parked_bytes(sl, p, n);
  /* Consumed either way (echoed, or the tunnel's), and nothing was added
   * meanwhile: the next connection of the slot reads only later. */
  evbuffer_drain(in, n);
}

static void slot_handshake_input(struct slot *sl) {
  struct agent *ag = sl->ag;
  struct evbuffer *in = sl->in;
  size_t avail = evbuffer_get_length(in), look = avail < MAX_HEAD ? avail : MAX_HEAD;
  const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
  struct h1_field fields[MAX_HEADERS];
  struct h1_head hd;
  char why[128];
  int want = ag->cfg.upgrade ? 101 : 200, rc;

  if (!data) {
    slot_retry(sl, -1, "out of memory");
    return;
  }
  rc = h1_parse_response(data, look, MAX_HEAD, fields, MAX_HEADERS, &hd);
  if (rc == H1_INCOMPLETE)
    return;
  if (rc != H1_OK) {
    slot_upstream_failed(sl, -1,
                         rc == H1_TOO_LARGE || rc == H1_TOO_MANY
                             ? "handshake response head too large"
                             : "malformed handshake response");
    return;
  }
  if (hd.status == want) {
    evbuffer_drain(in, hd.head_len);
    if (sl->ssl)
      slot_tls_park(sl);
    logmsg("slot %u: tunnel parked (connection-id %" PRIu64 ", %d)", sl->idx, sl->conn_id, want);
    sl->state = SLOT_PARKED;
    sl->ag->ever_parked = 1;
    sl->failures = 0;
    sl->episode_ms = 0;
    sl->ping_match = 0;
    /* The upstream pings on its own schedule; idle is not an error. */
    evtimer_del(sl->timer);
    /* Bytes coalesced with the response head already belong to the tunnel. */
    slot_parked_evbuffer(sl);
    return;
  }

  sl->status = hd.status;
  log_safe(sl->reason, sizeof(sl->reason), hd.reason.p, hd.reason.n);
  sl->retry_after_s = field_decimal(h1_find(&hd, "retry-after"));
  if (hd.chunked) {
    sl->body = BODY_CHUNKED;
  } else if (hd.content_length >= 0 && !hd.te_present) {
    sl->body = BODY_LENGTH;
    sl->body_len = (uint64_t)hd.content_length;
  } else if (hd.status == 101 || hd.status == 204 || hd.status == 304) {
    sl->body = BODY_NONE;
  } else {
    sl->body = BODY_CLOSE;
  }
  evbuffer_drain(in, hd.head_len);
  if (hd.status == 101 || hd.status == 200) {
    snprintf(why, sizeof(why), "unexpected handshake status %d (want %d)", hd.status, want);
    slot_retry(sl, -1, why);
    return;
  }
  sl->state = SLOT_REJECTED;
  if (slot_rejection_complete(sl))
    slot_finish_rejection(sl, 1);
}

static void slot_failed(struct slot *sl, const char *what) {
  char why[400];

  /* An upstream refusing our certificate ends the session after the TLS
   * handshake looked done to us (TLS 1.3): say where it ended. */
  snprintf(why, sizeof(why), "%s %s%s",
           sl->state == SLOT_PARKED       ? "parked tunnel"
           : sl->state == SLOT_CONNECTING ? "connect failed:"
           : sl->state == SLOT_TLS        ? "TLS:"
                                          : "handshake",
           what,
           sl->ssl && sl->state == SLOT_HANDSHAKE ? " inside TLS (our certificate refused?)" : "");
  if (sl->state == SLOT_PARKED)
    slot_retry(sl, -1, why); /* the same proxy first: see the top of this file */
  else
    slot_upstream_failed(sl, -1, why);
}

/* Drives the TLS handshake; once done, sends the tunnel handshake in it. */
static void slot_tls_step(struct slot *sl) {
  char why[300];
  int r = tls_handshake(sl->ssl, why, sizeof(why));

  if (r < 0) {
    slot_failed(sl, why);
    return;
  }
  if (r == 2) {
    sock_want_write(&sl->sk);
    return;
  }
  if (sock_write(&sl->sk) < 0) { /* nothing queued: drops write interest */
    slot_failed(sl, strerror(errno));
    return;
  }
  if (r == 0)
    return;
  VLOG("slot %u: TLS %s with %s, sending handshake", sl->idx, tls_version(sl->ssl),
       sl->ag->cfg.upstream[sl->up].text);
  sock_set_filter(&sl->sk, &tls_filter, sl->ssl);
  sl->state = SLOT_HANDSHAKE;
  slot_send_handshake(sl);
  if (sock_write(&sl->sk) < 0)
    slot_failed(sl, strerror(errno));
}

static void slot_read_cb(evutil_socket_t fd, short what, void *arg) {
  struct slot *sl = arg;
  ssize_t n;

  (void)fd, (void)what;
  if (sl->state == SLOT_PARKED) {
    slot_parked_read(sl);
    return;
  }
  if (sl->state == SLOT_CONNECTING)
    return; /* write readiness says how the connect went */
  if (sl->state == SLOT_TLS) {
    slot_tls_step(sl);
    return;
  }
  /* Inside TLS, one record per pass: after the answer's last record the
   * stream is raw (RPING), and must not be read as TLS. */
  do {
    n = sock_read_evbuffer(&sl->sk, sl->in, 4096, sl->ssl ? 1 : MAX_HEAD);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n <= 0) {
      if (sl->state == SLOT_REJECTED)
        slot_finish_rejection(sl, n == 0 && sl->body == BODY_CLOSE);
      else
        slot_failed(sl, n == 0 ? "closed by upstream" : strerror(errno));
      return;
    }
    switch (sl->state) {
    case SLOT_HANDSHAKE: slot_handshake_input(sl); break;
    case SLOT_REJECTED:
      if (slot_rejection_complete(sl))
        slot_finish_rejection(sl, 1);
      break;
    default: break;
    }
  } while (sl->ssl && evbuffer_get_length(sl->in) < MAX_HEAD);
}

static void slot_write_cb(evutil_socket_t fd, short what, void *arg) {
  struct slot *sl = arg;
  int err = 0;
  socklen_t len = sizeof(err);

  (void)fd, (void)what;
  if (sl->state == SLOT_CONNECTING) {
    if (getsockopt(sl->sk.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
      err = errno;
    if (err) {
      slot_failed(sl, strerror(err));
      return;
    }
    VLOG("slot %u: connected to %s (connection-id %" PRIu64 ")", sl->idx,
         sl->ag->cfg.upstream[sl->up].text, sl->conn_id);
    if (sl->ag->tls_ctx) {
      sl->state = SLOT_TLS;
      if (slot_tls_begin(sl) < 0)
        slot_failed(sl, "cannot start a session");
      else
        slot_tls_step(sl);
      return;
    }
    sl->state = SLOT_HANDSHAKE;
    slot_send_handshake(sl);
  } else if (sl->state == SLOT_TLS) {
    slot_tls_step(sl);
    return;
  }
  if (sock_write(&sl->sk) < 0)
    slot_failed(sl, strerror(errno));
}

void slot_connect(struct slot *sl) {
  struct agent *ag = sl->ag;
  struct timeval tmo = {HANDSHAKE_TIMEOUT_S, 0};
  char why[128];
  int fd;

  if (ag->stopping)
    return;
  /* The initiation time spans every retry until this slot succeeds. */
  if (!sl->episode_ms)
    sl->episode_ms = now_epoch_ms();
  sl->conn_id = ++ag->next_conn_id;
  sl->ping_match = 0;
  sl->state = SLOT_CONNECTING;
  sl->up = ag->cur_up;
  if (!sl->in && !(sl->in = evbuffer_new())) {
    slot_retry(sl, -1, "out of memory");
    return;
  }
  if ((fd = agent_dial(&ag->cfg.upstream[sl->up], &ag->cfg.bind)) < 0) {
    snprintf(why, sizeof(why), "connect to %s failed: %s", ag->cfg.upstream[sl->up].text,
             strerror(errno));
    slot_upstream_failed(sl, -1, why);
    return;
  }
  if (sock_init(&sl->sk, ag->base, fd, slot_read_cb, slot_write_cb, sl) < 0) {
    close(fd);
    sl->sk.fd = -1;
    slot_retry(sl, -1, "out of memory");
    return;
  }
  sock_want_write(&sl->sk); /* the connect's completion */
  /* Connecting and the handshake together get HANDSHAKE_TIMEOUT_S. */
  evtimer_add(sl->timer, &tmo);
}

void slot_timer_cb(evutil_socket_t fd, short what, void *arg) {
  struct slot *sl = arg;

  (void)fd;
  (void)what;
  if (sl->state == SLOT_WAIT)
    slot_connect(sl);
  else if (sl->state == SLOT_REJECTED)
    slot_finish_rejection(sl, 0);
  else if (sl->state != SLOT_PARKED)
    slot_failed(sl, "timed out");
}
