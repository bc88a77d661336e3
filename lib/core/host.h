/* The host's hooks, called the way the library promises: with the callback
 * depth raised (so the host cannot re-enter where it must not), failures
 * logged, and the one-shot timer kept pointing at the earliest deadline. */
#ifndef REVTUN_CORE_HOST_H
#define REVTUN_CORE_HOST_H

#include "revtun/revtun.h"

struct rt_fdent;

void rt_log(revtun_t *h, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Watch (READ/WRITE) or stop watching (REMOVE) an entry's fd;
 * REVTUN_E_HOST when the io callback failed. */
int rt_io(revtun_t *h, struct rt_fdent *ent, int events);
/* The host's close callback, or close(2). */
void rt_close_fd(revtun_t *h, int fd, void *sock_user);
/* Points the host's timer at the earliest deadline, if that changed. A
 * failing timer callback makes the handle unusable. */
void rt_rearm_timer(revtun_t *h);
/* Cancels the host's timer (the handle is being destroyed). */
void rt_disarm_timer(revtun_t *h);

#endif
