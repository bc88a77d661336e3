/*
 * libupstream-revtun — the upstream (cloud-side) end of reverse tunnels,
 * compatible with Envoy's envoy.bootstrap.reverse_tunnel.upstream_socket_interface.
 *
 * Everything here is part of the stable ABI:
 *   - every type the host sees is opaque except revtun_io_event_t, which is frozen;
 *   - every enum value is explicit and append-only; none is ever renumbered or reused;
 *   - functions are only ever added, never changed or removed.
 *
 * Threading: a revtun_t (and the acceptors bound to it) is used by one thread at a
 * time. Nothing in the library is global. See revtun(7) for ownership and
 * re-entrancy rules; each function has its own man page.
 */
#ifndef REVTUN_REVTUN_H
#define REVTUN_REVTUN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <revtun/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(REVTUN_STATICLIB)
#define REVTUN_API
#elif defined(BUILDING_REVTUN) && defined(__GNUC__)
#define REVTUN_API __attribute__((visibility("default")))
#else
#define REVTUN_API
#endif

#if defined(__GNUC__)
#define REVTUN_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define REVTUN_WARN_UNUSED
#endif

/* ------------------------------------------------------------------ types */

typedef struct revtun revtun_t;                   /* one socket pool + keepalive engine */
typedef struct revtun_options revtun_options_t;   /* creation-time wiring, copied by revtun_new */
typedef struct revtun_reg revtun_reg_t;           /* reusable registration description */
typedef struct revtun_event revtun_event_t;       /* borrowed record, valid inside a callback */
typedef struct revtun_acceptor revtun_acceptor_t; /* handshake acceptor bound to a revtun_t */
/* Since 0.2: what the handles of one process share (revtun_directory_new(3)). */
typedef struct revtun_directory revtun_directory_t;

/* Monotonic milliseconds supplied by the host; the state machine never reads
 * a clock (only a %START_TIME% operator, in an access log or a validation format,
 * reads CLOCK_REALTIME when it renders). */
typedef uint64_t revtun_time_ms_t;

/* State of the post-handoff RPING strip helper; 0 is a fresh state. */
typedef uint32_t revtun_strip_t;

/* Frozen forever: used by revtun_process_io_events() and revtun_process_io_batch(). */
typedef struct revtun_io_event {
  int fd;
  int events; /* REVTUN_IO_READ | REVTUN_IO_WRITE */
} revtun_io_event_t;

/* ---------------------------------------------------------------- statuses */

enum revtun_status {
  REVTUN_OK = 0,
  REVTUN_E_INVAL = -1,        /* bad argument */
  REVTUN_E_NOMEM = -2,        /* allocation failed; the handle is unchanged */
  REVTUN_E_CONFIG = -3,       /* configuration rejected; see the error buffer */
  REVTUN_E_NOT_FOUND = -4,    /* no such fd, node, cluster or entry */
  REVTUN_E_EXISTS = -5,       /* fd already tracked */
  REVTUN_E_RECURSIVE = -6,    /* called from inside a callback where forbidden */
  REVTUN_E_STATE = -7,        /* handle is being freed or in an error state */
  REVTUN_E_HOST = -8,         /* a host hook (io or timer callback) failed */
  REVTUN_E_IO = -9,           /* a system call failed */
  REVTUN_E_UNSUPPORTED = -10, /* feature or operation not supported */
  REVTUN_E_LIMIT = -11,       /* a configured limit was reached */
  REVTUN_E_PROTOCOL = -12,    /* peer violated the protocol (e.g. RPING flood) */
  REVTUN_E_NOSPACE = -13,     /* caller's buffer too small */
  REVTUN_E_PENDING = -14      /* since 0.2: the answer comes later, through a callback */
};

/* Bits for revtun_io_cb and revtun_process_io(). */
enum revtun_io_flags {
  REVTUN_IO_NONE = 0,
  REVTUN_IO_READ = 1,
  REVTUN_IO_WRITE = 2,
  REVTUN_IO_REMOVE = 4 /* stop watching this fd; says nothing about closing it */
};

