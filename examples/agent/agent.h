/*
 * revtun-downstream-agent: shared types.
 *
 * The agent is the initiator side of an Envoy-style reverse tunnel, i.e.
 * what Envoy's downstream_socket_interface does:
 *
 *   slot ──dial, handshake, park (echo RPING)──▶ upstream proxy
 *   tunnel: the parked socket once the proxy speaks HTTP/2 on it; the agent
 *           is the HTTP/2 server there
 *   stream ──HTTP/1.1──▶ bconn ──▶ local backend
 *
 * Files: main.c (flags, signals, shutdown), slot.c (tunnel slots: dialing,
 * the handshake, RPING echoes), tunnel.c (the HTTP/2 server side: sessions
 * and streams), backend.c (the backend connection pool and the HTTP/1.1
 * exchange). Logging and the HTTP/1 parser are examples/common.c.
 * Single-threaded libevent loop; nghttp2 does the framing.
 */
#ifndef REVTUN_AGENT_H
#define REVTUN_AGENT_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>

#include "../common.h"
#include "../recycle.h"
#include "../sock.h"
#include "../tls.h"

#define PROG "revtun-downstream-agent"

#define HANDSHAKE_TIMEOUT_S 10
#define MAX_HEAD 65536  /* an HTTP/1 response head: handshake answer or backend */
#define MAX_HEADERS 100 /* fields of such a head, as the proxy accepts by default */
#define BACKOFF_BASE_MS 1000
#define MAX_UPSTREAMS 16 /* --upstream values: the proxies of a fleet, tried in turn */
#define RETRY_AFTER_MAX_S 3600
#define DRAIN_GRACE_S 5
#define LINGER_S 2                /* half-closed tunnel waits this long for the proxy's close */
#define MAX_READ (64 * 1024)      /* per read(2); bufferevents would read 4 KiB */
#define READ_BUDGET (1024 * 1024) /* bytes read from one socket per wake-up */
#define BACKEND_TIMEOUT_S 60
#define MAX_IDLE_BACKENDS 1024 /* more than a burst of streams returns at once */

/*
 * Buffering limits.  A tunnel stops asking nghttp2 for frames while more than
 * TUN_OUT_HIGH bytes wait for the socket, and a stream stops reading its
 * backend while more than STREAM_HIGH response bytes wait for HTTP/2 flow
 * control.  Together they bound memory whatever the body size.
 */
#define TUN_OUT_HIGH (1024 * 1024)
#define TUN_OUT_LOW (64 * 1024)
#define STREAM_HIGH (256 * 1024)
#define STREAM_LOW (64 * 1024)
#define BACKEND_OUT_HIGH (256 * 1024)

struct addr {
  struct sockaddr_storage ss;
  socklen_t len;
  char text[INET6_ADDRSTRLEN + 8]; /* ip:port or [ip6]:port */
};

/* Header limits on requests from the upstream, as the proxy's: decoded
 * bytes (name + value + 32 per field) and fields per stream, and what all
 * streams of one tunnel may hold (HEADER_TUNNEL_BUDGET_FACTOR x bytes). */
#define DEFAULT_MAX_HEADER_LIST (64 * 1024)
#define DEFAULT_MAX_HEADERS 100
#define HEADER_FIELD_OVERHEAD 32
#define HEADER_TUNNEL_BUDGET_FACTOR 16

struct config {
  struct addr upstream[MAX_UPSTREAMS]; /* in the order given; slots dial ag->cur_up */
  unsigned n_upstreams;
  struct addr backend;
  struct addr bind; /* source address of the tunnels (port 0); len 0: the kernel's */
  uint32_t max_header_list, max_headers;
  const char *node, *cluster, *tenant, *path, *upstream_cluster;
  unsigned count;
  unsigned max_backoff_ms;
  int upgrade;
  /* --tls: the handshake runs inside TLS (tls.c) */
  int tls;
  const char *ca, *cert, *key, *sni;
};

struct agent;
struct stream;

enum slot_state {
  SLOT_WAIT,
  SLOT_CONNECTING,
  SLOT_TLS, /* the TLS handshake, before the tunnel handshake (--tls) */
  SLOT_HANDSHAKE,
  SLOT_REJECTED,
  SLOT_PARKED
};
enum body_mode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE };

/* One tunnel slot: dials, handshakes, parks, and re-dials after handoff. */
struct slot {
  struct agent *ag;
  unsigned idx;
  enum slot_state state;
  unsigned up;         /* the upstream its connection went to (cfg.upstream index) */
  struct sock sk;      /* sk.fd < 0: no socket */
  SSL *ssl;            /* the handshake-phase TLS session, until the park */
  struct evbuffer *in; /* the handshake answer being read */
  struct event *timer; /* SLOT_WAIT: next dial; connecting or handshaking: deadline */
  unsigned failures;
  uint64_t episode_ms; /* initiation-time; 0 = no episode running */
  uint64_t conn_id;
  size_t ping_match; /* bytes of a partial RPING already seen */
  /* rejection being read */
  int status;
  char reason[64];
  long retry_after_s;
  enum body_mode body;
  uint64_t body_len;
};

