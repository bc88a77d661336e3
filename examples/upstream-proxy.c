/*
 * revtun-upstream-proxy: the upstream end of Envoy-style reverse tunnels,
 * as a small libevent program built on libupstream-revtun.
 *
 *   agents ──dial out, handshake, park──▶ --tunnel-listen (revtun acceptor + pool)
 *   clients ──HTTP/1.1 or h2c──▶ --listen ──▶ HTTP/2 over a handed-off tunnel ──▶ agent
 *   operators ──▶ --admin-listen: GET /stats, GET /tunnels
 *
 * A request names its destination with x-remote-node-id (or, failing that,
 * x-remote-cluster-id, round robin over the cluster's nodes). The proxy
 * multiplexes requests for a node as streams on the HTTP/2 sessions it
 * already runs on that node's tunnels and takes a new tunnel from the pool
 * only when every session is full. Everything runs on one thread, or with
 * --workers N on N threads that share the library's directory (workers.c).
 *
 * Files: this one (flags, signals, shutdown) and examples/proxy/:
 * listeners.c (accepting, descriptor exhaustion), access.c (id rules,
 * client tokens), client.c (HTTP/1.1, protocol detection), client_h2.c
 * (h2c), exchange.c (request/response glue), upstream.c (tunnel sessions),
 * fleet.c (--fleet-redis: the directory, forwarding to other instances),
 * workers.c (--workers: threads, cross-worker routing, the summed admin),
 * admin.c, util.c; examples/common.c (logging, parsing).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "proxy/proxy.h"

static void usage(FILE *f) {
  fputs("Usage: " PROG " [OPTIONS]\n"
        "Upstream end of Envoy-style reverse tunnels: accepts agents' tunnels, and\n"
        "forwards HTTP/1.1 and h2c requests to them as HTTP/2 streams.\n"
        "\n"
        "  --tunnel-listen ADDR:PORT   where agents dial in (default 127.0.0.1:15000)\n"
        "  --listen ADDR:PORT          HTTP/1.1 and h2c clients (default 127.0.0.1:8080)\n"
        "  --admin-listen [ADDR:]PORT  GET /stats and GET /tunnels (default: off);\n"
        "                              a bare PORT binds 127.0.0.1\n"
        "  --config FILE               serialized UpstreamReverseConnectionSocketInterface\n"
        "                              (default: empty message, Envoy's defaults)\n"
        "  --acceptor-config FILE      serialized ReverseTunnel for the handshake\n"
        "                              (default: empty message, Envoy's defaults)\n"
        "  --host-id-format FMT        the tunnel key, Envoy's host_id_format over the\n"
        "                              request headers (%REQ(name)%, %REQ(a?b)%, text);\n"
        "                              tried as a cluster first, then as a node\n"
        "                              (default %REQ(x-remote-node-id?x-remote-cluster-id)%,\n"
        "                              from the two shorthands below)\n"
        "  --tenant-id-format FMT      the tunnel's tenant under tenant isolation\n"
        "                              (default %REQ(x-remote-tenant-id)%)\n"
        "  --node-header NAME          shorthand: --host-id-format %REQ(NAME?C)%, C the\n"
        "                              cluster header (default x-remote-node-id)\n"
        "  --cluster-header NAME       shorthand: the alternative in that format, used\n"
        "                              when the node header is absent\n"
        "                              (default x-remote-cluster-id)\n"
        "  --tenant-header NAME        shorthand: --tenant-id-format %REQ(NAME)%\n"
        "                              (default x-remote-tenant-id); with an explicit\n"
        "                              --host-id-format or --tenant-id-format the\n"
        "                              shorthand it replaces only names the headers\n"
        "                              checked for control bytes\n"
        "  --keepalive-interval DUR    HTTP/2 PING interval on tunnels (default 10s)\n"
        "  --keepalive-timeout DUR     PING ACK deadline (default 5s)\n"
        "  --max-streams N             streams per tunnel session (default 0: the\n"
        "                              agent's SETTINGS_MAX_CONCURRENT_STREAMS)\n"
        "  --session-idle-timeout DUR  close a tunnel session without streams after\n"
        "                              DUR (default 60s; 0: never)\n"
        "  --max-header-list-size N    decoded header bytes per request or response,\n"
        "                              HTTP/1.1 head bytes (default 65536)\n"
        "  --max-headers N             header fields per request or response (default 100)\n"
        "  --max-clients N             client connections at once (default: the file\n"
        "                              descriptor limit less a quarter)\n"
        "  --client-auth FILE          bearer tokens and the tenants/nodes each may\n"
        "                              reach (default: clients are not authenticated)\n"
        "  --grace-period DUR          shutdown, or after a handover: time for requests\n"
        "                              in flight (default 10s)\n"
        "  --tunnel-tls-cert FILE      the tunnel listener speaks TLS only, with this\n"
        "                              certificate chain (PEM); needs --tunnel-tls-key\n"
        "  --tunnel-tls-key FILE       its private key (PEM)\n"
        "  --tunnel-tls-ca FILE        agents must present a certificate chaining to\n"
        "                              this CA bundle (mutual TLS); bind the claimed\n"
        "                              ids to it with a %DOWNSTREAM_PEER_...% format in\n"
        "                              --acceptor-config (warned about otherwise)\n"
        "  --tunnel-tls-crl FILE       refuse agent certificates revoked by this CRL\n"
        "                              (needs --tunnel-tls-ca); SIGHUP reloads all four\n"
        "                              files, parked tunnels stay\n"
        "  --handoff-tls-ca FILE       after a handoff, open a new TLS session on the\n"
        "                              tunnel as the client (ALPN h2): the agent's\n"
        "                              certificate must chain to this CA bundle and\n"
        "                              name the node (see --handoff-tls-verify)\n"
        "  --handoff-tls-cert FILE, --handoff-tls-key FILE\n"
        "                              client certificate to present there (optional)\n"
        "  --handoff-tls-verify node|none\n"
        "                              node (default): a DNS or URI SAN of the agent's\n"
        "                              certificate equals the node id; none: the chain\n"
        "                              only. A failed handshake is retried on another\n"
        "                              tunnel twice, then answered 502 with\n"
        "                              x-revtun-error: handoff-tls-failed\n"
        "  --handoff-tls-timeout DUR   deadline of that handshake (default 5s);\n"
        "                              SIGHUP reloads the --handoff-tls-* files too\n"
        "  --handover-socket PATH      listen on this unix socket for a new instance\n"
        "                              to take over (restart without dropping tunnels)\n"
        "  --takeover PATH             start by taking over the listeners and parked\n"
        "                              tunnels of the instance listening on PATH (give\n"
        "                              the same flags); it drains within its\n"
        "                              --grace-period and exits (neither goes with\n"
        "                              --fleet-redis; with --workers, give the same N)\n"
        "  --fleet-redis HOST:PORT     join a fleet: publish this instance's nodes in\n"
        "                              Redis and forward requests for nodes held by\n"
        "                              other instances to them (default: off)\n"
        "  --fleet-redis-password PW   Redis AUTH password (visible in ps: prefer the file)\n"
        "  --fleet-redis-password-file FILE  the same, read from FILE\n"
        "  --fleet-key-prefix P        prefix of the fleet's Redis keys (default revtun:)\n"
        "  --advertise IP:PORT         where other instances reach this one's --listen\n"
        "                              (default: --listen; required if it is a wildcard)\n"
        "  --instance-id ID            this instance in the fleet (default: --advertise)\n"
        "  --fleet-ttl DUR             entries of a dead instance expire after DUR;\n"
        "                              heartbeat every DUR/3 (default 15s)\n"
        "  --fleet-timeout DUR         Redis answer deadline; past it the connection is\n"
        "                              dropped and opened again (default 1s)\n"
        "  --fleet-cache-ttl DUR       keep lookup answers up to DUR; a change an instance\n"
        "                              publishes drops them at once (0: no cache;\n"
        "                              default 1s, at most 1h)\n"
        "  --workers N                 N threads (1..64, default 1), each with its own\n"
        "                              loop, tunnel pool and listeners (SO_REUSEPORT);\n"
        "                              any worker serves any node, /stats sums them\n"
        "                              (?worker=K: one); not with --fleet-redis\n"
        "  --verbose                   log requests and every tunnel lifecycle record\n"
        "  --version                   print the library version and exit\n"
        "  --help                      show this help and exit\n"
        "\n"
        "DUR is milliseconds, or a number with ms, s or m. Signals: SIGTERM and SIGINT\n"
        "stop (a second one at once), SIGHUP reloads the TLS files, SIGUSR1 reopens\n"
        "the access-log files of --config (after logrotate moved them).\n",
        f);
}

/* ---------------------------------------------------------- library hooks */

