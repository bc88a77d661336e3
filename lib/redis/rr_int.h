/* Internals of the Redis fleet directory (libupstream-revtun-redis).
 *
 * Files, one concern each:
 *   options.c   the options builder and the rules for instance ids,
 *               addresses, prefixes and tokens
 *   ids.c       node/cluster/tenant ids into the keys the core uses
 *   table.c     the keyed hash table
 *   scripts.c   the Lua scripts Redis runs
 *   decode.c    validation of every reply and message read from Redis
 *   guard.c     bounds on what the hiredis reader may buffer and build
 *   conn.c      one hiredis connection in the host's libevent loop: batches,
 *               deadlines, reconnect with backoff
 *   publish.c   the tunnels of the observed handle -> entries -> writes
 *   lookup.c    lookups, their coalescing and the cache
 *   directory.c the directory's life: start, claim, heartbeat, stop, free
 *   stats.c     counters and gauges
 */
#ifndef RR_INT_H
#define RR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "revtun/redis.h"
#include "table.h"

/* ------------------------------------------------------------------ bounds */

#define RR_MAX_ID 1024u                 /* node, cluster, tenant ids: the core's rule */
#define RR_MAX_KEY (2u * RR_MAX_ID + 1) /* tenant:id */
#define RR_MAX_INSTANCE 128u
#define RR_MAX_ADDR 255u
#define RR_MAX_PREFIX 64u
#define RR_MIN_TOKEN 16u
#define RR_MAX_TOKEN 64u
#define RR_MAX_HOST 255u
#define RR_MAX_SECRET 512u    /* username, password */
#define RR_MAX_HOLDERS 1024u  /* instances in one index set that a lookup reads */
#define RR_CHUNK_OPS 1000u    /* publish operations per script call */
#define RR_MAX_WAITERS 65536u /* lookups waiting for Redis */
#define RR_CACHE_MAX 65536u   /* cached answers */
#define RR_CACHE_BYTES (16u << 20)
#define RR_INV_MAX 65536u /* a bigger invalidation message is sent as "*" */
#define RR_MAX_DIGITS 19u /* generations and claims: 1 .. 10^19 - 1 */

/* ----------------------------------------------------------------- options */

struct revtun_redis_options {
  char host[RR_MAX_HOST + 1]; /* numeric address, or an absolute unix socket path */
  int port;
  char username[RR_MAX_SECRET + 1], password[RR_MAX_SECRET + 1];
  char prefix[RR_MAX_PREFIX + 1];
  char instance[RR_MAX_INSTANCE + 1];
  char address[RR_MAX_ADDR + 1];
  char token[RR_MAX_TOKEN + 1]; /* empty: revtun_redis_new draws one */
  uint32_t heartbeat_ms, ttl_ms, cache_ttl_ms, timeout_ms, backoff_min_ms, backoff_max_ms;
  bool isolation;
  revtun_redis_log_cb log_cb;
  int log_level;
  void *log_user;
};

void rr_options_defaults(struct revtun_redis_options *o);
/* Printable ASCII without space (0x21..0x7e), 1..max bytes. */
bool rr_printable(const char *s, size_t n, size_t max);
bool rr_instance_ok(const char *s, size_t n);
bool rr_address_ok(const char *s, size_t n);

/* ----------------------------------------------------------------- ids */

/* The key of a node or cluster id as the core keys it: "tenant:id" under
 * tenant isolation, else the id alone. Applies the core's id rules (1..1024
 * bytes; under isolation a non-empty tenant and no ':'). Returns the length
 * written to buf (RR_MAX_KEY bytes), or 0 when the ids break the rules. */
size_t rr_ids_key(bool isolation, const char *id, size_t id_len, const char *tenant,
                  size_t tenant_len, char *buf);

/* ----------------------------------------------------------------- scripts */

enum rr_script {
  RR_SCRIPT_CLAIM,
  RR_SCRIPT_PUBLISH,
  RR_SCRIPT_HEARTBEAT,
  RR_SCRIPT_RELEASE,
  RR_SCRIPT_LOOKUP,
  RR_N_SCRIPTS
};
extern const char *const rr_script_text[RR_N_SCRIPTS];

/* ------------------------------------------------------------------ decode */

