/* The handshake acceptor, as the layer above sees it: what a handshake
 * connection's readiness and deadline mean, and freeing the acceptors. */
#ifndef REVTUN_ACCEPTOR_ACCEPTOR_H
#define REVTUN_ACCEPTOR_ACCEPTOR_H

#include "core/fdtable.h"
#include "revtun/revtun.h"

void rt_acceptor_on_io(revtun_t *h, struct rt_fdent *ent, int events, revtun_time_ms_t now);
void rt_acceptor_on_deadline(revtun_t *h, struct rt_fdent *ent, revtun_time_ms_t now);
/* Frees the acceptors revtun_acceptor_free() marked from inside a call. */
void rt_acceptors_free_pending(revtun_t *h);
/* Frees every acceptor (the handle is being destroyed). */
void rt_acceptors_free_all(revtun_t *h);

#endif
