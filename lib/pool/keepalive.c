/* RPING keepalive of idle sockets, as Envoy's upstream socket interface does it:
 * send timer (interval + upward jitter < 15 %) -> one 5-byte write and a reply
 * deadline of max(1 ms, interval/2) -> echoes reset the miss count and re-arm
 * the send timer; a deadline without an echo is a miss; threshold consecutive
 * misses close the socket. Non-RPING bytes, EOF, read errors and floods close
 * it at once. Each socket has one deadline in the heap at a time. */
#include <errno.h>
#include <sys/socket.h>

#include "revtun_int.h"

#define READ_CHUNK 1024u

uint32_t rt_jitter(revtun_t *h, uint32_t interval_ms) {
  uint32_t window = (uint32_t)((uint64_t)interval_ms * 15u / 100u);
  if (window == 0)
    return interval_ms;
  return interval_ms + (uint32_t)(rt_random(h) % window);
}

static void arm_send(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now) {
  s->awaiting_reply = 0;
  rt_schedule(h, &s->ent, now + rt_jitter(h, s->interval_ms));
}

void rt_ka_start(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now) { arm_send(h, s, now); }

static ssize_t drain(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now);

static bool alive_and_idle(const struct rt_sock *s) { return !s->dead && s->state == RT_SOCK_IDLE; }

static void on_ack(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now) {
  s->misses = 0;
  arm_send(h, s, now);
  rt_count(h, RT_C_PING_ACKS);
  rt_emit_sock(h, REVTUN_EV_PING_ACK, s, now);
}

static void send_ping(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now) {
  uint32_t wait = s->interval_ms / 2 ? s->interval_ms / 2 : 1;
  s->awaiting_reply = 1;
  rt_schedule(h, &s->ent, now + wait);
  ssize_t n = send(s->ent.fd, RT_RPING, RT_RPING_LEN, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n == (ssize_t)RT_RPING_LEN) {
    rt_count(h, RT_C_PINGS_SENT);
    rt_emit_sock(h, REVTUN_EV_PING_SENT, s, now);
  } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    /* No retry: the reply deadline will count this as a miss. */
  } else {
    rt_pool_kill(h, s, REVTUN_CLOSE_IDLE_PING_WRITE_FAILURE, n < 0 ? errno : 0, now);
  }
}

static void on_miss(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now) {
  s->misses++;
  rt_count(h, RT_C_PING_MISSES);
  if (s->misses >= h->cfg.ping_failure_threshold) {
    rt_emit_sock(h, REVTUN_EV_PING_TIMEOUT, s, now);
    if (alive_and_idle(s))
      rt_pool_kill(h, s, REVTUN_CLOSE_IDLE_PING_TIMEOUT, 0, now);
    return;
  }
  arm_send(h, s, now);
  rt_emit_sock(h, REVTUN_EV_PING_MISS, s, now);
}

void rt_ka_on_deadline(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now) {
  if (!alive_and_idle(s))
    return;
  if (!s->awaiting_reply) {
    send_ping(h, s, now);
    return;
  }
  /* A reply deadline can fire before the host has delivered the readable
   * event of an echo that arrived in time: after the host's loop stalled
   * (CPU starvation, a debugger, a stopped process) every deadline comes due
   * at once, ahead of the queued readiness. So what the socket already holds
   * is read first; only an echo that is really missing counts as a miss. */
  ssize_t acks = drain(h, s, now);
  if (acks < 0)
    return;
  if (acks > 0)
    on_ack(h, s, now);
  else
    on_miss(h, s, now);
}

bool rt_ka_feed(revtun_t *h, struct rt_sock *s, const uint8_t *p, size_t n, revtun_time_ms_t now) {
  size_t acks = 0, stop;
  if (rt_rping_scan(p, n, &s->partial, &acks, &stop) != RT_SCAN_OK) {
    rt_pool_kill(h, s, REVTUN_CLOSE_IDLE_UNEXPECTED_DATA, 0, now);
    return false;
  }
  if (acks)
    on_ack(h, s, now);
  return alive_and_idle(s);
}

/* Reads everything the socket holds (up to the flood cap). Returns the
 * number of complete echoes, or -1 when the socket was closed for what it
 * held or for how it ended. */
static ssize_t drain(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now) {
  uint8_t buf[READ_CHUNK];
  size_t total = 0, acks = 0, stop;
  for (;;) {
    ssize_t r = recv(s->ent.fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (r > 0) {
      total += (size_t)r;
      if (rt_rping_scan(buf, (size_t)r, &s->partial, &acks, &stop) != RT_SCAN_OK) {
        rt_pool_kill(h, s, REVTUN_CLOSE_IDLE_UNEXPECTED_DATA, 0, now);
        return -1;
      }
      if (total >= RT_FLOOD_BYTES) {
        rt_pool_kill(h, s, REVTUN_CLOSE_IDLE_KEEPALIVE_FLOOD, 0, now);
        return -1;
      }
      continue;
    }
    if (r == 0) {
      rt_pool_kill(h, s, REVTUN_CLOSE_IDLE_PEER_CLOSE, 0, now);
      return -1;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return (ssize_t)acks;
    rt_pool_kill(h, s, REVTUN_CLOSE_IDLE_READ_ERROR, errno, now);
    return -1;
  }
}

void rt_ka_on_readable(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now) {
  if (drain(h, s, now) > 0) /* several echoes in one wake count as one ack */
    on_ack(h, s, now);
}
