/*
 * revtun-downstream-agent: the initiator side of an Envoy-style reverse
 * tunnel, i.e. what Envoy's downstream_socket_interface does.
 *
 * Each of --count slots dials the upstream proxy's tunnel listener, sends the
 * reverse-tunnel handshake exactly as Envoy's initiator encodes it, and then
 * "parks" the accepted connection: RPINGs from the upstream are echoed until
 * the first other byte shows that the upstream has taken the socket as an
 * HTTP/2 connection.  From then on this process is the HTTP/2 *server* on
 * that socket and forwards every stream to a local HTTP/1.1 backend, while
 * the slot dials a fresh parked tunnel so --count idle tunnels stay ready.
 *
 * This file: flags, signals and shutdown. See agent.h for the others.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/* ------------------------------------------------------------ lifecycle */

static void grace_cb(evutil_socket_t fd, short what, void *arg) {
  struct agent *ag = arg;

  (void)fd;
  (void)what;
  logmsg("grace period over, closing remaining tunnels");
  event_base_loopbreak(ag->base);
}

static void agent_stop(struct agent *ag) {
  struct timeval grace = {DRAIN_GRACE_S, 0};
  struct tunnel *t, *next;
  unsigned i;

  ag->stopping = 1;
  for (i = 0; i < ag->cfg.count; i++) {
    struct slot *sl = &ag->slots[i];

    evtimer_del(sl->timer);
    slot_close(sl);
  }
  while (ag->idle)
    bconn_free(ag->idle);
  for (t = ag->tunnels; t; t = next) {
    next = t->next;
    if (t->dying)
      continue;
    /* GOAWAY with the last seen id: in-flight streams may finish. */
    nghttp2_submit_goaway(t->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(t->h2),
                          NGHTTP2_NO_ERROR, NULL, 0);
    tunnel_want_flush(t);
  }
  if (!ag->tunnels) {
    event_base_loopbreak(ag->base);
    return;
  }
  logmsg("GOAWAY sent, letting in-flight streams finish (up to %ds)", DRAIN_GRACE_S);
  ag->grace_ev = evtimer_new(ag->base, grace_cb, ag);
  if (ag->grace_ev)
    evtimer_add(ag->grace_ev, &grace);
}