/* Event kinds. 1..63 are lifecycle records (access log), 64.. reporter events. */
enum revtun_event_kind {
  REVTUN_EV_TUNNEL_SETUP = 1,
  REVTUN_EV_PING_SENT = 2,
  REVTUN_EV_PING_ACK = 3,
  REVTUN_EV_PING_MISS = 4,
  REVTUN_EV_PING_TIMEOUT = 5,
  REVTUN_EV_SOCKET_HANDOFF = 6,
  REVTUN_EV_TUNNEL_CLOSED = 7,
  REVTUN_EV_H2_KEEPALIVE_TIMEOUT = 8,
  REVTUN_EV_HANDSHAKE_FAILED = 9, /* since 0.2: a handshake connection ended without an
                                     answer (transport failure, timeout); meta
                                     "failure_reason" says why */
  REVTUN_EV_SOCKET_EXPORTED = 10, /* since 0.2: an idle socket left this handle alive
                                     (revtun_export_socket, or to another worker) */
  REVTUN_EV_SOCKET_IMPORTED = 11, /* since 0.2: an idle socket joined it from another
                                     handle or process, its keepalive resumed */
  REVTUN_EV_REPORT_CONNECTED = 64,
  REVTUN_EV_REPORT_DISCONNECTED = 65,
  REVTUN_EV_REPORT_GOAWAY = 66,
  REVTUN_EV_REPORT_SERVER_INITIALIZED = 67
};

/* Why a tunnel closed. The names (revtun_close_reason_name) are Envoy's strings. */
enum revtun_close_reason {
  REVTUN_CLOSE_NONE = 0,
  REVTUN_CLOSE_IDLE_PEER_CLOSE = 1,         /* idle_peer_close */
  REVTUN_CLOSE_IDLE_READ_ERROR = 2,         /* idle_read_error */
  REVTUN_CLOSE_IDLE_PING_WRITE_FAILURE = 3, /* idle_ping_write_failure */
  REVTUN_CLOSE_IDLE_PING_TIMEOUT = 4,       /* idle_ping_timeout */
  REVTUN_CLOSE_IDLE_UNEXPECTED_DATA = 5,    /* idle_unexpected_data */
  REVTUN_CLOSE_IDLE_KEEPALIVE_FLOOD = 6,    /* idle_keepalive_flood */
  REVTUN_CLOSE_REMOTE_CLOSE = 7,            /* remote_close */
  REVTUN_CLOSE_LOCAL_CLOSE = 8,             /* local_close */
  REVTUN_CLOSE_EXPLICIT_CLOSE = 9,          /* explicit_close */
  REVTUN_CLOSE_SHUTDOWN = 10,               /* shutdown: the handle was freed */
  REVTUN_CLOSE_HTTP2_PING_TIMEOUT = 11,     /* http2_ping_timeout */
  REVTUN_CLOSE_MOVE_FAILED = 12             /* since 0.2, move_failed: an idle socket that
                                               left another handle or process could not
                                               join this one */
};

/* A socket's state. revtun_socket_state() returns IDLE or IN_USE; HANDED_OFF
 * is only ever the state carried by the socket_handoff record (the moment of
 * the handoff); from then on the socket reads IN_USE. */
enum revtun_socket_state {
  REVTUN_SOCK_IDLE = 1,       /* in the pool, pinged by the library */
  REVTUN_SOCK_HANDED_OFF = 2, /* only in the socket_handoff record */
  REVTUN_SOCK_IN_USE = 3      /* owned by the host after handoff */
};

enum revtun_stat_type { REVTUN_STAT_COUNTER = 1, REVTUN_STAT_GAUGE = 2 };

enum revtun_log_level {
  REVTUN_LOG_ERROR = 1,
  REVTUN_LOG_WARN = 2,
  REVTUN_LOG_INFO = 3,
  REVTUN_LOG_DEBUG = 4
};

/* Ids for revtun_options_set_limit(). */
enum revtun_limit {
  REVTUN_LIMIT_CONFIG_BYTES = 1,     /* largest serialized config accepted (default 1 MiB) */
  REVTUN_LIMIT_LOG_BUFFER_BYTES = 2, /* per built-in access log buffer (default 1 MiB) */
  REVTUN_LIMIT_ACCESS_LOGS = 3,      /* most access_log entries accepted (default 64) */
  REVTUN_LIMIT_LOG_FLUSH_MS = 4      /* built-in access log flush interval (default 1000) */
};

/* Ids for revtun_acceptor_set_limit(). */
enum revtun_acceptor_limit {
  REVTUN_ACCEPTOR_HANDSHAKE_TIMEOUT_MS = 1, /* default 10000, at most 3600000 */
  REVTUN_ACCEPTOR_MAX_HEADER_BYTES = 2,     /* request line + headers, default 61440 */
  REVTUN_ACCEPTOR_MAX_HEADERS = 3,          /* header count, default 100 */
  REVTUN_ACCEPTOR_MAX_PENDING = 4,          /* concurrent handshakes, default 65536 */
  REVTUN_ACCEPTOR_MAX_BUFFERED_BYTES = 5    /* request bytes held by all pending handshakes
                                               beyond 1 KiB each, default 32 MiB */
};