static void on_record(revtun_t *h, const revtun_event_t *ev, void *user) {
  int reason = revtun_event_close_reason(ev);
  const char *miss = revtun_event_meta_find(ev, "miss_count");
  const char *why = revtun_event_meta_find(ev, "failure_reason");
  char shown[300];

  (void)h, (void)user;
  logmsg("record %s node=%s cluster=%s tenant=%s fd=%d%s%s%s%s%s%s",
         revtun_event_kind_name(revtun_event_kind(ev)), revtun_event_node_id(ev, NULL),
         revtun_event_cluster_id(ev, NULL), revtun_event_tenant_id(ev, NULL), revtun_event_fd(ev),
         reason ? " close_reason=" : "", reason ? revtun_close_reason_name(reason) : "",
         miss ? " miss_count=" : "", miss ? miss : "", why ? " failure_reason=" : "",
         why ? log_safe(shown, sizeof(shown), why, strlen(why)) : "");
}

static void on_lib_log(revtun_t *h, int level, const char *msg, void *user) {
  (void)h, (void)user;
  logmsg("libupstream-revtun: %s%s", level <= REVTUN_LOG_WARN ? "warning: " : "", msg);
}

/* The library allocates through the size-class lists too: its idle
 * tunnels' entries are small, long-lived blocks that belong in slabs, away
 * from the buffers of handshakes in progress. */
