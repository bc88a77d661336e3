/* The fd table and the deadlines of its entries.
 *
 * Every fd the handle watches (a pool socket, a handshake in progress) has
 * an entry that starts with struct rt_fdent; the table is a direct index by
 * fd number (8 bytes per fd number: O(1), no hashing, and fd numbers are
 * dense). Each entry has at most one deadline, kept in the handle's
 * deadline heap. */
#ifndef REVTUN_CORE_FDTABLE_H
#define REVTUN_CORE_FDTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "base/deadline_heap.h"
#include "revtun/revtun.h"

enum rt_fd_kind {
  RT_FD_POOL = 1,
  RT_FD_HANDSHAKE = 2,
  RT_FD_WAKE = 3 /* the process directory wakes the handle (pool/remote.c) */
};

/* The common head of everything the fd table points at. */
struct rt_fdent {
  struct rt_timer tm;
  int fd;
  uint8_t kind; /* enum rt_fd_kind: who handles the fd's events */
  void *sock_user;
};

struct rt_fdent *rt_fd_get(const revtun_t *h, int fd);
/* Makes the slot exist (ent may be NULL to only reserve it); REVTUN_E_NOMEM. */
int rt_fd_set(revtun_t *h, int fd, struct rt_fdent *ent);
void rt_fd_clear(revtun_t *h, int fd);
void rt_fdtable_free(revtun_t *h);

/* Arms or re-arms ent's deadline; the heap must have room (rt_schedule_reserve). */
void rt_schedule(revtun_t *h, struct rt_fdent *ent, revtun_time_ms_t deadline);
void rt_unschedule(revtun_t *h, struct rt_fdent *ent);
/* Makes room for n deadlines beyond those armed, so arming them cannot fail. */
int rt_schedule_reserve(revtun_t *h, size_t n);
/* The entry with the earliest deadline, or NULL. */
struct rt_fdent *rt_schedule_first(const revtun_t *h);
/* The handle's earliest deadline: an entry's, or the flush of buffered
 * records; RT_NO_DEADLINE when there is none. */
uint64_t rt_next_deadline(const revtun_t *h);

#endif
