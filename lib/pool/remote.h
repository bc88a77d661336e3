/* Handoffs across the handles of one process (pool/remote.c): the handle's
 * side of the process directory. */
#ifndef REVTUN_POOL_REMOTE_H
#define REVTUN_POOL_REMOTE_H

#include "core/fdtable.h"
#include "revtun/revtun.h"

/* Joins dir: the handle's wake fd is registered for reading with the host.
 * REVTUN_E_CONFIG when its tenant isolation differs from the other
 * handles', REVTUN_E_LIMIT when the directory is full. */
int rt_remote_attach(revtun_t *h, revtun_directory_t *dir);
/* Leaves it: what was on its way here is answered or parked, so that
 * freeing the pool afterwards closes every socket with its record. */
void rt_remote_detach(revtun_t *h, revtun_time_ms_t now);
/* The wake fd is readable: messages from the other handles. */
void rt_remote_on_io(revtun_t *h, struct rt_fdent *ent, revtun_time_ms_t now);

#endif