static void *lib_malloc(size_t n, void *user) {
  (void)user;
  return recycle_malloc_unkept(n);
}
static void *lib_realloc(void *ptr, size_t n, void *user) {
  (void)user;
  return ptr ? recycle_realloc(ptr, n) : recycle_malloc_unkept(n);
}
static void lib_free(void *ptr, void *user) {
  (void)user;
  recycle_free(ptr);
}

/*
 * Handshakes come in bursts (an agent fleet reconnecting): their buffers
 * are freed once the tunnels park, but the space stays resident in
 * malloc's heap. TRIM_QUIET_S after the last tunnel connection was
 * accepted (listeners.c re-arms this), those pages go back.
 */
static void trim_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
  malloc_trim(0);
}

/* ------------------------------------------------------- life and death */

static void reap_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  conn_reap(arg);
  up_reap(arg);
}

void proxy_schedule_reap(struct proxy *p) { event_active(p->reap_ev, 0, 0); }

static void handshakes_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  proxy_check_done(arg);
}

/*
 * During shutdown: once the last client connection is gone, we are done.
 * After a handover, a handshake still going on is waited for too (the
 * grace period and the acceptor's handshake timeout bound it): its tunnel
 * then parks and is handed over, where exiting now would close it and make
 * its agent dial again. The acceptor tells no one when a handshake ends, so
 * this looks again every HANDSHAKE_RECHECK_MS.
 */
void proxy_check_done(struct proxy *p) {
  if (!p->stopping || p->conns || fleet_stopping(p))
    return;
  if (p->handing_over && revtun_acceptor_pending(p->acc) > 0) {
    struct timeval again = {0, HANDSHAKE_RECHECK_MS * 1000};
    if (!evtimer_pending(p->handshakes_ev, NULL))
      evtimer_add(p->handshakes_ev, &again);
    return;
  }
  event_base_loopbreak(p->base);
}

static void grace_cb(evutil_socket_t fd, short what, void *arg) {
  struct proxy *p = arg;

  (void)fd, (void)what;
  logmsg("grace period over: closing %u client connection(s), %u request(s) cut", p->n_conns,
         p->n_xchg);
  event_base_loopbreak(p->base);
}