/* -------------------------------------------------------------- callbacks */

/* Watch fd for events (READ/WRITE bits) or stop watching it (REMOVE).
 * sock_user is the pointer given at registration or accept. A non-zero return
 * fails the operation that asked (REVTUN_E_HOST); on REMOVE it is logged. */
typedef int (*revtun_io_cb)(revtun_t *h, int fd, int events, void *sock_user, void *user_data);

/* Arm the single one-shot timer to fire in timeout_ms (replacing any previous
 * one); -1 cancels it. When it fires, call revtun_tick(). A non-zero return
 * makes the handle unusable (REVTUN_E_STATE) until it is freed. */
typedef int (*revtun_timer_cb)(revtun_t *h, int64_t timeout_ms, void *user_data);

/* Lifecycle records (access log) and reporter events. ev is borrowed. */
typedef void (*revtun_event_cb)(revtun_t *h, const revtun_event_t *ev, void *user_data);

/* Diagnostics; msg is NUL-terminated. Must not call back into the library. */
typedef void (*revtun_log_cb)(revtun_t *h, int level, const char *msg, void *user_data);

/* If set, the library calls this instead of close(2) for fds it drops. */
typedef void (*revtun_close_cb)(revtun_t *h, int fd, void *sock_user, void *user_data);

typedef void *(*revtun_malloc_fn)(size_t size, void *alloc_user);
typedef void *(*revtun_realloc_fn)(void *ptr, size_t size, void *alloc_user);
typedef void (*revtun_free_fn)(void *ptr, void *alloc_user);

/* Named extensions (reporters, access loggers) chosen by the config.
 * create: build an instance from the entry's typed_config (type_url, bytes);
 *         return REVTUN_OK and set *instance, or an error with a sentence in errbuf.
 * event:  deliver one event to the instance.
 * destroy: release the instance (called from revtun_free). */
typedef int (*revtun_ext_create_cb)(const char *type_url, const uint8_t *config, size_t config_len,
                                    void *factory_user, void **instance, char *errbuf,
                                    size_t errbuf_len);
typedef void (*revtun_ext_event_cb)(void *instance, const revtun_event_t *ev);
typedef void (*revtun_ext_destroy_cb)(void *instance);

/* Since 0.2: the answer to a handoff that revtun_handoff_request() left
 * pending (REVTUN_E_PENDING): status REVTUN_OK with the socket (fd and strip
 * state as revtun_handoff() gives them), or REVTUN_E_NOT_FOUND (fd -1). Runs
 * on the requesting handle's thread, from inside revtun_process_io*(). */
typedef void (*revtun_arrival_cb)(revtun_t *h, uint64_t ticket, int status, int fd,
                                  revtun_strip_t strip, void *request_user, void *user_data);

/* Introspection callbacks; return non-zero to stop the iteration. */
typedef int (*revtun_node_cb)(const char *node_id, const char *tenant_id, const char *cluster_id,
                              size_t idle, size_t live, void *user_data);
typedef int (*revtun_cluster_cb)(const char *cluster_id, const char *tenant_id, size_t nodes,
                                 size_t idle, size_t live, void *user_data);
typedef int (*revtun_stat_cb)(const char *name, int type, uint64_t value, void *user_data);

/* ------------------------------------------------------- version, errors */

REVTUN_API const char *revtun_version(int *num_out);
REVTUN_API const char *revtun_strerror(int status);
REVTUN_API const char *revtun_status_name(int status);
REVTUN_API const char *revtun_event_kind_name(int kind);
REVTUN_API const char *revtun_close_reason_name(int reason);
REVTUN_API const char *revtun_socket_state_name(int state);

/* ---------------------------------------------------------------- options */

REVTUN_API REVTUN_WARN_UNUSED int revtun_options_new(revtun_options_t **out);
/* Since 0.2: the options object itself, what it allocates and the handles
 * created from it (until revtun_options_set_allocator) use these hooks. */
REVTUN_API REVTUN_WARN_UNUSED int revtun_options_new_with_allocator(revtun_options_t **out,
                                                                    revtun_malloc_fn malloc_fn,
                                                                    revtun_realloc_fn realloc_fn,
                                                                    revtun_free_fn free_fn,
                                                                    void *alloc_user);
