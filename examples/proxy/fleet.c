/*
 * revtun-upstream-proxy: a fleet of proxies sharing one tunnel directory on
 * Redis (--fleet-redis, libupstream-revtun-redis).
 *
 * The directory observes the handle's reporter events and publishes the
 * nodes and clusters this instance holds tunnels for, under --instance-id
 * with the --advertise address (this instance's h2c client listener). A
 * request that up_route() cannot serve here is looked up; when another
 * instance holds the node, the request goes to that instance as an h2c
 * stream (upstream.c's sessions, on a connection to its address) with
 * x-revtun-forwarded: <our id>. A request that arrives with that header
 * and has no local tunnel is answered here, never forwarded again. Every
 * answer made here names its reason in x-revtun-error.
 *
 * Nothing read back from Redis is trusted: instance ids and addresses are
 * length-checked, printable, copied before use, and an address must be a
 * numeric IP:PORT (no name resolution in the loop).
 */
#include "proxy.h"

#if HAVE_FLEET
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

#include <revtun/redis.h>

#define FWD_HEADER "x-revtun-forwarded"
#define ERR_HEADER "x-revtun-error"
#define MAX_INSTANCE 128 /* bytes of an instance id, as the directory allows */
#define MAX_ADDR 64      /* "[v6]:port" */
#define MAX_PASSWORD 4096
#define DEFAULT_TTL_MS 15000
#define DEFAULT_TIMEOUT_MS 1000

struct fleet {
  struct proxy *p;
  revtun_redis_t *r;
  char host[256];
  uint16_t port;
  char *password; /* read from --fleet-redis-password-file */
  int stopping;   /* revtun_redis_stop() is in flight */
  uint64_t lookups, forwarded, forward_failed, loops_refused, unknown, unavailable, rejected, stale;
};

/* 1 to max bytes, each printable ASCII without space. */
static int printable(const char *s, size_t len, size_t max) {
  if (!s || len == 0 || len > max)
    return 0;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
      return 0;
  return 1;
}

/* A numeric "ip:port" or "[ipv6]:port" (NUL-terminated, port not 0) into
 * sa. 0, or -1. */
static int numeric_addr(const char *spec, struct sockaddr_storage *ss, socklen_t *len) {
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  char host[MAX_ADDR + 1];
  uint16_t port;

  if (hostport_split(spec, host, sizeof(host), &port) < 0 || port == 0)
    return -1;
  memset(ss, 0, sizeof(*ss));
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof(*v4);
    return 0;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof(*v6);
    return 0;
  }
  return -1;
}

static int is_wildcard(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET)
    return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
  return !memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, &in6addr_any, sizeof(in6addr_any));
}

/* ------------------------------------------------------------- settings */

int fleet_check_settings(struct proxy *p) {
  struct settings *cfg = &p->cfg;
  struct sockaddr_storage ss;
  socklen_t len;

  if (!cfg->fleet_redis) {
    if (cfg->fleet_password || cfg->fleet_password_file || cfg->fleet_prefix || cfg->advertise ||
        cfg->instance_id || cfg->fleet_ttl_ms || cfg->fleet_timeout_ms || cfg->fleet_cache_set) {
      fprintf(stderr, PROG ": the --fleet-*, --advertise and --instance-id options need "
                           "--fleet-redis\n");
      return -1;
    }
    return 0;
  }
  /* A handover moves tunnels the directory lists under this instance to
   * another one, which would not publish them, while this one withdraws
   * them when it exits: refused rather than a directory that lies. */
  if (cfg->handover_path || cfg->takeover_path) {
    fprintf(stderr, PROG ": --fleet-redis cannot be combined with --handover-socket or "
                         "--takeover: the directory would not follow the tunnels that move\n");
    return -1;
  }
  if (cfg->fleet_password && cfg->fleet_password_file) {
    fprintf(stderr, PROG ": --fleet-redis-password and --fleet-redis-password-file are "
                         "exclusive\n");
    return -1;
  }
  if (!cfg->advertise) {
    if (numeric_addr(cfg->listen, &ss, &len) < 0 || is_wildcard(&ss)) {
      fprintf(stderr,
              PROG ": --fleet-redis: --listen %s is not a numeric address other "
                   "instances can dial: give --advertise IP:PORT\n",
              cfg->listen);
      return -1;
    }
    cfg->advertise = cfg->listen;
  }
  if (strlen(cfg->advertise) > MAX_ADDR || numeric_addr(cfg->advertise, &ss, &len) < 0 ||
      is_wildcard(&ss)) {
    fprintf(stderr, PROG ": --advertise '%s' is not a numeric IP:PORT other instances can dial\n",
            cfg->advertise);
    return -1;
  }
  if (!cfg->instance_id)
    cfg->instance_id = cfg->advertise;
  if (!printable(cfg->instance_id, strlen(cfg->instance_id), MAX_INSTANCE)) {
    fprintf(stderr, PROG ": --instance-id must be 1 to %d printable bytes without spaces\n",
            MAX_INSTANCE);
    return -1;
  }
  if (!cfg->fleet_ttl_ms)
    cfg->fleet_ttl_ms = DEFAULT_TTL_MS;
  if (cfg->fleet_ttl_ms < 300 || cfg->fleet_ttl_ms > 86400000) {
    fprintf(stderr, PROG ": --fleet-ttl must be between 300ms and 24h\n");
    return -1;
  }
  if (!cfg->fleet_timeout_ms)
    cfg->fleet_timeout_ms = DEFAULT_TIMEOUT_MS;
  if (cfg->fleet_timeout_ms < 10 || cfg->fleet_timeout_ms > 600000) {
    fprintf(stderr, PROG ": --fleet-timeout must be between 10ms and 10m\n");
    return -1;
  }
  return 0;
}