/* What a lookup script answered, validated. */
struct rr_answer {
  int status;                     /* REVTUN_OK, REVTUN_E_NOT_FOUND or REVTUN_REDIS_E_REJECTED */
  const char *instance, *address; /* point into the reply */
  size_t instance_len, address_len;
  uint64_t generation, claim;
  uint64_t stale, bad; /* members the script dropped, values it refused */
};
void rr_decode_lookup(const redisReply *rep, struct rr_answer *out);

/* The first element of a script's answer: "ok", "busy", "gone", ... */
enum rr_verdict { RV_INVALID, RV_OK, RV_BUSY, RV_BAD, RV_GONE, RV_FENCED };
/* claim: {"ok", gen} | {"busy"} | {"bad"}; *gen set on RV_OK */
enum rr_verdict rr_decode_claim(const redisReply *rep, uint64_t *gen);
/* publish: {"ok", bad} | {"gone"} | {"fenced"}; *bad set on RV_OK */
enum rr_verdict rr_decode_publish(const redisReply *rep, uint64_t *bad);
/* heartbeat and release: {"ok"} | {"gone"} | {"fenced"} */
enum rr_verdict rr_decode_simple(const redisReply *rep);
bool rr_decode_sha(const redisReply *rep, char out[41]);
bool rr_decode_status(const redisReply *rep, const char *want);
bool rr_is_noscript(const redisReply *rep);
/* A pub/sub message on channel: its payload, or NULL (not a message for us). */
const redisReply *rr_decode_message(const redisReply *rep, const char *channel, size_t chlen,
                                    bool *is_subscribe_ack);
/* Decimal 1 .. 10^19-1 without sign or leading zero. */
bool rr_parse_u64(const char *s, size_t n, uint64_t *out);

/* An invalidation message: "*" (everything), or items "<kind><len>:<key>"
 * with kind 'n' or 'c'. Calls item(kind, key, len) per item; returns false
 * (having called item for a prefix of it, at most) when the message is
 * malformed, and the caller then drops everything. */
typedef void (*rr_inv_item_fn)(void *ctx, char kind, const char *key, size_t len);
bool rr_parse_invalidation(const char *msg, size_t len, rr_inv_item_fn item, void *ctx, bool *all);

/* ------------------------------------------------------------------- guard */

/* Bounds on one connection's replies, enforced while hiredis parses. */
struct rr_limits {
  size_t max_string;   /* bytes of one string */
  size_t max_elements; /* elements of one array */
  size_t max_objects;  /* objects in one reply, nested ones included */
  size_t max_buffer;   /* unparsed bytes the reader may hold */
};
struct rr_guard {
  redisReplyObjectFunctions fn;
  const redisReplyObjectFunctions *orig;
  struct rr_limits lim;
  size_t objects; /* in the reply being built */
  uint64_t rejected;
};
/* Installs the guard's functions in reader r (hiredis' defaults wrapped). */
void rr_guard_install(struct rr_guard *g, redisReader *r, const struct rr_limits *lim);
/* True when the reader holds more unparsed bytes than the guard allows. */
bool rr_guard_overfull(const struct rr_guard *g, const redisReader *r);

/* -------------------------------------------------------------- connection */

enum rr_conn_state { RC_DOWN, RC_WAIT, RC_CONNECTING, RC_UP };
enum rr_req_kind {
  RQ_HANDSHAKE,
  RQ_LOOKUP,
  RQ_PUBLISH,
  RQ_MULTI,
  RQ_QUEUED,
  RQ_EXEC,
  RQ_HEARTBEAT,
  RQ_RELEASE,
  RQ_SUBSCRIBE
};

/* The commands one flush wrote: one round trip; its deadline is the timeout. */
struct rr_batch {
  struct rr_batch *next;
  uint64_t deadline;
  uint32_t sent, outstanding;
};

struct rr_req {
  struct rr_conn *c;
  struct rr_batch *b;
  int kind;
  int script; /* RQ_HANDSHAKE: which script it loads (-1: AUTH or other) */
  void *obj;  /* the query, the write, ... */
  bool answered;
};