REVTUN_API void revtun_options_free(revtun_options_t *opts);
REVTUN_API int revtun_options_set_user_data(revtun_options_t *opts, void *user_data);
REVTUN_API int revtun_options_set_io_cb(revtun_options_t *opts, revtun_io_cb cb);
REVTUN_API int revtun_options_set_timer_cb(revtun_options_t *opts, revtun_timer_cb cb);
REVTUN_API int revtun_options_set_access_log_cb(revtun_options_t *opts, revtun_event_cb cb);
REVTUN_API int revtun_options_set_reporter_cb(revtun_options_t *opts, revtun_event_cb cb);
REVTUN_API int revtun_options_set_log_cb(revtun_options_t *opts, revtun_log_cb cb, int min_level);
REVTUN_API int revtun_options_set_close_cb(revtun_options_t *opts, revtun_close_cb cb);
REVTUN_API int revtun_options_set_allocator(revtun_options_t *opts, revtun_malloc_fn malloc_fn,
                                            revtun_realloc_fn realloc_fn, revtun_free_fn free_fn,
                                            void *alloc_user);
REVTUN_API int revtun_options_set_worker_name(revtun_options_t *opts, const char *name);
REVTUN_API int revtun_options_set_seed(revtun_options_t *opts, uint64_t seed);
REVTUN_API int revtun_options_set_limit(revtun_options_t *opts, int limit, uint64_t value);
REVTUN_API int revtun_reporter_register(revtun_options_t *opts, const char *name,
                                        revtun_ext_create_cb create, revtun_ext_event_cb event,
                                        revtun_ext_destroy_cb destroy, void *factory_user);
REVTUN_API int revtun_access_logger_register(revtun_options_t *opts, const char *name,
                                             revtun_ext_create_cb create, revtun_ext_event_cb event,
                                             revtun_ext_destroy_cb destroy, void *factory_user);
/* Since 0.2: the directory the dynamic-module reporter searches for
 * lib<name>.so (NULL: ENVOY_DYNAMIC_MODULES_SEARCH_PATH, else none). */
REVTUN_API int revtun_options_set_module_path(revtun_options_t *opts, const char *dir);
/* Since 0.2: handles created with the same directory serve each other's
 * nodes (revtun_handoff_request), share access-log files and the reporter. */
REVTUN_API int revtun_options_set_directory(revtun_options_t *opts, revtun_directory_t *dir);
REVTUN_API int revtun_options_set_arrival_cb(revtun_options_t *opts, revtun_arrival_cb cb);

/* ---------------------------------------------------------------- directory */

/* Since 0.2: the one object the handles of a process share; thread-safe.
 * revtun_directory_free() drops the creator's reference: the memory goes
 * when the last handle that uses it is freed too. */
REVTUN_API REVTUN_WARN_UNUSED int revtun_directory_new(revtun_directory_t **out);
REVTUN_API void revtun_directory_free(revtun_directory_t *dir);
/* Most handles one directory serves at once. */
#define REVTUN_DIRECTORY_MAX_HANDLES 64

/* ---------------------------------------------------------- config, handle */

REVTUN_API REVTUN_WARN_UNUSED int revtun_config_validate(const void *config, size_t len,
                                                         const revtun_options_t *opts, char *errbuf,
                                                         size_t errbuf_len);
REVTUN_API REVTUN_WARN_UNUSED int revtun_new(revtun_t **out, const void *config, size_t len,
                                             const revtun_options_t *opts, revtun_time_ms_t now,
                                             char *errbuf, size_t errbuf_len);
REVTUN_API void revtun_free(revtun_t *h);
REVTUN_API void *revtun_get_user_data(const revtun_t *h);

REVTUN_API const char *revtun_config_stat_prefix(const revtun_t *h);
REVTUN_API uint32_t revtun_config_ping_failure_threshold(const revtun_t *h);
REVTUN_API int revtun_config_detailed_stats(const revtun_t *h);
REVTUN_API int revtun_config_tenant_isolation(const revtun_t *h);
REVTUN_API uint32_t revtun_config_max_connections_per_node(const revtun_t *h);
REVTUN_API int revtun_config_reporter(const revtun_t *h, const char **name, const char **type_url,
                                      const uint8_t **value, size_t *value_len);
REVTUN_API size_t revtun_config_access_log_count(const revtun_t *h);
REVTUN_API int revtun_config_access_log(const revtun_t *h, size_t index, const char **name,
                                        const char **type_url, const uint8_t **value,
                                        size_t *value_len);

/* ------------------------------------------------------------ event loop */

