/* The socket pool, as the layers above see it: its state in the handle,
 * registration (two-phase for the acceptor), and what a pool socket's
 * readiness and deadline mean. Sockets, nodes, clusters and memberships are
 * the pool's own (pool_int.h). */
#ifndef REVTUN_POOL_POOL_H
#define REVTUN_POOL_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/hash.h"
#include "base/ids.h"
#include "core/event.h"
#include "core/fdtable.h"
#include "revtun/revtun.h"

#define RT_DEFAULT_PING_INTERVAL_MS 2000u
#define RT_MAX_PING_INTERVAL_MS 300000u /* as the acceptor config allows */

struct rt_member;

/* The pool's part of the handle (h->pool). */
struct rt_pool {
  struct rt_htable nodes, clusters; /* keyed by the tenant-scoped ids (base/ids.h) */
  size_t n_sockets, n_idle;
  size_t n_prepared;                    /* registrations between prepare and commit */
  size_t n_live_nodes, n_live_clusters; /* with at least one live socket */
  uint64_t next_seq;                    /* registration order */
  int export_cursor;                    /* where revtun_export_next looks next */
  /* A member's idle count went from 0 to 1 or from 1 to 0; set while the
   * handle is part of a process directory (pool/remote.c), which publishes
   * it. A pointer, because remote.c sits above the pool. */
  void (*idle_changed)(revtun_t *h, const struct rt_member *m);
};

/* The keepalive phase a socket brings along when it moves between handles. */
struct rt_ka_resume {
  uint64_t age_ms;         /* since it was first parked */
  uint32_t deadline_in_ms; /* to its next keepalive deadline */
  uint32_t misses;
  uint8_t partial;
  bool awaiting_reply;
  bool report; /* tell the reporter (a move from another process) */
};

/* What one registration says: the public builder's fields, or a handshake's. */
struct rt_reg_args {
  const char *node_id, *cluster_id, *tenant_id;
  uint32_t interval_ms;
  int64_t initiation_time_ms;
  const char *init_worker, *init_conn;
  void *sock_user;
  bool enforce_limit;
  const uint8_t *early_bytes; /* read past the handshake, fed to keepalive */
  size_t n_early;
  const struct rt_meta_kv *extra; /* rides on the tunnel_setup record */
  size_t n_extra;
  const struct rt_peer *peer;        /* so does the identity from a transport */
  const struct rt_ka_resume *resume; /* an import: no tunnel_setup, the keepalive resumed */
};

struct rt_sock;

void rt_pool_init(revtun_t *h, struct rt_pool *p);
/* Kills every socket (reason shutdown), then frees the tables. */
void rt_pool_free(revtun_t *h);

/* Registration is two-phase so that the handshake acceptor can reserve
 * everything before it answers 200 and commit after the answer is on the
 * wire, so that no RPING can overtake the answer: prepare allocates and
 * checks, commit cannot fail for want of memory (only the io callback can
 * fail it), abort gives everything back, the fd as it was given. */
int rt_pool_prepare(revtun_t *h, int fd, const struct rt_reg_args *a, struct rt_sock **out);
int rt_pool_commit(revtun_t *h, struct rt_sock *s, const struct rt_reg_args *a,
                   revtun_time_ms_t now);
void rt_pool_abort(revtun_t *h, struct rt_sock *s);
/* Both phases at once (revtun_register_socket). */
int rt_pool_register(revtun_t *h, int fd, const struct rt_reg_args *a, revtun_time_ms_t now);

/* Live sockets of a node plus its registrations prepared, not committed. */
size_t rt_pool_count_for_node(const revtun_t *h, const struct rt_idpair *node);
/* Room for one more deadline beyond those armed and those prepared
 * registrations will arm. */
int rt_pool_reserve_deadline(revtun_t *h);

/* A pool socket's readiness and its deadline: the keepalive, with the
 * counters, records and deaths that follow. */
void rt_pool_on_io(revtun_t *h, struct rt_fdent *ent, int events, revtun_time_ms_t now);
void rt_pool_on_deadline(revtun_t *h, struct rt_fdent *ent, revtun_time_ms_t now);

#endif
