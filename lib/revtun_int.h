/* Internal declarations shared by the library's files. Nothing here is ABI. */
#ifndef REVTUN_INT_H
#define REVTUN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "revtun/revtun.h"
#include "base/hash.h"
#include "base/ids.h"
#include "base/mem.h"
#include "base/deadline_heap.h"
#include "base/text.h"
#include "pool/keepalive.h"

#define RT_COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))
#define RT_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define RT_DEFAULT_STAT_PREFIX "reverse_tunnel_acceptor"
#define RT_DEFAULT_THRESHOLD 3u
#define RT_DEFAULT_PING_INTERVAL_MS 2000u
#define RT_DEFAULT_WORKER "worker_0"
#define RT_MAX_PING_INTERVAL_MS 300000u /* as the acceptor config allows */
#define RT_NO_DEADLINE UINT64_MAX
/* The latest `now` a host may pass (146 million years of monotonic
 * milliseconds): every deadline is now plus at most an hour, so none can wrap
 * or reach RT_NO_DEADLINE. */
#define RT_MAX_TIME_MS (UINT64_C(1) << 62)

/* ----------------------------------------------------------------- config */

struct rt_ext_entry { /* a TypedExtensionConfig / AccessLog, kept verbatim */
  char *name;
  char *type_url;
  uint8_t *value;
  size_t value_len;
};

struct rt_config {
  char *stat_prefix;
  uint32_t ping_failure_threshold;
  bool detailed_stats;
  bool tenant_isolation;
  uint32_t max_connections_per_node;
  bool has_reporter;
  struct rt_ext_entry reporter;
  struct rt_ext_entry *access_logs;
  size_t n_access_logs;
};

struct rt_limits {
  uint64_t config_bytes;
  uint64_t log_buffer_bytes;
  uint64_t access_logs;
  uint64_t log_flush_ms;
};

int rt_config_parse(const struct rt_mem *mem, const void *buf, size_t len,
                    const struct rt_limits *limits, struct rt_config *out, char *errbuf,
                    size_t errbuf_len);
void rt_config_clear(const struct rt_mem *mem, struct rt_config *cfg);

/* ---------------------------------------------------------------- options */

struct rt_factory {
  char *name;
  revtun_ext_create_cb create;
  revtun_ext_event_cb event;
  revtun_ext_destroy_cb destroy;
  void *user;
  bool is_reporter;
};

struct revtun_options {
  struct rt_mem mem;
  void *user_data;
  revtun_io_cb io_cb;
  revtun_timer_cb timer_cb;
  revtun_event_cb access_log_cb;
  revtun_event_cb reporter_cb;
  revtun_log_cb log_cb;
  int log_level;
  revtun_close_cb close_cb;
  char worker[64];
  uint64_t seed;
  bool seed_set;
  struct rt_limits limits;
  struct rt_factory *factories;
  size_t n_factories;
  char *module_path; /* where the dynamic-module reporter looks; NULL: not set */
};

const struct rt_factory *rt_options_find_factory(const revtun_options_t *opts, const char *name,
                                                 bool reporter);
void rt_options_defaults(revtun_options_t *o);
int rt_options_copy(const struct rt_mem *m, revtun_options_t *dst, const revtun_options_t *src);
void rt_options_clear(const struct rt_mem *m, revtun_options_t *o);

/* ---------------------------------------------------------------- sockets */

/* A block a caller frame may still read although what it holds is gone
 * (a socket that died inside a callback): freed when the outermost call
 * returns. The link lives inside the block. */
struct rt_deferred {
  struct rt_deferred *next;
  void *block;
};

/* Interned, reference-counted string (tenant ids, initiator worker ids). */
struct rt_istr {
  struct rt_hnode hn;
  uint32_t refs;
  char str[];
};

struct rt_addr {
  socklen_t len; /* 0 when unknown */
  union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
  } u;
};

enum rt_fd_kind { RT_FD_POOL = 1, RT_FD_HANDSHAKE = 2 };

