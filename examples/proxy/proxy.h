/*
 * revtun-upstream-proxy: shared types.
 *
 *   client ──HTTP/1.1 or h2c──▶ conn ─▶ xchg ─▶ upsess ──HTTP/2 over a
 *                                                 handed-off reverse tunnel──▶ agent
 *
 * A conn is one client connection (client.c: HTTP/1.1, client_h2.c: h2c).
 * An xchg is one request/response pair; it lives while either its client
 * side or its upstream side still refers to it (exchange.c). An upsess is
 * one HTTP/2 client session on a tunnel taken from the library's pool; the
 * sessions of one node are grouped in a node (upstream.c). access.c decides
 * whether a request may be routed at all (id rules, client tokens);
 * listeners.c accepts connections and backs off when file descriptors run
 * out; fleet.c sends requests for nodes held by another instance of a
 * fleet there (upstream.c's sessions on an h2c connection to it); admin.c
 * serves /stats and /tunnels; util.c has the socket I/O
 * (struct sock) and header lists; upstream-proxy.c is main(): flags,
 * signals, shutdown. Logging and parsing helpers are examples/common.c.
 */
#ifndef REVTUN_PROXY_H
#define REVTUN_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <revtun/adapters/libevent.h>

#include "../common.h"
#include "../recycle.h"
#include "../sock.h"

#define PROG "revtun-upstream-proxy"

/*
 * Buffering bounds. A session stops taking frames from nghttp2 while more
 * than OUT_HIGH bytes wait for its socket; a client stops being read while
 * more than BODY_HIGH request bytes wait for the upstream; response bytes
 * are bounded by the HTTP/2 window we give the agent (STREAM_WINDOW per
 * stream, CONN_WINDOW per session), since we only return window for bytes
 * that left towards the client.
 */
#define OUT_HIGH (256 * 1024)
#define OUT_LOW (64 * 1024)
#define BODY_HIGH (1024 * 1024)
#define BODY_LOW (256 * 1024)
#define STREAM_WINDOW (1 << 20)
#define CONN_WINDOW (32 << 20)
#define READ_CHUNK (64 * 1024)    /* one read(2); libevent's own reads stop at 4 KiB */
#define READ_BUDGET (1024 * 1024) /* bytes read from one socket per wake-up */
#define LINGER_MS 2000            /* reading (and dropping) after our last byte */
#define CLIENT_MAX_STREAMS 1000   /* advertised to h2c clients */
#define ASSUMED_PEER_STREAMS 100  /* a session's room before the agent's SETTINGS */
#define MAX_ID_BYTES 1024         /* node, cluster and tenant ids, as the library allows */
#define TIMER_SLACK_MS 10         /* the library's timer: see revtun_libevent_set_timer_slack */
#define TRIM_QUIET_S 5            /* after the last tunnel handshake, heap pages go back */
#define HANDSHAKE_RECHECK_MS 50   /* draining after a handover: handshakes still going on? */
#define NV_SCRATCH_EXTRA 4        /* :status and a local reply's fields beyond max_headers */

/*
 * Header limits. Every header section we receive (HTTP/1.1 request head,
 * h2c request, agent response) is bounded per stream by max_header_list
 * decoded bytes (name + value + 32 per field, as HTTP/2 counts them) and
 * max_headers fields. What is kept is also charged to budgets that are
 * released when the exchange lets go of it: one per client connection and
 * one per tunnel session (HEADER_CONN_BUDGET_FACTOR x max_header_list), and
 * one for the process (HEADER_PROCESS_BUDGET_FACTOR x max_header_list), so
 * neither many streams nor many connections can pile up header memory.
 */
#define DEFAULT_MAX_HEADER_LIST (64 * 1024)
#define DEFAULT_MAX_HEADERS 100
#define HEADER_CONN_BUDGET_FACTOR 16
#define HEADER_PROCESS_BUDGET_FACTOR 512
#define HEADER_FIELD_OVERHEAD 32

struct proxy;
struct conn;
struct xchg;
struct upsess;
struct node;