REVTUN_API int revtun_process_io(revtun_t *h, int fd, int events, revtun_time_ms_t now);
/* Skips unknown fds silently; revtun_process_io_events() counts them. */
REVTUN_API int revtun_process_io_batch(revtun_t *h, const revtun_io_event_t *events, size_t n,
                                       revtun_time_ms_t now);
REVTUN_API int revtun_tick(revtun_t *h, revtun_time_ms_t now);
/* -1 for no deadline, and also for a NULL handle: revtun_next_timeout() tells them apart. */
REVTUN_API int64_t revtun_next_timeout_ms(const revtun_t *h, revtun_time_ms_t now);
/* Since 0.2: REVTUN_E_NOT_FOUND when any entry named an unknown fd (every
 * other entry is handled), with their count in *unknown_out. */
REVTUN_API int revtun_process_io_events(revtun_t *h, const revtun_io_event_t *events, size_t n,
                                        revtun_time_ms_t now, size_t *unknown_out);
/* Since 0.2: the status, and the milliseconds in *timeout_ms (-1: no deadline). */
REVTUN_API int revtun_next_timeout(const revtun_t *h, revtun_time_ms_t now, int64_t *timeout_ms);

/* ------------------------------------------------------------ registration */

REVTUN_API REVTUN_WARN_UNUSED int revtun_reg_new(revtun_t *h, revtun_reg_t **out);
REVTUN_API void revtun_reg_free(revtun_reg_t *reg);
REVTUN_API void revtun_reg_reset(revtun_reg_t *reg);
REVTUN_API int revtun_reg_set_ids(revtun_reg_t *reg, const char *node_id, const char *cluster_id,
                                  const char *tenant_id);
REVTUN_API int revtun_reg_set_ping_interval(revtun_reg_t *reg, uint32_t interval_ms);
REVTUN_API int revtun_reg_set_initiator(revtun_reg_t *reg, int64_t initiation_time_ms,
                                        const char *worker_id, const char *connection_id);
REVTUN_API int revtun_reg_set_sock_user(revtun_reg_t *reg, void *sock_user);
REVTUN_API REVTUN_WARN_UNUSED int
revtun_register_socket(revtun_t *h, int fd, const revtun_reg_t *reg, revtun_time_ms_t now);

/* ----------------------------------------------------- lookup, handoff, close */

REVTUN_API REVTUN_WARN_UNUSED int revtun_handoff(revtun_t *h, const char *node_id,
                                                 const char *tenant_id, revtun_time_ms_t now,
                                                 int *fd_out, revtun_strip_t *strip_out);
REVTUN_API REVTUN_WARN_UNUSED int revtun_handoff_by_cluster(revtun_t *h, const char *cluster_id,
                                                            const char *tenant_id,
                                                            revtun_time_ms_t now, int *fd_out,
                                                            revtun_strip_t *strip_out);
/* Since 0.2: lookup kinds for revtun_handoff_request(). */
enum revtun_lookup { REVTUN_LOOKUP_NODE = 1, REVTUN_LOOKUP_CLUSTER = 2 };
/* Since 0.2: a handoff that may be served by another handle of the directory:
 * REVTUN_OK with the socket now (as revtun_handoff), REVTUN_E_PENDING with a
 * ticket (the arrival callback brings the answer), or REVTUN_E_NOT_FOUND. */
REVTUN_API REVTUN_WARN_UNUSED int revtun_handoff_request(revtun_t *h, int lookup, const char *id,
                                                         const char *tenant_id, void *request_user,
                                                         revtun_time_ms_t now, int *fd_out,
                                                         revtun_strip_t *strip_out,
                                                         uint64_t *ticket_out);
/* Since 0.2: no callback for this ticket; a socket still on its way parks here. */
REVTUN_API int revtun_handoff_cancel(revtun_t *h, uint64_t ticket);

/* Since 0.2: host selection as Envoy's envoy.clusters.reverse_connection
 * does it. A selector is compiled once from a host-id format and an optional
 * tenant-id format (Envoy's substitution syntax: literal text, %REQ(name)%,
 * %REQ(name?alternative)%, ":Z" truncation, "%%"); for each request the host
 * passes the request's headers, the library renders the key and hands off a
 * socket: the key is tried as a cluster (round robin over its members) and,
 * when no such cluster exists, as a node. Under tenant isolation the tenant
 * format is required and the lookup is scoped to the rendered tenant. A key
 * (or tenant) that renders empty or "-" finds nothing. */