/* ----------------------------------------------------------- directory */

static void on_log(revtun_redis_t *r, int level, const char *msg, void *user) {
  (void)r, (void)user;
  logmsg("fleet: %s%s", level <= REVTUN_LOG_WARN ? "warning: " : "", msg);
}

void fleet_on_event(revtun_t *h, const revtun_event_t *ev, void *user) {
  struct proxy *p = revtun_libevent_user(user);

  if (p && p->fleet && p->fleet->r)
    revtun_redis_on_event(h, ev, p->fleet->r);
}

static int read_password(struct fleet *f, const char *path) {
  uint8_t *buf;
  size_t len;

  if (read_file(path, MAX_PASSWORD, &buf, &len) < 0) {
    fprintf(stderr, PROG ": --fleet-redis-password-file %s: %s\n", path, strerror(errno));
    return -1;
  }
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
    len--;
  buf[len] = '\0';
  if (len == 0 || memchr(buf, '\0', len)) {
    fprintf(stderr, PROG ": --fleet-redis-password-file %s: empty, or holds a NUL byte\n", path);
    free(buf);
    return -1;
  }
  f->password = (char *)buf;
  return 0;
}

int fleet_new(struct proxy *p) {
  struct settings *cfg = &p->cfg;
  struct fleet *f;
  revtun_redis_options_t *o = NULL;
  uint32_t beat = cfg->fleet_ttl_ms / 3, backoff_max;
  char err[256] = "out of memory";
  int rc = -1;

  if (!cfg->fleet_redis)
    return 0;
  if (!(f = calloc(1, sizeof(*f)))) {
    fprintf(stderr, PROG ": out of memory\n");
    return -1;
  }
  f->p = p;
  p->fleet = f;
  if (hostport_split(cfg->fleet_redis, f->host, sizeof(f->host), &f->port) < 0 || !f->port) {
    fprintf(stderr, PROG ": --fleet-redis '%s' is not HOST:PORT\n", cfg->fleet_redis);
    return -1;
  }
  if (cfg->fleet_password_file && read_password(f, cfg->fleet_password_file) < 0)
    return -1;
  /* A Redis that went away is looked for again at least every heartbeat. */
  backoff_max = beat < 5000 ? beat : 5000;
  if (backoff_max < 100)
    backoff_max = 100;
  if (revtun_redis_options_new(&o) != REVTUN_OK ||
      revtun_redis_options_set_server(o, f->host, f->port) != REVTUN_OK ||
      ((cfg->fleet_password || f->password) &&
       revtun_redis_options_set_auth(o, NULL, f->password ? f->password : cfg->fleet_password) !=
           REVTUN_OK) ||
      (cfg->fleet_prefix && revtun_redis_options_set_prefix(o, cfg->fleet_prefix) != REVTUN_OK) ||
      revtun_redis_options_set_instance(o, cfg->instance_id, cfg->advertise) != REVTUN_OK ||
      revtun_redis_options_set_heartbeat(o, beat, cfg->fleet_ttl_ms) != REVTUN_OK ||
      revtun_redis_options_set_backoff(o, 100, backoff_max) != REVTUN_OK ||
      revtun_redis_options_set_timeout(o, cfg->fleet_timeout_ms) != REVTUN_OK ||
      (cfg->fleet_cache_set &&
       revtun_redis_options_set_cache_ttl(o, cfg->fleet_cache_ttl_ms) != REVTUN_OK) ||
      revtun_redis_options_set_tenant_isolation(o, revtun_config_tenant_isolation(p->h)) !=
          REVTUN_OK ||
      revtun_redis_options_set_log_cb(o, on_log, verbose ? REVTUN_LOG_INFO : REVTUN_LOG_WARN,
                                      NULL) != REVTUN_OK) {
    snprintf(err, sizeof(err), "a --fleet-* value is refused by the directory");
    goto out;
  }
  if (revtun_redis_new(&f->r, p->base, o, err, sizeof(err)) != REVTUN_OK)
    goto out;
  rc = 0;
out:
  if (rc < 0)
    fprintf(stderr, PROG ": --fleet-redis: %s\n", err);
  revtun_redis_options_free(o);
  return rc;
}