struct rr_conn {
  revtun_redis_t *r;
  bool is_sub;
  int state;
  redisAsyncContext *ac;
  struct event *rev, *wev; /* glue between hiredis and the host's loop */
  struct event *timer;     /* deadline of the oldest batch */
  struct event *retry;     /* backoff */
  uint32_t backoff_ms;
  struct rr_batch *head, *tail, *open;
  int handshake_left;
  bool ever_up;
  struct rr_guard guard;
};

int rr_conn_init(struct rr_conn *c, revtun_redis_t *r, bool is_sub);
void rr_conn_fini(struct rr_conn *c); /* drops the connection; pending callbacks see NULL */
void rr_conn_connect(struct rr_conn *c);
void rr_conn_drop(struct rr_conn *c, const char *why); /* and reconnect after the backoff */
/* A batch: begin, send commands, end (the round trip is counted if any went). */
void rr_conn_begin(struct rr_conn *c);
bool rr_conn_send(struct rr_conn *c, int kind, int script, void *obj, int argc, const char **argv,
                  const size_t *argvlen);
void rr_conn_end(struct rr_conn *c);

/* ------------------------------------------------------------------ entries */

/* A node or cluster key this instance has tunnels for. Redis should hold it
 * while `serving` > 0: sockets idle in the pool or handed off to an HTTP/2
 * session that has not seen GOAWAY. */
struct rr_entry {
  struct rr_hnode hn; /* key: kind byte + core key */
  struct rr_entry *next_dirty;
  uint32_t refs;    /* sockets pointing here */
  uint32_t serving; /* of those, the ones that can take traffic */
  bool pub;         /* Redis holds it (acknowledged) */
  bool dirty;       /* on the dirty list */
  bool inflight;    /* part of the write in flight */
  char key[];
};

struct rr_sock {
  struct rr_hnode hn; /* key: the fd */
  int fd;
  bool serving;
  struct rr_entry *node, *cluster;
};

/* One write in flight: per entry, what was sent. */
struct rr_wop {
  struct rr_entry *e;
  bool add;
};
struct rr_write {
  struct rr_wop *ops;
  size_t n, cap;
  uint32_t pending; /* commands sent whose answers have not come */
  bool building;    /* still sending: do not complete yet */
  bool resync;      /* claim + full state in one MULTI/EXEC */
  bool claimed;     /* the claim's verdict was ok: gen is the new generation */
  uint64_t gen;
  int refused; /* the claim was refused: REVTUN_REDIS_E_BUSY or _REJECTED */
  bool fenced; /* another instance holds the id now */
  bool gone;   /* the claim expired */
  bool failed; /* anything else: no answer, an error, a malformed answer */
};

/* ----------------------------------------------------------------- lookups */

struct rr_waiter {
  struct rr_waiter *next;
  revtun_redis_lookup_cb cb;
  void *user;
};
struct rr_query {
  struct rr_hnode hn;             /* key: kind byte + core key */
  struct rr_query *next, **pprev; /* every query, for cancellation */
  struct rr_query *next_queued;   /* waiting for the flush */
  struct rr_waiter *waiters, **wtail;
  bool in_table; /* false once answered, or once an invalidation made it too old to share */
  bool tainted;  /* its answer must not be cached */
  bool use_eval; /* Redis answered NOSCRIPT: sent again with EVAL */
  char key[];
};

struct revtun_redis_owner {
  const char *instance, *address;
  size_t instance_len, address_len;
  uint64_t generation, claim;
};

struct rr_cached {
  struct rr_hnode hn;
  uint64_t expires; /* monotonic ms */
  int status;       /* REVTUN_OK or REVTUN_E_NOT_FOUND */
  struct revtun_redis_owner owner;
  size_t bytes;
  char mem[]; /* key, instance\0, address\0 */
};

/* ------------------------------------------------------------------- stats */

enum rr_stat {
  RS_ROUND_TRIPS,
  RS_COMMANDS,
  RS_ERRORS,
  RS_TIMEOUTS,
  RS_RECONNECTS,
  RS_CONNECT_FAILURES,
  RS_REJECTED,
  RS_LOOKUPS,
  RS_CACHE_HITS,
  RS_CACHE_MISSES,
  RS_COALESCED,
  RS_UNAVAILABLE,
  RS_PUBLISH_OPS,
  RS_REPUBLISHES,
  RS_HEARTBEATS,
  RS_INVALIDATIONS,
  RS_CACHE_FLUSHES,
  RS_EVENTS,
  RS_EVENTS_IGNORED,
  RS_ID_CONFLICTS,
  RS_N_COUNTERS
};

