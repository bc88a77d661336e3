/* The state of a parked socket as a byte string, so that the socket can
 * leave one handle and join another — another worker thread's, or a new
 * program version's after a restart — without its agent noticing: identity,
 * initiator ids, keepalive phase (time to the next deadline, an outstanding
 * ping, the miss count, a partial echo) and age.
 *
 * The string crosses process boundaries, so decoding treats it as hostile:
 * every length is bounded and checked against what is left, every number
 * against its range, every id against the id rules, and a version this code
 * does not know is refused (the old process then keeps the socket).
 *
 * Layout (all integers big-endian):
 *   "RVTS"  u8 version(=1)  u8 flags  u16 total length
 *   u32 interval_ms  u32 misses  u32 deadline_in_ms  u64 age_ms
 *   i64 initiation_time_ms  u8 partial  u8 awaiting_reply
 *   5 x (u16 length, bytes): node, cluster, tenant, initiator worker,
 *   initiator connection id. */
#ifndef REVTUN_POOL_SOCKSTATE_H
#define REVTUN_POOL_SOCKSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/ids.h"

#define RT_SOCKSTATE_VERSION 1u
#define RT_SOCKSTATE_FIXED 38u /* bytes before the strings */
#define RT_SOCKSTATE_MAX                                                                           \
  (RT_SOCKSTATE_FIXED + 5u * (2u + RT_MAX_ID_LEN)) /* REVTUN_SOCKET_STATE_MAX */

/* A string inside a decoded state: points into the caller's buffer, not
 * NUL-terminated. */
struct rt_span {
  const char *p;
  size_t n;
};

struct rt_sockstate {
  struct rt_span node, cluster, tenant, init_worker, init_conn;
  uint32_t interval_ms;    /* 1..300000 */
  uint32_t misses;         /* below 2^31: a miss more can never wrap it */
  uint32_t deadline_in_ms; /* time left to the next keepalive deadline */
  uint64_t age_ms;         /* since registration */
  int64_t initiation_time_ms;
  uint8_t partial;     /* bytes of a partial echo held, 0..4 */
  bool awaiting_reply; /* the deadline is a reply deadline */
};

/* The encoded length of st (valid or not). */
size_t rt_sockstate_size(const struct rt_sockstate *st);

/* Encodes st into buf; returns the length, or 0 when cap is too small or a
 * field is out of range (nothing is ever written half). */
size_t rt_sockstate_encode(const struct rt_sockstate *st, uint8_t *buf, size_t cap);

/* Decodes and validates buf[0..len); REVTUN_OK, REVTUN_E_UNSUPPORTED for an
 * unknown version, or REVTUN_E_INVAL with a reason in *why (static text). */
int rt_sockstate_decode(const uint8_t *buf, size_t len, struct rt_sockstate *st, const char **why);

#endif