static void on_started(revtun_redis_t *r, int status, void *user) {
  struct proxy *p = user;

  (void)r;
  switch (status) {
  case REVTUN_OK:
    logmsg("fleet: instance %s registered in Redis %s:%u; other instances forward to %s",
           p->cfg.instance_id, p->fleet->host, p->fleet->port, p->cfg.advertise);
    break;
  case REVTUN_REDIS_E_BUSY:
  case REVTUN_REDIS_E_REJECTED:
    logmsg("fleet: instance id %s is held by another live instance (%s): refusing to run",
           p->cfg.instance_id, revtun_redis_status_name(status));
    p->fatal = 1;
    event_base_loopbreak(p->base);
    break;
  case REVTUN_REDIS_E_CANCELLED: break;
  default:
    logmsg("fleet: Redis %s:%u unavailable: local tunnels are served, requests for other "
           "instances' nodes get 503 until it is back (retrying in the background)",
           p->fleet->host, p->fleet->port);
  }
}

void fleet_start(struct proxy *p) {
  if (p->fleet && revtun_redis_start(p->fleet->r, on_started, p) != REVTUN_OK) {
    logmsg("fleet: cannot start the directory");
    p->fatal = 1;
    event_base_loopbreak(p->base);
  }
}

static void on_stopped(revtun_redis_t *r, int status, void *user) {
  struct proxy *p = user;

  (void)r;
  VLOG("fleet: instance %s released (%s)", p->cfg.instance_id, revtun_redis_status_name(status));
  p->fleet->stopping = 0;
  proxy_check_done(p);
}

/* Shutdown: the instance id is given back, so peers stop forwarding here. */
void fleet_stop(struct proxy *p) {
  if (p->fleet && revtun_redis_stop(p->fleet->r, on_stopped, p) == REVTUN_OK)
    p->fleet->stopping = 1;
}

int fleet_stopping(const struct proxy *p) { return p->fleet && p->fleet->stopping; }

/* After the handle is freed (its last events reached the directory); the
 * lookups still waiting are answered REVTUN_REDIS_E_CANCELLED here. */
void fleet_free(struct proxy *p) {
  struct fleet *f = p->fleet;

  if (!f)
    return;
  if (f->r)
    revtun_redis_free(f->r);
  f->r = NULL;
  if (f->password) {
    explicit_bzero(f->password, strlen(f->password));
    free(f->password);
  }
  free(f);
  p->fleet = NULL;
}

/* -------------------------------------------------------------- routing */