void proxy_begin_shutdown(struct proxy *p, const char *why) {
  struct timeval tv = {(time_t)(p->cfg.grace_ms / 1000),
                       (suseconds_t)(p->cfg.grace_ms % 1000) * 1000};

  p->stopping = 1;
  logmsg("%s: stopping; %u request(s) in flight, up to %u ms to finish", why, p->n_xchg,
         p->cfg.grace_ms);
  /* every port is released now, the admin one too: a new proxy can start */
  listeners_stop(p);
  admin_stop(p);
  fleet_stop(p);
  proxy_drain_clients(p);
  evtimer_add(p->grace_ev, &tv);
  proxy_check_done(p);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
  struct proxy *p = arg;

  (void)what;
  if (sig == SIGHUP) {
    proxy_tls_reload(p);
    return;
  }
  if (sig == SIGUSR1) {
    logmsg("SIGUSR1: reopening the access logs");
    proxy_reopen_logs(p);
    return;
  }
  if (p->stopping) {
    logmsg("second signal: exiting now");
    event_base_loopbreak(p->base);
    return;
  }
  if (handover_on_signal(p, sig == SIGTERM ? "SIGTERM" : "SIGINT"))
    return;
  proxy_begin_shutdown(p, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* --------------------------------------------------- one loop's proxy */

/*
 * Everything that runs on one event loop: the loop itself, the library's
 * handle and acceptor, the tunnel listener's TLS, the fleet directory and
 * the tunnel and client listeners. With --workers 1 that is the whole
 * proxy; with more, each worker thread has one (workers.c), all sharing
 * dir. 0, or -1 with a message.
 */
int proxy_open(struct proxy *p, const uint8_t *conf, size_t conf_len, const uint8_t *aconf,
               size_t aconf_len, revtun_directory_t *dir) {
  struct settings *cfg = &p->cfg;
  revtun_options_t *opts = NULL;
  char err[512];
  int rc = -1;

  p->reserve_fd = p->admin_reserve_fd = -1;
  p->hb.limit = (size_t)cfg->max_header_list * HEADER_PROCESS_BUDGET_FACTOR;
  if (!(p->h1_fields = calloc(cfg->max_headers, sizeof(*p->h1_fields))) ||
      !(p->nv_scratch =
            calloc((size_t)cfg->max_headers + NV_SCRATCH_EXTRA, sizeof(*p->nv_scratch)))) {
    fprintf(stderr, PROG ": out of memory\n");
    return -1;
  }
  if (!(p->base = event_base_new()) || !(p->reap_ev = event_new(p->base, -1, 0, reap_cb, p)) ||
      !(p->grace_ev = evtimer_new(p->base, grace_cb, p)) ||
      !(p->trim_ev = evtimer_new(p->base, trim_cb, p)) ||
      !(p->handshakes_ev = evtimer_new(p->base, handshakes_cb, p)) ||
      revtun_options_new(&opts) != REVTUN_OK ||
      revtun_options_set_allocator(opts, lib_malloc, lib_realloc, lib_free, NULL) != REVTUN_OK ||
      !(p->le = revtun_libevent_new(p->base, opts, p)) ||
      (dir && workers_set_options(p, opts, dir) < 0)) {
    fprintf(stderr, PROG ": initialisation failed\n");
    goto out;
  }
  /* Records are only logged with --verbose; without a callback the library
   * builds none (two per RPING round trip on every parked tunnel). */
  if (verbose)
    revtun_options_set_access_log_cb(opts, on_record);
  /* the fleet directory follows the tunnels through the reporter events */
  if (cfg->fleet_redis)
    revtun_options_set_reporter_cb(opts, fleet_on_event);
  revtun_options_set_log_cb(opts, on_lib_log, verbose ? REVTUN_LOG_INFO : REVTUN_LOG_WARN);
  if (revtun_new(&p->h, conf, conf_len, opts, revtun_libevent_now(), err, sizeof(err)) !=
      REVTUN_OK) {
    fprintf(stderr, PROG ": %s: %s\n", cfg->config ? cfg->config : "default config", err);
    goto out;
  }
  revtun_libevent_bind(p->le, p->h);
  /* Pings and reply deadlines of parked tunnels are seconds apart: 10 ms
   * late costs nothing and lets a tick serve all that fall in 10 ms. */
  revtun_libevent_set_timer_slack(p->le, TIMER_SLACK_MS);
  if (revtun_acceptor_new(&p->acc, p->h, aconf, aconf_len, err, sizeof(err)) != REVTUN_OK) {
    fprintf(stderr, PROG ": %s: %s\n",
            cfg->acceptor_config ? cfg->acceptor_config : "default acceptor config", err);
    goto out;
  }
  /* a takeover (handover.c) brings the listeners, so it comes before them;
   * with --workers (dir) workers_run does both, for all the workers */
  if (proxy_tls_setup(p, aconf, aconf_len) < 0 || fleet_new(p) < 0 ||
      (!dir && (handover_takeover(p) < 0 || listeners_start(p) < 0)))
    goto out;
  rc = 0;
out:
  revtun_options_free(opts);
  return rc;
}

/* Client connections first (cancelling their streams), then the tunnel
 * sessions (each reported with revtun_mark_dead), then the library. The
 * loop itself stays (signal events may still be on it): the caller frees
 * p->base. */
void proxy_close(struct proxy *p) {
  while (p->conns)
    conn_kill(p->conns, "proxy exiting");
  if (p->base) {
    conn_reap(p);
    up_close_all(p);
  }
  handover_free(p); /* before the pool: the tunnels that parked while draining */
  admin_stop(p);
  listeners_free(p);
  for (size_t k = 0; k < sizeof(p->inherited_fd) / sizeof(p->inherited_fd[0]); k++)
    if (p->inherited_fd[k] >= 0)
      close(p->inherited_fd[k]); /* e.g. an admin listener and no --admin-listen */
  if (p->acc)
    revtun_acceptor_free(p->acc);
  p->acc = NULL;
  proxy_tls_free(p); /* after the acceptor that used it */
  if (p->h)
    revtun_free(p->h); /* closes the idle tunnels, each with its tunnel_closed record */
  p->h = NULL;
  fleet_free(p); /* answers the lookups still waiting */
  if (p->n_xchg)
    logmsg("internal error: %u exchange(s) leaked", p->n_xchg);
  revtun_libevent_free(p->le);
  p->le = NULL;
  if (p->grace_ev)
    event_free(p->grace_ev);
  if (p->reap_ev)
    event_free(p->reap_ev);
  if (p->trim_ev)
    event_free(p->trim_ev);
  if (p->handshakes_ev)
    event_free(p->handshakes_ev);
  p->grace_ev = p->reap_ev = p->trim_ev = p->handshakes_ev = NULL;
  free(p->h1_fields);
  free(p->nv_scratch);
  p->h1_fields = NULL;
  p->nv_scratch = NULL;
}

/* ---------------------------------------------------------------- main */

static int header_name(const char *flag, const char *v, const char **out) {
  char *s;

  if (!*v)
    goto bad;
  if (!(s = strdup(v)))
    return -1;
  for (char *q = s; *q; q++) {
    if (!h1_is_tchar((unsigned char)*q)) {
      free(s);
      goto bad;
    }
    if (*q >= 'A' && *q <= 'Z')
      *q = (char)(*q + 32);
  }
  *out = s;
  return 0;
bad:
  fprintf(stderr, PROG ": %s: '%s' is not a header name\n", flag, v);
  return -1;
}

/* What the descriptor limit leaves for clients once a quarter of it (at
 * least 32) is kept for tunnels, the admin port and the program itself. */
static uint32_t default_max_clients(void) {
  struct rlimit rl;
  uint64_t n = 4096, keep;

  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    n = rl.rlim_cur;
  if (n > 1000000)
    n = 1000000;
  keep = n / 4 > 32 ? n / 4 : 32;
  return n > keep ? (uint32_t)(n - keep) : 1;
}

static int load(const char *flag, const char *path, uint8_t **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  if (!path)
    return 0;
  if (read_file(path, 16u << 20, buf, len) < 0) {
    fprintf(stderr, PROG ": %s %s: %s\n", flag, path, strerror(errno));
    return -1;
  }
  return 0;
}

/* Long options without a short letter (the letters are all taken). */
enum {
  OPT_TLS_CERT = 256,
  OPT_TLS_KEY,
  OPT_TLS_CA,
  OPT_TLS_CRL,
  OPT_FLEET_CACHE_TTL,
  OPT_HANDOFF_CA,
  OPT_HANDOFF_CERT,
  OPT_HANDOFF_KEY,
  OPT_HANDOFF_VERIFY,
  OPT_HANDOFF_TIMEOUT,
  OPT_HOST_ID_FORMAT,
  OPT_TENANT_ID_FORMAT,
  OPT_HANDOVER_SOCKET,
  OPT_TAKEOVER,
  OPT_WORKERS
};

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"tunnel-listen", required_argument, NULL, 'T'},
      {"listen", required_argument, NULL, 'l'},
      {"admin-listen", required_argument, NULL, 'a'},
      {"config", required_argument, NULL, 'c'},
      {"acceptor-config", required_argument, NULL, 'A'},
      {"node-header", required_argument, NULL, 'n'},
      {"cluster-header", required_argument, NULL, 'C'},
      {"tenant-header", required_argument, NULL, 't'},
      {"host-id-format", required_argument, NULL, OPT_HOST_ID_FORMAT},
      {"tenant-id-format", required_argument, NULL, OPT_TENANT_ID_FORMAT},
      {"keepalive-interval", required_argument, NULL, 'i'},
      {"keepalive-timeout", required_argument, NULL, 'k'},
      {"max-streams", required_argument, NULL, 'm'},
      {"grace-period", required_argument, NULL, 'g'},
      {"session-idle-timeout", required_argument, NULL, 'I'},
      {"max-header-list-size", required_argument, NULL, 'H'},
      {"max-headers", required_argument, NULL, 'F'},
      {"max-clients", required_argument, NULL, 'M'},
      {"client-auth", required_argument, NULL, 'u'},
      {"tunnel-tls-cert", required_argument, NULL, OPT_TLS_CERT},
      {"tunnel-tls-key", required_argument, NULL, OPT_TLS_KEY},
      {"tunnel-tls-ca", required_argument, NULL, OPT_TLS_CA},
      {"tunnel-tls-crl", required_argument, NULL, OPT_TLS_CRL},
      {"handoff-tls-ca", required_argument, NULL, OPT_HANDOFF_CA},
      {"handoff-tls-cert", required_argument, NULL, OPT_HANDOFF_CERT},
      {"handoff-tls-key", required_argument, NULL, OPT_HANDOFF_KEY},
      {"handoff-tls-verify", required_argument, NULL, OPT_HANDOFF_VERIFY},
      {"handoff-tls-timeout", required_argument, NULL, OPT_HANDOFF_TIMEOUT},
      {"fleet-redis", required_argument, NULL, 'R'},
      {"fleet-redis-password", required_argument, NULL, 'P'},
      {"fleet-redis-password-file", required_argument, NULL, 'W'},
      {"fleet-key-prefix", required_argument, NULL, 'K'},
      {"advertise", required_argument, NULL, 'D'},
      {"instance-id", required_argument, NULL, 'E'},
      {"fleet-ttl", required_argument, NULL, 'L'},
      {"fleet-timeout", required_argument, NULL, 'O'},
      {"fleet-cache-ttl", required_argument, NULL, OPT_FLEET_CACHE_TTL},
      {"handover-socket", required_argument, NULL, OPT_HANDOVER_SOCKET},
      {"takeover", required_argument, NULL, OPT_TAKEOVER},
      {"workers", required_argument, NULL, OPT_WORKERS},
      {"verbose", no_argument, NULL, 'v'},
      {"version", no_argument, NULL, 'V'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  static struct proxy p; /* zeroed */
  struct settings *cfg = &p.cfg;
  const char *node_h = "x-remote-node-id", *cluster_h = "x-remote-cluster-id",
             *tenant_h = "x-remote-tenant-id";
  const char *host_fmt = NULL, *tenant_fmt = NULL;
  uint8_t *conf = NULL, *aconf = NULL;
  size_t conf_len, aconf_len;
  struct event *sig_int = NULL, *sig_term = NULL, *sig_hup = NULL, *sig_usr1 = NULL;
  int c, rc = 1;

  cfg->tunnel_listen = "127.0.0.1:15000";
  cfg->listen = "127.0.0.1:8080";
  cfg->ka_interval_ms = 10000;
  cfg->ka_timeout_ms = 5000;
  cfg->grace_ms = 10000;
  cfg->session_idle_ms = 60000;
  cfg->handoff_timeout_ms = 5000;
  cfg->max_header_list = DEFAULT_MAX_HEADER_LIST;
  cfg->max_headers = DEFAULT_MAX_HEADERS;
  cfg->max_clients = default_max_clients();
  cfg->workers = 1;
  p.reserve_fd = p.admin_reserve_fd = -1;
  for (size_t k = 0; k < sizeof(p.inherited_fd) / sizeof(p.inherited_fd[0]); k++)
    p.inherited_fd[k] = -1;
  log_prog = PROG;
  recycle_libevent(); /* before libevent allocates anything */
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'T': cfg->tunnel_listen = optarg; break;
    case 'l': cfg->listen = optarg; break;
    case 'a': cfg->admin_listen = optarg; break;
    case 'c': cfg->config = optarg; break;
    case 'A': cfg->acceptor_config = optarg; break;
    case 'n': node_h = optarg; break;
    case 'C': cluster_h = optarg; break;
    case 't': tenant_h = optarg; break;
    case OPT_HOST_ID_FORMAT: host_fmt = optarg; break;
    case OPT_TENANT_ID_FORMAT: tenant_fmt = optarg; break;
    case 'v': verbose = 1; break;
    case 'u': cfg->client_auth = optarg; break;
    case OPT_TLS_CERT: cfg->tls_cert = optarg; break;
    case OPT_TLS_KEY: cfg->tls_key = optarg; break;
    case OPT_TLS_CA: cfg->tls_ca = optarg; break;
    case OPT_TLS_CRL: cfg->tls_crl = optarg; break;
    case OPT_HANDOFF_CA: cfg->handoff_ca = optarg; break;
    case OPT_HANDOFF_CERT: cfg->handoff_cert = optarg; break;
    case OPT_HANDOFF_KEY: cfg->handoff_key = optarg; break;
    case OPT_HANDOFF_VERIFY:
      if (strcmp(optarg, "node") && strcmp(optarg, "none")) {
        fprintf(stderr, PROG ": --handoff-tls-verify: node or none, not '%s'\n", optarg);
        return 2;
      }
      cfg->handoff_verify_none = !strcmp(optarg, "none");
      break;
    case OPT_HANDOFF_TIMEOUT:
      if (parse_duration_ms(optarg, &cfg->handoff_timeout_ms) < 0 || cfg->handoff_timeout_ms == 0 ||
          cfg->handoff_timeout_ms > 600000) {
        fprintf(stderr, PROG ": --handoff-tls-timeout: bad duration '%s' (up to 10m)\n", optarg);
        return 2;
      }
      break;
    case 'R': cfg->fleet_redis = optarg; break;
    case OPT_HANDOVER_SOCKET: cfg->handover_path = optarg; break;
    case OPT_TAKEOVER: cfg->takeover_path = optarg; break;
    case OPT_FLEET_CACHE_TTL:
      if (parse_duration_ms(optarg, &cfg->fleet_cache_ttl_ms) < 0 ||
          cfg->fleet_cache_ttl_ms > 3600000) {
        fprintf(stderr, PROG ": --fleet-cache-ttl: bad duration '%s' (at most 1h)\n", optarg);
        return 2;
      }
      cfg->fleet_cache_set = 1;
      break;
    case OPT_WORKERS:
      if (flag_u32("--workers", optarg, 1, WORKERS_MAX, &cfg->workers) < 0)
        return 2;
      break;
    case 'P': cfg->fleet_password = optarg; break;
    case 'W': cfg->fleet_password_file = optarg; break;
    case 'K': cfg->fleet_prefix = optarg; break;
    case 'D': cfg->advertise = optarg; break;
    case 'E': cfg->instance_id = optarg; break;
    case 'H':
      if (flag_u32("--max-header-list-size", optarg, 1024, 16u << 20, &cfg->max_header_list) < 0)
        return 2;
      break;
    case 'F':
      if (flag_u32("--max-headers", optarg, 8, 10000, &cfg->max_headers) < 0)
        return 2;
      break;
    case 'M':
      if (flag_u32("--max-clients", optarg, 1, 1000000, &cfg->max_clients) < 0)
        return 2;
      break;
    case 'i':
    case 'k':
    case 'I':
    case 'g':
    case 'L':
    case 'O': {
      uint32_t *dst = c == 'i'   ? &cfg->ka_interval_ms
                      : c == 'k' ? &cfg->ka_timeout_ms
                      : c == 'I' ? &cfg->session_idle_ms
                      : c == 'L' ? &cfg->fleet_ttl_ms
                      : c == 'O' ? &cfg->fleet_timeout_ms
                                 : &cfg->grace_ms;
      if (parse_duration_ms(optarg, dst) < 0 ||
          ((c == 'i' || c == 'k' || c == 'L' || c == 'O') && *dst == 0)) {
        fprintf(stderr, PROG ": bad duration '%s'\n", optarg);
        return 2;
      }
      break;
    }
    case 'm':
      if (flag_u32("--max-streams", optarg, 0, 1000000, &cfg->max_streams) < 0)
        return 2;
      break;
    case 'V': printf("%s\n", revtun_version(NULL)); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  if (header_name("--node-header", node_h, &cfg->node_header) < 0 ||
      header_name("--cluster-header", cluster_h, &cfg->cluster_header) < 0 ||
      header_name("--tenant-header", tenant_h, &cfg->tenant_header) < 0 ||
      select_setup(&p, host_fmt, tenant_fmt) < 0) {
    rc = 2;
    goto out;
  }
  if (fleet_check_settings(&p) < 0 || workers_check_settings(&p) < 0) {
    rc = 2;
    goto out;
  }
  if (load("--config", cfg->config, &conf, &conf_len) < 0 ||
      load("--acceptor-config", cfg->acceptor_config, &aconf, &aconf_len) < 0 ||
      (cfg->client_auth && access_load(&p, cfg->client_auth) < 0))
    goto out;
  signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an EPIPE, not a death */
  if (h2c_setup() < 0 || up_setup() < 0) {
    fprintf(stderr, PROG ": initialisation failed\n");
    goto out;
  }
  if (cfg->workers > 1) { /* N threads, each its own loop: workers.c */
    rc = workers_run(&p, conf, conf_len, aconf, aconf_len);
    goto out;
  }
  if (proxy_open(&p, conf, conf_len, aconf, aconf_len, NULL) < 0 ||
      (cfg->admin_listen && admin_start(&p, cfg->admin_listen) < 0) || handover_start(&p) < 0)
    goto out;
  fleet_start(&p);
  if (!p.auth)
    logmsg("clients are not authenticated (no --client-auth): anyone who reaches the client "
           "port reaches every node");
  sig_int = evsignal_new(p.base, SIGINT, signal_cb, &p);
  sig_term = evsignal_new(p.base, SIGTERM, signal_cb, &p);
  sig_hup = evsignal_new(p.base, SIGHUP, signal_cb, &p);
  sig_usr1 = evsignal_new(p.base, SIGUSR1, signal_cb, &p);
  if (!sig_int || !sig_term || !sig_hup || !sig_usr1 || event_add(sig_int, NULL) ||
      event_add(sig_term, NULL) || event_add(sig_hup, NULL) || event_add(sig_usr1, NULL))
    goto out;

  logmsg("ready: RPING every %u ms on idle tunnels, HTTP/2 PING every %u ms (timeout %u ms) on "
         "used ones; tunnel key %s (a cluster, else a node), tenant %s",
         revtun_acceptor_ping_interval_ms(p.acc), cfg->ka_interval_ms, cfg->ka_timeout_ms,
         host_fmt ? host_fmt : "from the node header, else the cluster header",
         tenant_fmt ? tenant_fmt : cfg->tenant_header);

  event_base_dispatch(p.base);
  rc = p.fatal ? 1 : 0;

out:
  proxy_close(&p);
  select_free(&p); /* shared by the workers' proxies */
  if (sig_int)
    event_free(sig_int);
  if (sig_term)
    event_free(sig_term);
  if (sig_hup)
    event_free(sig_hup);
  if (sig_usr1)
    event_free(sig_usr1);
  if (p.base)
    event_base_free(p.base);
  h2c_teardown();
  up_teardown();
  free(conf);
  free(aconf);
  free((char *)cfg->node_header);
  free((char *)cfg->cluster_header);
  free((char *)cfg->tenant_header);
  recycle_release();
  access_free(&p);
  if (rc == 0)
    logmsg("exited cleanly");
  return rc;
}