typedef struct revtun_hostsel revtun_hostsel_t;
/* One request header; name and value need not be NUL-terminated. */
typedef struct revtun_header {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} revtun_header_t;
#define REVTUN_HEADER_MAX_COUNT 100    /* headers per request (Envoy's default) */
#define REVTUN_HEADER_MAX_BYTES 61440  /* names and values together (Envoy's 60 KiB) */
#define REVTUN_HOSTSEL_FORMAT_MAX 8192 /* bytes of a host-id or tenant-id format */
#define REVTUN_HOSTSEL_KEY_MAX 1024    /* bytes of a rendered key or tenant */
REVTUN_API REVTUN_WARN_UNUSED int revtun_hostsel_new(const char *host_id_format,
                                                     const char *tenant_id_format,
                                                     revtun_hostsel_t **out, char *errbuf,
                                                     size_t errbuf_len);
REVTUN_API void revtun_hostsel_free(revtun_hostsel_t *sel);
/* Renders the key (and the tenant, when the selector has a tenant format)
 * into key[0..key_cap) and tenant[0..tenant_cap), NUL-terminated. */
REVTUN_API int revtun_hostsel_render(const revtun_hostsel_t *sel, const revtun_header_t *headers,
                                     size_t n_headers, char *key, size_t key_cap,
                                     size_t *key_len_out, char *tenant, size_t tenant_cap,
                                     size_t *tenant_len_out);
/* REVTUN_OK with the socket (as revtun_handoff), or REVTUN_E_NOT_FOUND;
 * *lookup_out (optional) says what the key was tried as: REVTUN_LOOKUP_CLUSTER,
 * REVTUN_LOOKUP_NODE, or 0 when it rendered nothing a socket can be filed under. */
REVTUN_API REVTUN_WARN_UNUSED int revtun_handoff_select(revtun_t *h, const revtun_hostsel_t *sel,
                                                        const revtun_header_t *headers,
                                                        size_t n_headers, revtun_time_ms_t now,
                                                        int *fd_out, revtun_strip_t *strip_out,
                                                        int *lookup_out);

/* Since 0.2: moving an idle socket to another handle or process. The state
 * is a versioned byte string of at most REVTUN_SOCKET_STATE_MAX bytes. */
#define REVTUN_SOCKET_STATE_MAX 5168
REVTUN_API REVTUN_WARN_UNUSED int revtun_export_socket(revtun_t *h, int fd, revtun_time_ms_t now,
                                                       void *state, size_t cap, size_t *len_out,
                                                       void **sock_user_out);
/* Exports the oldest idle socket of the handle; REVTUN_E_NOT_FOUND when none. */
REVTUN_API REVTUN_WARN_UNUSED int revtun_export_next(revtun_t *h, revtun_time_ms_t now, int *fd_out,
                                                     void *state, size_t cap, size_t *len_out,
                                                     void **sock_user_out);
REVTUN_API REVTUN_WARN_UNUSED int revtun_import_socket(revtun_t *h, int fd, const void *state,
                                                       size_t len, void *sock_user,
                                                       revtun_time_ms_t now);
REVTUN_API int revtun_mark_dead(revtun_t *h, int fd, int reason, revtun_time_ms_t now);
REVTUN_API int revtun_note_keepalive_timeout(revtun_t *h, int fd, revtun_time_ms_t now);
REVTUN_API int revtun_note_goaway(revtun_t *h, int fd, revtun_time_ms_t now);

/* Envoy's host pick: the next member node, round robin (moves the cursor). */
REVTUN_API int revtun_lookup_cluster(revtun_t *h, const char *cluster_id, const char *tenant_id,
                                     const char **node_id_out);
/* Since 0.2: a cluster's member nodes, read only. */
REVTUN_API int revtun_cluster_node_count(const revtun_t *h, const char *cluster_id,
                                         const char *tenant_id);
REVTUN_API int revtun_cluster_member(const revtun_t *h, const char *cluster_id,
                                     const char *tenant_id, size_t index, const char **node_id_out);
REVTUN_API int revtun_idle_count(const revtun_t *h, const char *node_id, const char *tenant_id);
REVTUN_API int revtun_idle_count_cluster(const revtun_t *h, const char *cluster_id,
                                         const char *tenant_id);
REVTUN_API int revtun_socket_identity(const revtun_t *h, int fd, const char **node_id,
                                      const char **cluster_id, const char **tenant_id);