static void report_reconnects(const struct agent *ag) {
  logmsg("reconnects=%" PRIu64, ag->reconnects);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
  struct agent *ag = arg;

  (void)what;
  if (sig == SIGUSR1) {
    report_reconnects(ag);
    return;
  }
  if (ag->stopping) {
    logmsg("second signal, exiting now");
    event_base_loopbreak(ag->base);
    return;
  }
  logmsg("%s received, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  agent_stop(ag);
}

static void hup_cb(evutil_socket_t sig, short what, void *arg) {
  (void)sig, (void)what;
  agent_tls_reload(arg);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f) {
  fputs("Usage: " PROG " --upstream ADDR:PORT --node ID --cluster ID --tenant ID [OPTIONS]\n"
        "Initiator side of an Envoy reverse tunnel: keeps parked tunnels to the\n"
        "upstream proxy, answers RPING, serves HTTP/2 on taken tunnels and\n"
        "forwards each request to a local HTTP/1.1 backend.\n"
        "\n"
        "  --upstream ADDR:PORT[,...]    tunnel listener of the upstream proxy (required);\n"
        "                                repeat it or give a comma list for the proxies\n"
        "                                of a fleet: tunnels go to the first; when a\n"
        "                                proxy refuses, resets or times out a dial, or\n"
        "                                answers 429/5xx, the next one is dialed (up to\n"
        "                                16 proxies)\n"
        "  --bind ADDR                   source address of the tunnels (an IP address;\n"
        "                                default: the kernel's choice)\n"
        "  --node ID                     x-envoy-reverse-tunnel-node-id (required)\n"
        "  --cluster ID                  x-envoy-reverse-tunnel-cluster-id (required)\n"
        "  --tenant ID                   x-envoy-reverse-tunnel-tenant-id (required)\n"
        "  --count N                     parked tunnels to keep (default 1)\n"
        "  --backend ADDR:PORT           HTTP/1.1 backend (default 127.0.0.1:8081)\n"
        "  --path PATH                   handshake path (default /reverse_connections/request)\n"
        "  --upstream-cluster-name NAME  send x-envoy-reverse-tunnel-upstream-cluster-name\n"
        "  --upgrade                     use the HTTP upgrade handshake (expects 101)\n"
        "  --max-backoff-ms N            reconnect backoff cap (default 30000)\n"
        "  --max-header-list-size N      decoded header bytes per request from the\n"
        "                                upstream (default 65536)\n"
        "  --max-headers N               header fields per request (default 100)\n"
        "  --tls                         dial with TLS: the handshake runs inside it,\n"
        "                                the parked tunnel is raw TCP after a quiet\n"
        "                                shutdown (needs --ca); with --cert, the\n"
        "                                upstream opens a new TLS session after the\n"
        "                                handoff and the agent serves it (ALPN h2,\n"
        "                                the same certificate; a cleartext HTTP/2\n"
        "                                preface is refused). SIGHUP reloads --ca,\n"
        "                                --cert and --key\n"
        "  --ca FILE                     CA bundle the upstream's certificate must\n"
        "                                chain to\n"
        "  --cert FILE, --key FILE       client certificate chain and key to present\n"
        "  --sni NAME                    server name to send and verify (default: the\n"
        "                                host of the --upstream dialed; an IP is checked\n"
        "                                against IP SANs and sends no SNI)\n"
        "  --verbose                     log every RPING and request\n"
        "  --help                        show this help and exit\n"
        "\n"
        "SIGUSR1 (and exiting) logs reconnects=N: re-dials after a failure since the\n"
        "first tunnel parked.\n",
        f);
}

/* host:port or [v6]:port, resolved once; the numeric text form goes into
 * the handshake's host: field. The port must not be 0. */
static int resolve(const char *spec, struct addr *a) {
  if (addr_resolve(spec, 0, &a->ss, &a->len) < 0)
    return -1;
  addr_format((struct sockaddr *)&a->ss, a->len, a->text, sizeof(a->text));
  return ((struct sockaddr_in *)&a->ss)->sin_port == 0 ? -1 : 0;
}

/* One --upstream value: ADDR:PORT, or a comma list of them, appended to
 * cfg->upstream (specs keeps each one's text for TLS names). 0, or -1 with
 * the reason printed. */
static int add_upstreams(struct config *cfg, char *value, const char **specs) {
  char *save = NULL, *one;

  for (one = strtok_r(value, ",", &save); one; one = strtok_r(NULL, ",", &save)) {
    if (cfg->n_upstreams == MAX_UPSTREAMS) {
      fprintf(stderr, PROG ": at most %d --upstream proxies\n", MAX_UPSTREAMS);
      return -1;
    }
    if (resolve(one, &cfg->upstream[cfg->n_upstreams]) < 0) {
      fprintf(stderr, PROG ": cannot resolve --upstream '%s'\n", one);
      return -1;
    }
    specs[cfg->n_upstreams++] = one;
  }
  return 0;
}

/* --bind: a numeric IPv4 or IPv6 address, port 0 (the kernel picks one). */
static int bind_address(const char *ip, struct addr *a) {
  struct sockaddr_in *v4 = (struct sockaddr_in *)&a->ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a->ss;

  memset(a, 0, sizeof(*a));
  if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    a->len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    a->len = sizeof(*v6);
  } else {
    return -1;
  }
  addr_format((struct sockaddr *)&a->ss, a->len, a->text, sizeof(a->text));
  return 0;
}