/* Common head of everything the fd table points at. */
struct rt_fdent {
  struct rt_timer tm;
  int fd;
  uint8_t kind;
  void *sock_user;
};

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
  size_t rr;
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
  uint64_t seq; /* registration order, for FIFO across members */
  struct rt_keepalive ka;
  uint8_t state; /* enum rt_sock_state */
  uint8_t h2_timeout_noted;
  uint8_t dead; /* unlinked; memory freed when the outermost call returns */
  uint8_t has_conn_num;
  uint8_t set_nonblock; /* prepare made the fd non-blocking: undone on abort */
  struct rt_addr local, remote;
};

/* --------------------------------------------------------------- events */

struct rt_meta_kv {
  const char *key;
  const char *value;
};

struct revtun_event {
  int kind;
  revtun_time_ms_t time;
  const char *node_id, *cluster_id, *tenant_id;
  const char *node_key, *cluster_key;
  const char *worker;
  const char *init_worker, *init_conn;
  const char *handoff_kind;
  int64_t initiation_time_ms;
  int fd;
  void *sock_user;
  int socket_state;
  int close_reason;
  int sys_errno;
  uint32_t miss_count;
  const struct rt_addr *local, *remote;
  const struct rt_meta_kv *extra; /* e.g. handshake validation metadata */
  size_t n_extra;
  /* numbers formatted for the metadata view */
  char fd_buf[24];
  char miss_buf[24];
  char conn_buf[24];
};

/* ------------------------------------------------------------------ stats */

enum rt_counter {
  RT_C_TUNNELS_SETUP,
  RT_C_REGISTRATION_REJECTED,
  RT_C_HANDOFFS,
  RT_C_POOL_MISS,
  RT_C_PINGS_SENT,
  RT_C_PING_ACKS,
  RT_C_PING_MISSES,
  RT_C_CLOSED_BASE, /* + close reason (1..11) */
  RT_C_HS_PARSE_ERROR = RT_C_CLOSED_BASE + 12,
  RT_C_HS_ACCEPTED,
  RT_C_HS_REJECTED,
  RT_C_HS_VALIDATION_FAILED,
  RT_C_HS_JWT_DENIED,
  RT_C_HS_JWT_WOULD_DENY,
  RT_C_HS_TIMEOUT,
  RT_C_HS_BODY_REJECTED,
  RT_C_HS_REGISTRATION_FAILED,
  RT_C_LOG_DROPPED,
  RT_C_LOG_WRITE_ERRORS,
  RT_C_COUNT
};

struct rt_gauge { /* detailed per-id gauge */
  struct rt_hnode hn;
  uint64_t value;
  char name[];
};

struct rt_stats {
  uint64_t counters[RT_C_COUNT];
  struct rt_htable gauges; /* only with enable_detailed_stats */
  bool handshake_seen;     /* list handshake counters once an acceptor exists */
};

/* ---------------------------------------------------------------- handle */

/* Calls from core into the layers above it, wired by revtun_new: core never
 * names a function of a higher layer. NULL when there is nothing to call. */
struct rt_upcalls {
  /* a lifecycle record, to the access loggers built from the config */
  void (*record)(revtun_t *h, const revtun_event_t *ev);
  /* a reporter event, to the reporter built from the config */
  void (*report)(revtun_t *h, const revtun_event_t *ev);
};

struct rt_logger; /* accesslog.c */

struct revtun {
  struct rt_mem mem;
  struct rt_config cfg;
  revtun_options_t opts; /* deep copy of the caller's options */
  uint64_t rng;
  struct rt_hkey hkey; /* secret key of every id hash table */

  /* fd table: direct index, O(1) */
  struct rt_fdent **fds;
  size_t fds_cap;
  size_t n_sockets, n_idle;
  size_t n_prepared;                    /* registrations between prepare and commit */
  size_t n_live_nodes, n_live_clusters; /* with at least one live socket */

  struct rt_htable nodes, clusters, strings;
  struct rt_heap timers;
  uint64_t next_seq;

  struct rt_stats stats;
  struct rt_upcalls upcalls;

  /* built-in and extension loggers/reporters created from the config */
  struct rt_logger **loggers;
  size_t n_loggers;
  void *reporter_instance;
  const struct rt_factory *reporter_factory;

