/* See keepalive.h. */
#include <errno.h>
#include <sys/socket.h>

#include "base/rping.h"
#include "core/fdtable.h"
#include "core/handle.h"
#include "pool/keepalive.h"

#define READ_CHUNK 1024u

static const struct rt_ka_verdict quiet = {RT_KA_QUIET, 0, 0};

static struct rt_ka_verdict verdict(enum rt_ka_outcome outcome) {
  return (struct rt_ka_verdict){outcome, 0, 0};
}

static struct rt_ka_verdict close_with(int reason, int sys_errno) {
  return (struct rt_ka_verdict){RT_KA_CLOSE, reason, sys_errno};
}

static uint32_t jitter(revtun_t *h, uint32_t interval_ms) {
  uint32_t window = (uint32_t)((uint64_t)interval_ms * 15u / 100u);
  if (window == 0)
    return interval_ms;
  return interval_ms + (uint32_t)(rt_random(h) % window);
}

static void arm_send(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka,
                     revtun_time_ms_t now) {
  ka->awaiting_reply = 0;
  rt_schedule(h, ent, now + jitter(h, ka->interval_ms));
}

void rt_ka_start(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka, revtun_time_ms_t now) {
  arm_send(h, ent, ka, now);
}

void rt_ka_resume(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka, bool awaiting_reply,
                  revtun_time_ms_t deadline) {
  ka->awaiting_reply = awaiting_reply;
  rt_schedule(h, ent, deadline);
}

static struct rt_ka_verdict ack(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka,
                                revtun_time_ms_t now) {
  ka->misses = 0;
  arm_send(h, ent, ka, now);
  return verdict(RT_KA_ACK);
}

static struct rt_ka_verdict send_ping(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka,
                                      revtun_time_ms_t now) {
  uint32_t wait = ka->interval_ms / 2 ? ka->interval_ms / 2 : 1;
  ka->awaiting_reply = 1;
  rt_schedule(h, ent, now + wait);
  ssize_t n = send(ent->fd, RT_RPING, RT_RPING_LEN, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n == (ssize_t)RT_RPING_LEN)
    return verdict(RT_KA_PING_SENT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return quiet; /* no retry: the reply deadline will count this as a miss */
  return close_with(REVTUN_CLOSE_IDLE_PING_WRITE_FAILURE, n < 0 ? errno : 0);
}

static struct rt_ka_verdict miss(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka,
                                 revtun_time_ms_t now) {
  if (++ka->misses >= h->cfg.ping_failure_threshold)
    return verdict(RT_KA_TIMEOUT);
  arm_send(h, ent, ka, now);
  return verdict(RT_KA_MISS);
}

/* Reads everything the socket holds (up to the flood cap), counting the
 * complete echoes in *acks: quiet, or the reason to close for what it held or
 * for how it ended. */
static struct rt_ka_verdict drain(struct rt_fdent *ent, struct rt_keepalive *ka, size_t *acks) {
  uint8_t buf[READ_CHUNK];
  size_t total = 0, stop;
  *acks = 0;
  for (;;) {
    ssize_t r = recv(ent->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (r > 0) {
      total += (size_t)r;
      if (rt_rping_scan(buf, (size_t)r, &ka->partial, acks, &stop) != RT_SCAN_OK)
        return close_with(REVTUN_CLOSE_IDLE_UNEXPECTED_DATA, 0);
      if (total >= RT_FLOOD_BYTES)
        return close_with(REVTUN_CLOSE_IDLE_KEEPALIVE_FLOOD, 0);
      /* A short read emptied the receive queue: asking again would only
       * return EAGAIN, one recv per echo for nothing. Bytes or a FIN that
       * arrive later make the socket readable again, and the reply deadline
       * drains before it counts a miss; a handoff checks for a FIN itself. */
      if ((size_t)r < sizeof(buf))
        return quiet;
      continue;
    }
    if (r == 0)
      return close_with(REVTUN_CLOSE_IDLE_PEER_CLOSE, 0);
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return quiet;
    return close_with(REVTUN_CLOSE_IDLE_READ_ERROR, errno);
  }
}

struct rt_ka_verdict rt_ka_on_deadline(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka,
                                       revtun_time_ms_t now) {
  if (!ka->awaiting_reply)
    return send_ping(h, ent, ka, now);
  /* A reply deadline can fire before the host has delivered the readable
   * event of an echo that arrived in time: after the host's loop stalled
   * (CPU starvation, a debugger, a stopped process) every deadline comes due
   * at once, ahead of the queued readiness. So what the socket already holds
   * is read first; only an echo that is really missing counts as a miss. */
  size_t acks;
  struct rt_ka_verdict v = drain(ent, ka, &acks);
  if (v.outcome == RT_KA_CLOSE)
    return v;
  return acks ? ack(h, ent, ka, now) : miss(h, ent, ka, now);
}

struct rt_ka_verdict rt_ka_on_readable(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka,
                                       revtun_time_ms_t now) {
  size_t acks;
  struct rt_ka_verdict v = drain(ent, ka, &acks);
  if (v.outcome == RT_KA_CLOSE)
    return v;
  return acks ? ack(h, ent, ka, now) : quiet; /* several echoes in one wake are one ack */
}

struct rt_ka_verdict rt_ka_feed(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka,
                                const uint8_t *p, size_t n, revtun_time_ms_t now) {
  size_t acks = 0, stop;
  if (rt_rping_scan(p, n, &ka->partial, &acks, &stop) != RT_SCAN_OK)
    return close_with(REVTUN_CLOSE_IDLE_UNEXPECTED_DATA, 0);
  return acks ? ack(h, ent, ka, now) : quiet;
}
