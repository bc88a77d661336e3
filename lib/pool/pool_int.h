/* What the pool's files (pool.c, handoff.c, pool_view.c) share. */
#ifndef REVTUN_POOL_POOL_INT_H
#define REVTUN_POOL_POOL_INT_H

#include "revtun_int.h"

struct rt_node *rt_pool_find_node(const revtun_t *h, const struct rt_idpair *node);
struct rt_cluster *rt_pool_find_cluster(const revtun_t *h, const struct rt_idpair *cluster);
/* Leaves the idle pool: FIFO, counters, deadline and io interest. */
void rt_pool_leave_idle(revtun_t *h, struct rt_sock *s);
struct rt_sock *rt_pool_sock(const revtun_t *h, int fd);

#endif