  struct revtun_acceptor *acceptors; /* list, for free */
  struct rt_deferred *deferred;      /* blocks freed when the outermost call returns */

  /* re-entrancy and deferred free */
  unsigned depth;    /* nesting of public calls */
  unsigned cb_depth; /* nesting of host callbacks */
  bool free_pending;
  bool acceptor_free_pending;
  bool freeing;
  bool failed;             /* a host hook failed */
  unsigned iterating;      /* inside a foreach walk: the pool must not change */
  uint64_t armed_deadline; /* what the host timer is armed for, RT_NO_DEADLINE if nothing */
  revtun_time_ms_t last_now;
  revtun_time_ms_t log_flush_due; /* 0 = nothing buffered */
};

/* revtun.c: entering and leaving the library from a public mutating call. */
int rt_enter(revtun_t *h, revtun_time_ms_t now);
void rt_leave(revtun_t *h); /* may free h when a free was deferred */
/* Runs frees deferred by callbacks that ran outside any library call
 * (foreach callbacks); may free h. */
void rt_finish_deferred(revtun_t *h);
/* Entry and exit of the calls a callback may make (handoff, mark_dead, the
 * notes): not refused from a callback, but refused inside a walk, whose
 * structures they would change, and on a handle that is going away. */
int rt_enter_nestable(revtun_t *h, revtun_time_ms_t now);
void rt_leave_nestable(revtun_t *h);
/* Frees block now, or when the outermost call returns if a frame below may
 * still read it; link is a part of block that nobody reads any more. */