static void reply(struct xchg *x, int status, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply(struct xchg *x, int status, const char *reason, const char *fmt, ...) {
  char text[640];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  xchg_local_reply_hdr(x, status, text, ERR_HEADER, reason);
}

/* The node or cluster the request names (x->target points into x->req,
 * which hdrs_add may move). */
static const char *target(struct xchg *x) { return x->key; }

/* The directory names instance/address (owner) for the request: send it there. */
static void forward(struct xchg *x, const revtun_redis_owner_t *owner) {
  struct proxy *p = x->p;
  struct fleet *f = p->fleet;
  const char *inst, *addr;
  size_t il = 0, al = 0;
  char id[MAX_INSTANCE + 1], where[MAX_ADDR + 1], why[256] = "";
  struct sockaddr_storage ss;
  socklen_t sl;
  struct upsess *u;

  inst = revtun_redis_owner_instance(owner, &il);
  addr = revtun_redis_owner_address(owner, &al);
  if (!printable(inst, il, MAX_INSTANCE) || !printable(addr, al, MAX_ADDR)) {
    f->rejected++;
    reply(x, 502, "directory-invalid", "the fleet directory holds an invalid entry for %s",
          x->target);
    return;
  }
  memcpy(id, inst, il);
  id[il] = '\0';
  memcpy(where, addr, al);
  where[al] = '\0';
  if (numeric_addr(where, &ss, &sl) < 0) {
    f->rejected++;
    reply(x, 502, "directory-invalid",
          "the fleet directory gives instance %s of %s an address that is not IP:PORT", id,
          x->target);
    return;
  }
  if (!strcmp(id, p->cfg.instance_id)) {
    /* our own entry, published before the tunnel went away */
    f->stale++;
    reply(x, 503, "unknown-node",
          "no reverse tunnel for %s: the fleet directory still names this instance", x->target);
    return;
  }
  if (!x->fleet_fwd) {
    if (hdrs_add(&x->req, FWD_HEADER, strlen(FWD_HEADER), p->cfg.instance_id,
                 strlen(p->cfg.instance_id)) < 0 ||
        (x->auth && hdrs_add(&x->req, "authorization", 13, x->auth, x->auth_len) < 0)) {
      x->target = target(x);
      reply(x, 503, "out-of-memory", "cannot forward %s: out of memory", x->target);
      return;
    }
    x->fleet_fwd = 1;
    x->target = target(x);
  }
  if (!(u = up_for_peer(p, id, where, (struct sockaddr *)&ss, sl, why, sizeof(why))) ||
      up_submit(u, x) < 0) {
    f->forward_failed++;
    reply(x, 502, "peer-unreachable", "forwarding %s to instance %s at %s failed: %s", x->target,
          id, where, *why ? why : "cannot open a stream");
    return;
  }
  f->forwarded++;
  VLOG("%s: forwarded to instance %s at %s", x->target, id, where);
}

static void answer(struct xchg *x, int status, const revtun_redis_owner_t *owner) {
  struct fleet *f = x->p->fleet;

  switch (status) {
  case REVTUN_OK: forward(x, owner); break;
  case REVTUN_E_NOT_FOUND:
    f->unknown++;
    reply(x, 503, "unknown-node", "no reverse tunnel for %s on any instance of the fleet",
          x->target);
    break;
  case REVTUN_REDIS_E_REJECTED:
    f->rejected++;
    reply(x, 502, "directory-invalid", "the fleet directory holds an invalid entry for %s",
          x->target);
    break;
  case REVTUN_REDIS_E_CANCELLED:
    reply(x, 503, "shutting-down", "no reverse tunnel for %s here, and this proxy is stopping",
          x->target);
    break;
  default:
    f->unavailable++;
    reply(x, 503, "directory-unavailable",
          "no reverse tunnel for %s here, and the fleet directory (Redis) is unavailable",
          x->target);
  }
}

static void on_owner(revtun_redis_t *r, int status, const revtun_redis_owner_t *owner, void *user) {
  struct xchg *x = user;

  (void)r;
  x->fleet_wait = 0;
  if (x->c) {
    answer(x, status, owner);
    if (x->c)
      xchg_request_data(x); /* the body waited: on its way, or drained */
  }
  xchg_release(x); /* without a client, the body goes with x */
}

/* up_route() found no local tunnel for x. 1 when the fleet takes the
 * request (answered now or later), 0 when the caller answers 503 with why. */
int fleet_route(struct xchg *x, char *why, size_t whylen) {
  struct proxy *p = x->p;
  struct fleet *f = p->fleet;
  const char *tenant = x->key_tenant[0] ? x->key_tenant : NULL;
  const nghttp2_nv *from = hdrs_find(&x->req, FWD_HEADER);
  int is_cluster, rc;

  (void)why, (void)whylen;
  if (!x->key_ok)
    return 0; /* no destination: the caller's "missing header" */
  x->target = x->key;
  is_cluster = select_names_cluster(p, x);
  if (from && !x->fleet_fwd) {
    char who[64];
    f->loops_refused++;
    reply(x, 503, "forward-loop",
          "no reverse tunnel for %s at instance %s (request forwarded by %s, not forwarded "
          "again)",
          x->target, p->cfg.instance_id,
          log_safe(who, sizeof(who), (const char *)from->value, from->valuelen));
    return 1;
  }
  f->lookups++;
  x->fleet_wait = 1;
  xchg_hold(x);
  rc = is_cluster ? revtun_redis_lookup_cluster(f->r, x->key, tenant, on_owner, x)
                  : revtun_redis_lookup_node(f->r, x->key, tenant, on_owner, x);
  if (rc != REVTUN_OK) /* the callback will not come */
    on_owner(f->r, rc == REVTUN_E_NOT_FOUND ? rc : REVTUN_REDIS_E_UNAVAILABLE, NULL, x);
  return 1;
}

/* ---------------------------------------------------------------- stats */

struct stat_ctx {
  struct evbuffer *b;
  int prom;
};

/* "redis.round_trips" -> revtun_proxy_fleet_redis_round_trips */
static int dir_stat(const char *name, int type, uint64_t value, void *user) {
  struct stat_ctx *c = user;
  char n[96];
  size_t i;

  for (i = 0; name[i] && i < 80; i++)
    n[i] = name[i] == '.' ? '_' : name[i];
  n[i] = '\0';
  char full[112];
  snprintf(full, sizeof(full), "fleet_%s", n);
  admin_metric(c->b, c->prom, full, type == REVTUN_STAT_GAUGE ? "gauge" : "counter", value);
  return 0;
}

void fleet_stats(struct proxy *p, struct evbuffer *b, int prom) {
  struct fleet *f = p->fleet;
  struct stat_ctx c = {b, prom};
  unsigned peers = 0;

  for (const struct node *n = p->peers; n; n = n->next)
    peers += n->n_sessions;
  admin_metric(b, prom, "fleet_lookups", "counter", f->lookups);
  admin_metric(b, prom, "fleet_forwarded", "counter", f->forwarded);
  admin_metric(b, prom, "fleet_forward_failures", "counter", f->forward_failed);
  admin_metric(b, prom, "fleet_loops_refused", "counter", f->loops_refused);
  admin_metric(b, prom, "fleet_unknown", "counter", f->unknown);
  admin_metric(b, prom, "fleet_directory_unavailable", "counter", f->unavailable);
  admin_metric(b, prom, "fleet_directory_rejected", "counter", f->rejected);
  admin_metric(b, prom, "fleet_stale_self", "counter", f->stale);
  admin_metric(b, prom, "fleet_peer_sessions", "gauge", peers);
  if (f->r)
    revtun_redis_stats_foreach(f->r, dir_stat, &c);
}

#else /* built without hiredis: --fleet-redis is refused */

int fleet_check_settings(struct proxy *p) {
  const struct settings *cfg = &p->cfg;

  if (cfg->fleet_redis || cfg->fleet_password || cfg->fleet_password_file || cfg->fleet_prefix ||
      cfg->advertise || cfg->instance_id || cfg->fleet_ttl_ms || cfg->fleet_timeout_ms ||
      cfg->fleet_cache_set) {
    fprintf(stderr, PROG ": built without hiredis: no --fleet-* options\n");
    return -1;
  }
  return 0;
}
int fleet_new(struct proxy *p) { return p->fleet ? -1 : 0; }
void fleet_on_event(revtun_t *h, const revtun_event_t *ev, void *user) {
  (void)h, (void)ev, (void)user;
}
void fleet_start(struct proxy *p) { (void)p; }
void fleet_stop(struct proxy *p) { (void)p; }
int fleet_stopping(const struct proxy *p) { return p->fleet != NULL; }
void fleet_free(struct proxy *p) { (void)p; }
int fleet_route(struct xchg *x, char *why, size_t whylen) {
  return (void)x, (void)why, (void)whylen, 0;
}
void fleet_stats(struct proxy *p, struct evbuffer *b, int prom) { (void)p, (void)b, (void)prom; }
#endif