/* An owned list of header fields, kept as nghttp2 wants them. */
struct hdrs {
  nghttp2_nv *v;
  size_t n, cap;
  char *buf; /* names and values */
  size_t len, bcap;
};

struct settings {
  const char *tunnel_listen, *listen, *admin_listen;
  const char *config, *acceptor_config, *client_auth;
  const char *node_header, *cluster_header, *tenant_header;
  uint32_t ka_interval_ms, ka_timeout_ms, grace_ms;
  uint32_t session_idle_ms; /* 0 = sessions never close for being idle */
  uint32_t max_streams;     /* per session; 0 = the agent's SETTINGS */
  uint32_t max_header_list; /* decoded header bytes per stream */
  uint32_t max_headers;     /* header fields per stream */
  uint32_t max_clients;     /* client connections at once */
  /* --tunnel-tls-*: the tunnel listener speaks TLS (tls.c) */
  const char *tls_cert, *tls_key, *tls_ca, *tls_crl;
  /* --handoff-tls-*: TLS as the client after the handoff (tls.c) */
  const char *handoff_ca, *handoff_cert, *handoff_key;
  int handoff_verify_none; /* chain only, the node id is not checked */
  uint32_t handoff_timeout_ms;
  /* fleet (fleet.c): NULL fleet_redis = no fleet */
  const char *fleet_redis, *fleet_password, *fleet_password_file, *fleet_prefix;
  const char *advertise, *instance_id;
  uint32_t fleet_ttl_ms, fleet_timeout_ms;
  uint32_t fleet_cache_ttl_ms; /* with fleet_cache_set; else the directory's default */
  int fleet_cache_set;
  /* restarts (handover.c): NULL = off */
  const char *handover_path, *takeover_path;
  uint32_t workers; /* threads, 1..WORKERS_MAX (workers.c) */
};

#define WORKERS_MAX 64 /* REVTUN_DIRECTORY_MAX_HANDLES */

/* Header bytes held, against a limit. */
struct hbudget {
  size_t used, limit;
};

struct counters {
  uint64_t requests, local_replies, handoffs, sessions_opened, sessions_closed;
  uint64_t keepalive_timeouts, goaways, upstream_resets;
  uint64_t header_limit_resets, idle_sessions_closed, accept_pauses, auth_failures;
  uint64_t handoff_tls_handshakes, handoff_tls_failures, handoff_tls_timeouts;
};

/* A listening socket that stops accepting while file descriptors run out
 * (listeners.c). */
struct plistener {
  struct proxy *p;
  const char *what;
  struct evconnlistener *l;
  struct event *resume_ev;
  uint32_t backoff_ms;
  int paused_fds, paused_cap;
};

struct auth_table;
struct fleet;
struct handover;
struct worker;
struct workers;

struct proxy {
  struct settings cfg;
  struct event_base *base;
  struct revtun_libevent *le;
  revtun_t *h;
  revtun_acceptor_t *acc;
  struct plistener tunnel_l, client_l, admin_l;
  struct evhttp *admin;
  int reserve_fd;       /* /dev/null, given up to shed a connection at EMFILE */
  int admin_reserve_fd; /* /dev/null, given up to accept an admin connection */
  struct log_limit accept_log;
  struct hbudget hb; /* header bytes held by the whole process */
  struct auth_table *auth;
  revtun_hostsel_t *sel;      /* --host-id-format, --tenant-id-format */
  int sel_shorthand;          /* the host-id format is the shorthand headers' */
  int tenant_shorthand;       /* the tenant-id format is --tenant-header's */
  struct h1_field *h1_fields; /* max_headers entries: the parser's scratch */
  nghttp2_nv *nv_scratch;     /* max_headers + NV_SCRATCH_EXTRA: a response head for h2c */
  struct conn *conns;
  struct node *nodes;
  struct node *peers; /* other instances of the fleet, by address (fleet.c) */
  struct fleet *fleet;
  unsigned n_conns, n_xchg, n_sessions;
  int stopping;
  int fatal; /* exit with status 1 (the fleet refused this instance) */
  struct event *grace_ev, *reap_ev;
  struct event *trim_ev;        /* gives memory freed after handshakes back */
  struct event *handshakes_ev;  /* draining after a handover: see proxy_check_done */
  struct conn *dead_conns;      /* closed, freed by the reaper */
  struct upsess *dead_sessions; /* same */
  struct counters st;
  struct revtun_openssl *tls;     /* the acceptor's TLS transport, or NULL */
  struct ssl_ctx_st *handoff_ctx; /* --handoff-tls-ca: client context after handoffs */
  /* restarts (handover.c): listening sockets received from the instance
   * taken over, by enum ho_listener (-1: none; index 0 unused), and
   * whether this instance is draining after handing over */
  struct handover *ho;
  int inherited_fd[4];
  int handing_over;
  struct worker *w;    /* with --workers N > 1: this loop's worker, else NULL */
  struct workers *all; /* the admin loop of --workers N > 1, else NULL */
};