/* One HTTP/2 connection that used to be a parked tunnel. */
struct tunnel {
  struct agent *ag;
  struct tunnel *prev, *next;
  struct sock sk;
  nghttp2_session *h2;
  struct stream *streams;
  struct bconn *wq;       /* backend connections with bytes to write this turn */
  struct event *kill_ev;  /* deferred free; while lingering, its deadline */
  struct event *flush_ev; /* end of this loop turn: write everything queued */
  uint64_t conn_id;
  int dying, lingering, flush_pending;
  size_t hdr_held; /* header bytes of its streams' requests */
  SSL *ssl;        /* --tls: the session the upstream opened after the handoff */
  int tls_handshaking;
};

enum bstate { B_HEAD, B_LENGTH, B_CHUNKED, B_UNTIL_CLOSE, B_DONE };

/* One HTTP/1.1 connection to the backend; serves one stream at a time. */
struct bconn {
  struct agent *ag;
  struct bconn *prev, *next;   /* idle list */
  struct bconn *wprev, *wnext; /* its tunnel's write queue */
  struct tunnel *wq_of;        /* the tunnel whose queue it is on, or NULL */
  struct sock sk;
  struct evbuffer *head; /* a response head split across reads */
  struct event *timeout; /* no progress for BACKEND_TIMEOUT_S */
  struct stream *s;
  enum bstate st;
  uint64_t remaining;
  struct h1_chunked chunk;
  uint64_t active_ms; /* last time the backend took or gave bytes */
  int connecting, keepalive, reused, got_bytes;
};

/* A copy of a field value; p is also NUL-terminated. */
struct bytes {
  char *p;
  size_t n;
};

struct stream {
  struct tunnel *t;
  struct stream *prev, *next;
  int32_t id;
  struct bytes method, path, authority, host;
  size_t hdr_cost, nfields; /* of its header sections so far */
  struct evbuffer *hdrs, *cookies;
  int has_length, chunked_up, req_ended, is_head, body_sent;
  char *req_head; /* kept until the first response byte, for a retry */
  size_t req_head_len;
  struct bconn *bc;
  struct evbuffer *resp;
  int resp_started, resp_done, deferred;
  size_t unconsumed; /* request bytes not yet acked by WINDOW_UPDATE */
};

struct agent {
  struct config cfg;
  struct event_base *base;
  const struct timeval *backend_tmo; /* BACKEND_TIMEOUT_S as a common timeout */
  struct slot *slots;
  struct tunnel *tunnels;
  struct bconn *idle;
  unsigned nidle;
  uint64_t next_conn_id;
  unsigned cur_up; /* the upstream new dials go to; the next one after it fails */
  int stopping;
  /* re-dials after a failure once a tunnel has parked (slot_retry): a
   * restarted or failing proxy shows here; replacing a tunnel taken into
   * use is not one. Printed on exit and on SIGUSR1. */
  int ever_parked;
  uint64_t reconnects;
  struct event *grace_ev;
  SSL_CTX *tls_ctx;     /* --tls: client context of the handshake phase */
  SSL_CTX *tls_srv_ctx; /* --tls --cert: server context after the handoff */
  /* per upstream: the name its certificate must carry (--sni, else its host),
   * and whether that is an IP, checked against IP SANs (no SNI is sent) */
  char tls_name[MAX_UPSTREAMS][256];
  int tls_name_is_ip[MAX_UPSTREAMS];
};

static inline uint64_t now_epoch_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline struct timeval ms_tv(uint64_t ms) {
  struct timeval tv;

  tv.tv_sec = (time_t)(ms / 1000);
  tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
  return tv;
}

/* slot.c */
int agent_dial(const struct addr *a, const struct addr *src);
void slot_connect(struct slot *sl);
void slot_close(struct slot *sl);
void slot_retry(struct slot *sl, int64_t delay_ms, const char *why);
void slot_upstream_failed(struct slot *sl, int64_t delay_ms, const char *why);
void slot_timer_cb(evutil_socket_t fd, short what, void *arg);

/* tls.c */
int agent_tls_setup(struct agent *ag, const char *const *upstreams, char *err, size_t errlen);
void agent_tls_free(struct agent *ag);
int slot_tls_begin(struct slot *sl);
void slot_tls_park(struct slot *sl);
void agent_tls_reload(struct agent *ag);
int tunnel_tls_begin(struct tunnel *t, const char *prefix, size_t plen, const uint8_t *rest,
                     size_t restlen);
int tunnel_tls_step(struct tunnel *t);

/* tunnel.c */
int h2_setup(void);
void h2_teardown(void);
void tunnel_start(struct slot *sl, const char *prefix, size_t plen, const uint8_t *rest,
                  size_t restlen);
void tunnel_want_flush(struct tunnel *t);
void tunnel_queue_write(struct tunnel *t, struct bconn *c);
void tunnel_unqueue_write(struct bconn *c);
void tunnel_free(struct tunnel *t);
void stream_free(struct stream *s);
void stream_reply_text(struct stream *s, int status, const char *text);
ssize_t data_read_cb(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
                     uint32_t *flags, nghttp2_data_source *source, void *user_data);

/* backend.c */
void bconn_free(struct bconn *c);
void bconn_flush(struct bconn *c);
void stream_dispatch(struct stream *s);
void stream_backend_failed(struct stream *s, const char *why);
void stream_data_ready(struct stream *s);

#endif