/* REVTUN_SOCK_IDLE or REVTUN_SOCK_IN_USE, never REVTUN_SOCK_HANDED_OFF. */
REVTUN_API int revtun_socket_state(const revtun_t *h, int fd);
/* Since 0.2: walks whose callback may free the handle (the free is deferred
 * to the end of the walk). The const walks of 0.1 do the same; they are
 * deprecated. */
REVTUN_API int revtun_walk_nodes(revtun_t *h, revtun_node_cb cb, void *user_data);
REVTUN_API int revtun_walk_clusters(revtun_t *h, revtun_cluster_cb cb, void *user_data);
REVTUN_API int revtun_foreach_node(const revtun_t *h, revtun_node_cb cb, void *user_data);
REVTUN_API int revtun_foreach_cluster(const revtun_t *h, revtun_cluster_cb cb, void *user_data);

/* Strip late RPING echoes from the first bytes read after handoff.
 * out must hold in_len + 4 bytes. Returns REVTUN_OK, or REVTUN_E_PROTOCOL when
 * one call strips 64 KiB or more of echoes (a keepalive flood). */
REVTUN_API int revtun_rping_strip(revtun_strip_t *state, const uint8_t *in, size_t in_len,
                                  uint8_t *out, size_t *out_len, size_t *pings_out);
REVTUN_API int revtun_rping_strip_active(revtun_strip_t state);

/* -------------------------------------------------------------------- stats */

/* Since 0.2: the stats walk whose callback may free the handle; the const
 * revtun_stats_foreach() of 0.1 does the same and is deprecated.
 * revtun_stats_get() and revtun_stats_prometheus() run no callback of the
 * host and only read the handle. */
REVTUN_API int revtun_walk_stats(revtun_t *h, revtun_stat_cb cb, void *user_data);
REVTUN_API int revtun_stats_foreach(const revtun_t *h, revtun_stat_cb cb, void *user_data);
REVTUN_API int revtun_stats_get(const revtun_t *h, const char *name, uint64_t *value);
REVTUN_API int revtun_stats_prometheus(const revtun_t *h, char *buf, size_t cap, size_t *len_out);
REVTUN_API int revtun_reopen_logs(revtun_t *h);

/* ------------------------------------------------------------- event records */

REVTUN_API int revtun_event_kind(const revtun_event_t *ev);
REVTUN_API revtun_time_ms_t revtun_event_time_ms(const revtun_event_t *ev);
REVTUN_API const char *revtun_event_node_id(const revtun_event_t *ev, size_t *len);
REVTUN_API const char *revtun_event_cluster_id(const revtun_event_t *ev, size_t *len);
REVTUN_API const char *revtun_event_tenant_id(const revtun_event_t *ev, size_t *len);
REVTUN_API const char *revtun_event_node_key(const revtun_event_t *ev, size_t *len);
REVTUN_API const char *revtun_event_cluster_key(const revtun_event_t *ev, size_t *len);
REVTUN_API const char *revtun_event_worker(const revtun_event_t *ev, size_t *len);
REVTUN_API int revtun_event_fd(const revtun_event_t *ev);
REVTUN_API void *revtun_event_sock_user(const revtun_event_t *ev);
REVTUN_API int revtun_event_socket_state(const revtun_event_t *ev);
REVTUN_API int revtun_event_close_reason(const revtun_event_t *ev);
REVTUN_API int revtun_event_sys_errno(const revtun_event_t *ev);
REVTUN_API uint32_t revtun_event_miss_count(const revtun_event_t *ev);
REVTUN_API int64_t revtun_event_initiation_time_ms(const revtun_event_t *ev);
REVTUN_API const char *revtun_event_initiator_worker_id(const revtun_event_t *ev, size_t *len);
REVTUN_API const char *revtun_event_initiator_connection_id(const revtun_event_t *ev, size_t *len);
REVTUN_API const struct sockaddr *revtun_event_local_addr(const revtun_event_t *ev, socklen_t *len);
REVTUN_API const struct sockaddr *revtun_event_remote_addr(const revtun_event_t *ev,
                                                           socklen_t *len);
REVTUN_API size_t revtun_event_meta_count(const revtun_event_t *ev);
REVTUN_API int revtun_event_meta_get(const revtun_event_t *ev, size_t index, const char **key,
                                     const char **value);
REVTUN_API const char *revtun_event_meta_find(const revtun_event_t *ev, const char *key);

/* ---------------------------------------------------------------- acceptor */

REVTUN_API REVTUN_WARN_UNUSED int revtun_acceptor_config_validate(const void *config, size_t len,
                                                                  char *errbuf, size_t errbuf_len);