enum conn_mode { C_DETECT, C_H1, C_H2 };

/* One client connection. */
struct conn {
  struct proxy *p;
  struct conn *prev, *next;
  struct sock s;
  struct evbuffer *in; /* protocol detection and HTTP/1.1 */
  enum conn_mode mode;
  struct xchg *xs;       /* exchanges whose client side is this connection */
  struct event *work_ev; /* deferred: flush (h2) or parse more input (h1) */
  struct event *linger_ev;
  int dying, work_pending, close_when_flushed, lingering;
  /* HTTP/1.1 */
  struct xchg *cur;
  int h1_state;
  uint64_t remaining;
  struct h1_chunked chunk;
  int keepalive, http10, chunked_out, close_delimited, no_body;
  /* h2c */
  nghttp2_session *h2;
  int goaway_sent;
  struct hbudget hb; /* header bytes held by this connection's exchanges */
};

/* One request/response. */
struct xchg {
  struct proxy *p;
  struct conn *c; /* client side, NULL once it is done */
  struct xchg *cprev, *cnext;
  int32_t cid;      /* client stream id (h2c), 0 for HTTP/1.1 */
  struct upsess *u; /* upstream side, NULL before dispatch and once done */
  struct xchg *uprev, *unext;
  int32_t uid;                                     /* upstream stream id */
  struct hdrs req;                                 /* request header block, pseudo-headers first */
  const char *node_hdr, *cluster_hdr, *tenant_hdr; /* values inside req */
  struct evbuffer *req_body, *resp_body;
  int req_has_body, req_done, expect_continue, is_head;
  int resp_status;
  struct hdrs resp;
  int resp_head_ready, resp_started, resp_done, resp_failed, in_trailers;
  int up_deferred, cl_deferred, retries, hold;
  size_t req_unconsumed;  /* h2c: request bytes not yet credited back to the client */
  size_t resp_unconsumed; /* response bytes not yet credited back to the agent */
  const char *target;     /* node or cluster, for logs */
  /* the request's tunnel key and tenant as the host selector renders them
   * (select.c); key_ok when the key names something (not empty, not "-") */
  char key[REVTUN_HOSTSEL_KEY_MAX + 1], key_tenant[REVTUN_HOSTSEL_KEY_MAX + 1];
  int key_ok, key_is_cluster;
  /* header limits: decoded bytes of each side's header sections, and what
   * of them is charged to the client connection, the session, the process */
  size_t req_cost, resp_cost, charged_conn, charged_sess, charged_proc;
  int req_bad;        /* h2c: the request broke a rule; answered 400 at dispatch */
  int resp_too_large; /* the agent's header section broke a limit */
  char *auth;         /* the authorization value when --client-auth is on */
  size_t auth_len;
  int fleet_wait;                  /* a directory lookup is pending: keep the request body */
  int fleet_fwd;                   /* we added x-revtun-forwarded: sent to another instance */
  int handoff_tls_failed;          /* a tunnel's TLS session failed: no tunnel is a 502 */
  struct worker_wait *worker_wait; /* waiting for another worker's tunnel (workers.c) */
  int worker_asked;                /* the directory was asked once: do not wait again */
  int worker_fwd;                  /* sent to another worker's sessions */
  revtun_time_ms_t worker_since;   /* first found no tunnel anywhere (workers_retry) */
};

