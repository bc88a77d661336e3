/* RPING keepalive of one idle socket, as Envoy's upstream socket interface
 * does it: a send timer (interval + upward jitter < 15 %) -> one 5-byte write
 * and a reply deadline of max(1 ms, interval/2) -> echoes reset the miss
 * count and re-arm the send timer; a deadline without an echo is a miss;
 * threshold consecutive misses close the socket. Non-RPING bytes, EOF, read
 * errors and floods close it at once. Each socket has one deadline at a time.
 *
 * This is the state machine alone: it does the socket's I/O and arms its
 * deadline, and returns a verdict saying what happened. It knows nothing of
 * the pool: the pool turns a verdict into counters and records, and a close
 * into the socket's death. */
#ifndef REVTUN_POOL_KEEPALIVE_H
#define REVTUN_POOL_KEEPALIVE_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/fdtable.h"
#include "revtun/revtun.h"

struct rt_keepalive {
  uint32_t interval_ms;
  uint32_t misses;        /* as wide as ping_failure_threshold: it can never wrap */
  uint8_t partial;        /* bytes of a partial RPING echo held (0..4) */
  uint8_t awaiting_reply; /* the deadline is a reply deadline, not a send time */
};

enum rt_ka_outcome {
  RT_KA_QUIET,     /* nothing to report */
  RT_KA_PING_SENT, /* a ping went out; the reply deadline is armed */
  RT_KA_ACK,       /* echoes arrived: the misses are reset, the next send armed */
  RT_KA_MISS,      /* no echo by the reply deadline, below the threshold; next send armed */
  RT_KA_TIMEOUT,   /* the threshold-th miss in a row: close with idle_ping_timeout */
  RT_KA_CLOSE      /* close now, with reason and sys_errno */
};

struct rt_ka_verdict {
  enum rt_ka_outcome outcome;
  int reason;    /* RT_KA_CLOSE: the REVTUN_CLOSE_* */
  int sys_errno; /* RT_KA_CLOSE: the errno of a failed read or write, else 0 */
};

/* ent is the socket's fd-table entry: its fd and its deadline. */
void rt_ka_start(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka, revtun_time_ms_t now);
/* A keepalive that ran on another handle goes on where it was: a send time
 * or a reply deadline at deadline. */
void rt_ka_resume(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka, bool awaiting_reply,
                  revtun_time_ms_t deadline);
/* The deadline came due: a send time sends a ping, a reply deadline reads
 * what the socket holds and decides between an ack and a miss. */
struct rt_ka_verdict rt_ka_on_deadline(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka,
                                       revtun_time_ms_t now);
/* The socket is readable: echoes, or a reason to close. */
struct rt_ka_verdict rt_ka_on_readable(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka,
                                       revtun_time_ms_t now);
/* Bytes read elsewhere (past the handshake), fed as if read from the socket. */
struct rt_ka_verdict rt_ka_feed(revtun_t *h, struct rt_fdent *ent, struct rt_keepalive *ka,
                                const uint8_t *p, size_t n, revtun_time_ms_t now);

#endif