/* Values end up verbatim in header lines: refuse anything that could split them. */
static int header_safe(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x21 || *s == 0x7f)
      return 0;
  return 1;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"upstream", required_argument, NULL, 'u'},
      {"bind", required_argument, NULL, 'B'},
      {"node", required_argument, NULL, 'n'},
      {"cluster", required_argument, NULL, 'c'},
      {"tenant", required_argument, NULL, 't'},
      {"count", required_argument, NULL, 'N'},
      {"backend", required_argument, NULL, 'b'},
      {"path", required_argument, NULL, 'p'},
      {"upstream-cluster-name", required_argument, NULL, 'U'},
      {"upgrade", no_argument, NULL, 'g'},
      {"max-backoff-ms", required_argument, NULL, 'm'},
      {"max-header-list-size", required_argument, NULL, 'H'},
      {"max-headers", required_argument, NULL, 'F'},
      {"tls", no_argument, NULL, 'S'},
      {"ca", required_argument, NULL, 'A'},
      {"cert", required_argument, NULL, 'E'},
      {"key", required_argument, NULL, 'K'},
      {"sni", required_argument, NULL, 'I'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  struct agent ag;
  struct config *cfg = &ag.cfg;
  const char *upstream_specs[MAX_UPSTREAMS], *backend = "127.0.0.1:8081", *bind_ip = NULL;
  char upstream_list[MAX_UPSTREAMS * (sizeof(cfg->upstream[0].text) + 2) + 8];
  size_t listed = 0;
  struct event *sig_int, *sig_term, *sig_hup, *sig_usr1;
  char tls_err[512];
  unsigned i;
  int c;

  memset(&ag, 0, sizeof(ag));
  log_prog = PROG;
  recycle_libevent(); /* before libevent allocates anything */
  cfg->max_header_list = DEFAULT_MAX_HEADER_LIST;
  cfg->max_headers = DEFAULT_MAX_HEADERS;
  cfg->count = 1;
  cfg->max_backoff_ms = 30000;
  cfg->path = "/reverse_connections/request";
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'u':
      if (add_upstreams(cfg, optarg, upstream_specs) < 0)
        return 2;
      break;
    case 'B': bind_ip = optarg; break;
    case 'n': cfg->node = optarg; break;
    case 'c': cfg->cluster = optarg; break;
    case 't': cfg->tenant = optarg; break;
    case 'b': backend = optarg; break;
    case 'p': cfg->path = optarg; break;
    case 'U': cfg->upstream_cluster = optarg; break;
    case 'g': cfg->upgrade = 1; break;
    case 'v': verbose = 1; break;
    case 'S': cfg->tls = 1; break;
    case 'A': cfg->ca = optarg; break;
    case 'E': cfg->cert = optarg; break;
    case 'K': cfg->key = optarg; break;
    case 'I': cfg->sni = optarg; break;
    case 'N':
      if (flag_u32("--count", optarg, 1, 10000, &cfg->count) < 0)
        return 2;
      break;
    case 'm':
      if (flag_u32("--max-backoff-ms", optarg, 1, 86400000, &cfg->max_backoff_ms) < 0)
        return 2;
      break;
    case 'H':
      if (flag_u32("--max-header-list-size", optarg, 1024, 16u << 20, &cfg->max_header_list) < 0)
        return 2;
      break;
    case 'F':
      if (flag_u32("--max-headers", optarg, 8, 10000, &cfg->max_headers) < 0)
        return 2;
      break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc || !cfg->n_upstreams || !cfg->node || !cfg->cluster || !cfg->tenant) {
    fprintf(stderr, PROG ": --upstream, --node, --cluster and --tenant are required\n");
    usage(stderr);
    return 2;
  }
  if (!header_safe(cfg->node) || !header_safe(cfg->cluster) || !header_safe(cfg->tenant) ||
      !header_safe(cfg->path) || cfg->path[0] != '/' ||
      (cfg->upstream_cluster && !header_safe(cfg->upstream_cluster))) {
    fprintf(stderr, PROG ": identifiers and path must be printable ASCII without spaces\n");
    return 2;
  }
  if (bind_ip && bind_address(bind_ip, &cfg->bind) < 0) {
    fprintf(stderr, PROG ": --bind '%s' is not an IP address\n", bind_ip);
    return 2;
  }
  if (resolve(backend, &cfg->backend) < 0) {
    fprintf(stderr, PROG ": cannot resolve --backend '%s'\n", backend);
    return 2;
  }
  if (!cfg->tls && (cfg->ca || cfg->cert || cfg->key || cfg->sni)) {
    fprintf(stderr, PROG ": --ca, --cert, --key and --sni need --tls\n");
    return 2;
  }
  if (agent_tls_setup(&ag, upstream_specs, tls_err, sizeof(tls_err)) < 0) {
    fprintf(stderr, PROG ": %s\n", tls_err);
    return 2;
  }

  /* A peer that vanishes mid-write must not kill the process. */
  signal(SIGPIPE, SIG_IGN);
  srand((unsigned)(now_epoch_ms() ^ (uint64_t)getpid()));

  if (h2_setup() < 0 || !(ag.base = event_base_new()) ||
      !(ag.slots = calloc(cfg->count, sizeof(*ag.slots)))) {
    fprintf(stderr, PROG ": initialisation failed\n");
    return 1;
  }
  {
    const struct timeval tmo = {BACKEND_TIMEOUT_S, 0};
    /* Every exchange arms this one timeout: a queue, not a heap. */
    ag.backend_tmo = event_base_init_common_timeout(ag.base, &tmo);
  }
  sig_int = evsignal_new(ag.base, SIGINT, signal_cb, &ag);
  sig_term = evsignal_new(ag.base, SIGTERM, signal_cb, &ag);
  sig_hup = evsignal_new(ag.base, SIGHUP, hup_cb, &ag);
  event_add(sig_int, NULL);
  event_add(sig_term, NULL);
  event_add(sig_hup, NULL);
  sig_usr1 = evsignal_new(ag.base, SIGUSR1, signal_cb, &ag);
  event_add(sig_usr1, NULL);

  upstream_list[0] = '\0';
  for (i = 1; i < cfg->n_upstreams && listed < sizeof(upstream_list); i++)
    listed += (size_t)snprintf(upstream_list + listed, sizeof(upstream_list) - listed, "%s%s",
                               i == 1 ? " (then " : ", ", cfg->upstream[i].text);
  if (cfg->n_upstreams > 1 && listed < sizeof(upstream_list) - 1)
    snprintf(upstream_list + listed, sizeof(upstream_list) - listed, ")");
  logmsg("node %s cluster %s tenant %s: keeping %u tunnel(s) to %s%s%s, "
         "backend %s",
         cfg->node, cfg->cluster, cfg->tenant, cfg->count, cfg->upstream[0].text, upstream_list,
         cfg->tls ? " over TLS" : "", cfg->backend.text);
  for (i = 0; i < cfg->count; i++) {
    ag.slots[i].ag = &ag;
    ag.slots[i].idx = i;
    ag.slots[i].sk.fd = -1;
    ag.slots[i].timer = evtimer_new(ag.base, slot_timer_cb, &ag.slots[i]);
    slot_connect(&ag.slots[i]);
  }

  event_base_dispatch(ag.base);

  if (!ag.stopping)
    agent_stop(&ag); /* frees parked tunnels and idle backends */
  while (ag.tunnels)
    tunnel_free(ag.tunnels);
  for (i = 0; i < cfg->count; i++) {
    event_free(ag.slots[i].timer);
    if (ag.slots[i].in)
      evbuffer_free(ag.slots[i].in);
  }
  free(ag.slots);
  if (ag.grace_ev)
    event_free(ag.grace_ev);
  event_free(sig_int);
  event_free(sig_term);
  event_free(sig_hup);
  event_free(sig_usr1);
  event_base_free(ag.base);
  h2_teardown();
  agent_tls_free(&ag);
  recycle_release();
  report_reconnects(&ag);
  logmsg("exiting");
  return 0;
}