void rt_free_deferred(revtun_t *h, void *block, struct rt_deferred *link);
revtun_t *rt_walk_begin(const revtun_t *h);
void rt_walk_end(revtun_t *h); /* may free h */
void rt_log(revtun_t *h, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int rt_io(revtun_t *h, struct rt_fdent *ent, int events);
void rt_close_fd(revtun_t *h, int fd, void *sock_user);
int rt_fd_set(revtun_t *h, int fd, struct rt_fdent *ent);
struct rt_fdent *rt_fd_get(const revtun_t *h, int fd);
void rt_fd_clear(revtun_t *h, int fd);
uint64_t rt_random(revtun_t *h);
void rt_schedule(revtun_t *h, struct rt_fdent *ent, revtun_time_ms_t deadline);
void rt_unschedule(revtun_t *h, struct rt_fdent *ent);

/* strings.c */
struct rt_istr *rt_istr_get(revtun_t *h, const char *s);
void rt_istr_put(revtun_t *h, struct rt_istr *s);
static inline const char *rt_istr_str(const struct rt_istr *s) { return s ? s->str : ""; }

/* pool.c */
struct rt_reg_args {
  const char *node_id, *cluster_id, *tenant_id;
  uint32_t interval_ms;
  int64_t initiation_time_ms;
  const char *init_worker, *init_conn;
  void *sock_user;
  bool enforce_limit;
  const uint8_t *early_bytes; /* read past the handshake, fed to keepalive */
  size_t n_early;
  const struct rt_meta_kv *extra;
  size_t n_extra;
};
int rt_pool_register(revtun_t *h, int fd, const struct rt_reg_args *a, revtun_time_ms_t now);
int rt_pool_prepare(revtun_t *h, int fd, const struct rt_reg_args *a, struct rt_sock **out);
int rt_pool_commit(revtun_t *h, struct rt_sock *s, const struct rt_reg_args *a,
                   revtun_time_ms_t now);
void rt_pool_abort(revtun_t *h, struct rt_sock *s);
/* The checked ids of one registration or lookup. */
struct rt_pool_ids {
  struct rt_idpair node, cluster;
};
int rt_pool_check_ids(const revtun_t *h, const char *node, const char *cluster, const char *tenant,
                      struct rt_pool_ids *out);
size_t rt_pool_count_for_node(const revtun_t *h, const struct rt_idpair *node);
void rt_pool_kill(revtun_t *h, struct rt_sock *s, int reason, int sys_errno, revtun_time_ms_t now);
void rt_pool_free_all(revtun_t *h);

/* The keepalive of idle sockets: what a socket's readiness and deadline
 * mean, with the counters, records and deaths that follow. */
void rt_pool_on_io(revtun_t *h, struct rt_fdent *ent, int events, revtun_time_ms_t now);
void rt_pool_on_deadline(revtun_t *h, struct rt_fdent *ent, revtun_time_ms_t now);

/* rping.c: the 5-byte window scanner shared by keepalive and the strip helper. */
#define RT_RPING "RPING"
#define RT_RPING_LEN 5u
#define RT_FLOOD_BYTES 65536u
enum rt_rping_scan { RT_SCAN_OK, RT_SCAN_GARBAGE };
/* Consumes in[0..n) given a held partial of *partial bytes; counts complete
 * echoes in *acks and leaves the new partial in *partial. Stops at the first
 * byte that cannot belong to an echo, setting *stop to its offset. */
enum rt_rping_scan rt_rping_scan(const uint8_t *in, size_t n, uint8_t *partial, size_t *acks,
                                 size_t *stop);

/* events.c */
/* The handle's part of a record: kind, time, worker; no socket. */
void rt_event_init(struct revtun_event *ev, const revtun_t *h, int kind, revtun_time_ms_t now);
void rt_emit(revtun_t *h, struct revtun_event *ev);   /* lifecycle record */
void rt_report(revtun_t *h, struct revtun_event *ev); /* reporter event */
/* Whether anyone reads lifecycle records / reporter events: building a
 * record nobody reads is skipped on the hot paths. */
static inline bool rt_wants_records(const revtun_t *h) {
  return h->opts.access_log_cb || h->upcalls.record;
}
static inline bool rt_wants_reports(const revtun_t *h) {
  return h->opts.reporter_cb || h->upcalls.report;
}

/* pool_record.c: a pool socket's record (the handle's part, then the
 * socket's), and a record of one kind emitted when anyone reads records. */
void rt_pool_record(struct revtun_event *ev, const revtun_t *h, int kind, revtun_time_ms_t now,
                    const struct rt_sock *s);
void rt_pool_emit(revtun_t *h, int kind, const struct rt_sock *s, revtun_time_ms_t now);

/* stats.c */
void rt_stats_init(revtun_t *h);
void rt_stats_free(revtun_t *h);
/* One socket of (node, cluster, tenant) more (+1) or fewer (-1) in the detailed gauges. */
void rt_stats_socket(revtun_t *h, const char *node, const char *cluster, const char *tenant,
                     int delta);
int rt_stats_reserve(revtun_t *h, const char *node, const char *cluster, const char *tenant);
void rt_stats_unreserve(revtun_t *h, const char *node, const char *cluster, const char *tenant);
static inline void rt_count(revtun_t *h, enum rt_counter c) { h->stats.counters[c]++; }

/* accesslog.c */
int rt_loggers_create(revtun_t *h, char *errbuf, size_t errbuf_len);
int rt_loggers_validate(const struct rt_mem *mem, const struct rt_config *cfg,
                        const revtun_options_t *opts, char *errbuf, size_t errbuf_len);
void rt_loggers_log(revtun_t *h, const revtun_event_t *ev);
void rt_loggers_flush(revtun_t *h, bool force);
int rt_loggers_reopen(revtun_t *h);
void rt_loggers_free(revtun_t *h);

/* reporter.c */
int rt_reporter_create(revtun_t *h, char *errbuf, size_t errbuf_len);
int rt_reporter_validate(const struct rt_mem *mem, const struct rt_config *cfg,
                         const revtun_options_t *opts, char *errbuf, size_t errbuf_len);
void rt_reporter_event(revtun_t *h, const revtun_event_t *ev);
void rt_reporter_free(revtun_t *h);

/* acceptor.c */
void rt_acceptor_on_io(revtun_t *h, struct rt_fdent *ent, int events, revtun_time_ms_t now);
void rt_acceptor_on_deadline(revtun_t *h, struct rt_fdent *ent, revtun_time_ms_t now);
void rt_acceptors_free_all(revtun_t *h);
void rt_acceptors_free_pending(revtun_t *h);

#endif