/* One HTTP/2 client session on a handed-off tunnel. */
struct upsess {
  struct proxy *p;
  struct node *node;
  struct upsess *prev, *next; /* in node->sessions */
  struct sock s;
  uint64_t id;
  nghttp2_session *h2;
  revtun_strip_t strip;
  struct xchg *xs;
  unsigned active; /* streams submitted and not closed */
  int got_settings, goaway, dying, flush_pending, ping_outstanding;
  struct event *flush_ev, *ka_ev, *idle_ev;
  struct hbudget hb;    /* response header bytes held for this session's streams */
  int peer;             /* an h2c connection to another instance, not a tunnel */
  struct ssl_st *ssl;   /* --handoff-tls-ca: the session on the tunnel, else NULL */
  int tls_handshaking;  /* frames wait until the session is up */
  struct event *tls_ev; /* the handshake's deadline */
};

/* The sessions of one node. Keyed by (tenant, id) as two fields, never a
 * joined string; the tenant is "" unless the library isolates tenants. A
 * peer (in proxy.peers) is another instance of the fleet: id is its
 * address, cluster its instance id, its sessions h2c connections to it. */
struct node {
  struct node *next;
  char *tenant, *id, *cluster;
  size_t tenant_len, id_len;
  struct upsess *sessions;
  unsigned n_sessions;
  int peer;
};

/* util.c */
ssize_t sock_h2_send(struct sock *s, const uint8_t *data, size_t len);
int sock_h2_send_data(struct sock *s, const uint8_t *framehd, struct evbuffer *body, size_t length);
int hdrs_add(struct hdrs *h, const char *name, size_t nlen, const char *value, size_t vlen);
const char *hdrs_get(const struct hdrs *h, const char *name);
const nghttp2_nv *hdrs_find(const struct hdrs *h, const char *name);
void hdrs_free(struct hdrs *h);
int is_hop_by_hop(const char *name, size_t len);
const char *reason_phrase(int status);
void json_string(struct evbuffer *out, const char *s, size_t len);
int hbudget_charge(struct xchg *x, size_t cost, int from_agent);
void hbudget_release(struct hbudget *b, size_t *charged);

/* exchange.c */
struct xchg *xchg_new(struct conn *c, int32_t cid);
void xchg_dispatch(struct xchg *x);
void xchg_route(struct xchg *x);
void xchg_request_data(struct xchg *x);
void xchg_client_done(struct xchg *x);
void xchg_upstream_done(struct xchg *x, const char *error);
int xchg_retry(struct xchg *x);
void xchg_handoff_failed(struct xchg *x, const char *error);
void xchg_local_reply(struct xchg *x, int status, const char *text);
void xchg_local_reply_hdr(struct xchg *x, int status, const char *text, const char *hname,
                          const char *hvalue);
int xchg_take_auth(struct xchg *x, const char *value, size_t len);
void xchg_sent_to_client(struct xchg *x, size_t n);
void xchg_sent_upstream(struct xchg *x, size_t n);
void xchg_hold(struct xchg *x);
void xchg_release(struct xchg *x);

/* upstream-proxy.c */
void proxy_schedule_reap(struct proxy *p);
void proxy_check_done(struct proxy *p);
void proxy_begin_shutdown(struct proxy *p, const char *why);

/* handover.c: restarting without dropping tunnels. takeover: with
 * --takeover, receives the listeners and parked tunnels of the running
 * instance (before listeners_start, which uses them); 0, or -1 with a
 * message on stderr. start: after the listeners, tells the old instance we
 * serve, or listens on --handover-socket. free: at exit, hands over the
 * last tunnels that parked while draining. */
int handover_takeover(struct proxy *p);
int handover_start(struct proxy *p);
void handover_free(struct proxy *p);
/* SIGTERM/SIGINT (why names it): 1 if the handover takes it (a takeover
 * was sent and must end first: the shutdown begins when it has), else 0 */
