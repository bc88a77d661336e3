/* Idle sockets leaving one handle and joining another with their state
 * (pool/move.c); the state's byte form is pool/sockstate.h. */
#ifndef REVTUN_POOL_MOVE_H
#define REVTUN_POOL_MOVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool/sockstate.h"
#include "revtun/revtun.h"

struct rt_sock;

/* Encodes idle s into buf and lets it leave the pool alive (its fd open, no
 * longer watched). REVTUN_E_NOSPACE with the length needed in *len_out when
 * cap is too small; the socket stays then. report: a reporter disconnect
 * too (a move to another process). */
int rt_pool_export(revtun_t *h, struct rt_sock *s, bool report, revtun_time_ms_t now, uint8_t *buf,
                   size_t cap, size_t *len_out);

/* Parks fd with a decoded state, its keepalive resumed. On REVTUN_E_NOMEM,
 * REVTUN_E_IO or REVTUN_E_HOST the tunnel's end is recorded (tunnel_closed,
 * move_failed) and the fd is the caller's to close; on REVTUN_E_INVAL (ids
 * this handle refuses) or REVTUN_E_EXISTS nothing is recorded. */
int rt_pool_import(revtun_t *h, int fd, const struct rt_sockstate *st, void *sock_user, bool report,
                   revtun_time_ms_t now);

#endif