/* --------------------------------------------------------------- directory */

enum rr_phase { RP_IDLE, RP_STARTING, RP_CLAIMED, RP_CONFLICT, RP_STOPPING };

struct revtun_redis {
  struct event_base *base;
  struct revtun_redis_options o;
  char ttl_str[16];
  char channel[RR_MAX_PREFIX + 4];
  size_t channel_len;
  char ikey[3][RR_MAX_PREFIX + 4 + RR_MAX_INSTANCE]; /* i:I, in:I, ic:I */
  char seqkey[RR_MAX_PREFIX + 4];
  struct rr_conn cmd, sub;
  struct event *flush_ev; /* zero timeout: runs once per loop turn */
  struct event *beat_ev;  /* every heartbeat interval */

  int phase;
  bool need_claim, beat_due, release_due;
  bool use_eval; /* Redis answered NOSCRIPT since the scripts were loaded */
  char sha[RR_N_SCRIPTS][41];
  uint64_t gen;
  revtun_redis_done_cb start_cb, stop_cb;
  void *start_user, *stop_user;

  /* what the observed handle holds */
  const revtun_t *observed;
  bool mismatch_logged;
  struct rr_table socks, entries;
  struct rr_entry *dirty;
  struct rr_write *write; /* in flight, or NULL */
  size_t n_serving, n_published;

  /* lookups */
  struct rr_table queries, cache;
  struct rr_query *all, *queued, **queued_tail;
  size_t n_waiters, cache_bytes;

  /* re-entrancy: a free asked for from a callback waits for the outermost frame */
  int depth;
  bool free_pending, freeing;

  uint64_t stats[RS_N_COUNTERS];
};

/* directory.c */
void rr_enter(revtun_redis_t *r);
void rr_leave(revtun_redis_t *r); /* may free r: touch nothing after it */
void rr_log(revtun_redis_t *r, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint64_t rr_now(const revtun_redis_t *r); /* monotonic ms */
void rr_schedule_flush(revtun_redis_t *r);
bool rr_conn_ready(const struct rr_conn *c); /* up, and a batch is open */
/* Runs script with argv[2..argc) (argv[0], argv[1] are filled in). */
bool rr_eval(revtun_redis_t *r, int kind, int script, void *obj, int argc, const char **argv,
             size_t *lens);
void rr_claimed(revtun_redis_t *r, uint64_t gen);
void rr_claim_refused(revtun_redis_t *r, int status);
void rr_stopped(revtun_redis_t *r, int status);
/* called by conn.c */
void rr_on_conn_up(struct rr_conn *c);
void rr_on_conn_lost(struct rr_conn *c);
void rr_on_reply(struct rr_req *q, const redisReply *rep); /* rep NULL: connection lost */

/* publish.c */
int rr_publish_init(revtun_redis_t *r, uint64_t k0, uint64_t k1);
void rr_publish_fini(revtun_redis_t *r);
bool rr_publish_flush(revtun_redis_t *r); /* false: nothing sent */
void rr_publish_reply(revtun_redis_t *r, struct rr_req *q, const redisReply *rep);
void rr_publish_forget(revtun_redis_t *r); /* Redis holds nothing of ours any more */

/* lookup.c */
int rr_lookup_init(revtun_redis_t *r, uint64_t k0, uint64_t k1);
void rr_lookup_cancel(revtun_redis_t *r); /* every waiter: REVTUN_REDIS_E_CANCELLED */
void rr_lookup_fini(revtun_redis_t *r);
void rr_lookup_flush(revtun_redis_t *r);
void rr_lookup_reply(revtun_redis_t *r, struct rr_req *q, const redisReply *rep);
void rr_lookup_message(revtun_redis_t *r, const redisReply *payload);
void rr_lookup_forget(revtun_redis_t *r); /* drop the cache, taint every query */
void rr_cache_clear(revtun_redis_t *r);
bool rr_cache_usable(const revtun_redis_t *r);

#endif