int handover_on_signal(struct proxy *p, const char *why);
int proxy_open(struct proxy *p, const uint8_t *conf, size_t conf_len, const uint8_t *aconf,
               size_t aconf_len, revtun_directory_t *dir);
void proxy_close(struct proxy *p);

/* tls.c: the tunnel listener's TLS. setup: 0, or -1 with a message on
 * stderr; reload: new certificates, keys and CRL for the handshakes that
 * start from now on (SIGHUP), parked tunnels untouched. */
int proxy_tls_setup(struct proxy *p, const uint8_t *aconf, size_t aconf_len);
void proxy_tls_reload(struct proxy *p);
void proxy_reopen_logs(struct proxy *p);
void proxy_tls_free(struct proxy *p);
/* The session on a handed-off tunnel, or NULL (logged) when it cannot start. */
struct ssl_st *proxy_handoff_ssl(struct proxy *p, int fd, revtun_strip_t strip,
                                 const char *node_id);

/* listeners.c */
int listeners_start(struct proxy *p);
void listeners_bind_thread(struct proxy *p);
int listeners_watch_admin(struct proxy *p, struct evconnlistener *l);
void listeners_stop(struct proxy *p);
void listeners_client_count_changed(struct proxy *p);
void listeners_free(struct proxy *p);

/* access.c: may this request be routed? 0, or the status to answer */
int access_load(struct proxy *p, const char *path);
void access_free(struct proxy *p);
int access_check(struct proxy *p, struct xchg *x, const char **hname, const char **hvalue,
                 char *why, size_t whylen);

/* client.c (HTTP/1.1 and protocol detection) and client_h2.c */
void client_accept(struct proxy *p, int fd);
void conn_kill(struct conn *c, const char *why);
void conn_free(struct conn *c);
void conn_want_work(struct conn *c);
void conn_write(struct conn *c);
void conn_close_when_flushed(struct conn *c);
void conn_response_head(struct xchg *x);
void conn_response_data(struct xchg *x);
void conn_response_abort(struct xchg *x);
void conn_request_drained(struct xchg *x, size_t n);
void proxy_drain_clients(struct proxy *p);
void proxy_goaway(struct proxy *p);
int h2c_setup(void);
void h2c_teardown(void);
int h2c_start(struct conn *c);
void h2c_work(struct conn *c);
void h2c_read(struct conn *c);
void h2c_response_head(struct xchg *x);
void h2c_response_data(struct xchg *x);
void h2c_response_abort(struct xchg *x);
void h2c_request_drained(struct xchg *x, size_t n);
void h2c_drain(struct conn *c);
void conn_reap(struct proxy *p);

/* upstream.c */
int up_setup(void);
void up_teardown(void);
struct upsess *up_route(struct proxy *p, struct xchg *x, char *why, size_t whylen);

/* select.c: which tunnel a request names (--host-id-format, --tenant-id-format) */
int select_setup(struct proxy *p, const char *host_id_format, const char *tenant_id_format);
void select_free(struct proxy *p);
/* Renders x's key and tenant (x->key, x->key_tenant, x->key_ok); 0, or an
 * HTTP status with why when the request's headers cannot be used. */
int select_render(struct proxy *p, struct xchg *x, char *why, size_t whylen);
/* Why nothing was found for x, in the words of the shorthand headers when
 * the formats are theirs. */
void select_miss(struct proxy *p, const struct xchg *x, char *why, size_t whylen);
/* Does x's key name a cluster (here, or by the shorthand cluster header)? */
int select_names_cluster(struct proxy *p, const struct xchg *x);
struct upsess *up_open(struct proxy *p, int fd, revtun_strip_t strip);
struct upsess *up_for_worker(struct proxy *p, unsigned k, char *why, size_t whylen);
int up_submit(struct upsess *u, struct xchg *x);
void up_want_flush(struct upsess *u);
void up_resume(struct xchg *x);
void up_cancel(struct xchg *x);
void up_consumed(struct xchg *x, size_t n);
void up_close_all(struct proxy *p);
void up_reap(struct proxy *p);
struct node *node_find(struct proxy *p, const char *tenant, size_t tenant_len, const char *id,
                       size_t id_len);
