/* What the pool's files share: its sockets, nodes, clusters and
 * memberships, and the single place a socket dies. */
#ifndef REVTUN_POOL_POOL_INT_H
#define REVTUN_POOL_POOL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/hash.h"
#include "base/ids.h"
#include "base/sockaddr.h"
#include "core/event.h"
#include "core/fdtable.h"
#include "core/handle.h"
#include "core/intern.h"
#include "core/reentry.h"
#include "pool/keepalive.h"
#include "pool/pool.h"

struct rt_node;
struct rt_cluster;

/* One (node, cluster) pair with live sockets: a node is a member of every
 * cluster it has a live socket for, and each pair keeps its own idle FIFO. */
struct rt_member {
  struct rt_node *node;
  struct rt_cluster *cluster;
  struct rt_member *next_in_node;
  size_t index_in_cluster;
  size_t live;
  size_t idle;
  size_t pending; /* prepared registrations not yet committed */
  struct rt_sock *idle_head, *idle_tail;
};

struct rt_node {
  struct rt_hnode hn; /* keyed by the scoped key */
  char *key;          /* "tenant:id" with isolation and a tenant, else id */
  const char *id;     /* raw id, points into key */
  struct rt_member *members;
  size_t live, idle;
};

struct rt_cluster {
  struct rt_hnode hn;
  char *key;
  const char *id;
  struct rt_member **members;
  size_t n_members, cap_members;
  size_t rr; /* round-robin position over members */
  size_t live, idle;
};

enum rt_sock_state { RT_SOCK_IDLE = 1, RT_SOCK_HANDED_OFF = 2 };

struct rt_sock {
  struct rt_fdent ent; /* must be first */
  struct rt_member *member;
  union {
    struct {
      struct rt_sock *prev, *next; /* idle FIFO of the member */
    };
    struct rt_deferred freed; /* once dead: on the handle's deferred-free list */
  };
  struct rt_istr *tenant;                  /* raw tenant, may be NULL */
  struct rt_istr *init_worker, *init_conn; /* init_conn only when not numeric */
  uint64_t init_conn_num;
  int64_t initiation_time_ms;
  uint64_t seq;      /* registration order, for FIFO across members */
  int64_t parked_ms; /* when it joined a pool (kept across a move between handles), or
                      * once handed off when that happened */
  struct rt_keepalive ka;
  uint8_t state; /* enum rt_sock_state */
  /* one bit each, so that the keepalive's tail padding leaves the socket at
   * 192 bytes: a pool holds a million of them */
  uint8_t h2_timeout_noted : 1;
  uint8_t dead : 1; /* unlinked; memory freed when the outermost call returns */
  uint8_t has_conn_num : 1;
  uint8_t set_nonblock : 1; /* prepare made the fd non-blocking: undone on abort */
  struct rt_addr local, remote;
};

/* The checked ids of one registration or lookup. */
struct rt_pool_ids {
  struct rt_idpair node, cluster;
};
int rt_pool_check_ids(const revtun_t *h, const char *node, const char *cluster, const char *tenant,
                      struct rt_pool_ids *out);
struct rt_node *rt_pool_find_node(const revtun_t *h, const struct rt_idpair *node);
struct rt_cluster *rt_pool_find_cluster(const revtun_t *h, const struct rt_idpair *cluster);
/* The pool socket behind fd, or NULL (unknown fd, or a handshake). */
struct rt_sock *rt_pool_sock(const revtun_t *h, int fd);

/* An idle socket, in fd order from where the last call stopped; NULL when
 * none is left. */
struct rt_sock *rt_pool_next_idle(revtun_t *h);

/* Whether the peer of idle s is still there, asked without consuming a
 * byte; a dead one is killed (idle_peer_close or idle_read_error). */
bool rt_pool_still_alive(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now);
/* The next live idle socket for a pool key (a node's, or a cluster's round
 * robin), dropping dead ones on the way; NULL when none is left. */
struct rt_sock *rt_pool_pick_live(revtun_t *h, bool by_cluster, const char *key, size_t len,
                                  revtun_time_ms_t now);
/* Idle s becomes the host's: counted, recorded, its strip state out. */
void rt_pool_hand_over(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now, int *fd_out,
                       revtun_strip_t *strip_out);

/* Leaves the idle pool: FIFO, counters, deadline and io interest. */
void rt_pool_leave_idle(revtun_t *h, struct rt_sock *s);
/* The single place a socket dies: out of the pool and the fd table, closed
 * if it was idle (after handoff the fd is the host's), counted, recorded;
 * its memory is freed when no frame can still read it. */
void rt_pool_kill(revtun_t *h, struct rt_sock *s, int reason, int sys_errno, revtun_time_ms_t now);
/* An idle socket leaves the pool alive, its fd open and no longer watched:
 * a socket_exported record, and a reporter disconnect when report. */
void rt_pool_release(revtun_t *h, struct rt_sock *s, bool report, revtun_time_ms_t now);

/* A pool socket's record: the handle's part, then the socket's. */
void rt_pool_record(struct revtun_event *ev, const revtun_t *h, int kind, revtun_time_ms_t now,
                    const struct rt_sock *s);
/* A record of one kind about s, when anyone reads records. */
void rt_pool_emit(revtun_t *h, int kind, const struct rt_sock *s, revtun_time_ms_t now);

#endif
