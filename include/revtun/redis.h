/*
 * libupstream-revtun-redis — the fleet directory: an optional component, in
 * its own library, that publishes to Redis which nodes and clusters the
 * tunnels of one revtun_t can reach, and answers which instance of a fleet
 * holds a node or a cluster.
 *
 * It runs in the host's libevent loop (hiredis' asynchronous API, no thread,
 * no blocking call). It observes one revtun_t through revtun_redis_on_event(),
 * which has the signature of revtun_event_cb. Its answers come through
 * callbacks; Redis being unreachable is an answer
 * (REVTUN_REDIS_E_UNAVAILABLE), never a stall.
 *
 * The ABI rules of revtun.h apply: opaque types, explicit append-only enum
 * values, functions only ever added. See revtun_redis(7).
 */
#ifndef REVTUN_REDIS_H
#define REVTUN_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <revtun/revtun.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(REVTUN_STATICLIB)
#define REVTUN_REDIS_API
#elif defined(BUILDING_REVTUN_REDIS) && defined(__GNUC__)
#define REVTUN_REDIS_API __attribute__((visibility("default")))
#else
#define REVTUN_REDIS_API
#endif

struct event_base; /* libevent */

/* ------------------------------------------------------------------ types */

typedef struct revtun_redis revtun_redis_t;                 /* one directory client */
typedef struct revtun_redis_options revtun_redis_options_t; /* copied by revtun_redis_new */
typedef struct revtun_redis_owner revtun_redis_owner_t;     /* borrowed lookup answer */

/* Statuses of this component, beside the REVTUN_OK and REVTUN_E_* of revtun.h. */
enum revtun_redis_status {
  REVTUN_REDIS_E_UNAVAILABLE = -100, /* Redis not connected, or no answer in time */
  REVTUN_REDIS_E_CANCELLED = -101,   /* the directory was freed before the answer */
  REVTUN_REDIS_E_BUSY = -102,        /* the instance id is held by another live instance */
  REVTUN_REDIS_E_REJECTED = -103     /* Redis holds a value that fails validation */
};

/* Answer to a lookup. status is REVTUN_OK (owner is set), REVTUN_E_NOT_FOUND,
 * REVTUN_REDIS_E_UNAVAILABLE, REVTUN_REDIS_E_REJECTED or
 * REVTUN_REDIS_E_CANCELLED; owner is NULL unless REVTUN_OK, and borrowed. */
typedef void (*revtun_redis_lookup_cb)(revtun_redis_t *r, int status,
                                       const revtun_redis_owner_t *owner, void *user);
/* Outcome of revtun_redis_start() (or revtun_redis_stop()). */
typedef void (*revtun_redis_done_cb)(revtun_redis_t *r, int status, void *user);
/* Diagnostics; msg is NUL-terminated. Must not call back into the directory. */
typedef void (*revtun_redis_log_cb)(revtun_redis_t *r, int level, const char *msg, void *user);

/* ---------------------------------------------------------------- options */

REVTUN_REDIS_API REVTUN_WARN_UNUSED int revtun_redis_options_new(revtun_redis_options_t **out);
REVTUN_REDIS_API void revtun_redis_options_free(revtun_redis_options_t *opts);
REVTUN_REDIS_API int revtun_redis_options_set_server(revtun_redis_options_t *opts, const char *host,
                                                     int port);
REVTUN_REDIS_API int revtun_redis_options_set_auth(revtun_redis_options_t *opts,
                                                   const char *username, const char *password);
REVTUN_REDIS_API int revtun_redis_options_set_prefix(revtun_redis_options_t *opts,
                                                     const char *prefix);
REVTUN_REDIS_API int revtun_redis_options_set_instance(revtun_redis_options_t *opts,
                                                       const char *instance_id,
                                                       const char *address);
REVTUN_REDIS_API int revtun_redis_options_set_token(revtun_redis_options_t *opts,
                                                    const char *token);
REVTUN_REDIS_API int revtun_redis_options_set_heartbeat(revtun_redis_options_t *opts,
                                                        uint32_t interval_ms, uint32_t ttl_ms);
REVTUN_REDIS_API int revtun_redis_options_set_cache_ttl(revtun_redis_options_t *opts,
                                                        uint32_t ttl_ms);
REVTUN_REDIS_API int revtun_redis_options_set_timeout(revtun_redis_options_t *opts,
                                                      uint32_t timeout_ms);
REVTUN_REDIS_API int revtun_redis_options_set_backoff(revtun_redis_options_t *opts, uint32_t min_ms,
                                                      uint32_t max_ms);
REVTUN_REDIS_API int revtun_redis_options_set_tenant_isolation(revtun_redis_options_t *opts,
                                                               int on);
REVTUN_REDIS_API int revtun_redis_options_set_log_cb(revtun_redis_options_t *opts,
                                                     revtun_redis_log_cb cb, int min_level,
                                                     void *user);

/* -------------------------------------------------------------- directory */

REVTUN_REDIS_API REVTUN_WARN_UNUSED int revtun_redis_new(revtun_redis_t **out,
                                                         struct event_base *base,
                                                         const revtun_redis_options_t *opts,
                                                         char *errbuf, size_t errbuf_len);
REVTUN_REDIS_API void revtun_redis_free(revtun_redis_t *r);
REVTUN_REDIS_API int revtun_redis_start(revtun_redis_t *r, revtun_redis_done_cb cb, void *user);
REVTUN_REDIS_API int revtun_redis_stop(revtun_redis_t *r, revtun_redis_done_cb cb, void *user);

/* A revtun_event_cb: pass the directory as user. Meant to be registered as an
 * observer of the handle (lifecycle records and reporter events). */
REVTUN_REDIS_API void revtun_redis_on_event(revtun_t *h, const revtun_event_t *ev, void *r);

REVTUN_REDIS_API int revtun_redis_lookup_node(revtun_redis_t *r, const char *node_id,
                                              const char *tenant_id, revtun_redis_lookup_cb cb,
                                              void *user);
REVTUN_REDIS_API int revtun_redis_lookup_cluster(revtun_redis_t *r, const char *cluster_id,
                                                 const char *tenant_id, revtun_redis_lookup_cb cb,
                                                 void *user);

REVTUN_REDIS_API const char *revtun_redis_owner_instance(const revtun_redis_owner_t *owner,
                                                         size_t *len);
REVTUN_REDIS_API const char *revtun_redis_owner_address(const revtun_redis_owner_t *owner,
                                                        size_t *len);
REVTUN_REDIS_API uint64_t revtun_redis_owner_generation(const revtun_redis_owner_t *owner);
REVTUN_REDIS_API uint64_t revtun_redis_owner_claim(const revtun_redis_owner_t *owner);

/* ------------------------------------------------------------------ stats */

REVTUN_REDIS_API int revtun_redis_stats_foreach(const revtun_redis_t *r, revtun_stat_cb cb,
                                                void *user);
REVTUN_REDIS_API int revtun_redis_stats_get(const revtun_redis_t *r, const char *name,
                                            uint64_t *value);
REVTUN_REDIS_API const char *revtun_redis_status_name(int status);

#ifdef __cplusplus
}
#endif

#endif /* REVTUN_REDIS_H */