struct upsess *up_for_peer(struct proxy *p, const char *instance, const char *addr,
                           const struct sockaddr *sa, socklen_t salen, char *why, size_t whylen);

/* fleet.c: the fleet directory on Redis (--fleet-redis) */
int fleet_check_settings(struct proxy *p);
int fleet_new(struct proxy *p);
void fleet_on_event(revtun_t *h, const revtun_event_t *ev, void *user);
void fleet_start(struct proxy *p);
void fleet_stop(struct proxy *p);
int fleet_stopping(const struct proxy *p);
void fleet_free(struct proxy *p);
int fleet_route(struct xchg *x, char *why, size_t whylen);
void fleet_stats(struct proxy *p, struct evbuffer *b, int prom);

/* A parked tunnel on its way between pools (handover.c, workers.c): its
 * descriptor and state (as revtun_export_next gives them), the worker
 * whose pool it left or joins, and how its import went. */
struct ho_tunnel {
  int fd;
  unsigned worker;
  void *user;
  size_t len;
  uint8_t *state;
  int rc;
};

/* workers.c: --workers N > 1 */
int workers_check_settings(struct proxy *p);
int workers_run(struct proxy *tmpl, const uint8_t *conf, size_t conf_len, const uint8_t *aconf,
                size_t aconf_len);
int workers_set_options(struct proxy *p, revtun_options_t *opts, revtun_directory_t *dir);
int workers_handoff(struct xchg *x, int lookup, const char *id, const char *tenant, int *fd,
                    revtun_strip_t *strip);
struct upsess *workers_forward(struct xchg *x, int lookup, const char *id, const char *tenant);
int workers_connect(struct proxy *p, unsigned k);
int workers_retry(struct xchg *x);
void workers_note_session(struct proxy *p, const struct node *n, int delta);
int workers_admin_stats(struct workers *all, struct evbuffer *b, unsigned flags, int worker);
void workers_admin_tunnels(struct workers *all, struct evbuffer *b);
/* for handover.c, on the main thread: the workers' listeners and pools.
 * listener_fds: worker k's tunnel and client listeners (kinds as in
 * handover_wire.h), for every k; returns the count. export: every worker
 * gives up its parked tunnels on its own thread (a stopped worker, those
 * that parked while it drained after a handover), at most max; take gets
 * each. import: each t[i] parks in worker t[i].worker's pool (on its
 * thread once the threads run), t[i].rc saying how it went. shutdown: as
 * for SIGTERM (handing_over: after a handover); stop_now: as for a second
 * signal; goaway: every worker's h2c clients get GOAWAY. */
struct proxy *workers_proxy(struct workers *all, unsigned k);
size_t workers_listener_fds(struct workers *all, int *fds, uint8_t *kinds);
void workers_export(struct workers *all, size_t max,
                    void (*take)(void *arg, unsigned worker, int fd, void *user,
                                 const uint8_t *state, size_t len),
                    void *arg);
void workers_import(struct workers *all, struct ho_tunnel *t, size_t n);
int workers_stopping(struct workers *all);
void workers_shutdown(struct proxy *ctl, const char *why, int handing_over);
void workers_stop_now(struct workers *all);
void workers_goaway(struct workers *all);

/* admin.c */
void admin_metric(struct evbuffer *b, int prom, const char *name, const char *type, uint64_t v);
int admin_start(struct proxy *p, const char *spec);
void admin_stop(struct proxy *p);
void admin_stats(struct proxy *p, struct evbuffer *b, unsigned flags);
/* /tunnels' three lists, one JSON object per line; worker >= 0 adds a
 * "worker" field to each */
void admin_tunnel_lines(struct proxy *p, int worker, struct evbuffer *nodes,
                        struct evbuffer *clusters, struct evbuffer *sessions);
void admin_tunnels_join(struct evbuffer *b, struct evbuffer *nodes, struct evbuffer *clusters,
                        struct evbuffer *sessions, size_t pending);

#endif