REVTUN_API REVTUN_WARN_UNUSED int revtun_acceptor_new(revtun_acceptor_t **out, revtun_t *h,
                                                      const void *config, size_t len, char *errbuf,
                                                      size_t errbuf_len);
REVTUN_API void revtun_acceptor_free(revtun_acceptor_t *acc);
REVTUN_API int revtun_acceptor_set_limit(revtun_acceptor_t *acc, int limit, uint64_t value);
REVTUN_API int revtun_acceptor_set_header_prefix(revtun_acceptor_t *acc, const char *prefix);
REVTUN_API REVTUN_WARN_UNUSED int revtun_acceptor_accept(revtun_acceptor_t *acc, int fd,
                                                         void *sock_user, revtun_time_ms_t now);
REVTUN_API size_t revtun_acceptor_pending(const revtun_acceptor_t *acc);

/* Since 0.2: what the host knows of a connection before it hands it to the
 * acceptor, for %DYNAMIC_METADATA(ns:key)% and %FILTER_STATE(key)% in the
 * acceptor's validation formats (Envoy's connection dynamic metadata and
 * filter state, as earlier network filters set them). Entries are strings,
 * given with their lengths; names hold no NUL and no ':' (the operators
 * split on it), values no NUL. Setting an entry that exists replaces its
 * value. The acceptor copies what it needs: the object may be freed or
 * reused as soon as revtun_acceptor_accept_with_meta() returns. */
typedef struct revtun_conn_meta revtun_conn_meta_t;
#define REVTUN_CONN_META_MAX_ENTRIES 64 /* dynamic metadata and filter state together */
#define REVTUN_CONN_META_MAX_NAME 255   /* bytes of a namespace or a key */
#define REVTUN_CONN_META_MAX_VALUE 1024 /* bytes of a value (the longest id) */
REVTUN_API REVTUN_WARN_UNUSED int revtun_conn_meta_new(revtun_conn_meta_t **out);
REVTUN_API void revtun_conn_meta_free(revtun_conn_meta_t *meta);
REVTUN_API int revtun_conn_meta_set_dynamic(revtun_conn_meta_t *meta, const char *ns, size_t ns_len,
                                            const char *key, size_t key_len, const char *value,
                                            size_t value_len);
REVTUN_API int revtun_conn_meta_set_filter_state(revtun_conn_meta_t *meta, const char *key,
                                                 size_t key_len, const char *value,
                                                 size_t value_len);
/* Since 0.2: revtun_acceptor_accept() with the connection's metadata (NULL:
 * none, which is revtun_acceptor_accept()). */
REVTUN_API REVTUN_WARN_UNUSED int revtun_acceptor_accept_with_meta(revtun_acceptor_t *acc, int fd,
                                                                   void *sock_user,
                                                                   const revtun_conn_meta_t *meta,
                                                                   revtun_time_ms_t now);
REVTUN_API uint32_t revtun_acceptor_ping_interval_ms(const revtun_acceptor_t *acc);

/* ------------------------------------------------ histograms, Prometheus */

/* Since 0.2: Envoy's reverse-tunnel histograms, in milliseconds:
 * <prefix>.cx_upgrade_time (parked -> handed off), <prefix>.cx_idle_expire_time
 * (parked -> died idle), <prefix>.cx_post_upgrade_lifetime (handed off ->
 * revtun_mark_dead() or revtun_free()). bounds are the n upper bucket bounds
 * (Envoy's defaults, 0.5 ms to 1 h), cumulative[i] the samples <= bounds[i];
 * count and sum cover every sample. The callback returns non-zero to stop. */
typedef int (*revtun_histogram_cb)(const char *name, const double *bounds,
                                   const uint64_t *cumulative, size_t n, uint64_t count,
                                   uint64_t sum, void *user_data);
REVTUN_API int revtun_walk_histograms(revtun_t *h, revtun_histogram_cb cb, void *user_data);

/* Flags of revtun_stats_prometheus_ex(); 0 is revtun_stats_prometheus(). */
#define REVTUN_PROM_HIDDEN_INCLUDE 0x1u /* Envoy's hidden per-node/cluster gauges too */
#define REVTUN_PROM_LABELS 0x2u         /* ids as labels: <p>_nodes{node="edge-1"} */
REVTUN_API int revtun_stats_prometheus_ex(const revtun_t *h, unsigned flags, char *buf, size_t cap,
                                          size_t *len_out);

#ifdef __cplusplus
}
#endif

#endif /* REVTUN_REVTUN_H */
