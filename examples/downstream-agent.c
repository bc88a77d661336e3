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
 * Single-threaded libevent loop; nghttp2 does the framing.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>

#define PROG "revtun-downstream-agent"

#define HANDSHAKE_TIMEOUT_S 10
#define MAX_HEAD 65536 /* response head size limit, both directions */
#define MAX_HEADERS 128
#define BACKOFF_BASE_MS 1000
#define RETRY_AFTER_MAX_S 3600
#define DRAIN_GRACE_S 5
#define LINGER_S 2           /* half-closed tunnel waits this long for the proxy's close */
#define MAX_READ (64 * 1024) /* per read(2); libevent's default is 4 KiB */
#define BACKEND_TIMEOUT_S 60
#define MAX_IDLE_BACKENDS 256

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

static const char RPING[5] = {'R', 'P', 'I', 'N', 'G'};

struct addr {
  struct sockaddr_storage ss;
  socklen_t len;
  char text[INET6_ADDRSTRLEN + 8]; /* ip:port or [ip6]:port */
};

struct config {
  struct addr upstream, backend;
  const char *node, *cluster, *tenant, *path, *upstream_cluster;
  unsigned count;
  unsigned max_backoff_ms;
  int upgrade;
};

struct agent;
struct stream;

enum slot_state { SLOT_WAIT, SLOT_CONNECTING, SLOT_HANDSHAKE, SLOT_REJECTED, SLOT_PARKED };
enum body_mode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE };

/* One tunnel slot: dials, handshakes, parks, and re-dials after handoff. */
struct slot {
  struct agent *ag;
  unsigned idx;
  enum slot_state state;
  struct bufferevent *bev;
  struct event *timer;
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
  struct bufferevent *bev;
  nghttp2_session *h2;
  struct stream *streams;
  struct event *kill_ev;
  uint64_t conn_id;
  int dying;
};

enum bstate {
  B_HEAD,
  B_LENGTH,
  B_CHUNK_SIZE,
  B_CHUNK_DATA,
  B_CHUNK_END,
  B_TRAILERS,
  B_UNTIL_CLOSE,
  B_DONE
};

/* One HTTP/1.1 connection to the backend; serves one stream at a time. */
struct bconn {
  struct agent *ag;
  struct bconn *prev, *next; /* idle list */
  struct bufferevent *bev;
  struct stream *s;
  enum bstate st;
  uint64_t remaining;
  int keepalive, reused, got_bytes;
};

struct stream {
  struct tunnel *t;
  struct stream *prev, *next;
  int32_t id;
  char *method, *path, *authority, *host;
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
  struct slot *slots;
  struct tunnel *tunnels;
  struct bconn *idle;
  unsigned nidle;
  uint64_t next_conn_id;
  int stopping;
  struct event *grace_ev;
};

static int verbose;

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...) {
  struct timespec ts;
  struct tm tm;
  char when[32];
  va_list ap;

  clock_gettime(CLOCK_REALTIME, &ts);
  localtime_r(&ts.tv_sec, &tm);
  strftime(when, sizeof(when), "%H:%M:%S", &tm);
  fprintf(stderr, "%s.%03ld " PROG ": ", when, ts.tv_nsec / 1000000);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

#define VLOG(...)                                                                                  \
  do {                                                                                             \
    if (verbose)                                                                                   \
      logmsg(__VA_ARGS__);                                                                         \
  } while (0)

static uint64_t now_epoch_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct timeval ms_tv(uint64_t ms) {
  struct timeval tv;

  tv.tv_sec = (time_t)(ms / 1000);
  tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
  return tv;
}

/* ---------------------------------------------------------------- parsing */

struct head {
  int minor, status;
  const char *reason;
  size_t n;
  struct {
    char *name, *value;
  } h[MAX_HEADERS];
};

/*
 * Splits a NUL-terminated HTTP/1.x response head in place.  Names are
 * lowercased because HTTP/2 requires it and lookups get simpler.
 */
static int parse_head(char *p, struct head *hd) {
  char *eol, *colon, *v, *e;

  hd->n = 0;
  eol = strchr(p, '\n');
  if (!eol)
    return -1;
  *eol = '\0';
  if (eol > p && eol[-1] == '\r')
    eol[-1] = '\0';
  if (strncmp(p, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)p[7]) || p[8] != ' ' ||
      !isdigit((unsigned char)p[9]) || !isdigit((unsigned char)p[10]) ||
      !isdigit((unsigned char)p[11]) || (p[12] != ' ' && p[12] != '\0'))
    return -1;
  hd->minor = p[7] - '0';
  hd->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  hd->reason = p[12] ? p + 13 : "";

  for (p = eol + 1; *p; p = eol + 1) {
    eol = strchr(p, '\n');
    if (!eol)
      eol = p + strlen(p) - 1; /* cannot happen: head ends in CRLFCRLF */
    *eol = '\0';
    if (eol > p && eol[-1] == '\r')
      eol[-1] = '\0';
    if (*p == '\0')
      break;
    /* obs-fold and "name :" are both request-smuggling material */
    colon = strchr(p, ':');
    if (*p == ' ' || *p == '\t' || !colon || colon == p || colon[-1] == ' ' || colon[-1] == '\t' ||
        hd->n == MAX_HEADERS)
      return -1;
    *colon = '\0';
    for (v = p; *v; v++)
      *v = (char)tolower((unsigned char)*v);
    for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
      ;
    for (e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t'); e--)
      ;
    *e = '\0';
    hd->h[hd->n].name = p;
    hd->h[hd->n].value = v;
    hd->n++;
  }
  return 0;
}

static const char *head_get(const struct head *hd, const char *name) {
  size_t i;

  for (i = 0; i < hd->n; i++)
    if (strcmp(hd->h[i].name, name) == 0)
      return hd->h[i].value;
  return NULL;
}

/* Strict decimal, no sign; -1 if not a number or absurdly large. */
static int64_t parse_decimal(const char *s) {
  int64_t v = 0;

  if (!s || !*s)
    return -1;
  for (; *s; s++) {
    if (!isdigit((unsigned char)*s) || v > (INT64_MAX - 9) / 10)
      return -1;
    v = v * 10 + (*s - '0');
  }
  return v;
}

/* True if the comma-separated list ends with (or contains) TOKEN. */
static int has_token(const char *list, const char *token, int last_only) {
  size_t tl = strlen(token);
  const char *p = list;
  int found = 0;

  while (*p) {
    const char *e;
    size_t l;

    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    e = p;
    while (*e && *e != ',')
      e++;
    l = (size_t)(e - p);
    while (l > 0 && (p[l - 1] == ' ' || p[l - 1] == '\t'))
      l--;
    found = l == tl && strncasecmp(p, token, tl) == 0;
    if (found && !last_only)
      return 1;
    p = e;
  }
  return found;
}

/*
 * Decodes a whole chunked body held in memory (handshake rejections are a
 * few dozen bytes).  1 = complete, 0 = need more bytes, -1 = malformed.
 */
static int dechunk(const char *p, size_t n, char *out, size_t cap, size_t *outlen) {
  size_t i = 0;

  *outlen = 0;
  for (;;) {
    uint64_t sz = 0;
    int digits = 0;

    while (i < n && isxdigit((unsigned char)p[i])) {
      int c = tolower((unsigned char)p[i++]);

      sz = sz * 16 + (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
      if (++digits > 8)
        return -1;
    }
    if (i >= n)
      return 0;
    if (!digits)
      return -1;
    while (i < n && p[i] != '\n') /* chunk extensions, CR */
      i++;
    if (i++ >= n)
      return 0;
    if (sz == 0) {
      for (;;) { /* trailers up to an empty line */
        size_t start = i;

        while (i < n && p[i] != '\n')
          i++;
        if (i++ >= n)
          return 0;
        if (i - start <= 2)
          return 1;
      }
    }
    if (n - i < sz)
      return 0;
    if (*outlen < cap) {
      size_t take = cap - *outlen < sz ? cap - *outlen : (size_t)sz;

      memcpy(out + *outlen, p + i, take);
      *outlen += take;
    }
    i += (size_t)sz;
    if (i < n && p[i] == '\r')
      i++;
    if (i >= n)
      return 0;
    if (p[i++] != '\n')
      return -1;
  }
}

/* Makes a peer-supplied text safe for a one-line log. */
static void printable(char *s, size_t n) {
  size_t i;

  for (i = 0; i < n; i++)
    if (!isprint((unsigned char)s[i]))
      s[i] = '.';
  s[n] = '\0';
}

/* ------------------------------------------------------------- sockets */

/*
 * The socket is made here, not by libevent, so that a synchronous connect()
 * failure is reported by the return value only: callbacks are installed
 * after bufferevent_socket_connect() succeeds.
 */
static struct bufferevent *dial(struct event_base *base, const struct addr *a) {
  struct bufferevent *bev;
  evutil_socket_t fd;
  int one = 1;

  fd = socket(a->ss.ss_family, SOCK_STREAM, 0);
  if (fd < 0)
    return NULL;
  /* RPING echoes and HTTP/2 frames are latency bound, never batch them. */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (evutil_make_socket_nonblocking(fd) < 0 || evutil_make_socket_closeonexec(fd) < 0) {
    evutil_closesocket(fd);
    return NULL;
  }
  bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (!bev) {
    evutil_closesocket(fd);
    return NULL;
  }
  /* One syscall per 64 KiB instead of per 4 KiB: bulk bodies and many
   * small responses cost a quarter of the reads. */
  bufferevent_set_max_single_read(bev, MAX_READ);
  bufferevent_set_max_single_write(bev, MAX_READ);
  if (bufferevent_socket_connect(bev, (const struct sockaddr *)&a->ss, (int)a->len) < 0) {
    bufferevent_free(bev);
    return NULL;
  }
  return bev;
}

/* ---------------------------------------------------------- slot (tunnel setup) */

static void slot_connect(struct slot *sl);
static void tunnel_start(struct slot *sl, const char *prefix, size_t plen);

static void slot_retry(struct slot *sl, int64_t delay_ms, const char *why) {
  struct agent *ag = sl->ag;
  struct timeval tv;

  if (sl->bev) {
    bufferevent_free(sl->bev);
    sl->bev = NULL;
  }
  sl->state = SLOT_WAIT;
  if (ag->stopping)
    return;
  if (delay_ms < 0) {
    uint64_t d =
        ag->cfg.max_backoff_ms < BACKOFF_BASE_MS ? ag->cfg.max_backoff_ms : BACKOFF_BASE_MS;
    unsigned i;

    for (i = 0; i < sl->failures && d < ag->cfg.max_backoff_ms; i++)
      d *= 2;
    if (d > ag->cfg.max_backoff_ms)
      d = ag->cfg.max_backoff_ms;
    /* Jitter spreads a fleet of agents after an upstream restart. */
    delay_ms = (int64_t)(d + (uint64_t)rand() % (d * 15 / 100 + 1));
  }
  sl->failures++;
  logmsg("slot %u: %s; retrying in %.2fs", sl->idx, why, (double)delay_ms / 1000.0);
  tv = ms_tv((uint64_t)delay_ms);
  evtimer_add(sl->timer, &tv);
}

static void slot_send_handshake(struct slot *sl) {
  const struct config *c = &sl->ag->cfg;
  struct evbuffer *out = bufferevent_get_output(sl->bev);

  /* Byte for byte what Envoy's HTTP/1 client codec produces (spec 3.1). */
  evbuffer_add_printf(out, "GET %s HTTP/1.1\r\nhost: %s\r\n", c->path, c->upstream.text);
  if (c->upgrade)
    evbuffer_add_printf(out, "connection: upgrade\r\n"
                             "upgrade: reverse-tunnel\r\n");
  evbuffer_add_printf(out,
                      "x-envoy-reverse-tunnel-node-id: %s\r\n"
                      "x-envoy-reverse-tunnel-cluster-id: %s\r\n"
                      "x-envoy-reverse-tunnel-tenant-id: %s\r\n",
                      c->node, c->cluster, c->tenant);
  if (c->upstream_cluster)
    evbuffer_add_printf(out, "x-envoy-reverse-tunnel-upstream-cluster-name: %s\r\n",
                        c->upstream_cluster);
  evbuffer_add_printf(out,
                      "x-envoy-reverse-tunnel-initiation-time: %" PRIu64 "\r\n"
                      "x-envoy-reverse-tunnel-worker-id: worker_0\r\n"
                      "x-envoy-reverse-tunnel-connection-id: %" PRIu64 "\r\n"
                      "content-length: 0\r\n\r\n",
                      sl->episode_ms, sl->conn_id);
}

static void slot_finish_rejection(struct slot *sl, int complete) {
  struct evbuffer *in = bufferevent_get_input(sl->bev);
  size_t n = evbuffer_get_length(in), blen = 0;
  char body[201], why[400];
  int64_t delay = -1;

  if (sl->body == BODY_CHUNKED) {
    if (dechunk((const char *)evbuffer_pullup(in, -1), n, body, sizeof(body) - 1, &blen) < 0)
      blen = 0;
  } else {
    if (sl->body == BODY_LENGTH && n > sl->body_len)
      n = (size_t)sl->body_len;
    blen = n < sizeof(body) - 1 ? n : sizeof(body) - 1;
    evbuffer_copyout(in, body, blen);
  }
  printable(body, blen);
  snprintf(why, sizeof(why), "handshake rejected: %d %s%s \"%s\"", sl->status, sl->reason,
           complete ? "" : " (body cut short)", body);
  if (sl->status == 429 && sl->retry_after_s > 0) {
    int64_t s = sl->retry_after_s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : sl->retry_after_s;

    delay = s * 1000;
    if (delay > (int64_t)sl->ag->cfg.max_backoff_ms)
      delay = sl->ag->cfg.max_backoff_ms;
  }
  slot_retry(sl, delay, why);
}

/* Returns 1 once the whole rejection body is in the input buffer. */
static int slot_rejection_complete(struct slot *sl) {
  struct evbuffer *in = bufferevent_get_input(sl->bev);
  size_t n = evbuffer_get_length(in), dummy;
  char scratch[1];

  switch (sl->body) {
  case BODY_NONE: return 1;
  case BODY_LENGTH: return n >= sl->body_len;
  case BODY_CHUNKED:
    return dechunk((const char *)evbuffer_pullup(in, -1), n, scratch, 0, &dummy) != 0;
  case BODY_CLOSE: break;
  }
  return n >= MAX_HEAD; /* stop waiting for an endless body */
}

/* Echo RPINGs until the first other byte, then hand the socket to HTTP/2. */
static void slot_parked_input(struct slot *sl) {
  struct evbuffer *in = bufferevent_get_input(sl->bev);
  size_t echoes = 0, n;

  while ((n = evbuffer_get_length(in)) > 0) {
    const char *p;
    size_t i;

    if (n > 4096)
      n = 4096;
    p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    for (i = 0; i < n; i++) {
      if (p[i] != RPING[sl->ping_match]) {
        size_t held = sl->ping_match;

        evbuffer_drain(in, i);
        while (echoes--)
          bufferevent_write(sl->bev, RPING, 5);
        /* A held partial RPING was application data after all. */
        tunnel_start(sl, RPING, held);
        return;
      }
      if (++sl->ping_match == sizeof(RPING)) {
        sl->ping_match = 0;
        echoes++;
      }
    }
    evbuffer_drain(in, n);
  }
  if (echoes)
    VLOG("slot %u: echoed %zu RPING", sl->idx, echoes);
  while (echoes--)
    bufferevent_write(sl->bev, RPING, 5);
}

static void slot_handshake_input(struct slot *sl) {
  struct agent *ag = sl->ag;
  struct evbuffer *in = bufferevent_get_input(sl->bev);
  struct evbuffer_ptr pos = evbuffer_search(in, "\r\n\r\n", 4, NULL);
  struct head hd;
  const char *te, *cl;
  char *raw, why[128];
  int want = ag->cfg.upgrade ? 101 : 200;

  if (pos.pos < 0) {
    if (evbuffer_get_length(in) > MAX_HEAD)
      slot_retry(sl, -1, "handshake response head too large");
    return;
  }
  raw = malloc((size_t)pos.pos + 5);
  if (!raw) {
    slot_retry(sl, -1, "out of memory");
    return;
  }
  evbuffer_remove(in, raw, (size_t)pos.pos + 4);
  raw[pos.pos + 4] = '\0';
  if (parse_head(raw, &hd) < 0) {
    free(raw);
    slot_retry(sl, -1, "malformed handshake response");
    return;
  }
  if (hd.status == want) {
    free(raw);
    logmsg("slot %u: tunnel parked (connection-id %" PRIu64 ", %d)", sl->idx, sl->conn_id, want);
    sl->state = SLOT_PARKED;
    sl->failures = 0;
    sl->episode_ms = 0;
    sl->ping_match = 0;
    /* The upstream pings on its own schedule; idle is not an error. */
    bufferevent_set_timeouts(sl->bev, NULL, NULL);
    /* Bytes coalesced with the response head already belong to the tunnel. */
    slot_parked_input(sl);
    return;
  }

  sl->status = hd.status;
  snprintf(sl->reason, sizeof(sl->reason), "%s", hd.reason);
  printable(sl->reason, strlen(sl->reason));
  sl->retry_after_s = parse_decimal(head_get(&hd, "retry-after"));
  te = head_get(&hd, "transfer-encoding");
  cl = head_get(&hd, "content-length");
  if (te && has_token(te, "chunked", 1))
    sl->body = BODY_CHUNKED;
  else if (!te && cl && parse_decimal(cl) >= 0) {
    sl->body = BODY_LENGTH;
    sl->body_len = (uint64_t)parse_decimal(cl);
  } else if (hd.status == 101 || hd.status == 204 || hd.status == 304)
    sl->body = BODY_NONE;
  else
    sl->body = BODY_CLOSE;
  free(raw);
  if (hd.status == 101 || hd.status == 200) {
    snprintf(why, sizeof(why), "unexpected handshake status %d (want %d)", hd.status, want);
    slot_retry(sl, -1, why);
    return;
  }
  sl->state = SLOT_REJECTED;
  if (slot_rejection_complete(sl))
    slot_finish_rejection(sl, 1);
}

static void slot_read_cb(struct bufferevent *bev, void *arg) {
  struct slot *sl = arg;

  (void)bev;
  switch (sl->state) {
  case SLOT_HANDSHAKE: slot_handshake_input(sl); break;
  case SLOT_REJECTED:
    if (slot_rejection_complete(sl))
      slot_finish_rejection(sl, 1);
    break;
  case SLOT_PARKED: slot_parked_input(sl); break;
  default: break;
  }
}

static void slot_event_cb(struct bufferevent *bev, short what, void *arg) {
  struct slot *sl = arg;
  char why[160];

  (void)bev;
  if (what & BEV_EVENT_CONNECTED) {
    VLOG("slot %u: connected to %s, sending handshake "
         "(connection-id %" PRIu64 ")",
         sl->idx, sl->ag->cfg.upstream.text, sl->conn_id);
    sl->state = SLOT_HANDSHAKE;
    slot_send_handshake(sl);
    bufferevent_enable(sl->bev, EV_READ);
    return;
  }
  if (sl->state == SLOT_REJECTED) {
    slot_finish_rejection(sl, (what & BEV_EVENT_EOF) && sl->body == BODY_CLOSE);
    return;
  }
  snprintf(why, sizeof(why), "%s %s",
           sl->state == SLOT_PARKED       ? "parked tunnel"
           : sl->state == SLOT_CONNECTING ? "connect failed:"
                                          : "handshake",
           (what & BEV_EVENT_TIMEOUT) ? "timed out"
           : (what & BEV_EVENT_EOF)   ? "closed by upstream"
                                      : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
  slot_retry(sl, -1, why);
}

static void slot_connect(struct slot *sl) {
  struct agent *ag = sl->ag;
  struct timeval tmo = {HANDSHAKE_TIMEOUT_S, 0};
  char why[128];

  if (ag->stopping)
    return;
  /* The initiation time spans every retry until this slot succeeds. */
  if (!sl->episode_ms)
    sl->episode_ms = now_epoch_ms();
  sl->conn_id = ++ag->next_conn_id;
  sl->ping_match = 0;
  sl->state = SLOT_CONNECTING;
  sl->bev = dial(ag->base, &ag->cfg.upstream);
  if (!sl->bev) {
    snprintf(why, sizeof(why), "connect to %s failed: %s", ag->cfg.upstream.text, strerror(errno));
    slot_retry(sl, -1, why);
    return;
  }
  bufferevent_setcb(sl->bev, slot_read_cb, NULL, slot_event_cb, sl);
  bufferevent_set_timeouts(sl->bev, &tmo, &tmo);
}

static void slot_timer_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  slot_connect(arg);
}

/* -------------------------------------------------------------- backend */

static void tunnel_flush(struct tunnel *t);
static void stream_backend_failed(struct stream *s, const char *why);
static ssize_t data_read_cb(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *user_data);

static void bconn_free(struct bconn *c) {
  struct agent *ag = c->ag;

  if (c->s) {
    c->s->bc = NULL;
  } else if (c->prev || ag->idle == c) {
    if (c->prev)
      c->prev->next = c->next;
    else
      ag->idle = c->next;
    if (c->next)
      c->next->prev = c->prev;
    ag->nidle--;
  }
  bufferevent_free(c->bev);
  free(c);
}

/* An idle keep-alive connection must stay silent; anything else kills it. */
static void bconn_idle_read(struct bufferevent *bev, void *arg) {
  (void)bev;
  bconn_free(arg);
}

static void bconn_idle_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  (void)what;
  bconn_free(arg);
}

/* The response is complete: detach from the stream, keep the socket if we may. */
static void bconn_release(struct bconn *c) {
  struct agent *ag = c->ag;
  struct stream *s = c->s;

  s->bc = NULL;
  c->s = NULL;
  if (s->unconsumed) {
    nghttp2_session_consume(s->t->h2, s->id, s->unconsumed);
    s->unconsumed = 0;
  }
  if (!c->keepalive || !s->req_ended || ag->stopping || ag->nidle >= MAX_IDLE_BACKENDS ||
      evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
    bconn_free(c);
    return;
  }
  bufferevent_setcb(c->bev, bconn_idle_read, NULL, bconn_idle_event, c);
  bufferevent_set_timeouts(c->bev, NULL, NULL);
  bufferevent_enable(c->bev, EV_READ);
  c->prev = NULL;
  c->next = ag->idle;
  if (ag->idle)
    ag->idle->prev = c;
  ag->idle = c;
  ag->nidle++;
}

static void stream_data_ready(struct stream *s) {
  if (s->deferred) {
    s->deferred = 0;
    nghttp2_session_resume_data(s->t->h2, s->id);
  }
}

/* Turns the backend's response head into HTTP/2 HEADERS. */
static int bconn_on_head(struct bconn *c, char *raw) {
  struct stream *s = c->s;
  struct head hd;
  nghttp2_nv nva[MAX_HEADERS + 1];
  nghttp2_data_provider prd;
  char status[4];
  const char *te, *cl, *conn;
  int64_t length = -1;
  size_t i, n = 0;
  int no_body, rv;

  if (parse_head(raw, &hd) < 0)
    return -1;
  if (hd.status >= 100 && hd.status < 200 && hd.status != 101)
    return 1; /* interim response: wait for the real one */
  if (hd.status < 200 || hd.status > 999)
    return -1; /* 101: we never asked to switch protocols */
  te = head_get(&hd, "transfer-encoding");
  cl = head_get(&hd, "content-length");
  conn = head_get(&hd, "connection");
  c->keepalive = hd.minor >= 1 ? !(conn && has_token(conn, "close", 0))
                               : (conn && has_token(conn, "keep-alive", 0));
  no_body = s->is_head || hd.status == 204 || hd.status == 304;
  if (!no_body && te) {
    c->st = has_token(te, "chunked", 1) ? B_CHUNK_SIZE : B_UNTIL_CLOSE;
  } else if (!no_body && cl) {
    if ((length = parse_decimal(cl)) < 0)
      return -1;
    c->st = B_LENGTH;
    c->remaining = (uint64_t)length;
    no_body = length == 0;
  } else if (!no_body) {
    c->st = B_UNTIL_CLOSE;
  }
  if (no_body)
    c->st = B_DONE;
  if (c->st == B_UNTIL_CLOSE)
    c->keepalive = 0;

  snprintf(status, sizeof(status), "%03d", hd.status);
  nva[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
  for (i = 0; i < hd.n; i++) {
    const char *nm = hd.h[i].name;

    /* Connection-specific fields are illegal in HTTP/2 (RFC 9113 8.2.2). */
    if (!strcmp(nm, "connection") || !strcmp(nm, "keep-alive") || !strcmp(nm, "proxy-connection") ||
        !strcmp(nm, "transfer-encoding") || !strcmp(nm, "upgrade") || !strcmp(nm, "te") ||
        !strcmp(nm, "trailer") || (!strcmp(nm, "content-length") && te) ||
        (conn && has_token(conn, nm, 0)))
      continue;
    nva[n++] = (nghttp2_nv){(uint8_t *)hd.h[i].name, (uint8_t *)hd.h[i].value, strlen(hd.h[i].name),
                            strlen(hd.h[i].value), NGHTTP2_NV_FLAG_NONE};
  }
  prd.source.ptr = s;
  prd.read_callback = data_read_cb;
  s->resp_started = 1;
  s->resp_done = c->st == B_DONE;
  rv = nghttp2_submit_response(s->t->h2, s->id, nva, n, s->resp_done ? NULL : &prd);
  return rv == 0 ? 0 : -1;
}

/* Moves up to MAX body bytes from the backend into the stream's buffer. */
static uint64_t bconn_take(struct bconn *c, uint64_t max) {
  struct evbuffer *in = bufferevent_get_input(c->bev);
  size_t avail = evbuffer_get_length(in);
  size_t n = max < avail ? (size_t)max : avail;

  if (n)
    evbuffer_remove_buffer(in, c->s->resp, n);
  return n;
}

/* Advances the response state machine; -1 = broken response. */
static int bconn_parse(struct bconn *c) {
  struct evbuffer *in = bufferevent_get_input(c->bev);

  for (;;) {
    struct evbuffer_ptr pos;
    char *line, *raw, *end;
    size_t len;
    int rv;

    switch (c->st) {
    case B_HEAD:
      pos = evbuffer_search(in, "\r\n\r\n", 4, NULL);
      if (pos.pos < 0)
        return evbuffer_get_length(in) > MAX_HEAD ? -1 : 0;
      if (!(raw = malloc((size_t)pos.pos + 5)))
        return -1;
      evbuffer_remove(in, raw, (size_t)pos.pos + 4);
      raw[pos.pos + 4] = '\0';
      rv = bconn_on_head(c, raw);
      free(raw);
      if (rv < 0)
        return -1;
      break;
    case B_LENGTH:
      c->remaining -= bconn_take(c, c->remaining);
      if (c->remaining)
        return 0;
      c->st = B_DONE;
      break;
    case B_CHUNK_SIZE:
      line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
      if (!line)
        return evbuffer_get_length(in) > 1024 ? -1 : 0;
      errno = 0;
      c->remaining = strtoull(line, &end, 16);
      rv = end == line || errno || (*end && *end != ';' && *end != ' ' && *end != '\t');
      free(line);
      if (rv)
        return -1;
      c->st = c->remaining ? B_CHUNK_DATA : B_TRAILERS;
      break;
    case B_CHUNK_DATA:
      c->remaining -= bconn_take(c, c->remaining);
      if (c->remaining)
        return 0;
      c->st = B_CHUNK_END;
      break;
    case B_CHUNK_END:
    case B_TRAILERS: /* trailers are dropped */
      line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
      if (!line)
        return evbuffer_get_length(in) > MAX_HEAD ? -1 : 0;
      free(line);
      if (c->st == B_CHUNK_END) {
        if (len)
          return -1;
        c->st = B_CHUNK_SIZE;
      } else if (!len) {
        c->st = B_DONE;
      }
      break;
    case B_UNTIL_CLOSE: bconn_take(c, UINT64_MAX); return 0;
    case B_DONE: return 0;
    }
  }
}

static void bconn_read_cb(struct bufferevent *bev, void *arg) {
  struct bconn *c = arg;
  struct stream *s = c->s;
  struct tunnel *t = s->t;

  (void)bev;
  c->got_bytes = 1;
  if (bconn_parse(c) < 0) {
    stream_backend_failed(s, "malformed backend response");
  } else {
    if (s->req_head && s->resp_started) {
      free(s->req_head);
      s->req_head = NULL;
    }
    /* Backpressure: HTTP/2 flow control decides how fast we drain. */
    if (evbuffer_get_length(s->resp) >= STREAM_HIGH)
      bufferevent_disable(c->bev, EV_READ);
    if (c->st == B_DONE) {
      s->resp_done = 1;
      bconn_release(c);
    }
    stream_data_ready(s);
  }
  tunnel_flush(t);
}

static void bconn_write_cb(struct bufferevent *bev, void *arg) {
  struct bconn *c = arg;
  struct stream *s = c->s;

  (void)bev;
  /* The backend took the queued body: let the client send more. */
  if (s->unconsumed) {
    nghttp2_session_consume(s->t->h2, s->id, s->unconsumed);
    s->unconsumed = 0;
    tunnel_flush(s->t);
  }
}

static int bconn_start(struct stream *s, struct bconn *c);
static struct bconn *bconn_get(struct agent *ag);

static void bconn_event_cb(struct bufferevent *bev, short what, void *arg) {
  struct bconn *c = arg;
  struct stream *s = c->s;
  struct tunnel *t = s->t;

  (void)bev;
  if (what & BEV_EVENT_CONNECTED)
    return;
  if ((what & BEV_EVENT_EOF) && c->st == B_UNTIL_CLOSE) {
    s->resp_done = 1;
    bconn_free(c);
    stream_data_ready(s);
  } else if (c->reused && !c->got_bytes && !s->body_sent && s->req_head &&
             !(what & BEV_EVENT_TIMEOUT)) {
    /* The backend closed a pooled connection as we reused it: retry once. */
    struct bconn *fresh;

    bconn_free(c);
    VLOG("stream %d: stale backend connection, retrying", s->id);
    fresh = bconn_get(t->ag);
    if (!fresh || bconn_start(s, fresh) < 0)
      stream_backend_failed(s, "backend unreachable");
  } else {
    stream_backend_failed(s, (what & BEV_EVENT_TIMEOUT) ? "backend timed out"
                             : c->got_bytes             ? "backend closed mid-response"
                                                        : "backend unreachable");
  }
  tunnel_flush(t);
}

static struct bconn *bconn_get(struct agent *ag) {
  struct bconn *c = ag->idle;

  if (c) {
    ag->idle = c->next;
    if (c->next)
      c->next->prev = NULL;
    c->next = c->prev = NULL;
    ag->nidle--;
    c->reused = 1;
    return c;
  }
  if (!(c = calloc(1, sizeof(*c))))
    return NULL;
  c->ag = ag;
  if (!(c->bev = dial(ag->base, &ag->cfg.backend))) {
    free(c);
    return NULL;
  }
  return c;
}

static int bconn_start(struct stream *s, struct bconn *c) {
  struct timeval tmo = {BACKEND_TIMEOUT_S, 0};

  c->s = s;
  s->bc = c;
  c->st = B_HEAD;
  c->got_bytes = 0;
  bufferevent_setcb(c->bev, bconn_read_cb, bconn_write_cb, bconn_event_cb, c);
  bufferevent_set_timeouts(c->bev, &tmo, &tmo);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  return bufferevent_write(c->bev, s->req_head, s->req_head_len);
}

/* ------------------------------------------------------------- streams */

static void stream_free(struct stream *s) {
  struct tunnel *t = s->t;

  if (s->bc)
    bconn_free(s->bc); /* mid-exchange: the socket cannot be reused */
  if (s->prev)
    s->prev->next = s->next;
  else
    t->streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  free(s->method);
  free(s->path);
  free(s->authority);
  free(s->host);
  free(s->req_head);
  if (s->hdrs)
    evbuffer_free(s->hdrs);
  if (s->cookies)
    evbuffer_free(s->cookies);
  if (s->resp)
    evbuffer_free(s->resp);
  free(s);
}

static void stream_reply_text(struct stream *s, int status, const char *text) {
  char st[4], len[24];
  nghttp2_nv nva[3];
  nghttp2_data_provider prd;

  snprintf(st, sizeof(st), "%03d", status);
  snprintf(len, sizeof(len), "%zu", strlen(text));
  nva[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)st, 7, 3, NGHTTP2_NV_FLAG_NONE};
  nva[1] = (nghttp2_nv){(uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10,
                        NGHTTP2_NV_FLAG_NONE};
  nva[2] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)len, 14, strlen(len),
                        NGHTTP2_NV_FLAG_NONE};
  evbuffer_add(s->resp, text, strlen(text));
  s->resp_started = s->resp_done = 1;
  prd.source.ptr = s;
  prd.read_callback = data_read_cb;
  nghttp2_submit_response(s->t->h2, s->id, nva, 3, &prd);
}

static void stream_backend_failed(struct stream *s, const char *why) {
  logmsg("tunnel %" PRIu64 " stream %d: %s %s: %s", s->t->conn_id, s->id, s->method, s->path, why);
  if (s->bc)
    bconn_free(s->bc);
  if (!s->resp_started) {
    stream_reply_text(s, 502, "502 bad gateway: backend unavailable\n");
  } else if (!s->resp_done) {
    /* Headers are out; only a reset can tell the client the body is cut. */
    s->resp_done = 1;
    nghttp2_submit_rst_stream(s->t->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
  }
}

static int is_hop_by_hop(const uint8_t *name, size_t len) {
  static const char *const hop[] = {"connection",        "keep-alive", "proxy-connection",
                                    "transfer-encoding", "upgrade",    "te",
                                    "http2-settings",    "host",       NULL};
  size_t i;

  for (i = 0; hop[i]; i++)
    if (strlen(hop[i]) == len && !memcmp(hop[i], name, len))
      return 1;
  return 0;
}

/* The request head is complete: translate to HTTP/1.1 and send it. */
static void stream_dispatch(struct stream *s) {
  struct evbuffer *h;
  const char *host;
  struct bconn *c;
  size_t n;

  if (!s->method || !s->path || !strcmp(s->method, "CONNECT")) {
    stream_reply_text(s, 501, "501 not implemented\n");
    return;
  }
  s->is_head = !strcmp(s->method, "HEAD");
  host = s->authority ? s->authority : s->host ? s->host : s->t->ag->cfg.backend.text;
  if (!(h = evbuffer_new()))
    goto oom;
  evbuffer_add_printf(h, "%s %s HTTP/1.1\r\nhost: %s\r\n", s->method, s->path, host);
  evbuffer_add_buffer(h, s->hdrs);
  if (evbuffer_get_length(s->cookies)) {
    /* HTTP/2 may split cookies; HTTP/1.1 wants one field (RFC 9113 8.2.3). */
    evbuffer_add(h, "cookie: ", 8);
    evbuffer_add_buffer(h, s->cookies);
    evbuffer_add(h, "\r\n", 2);
  }
  if (!s->req_ended && !s->has_length) {
    s->chunked_up = 1;
    evbuffer_add_printf(h, "transfer-encoding: chunked\r\n");
  }
  evbuffer_add(h, "\r\n", 2);
  n = evbuffer_get_length(h);
  s->req_head = malloc(n);
  if (!s->req_head) {
    evbuffer_free(h);
    goto oom;
  }
  evbuffer_remove(h, s->req_head, n);
  s->req_head_len = n;
  evbuffer_free(h);
  VLOG("tunnel %" PRIu64 " stream %d: %s %s", s->t->conn_id, s->id, s->method, s->path);
  c = bconn_get(s->t->ag);
  if (!c || bconn_start(s, c) < 0) {
    if (c && !s->bc)
      bconn_free(c);
    stream_backend_failed(s, "backend unreachable");
  }
  return;
oom:
  stream_reply_text(s, 503, "503 out of memory\n");
}

static void stream_request_ended(struct stream *s) {
  s->req_ended = 1;
  if (s->bc && s->chunked_up)
    bufferevent_write(s->bc->bev, "0\r\n\r\n", 5);
}

/* ------------------------------------------------------ nghttp2 callbacks */

static ssize_t send_cb(nghttp2_session *session, const uint8_t *data, size_t len, int flags,
                       void *user_data) {
  struct tunnel *t = user_data;
  struct evbuffer *out = bufferevent_get_output(t->bev);

  (void)session;
  (void)flags;
  if (evbuffer_get_length(out) >= TUN_OUT_HIGH)
    return NGHTTP2_ERR_WOULDBLOCK;
  if (evbuffer_add(out, data, len) < 0)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  return (ssize_t)len;
}

/*
 * Response bodies go out with NO_COPY: nghttp2 only decides the frame size,
 * send_data_cb then moves the bytes between evbuffers without copying.
 */
static ssize_t data_read_cb(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *user_data) {
  struct stream *s = source->ptr;
  size_t avail = evbuffer_get_length(s->resp);
  size_t n = avail < length ? avail : length;

  (void)session;
  (void)id;
  (void)buf;
  (void)user_data;
  if (n == 0 && !s->resp_done) {
    s->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  if (n > 0)
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (s->resp_done && n == avail)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

static int send_data_cb(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *user_data) {
  struct tunnel *t = user_data;
  struct stream *s = source->ptr;
  struct evbuffer *out = bufferevent_get_output(t->bev);

  (void)session;
  (void)frame; /* no padding is ever selected */
  if (evbuffer_get_length(out) >= TUN_OUT_HIGH)
    return NGHTTP2_ERR_WOULDBLOCK;
  evbuffer_add(out, framehd, 9);
  evbuffer_remove_buffer(s->resp, out, length);
  if (s->bc && evbuffer_get_length(s->resp) < STREAM_LOW)
    bufferevent_enable(s->bc->bev, EV_READ);
  return 0;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  struct tunnel *t = user_data;
  struct stream *s;

  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  if (!(s = calloc(1, sizeof(*s))))
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  s->t = t;
  s->id = frame->hd.stream_id;
  s->hdrs = evbuffer_new();
  s->cookies = evbuffer_new();
  s->resp = evbuffer_new();
  s->next = t->streams;
  if (t->streams)
    t->streams->prev = s;
  t->streams = s;
  if (!s->hdrs || !s->cookies || !s->resp) {
    stream_free(s);
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  nghttp2_session_set_stream_user_data(session, s->id, s);
  return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data) {
  struct stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  char **slot = NULL;

  (void)flags;
  (void)user_data;
  if (!s || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0; /* trailers are dropped */
  if (namelen == 7 && !memcmp(name, ":method", 7))
    slot = &s->method;
  else if (namelen == 5 && !memcmp(name, ":path", 5))
    slot = &s->path;
  else if (namelen == 10 && !memcmp(name, ":authority", 10))
    slot = &s->authority;
  else if (namelen == 4 && !memcmp(name, "host", 4))
    slot = &s->host;
  if (slot) {
    free(*slot);
    if (!(*slot = strndup((const char *)value, valuelen)))
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
  }
  if (namelen > 0 && name[0] == ':')
    return 0;
  if (namelen == 6 && !memcmp(name, "cookie", 6)) {
    if (evbuffer_get_length(s->cookies))
      evbuffer_add(s->cookies, "; ", 2);
    evbuffer_add(s->cookies, value, valuelen);
    return 0;
  }
  if (is_hop_by_hop(name, namelen))
    return 0;
  if (namelen == 14 && !memcmp(name, "content-length", 14))
    s->has_length = 1;
  evbuffer_add(s->hdrs, name, namelen);
  evbuffer_add(s->hdrs, ": ", 2);
  evbuffer_add(s->hdrs, value, valuelen);
  evbuffer_add(s->hdrs, "\r\n", 2);
  return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  struct stream *s;

  (void)user_data;
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
    return 0;
  s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (!s)
    return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    s->req_ended = !!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
    stream_dispatch(s);
  } else if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
    stream_request_ended(s);
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user_data) {
  struct stream *s = nghttp2_session_get_stream_user_data(session, id);
  struct evbuffer *out;
  char sz[20];

  (void)flags;
  (void)user_data;
  if (!s || !s->bc || s->req_ended) {
    nghttp2_session_consume(session, id, len); /* dropped */
    return 0;
  }
  out = bufferevent_get_output(s->bc->bev);
  if (s->chunked_up) {
    snprintf(sz, sizeof(sz), "%zx\r\n", len);
    evbuffer_add(out, sz, strlen(sz));
  }
  evbuffer_add(out, data, len);
  if (s->chunked_up)
    evbuffer_add(out, "\r\n", 2);
  s->body_sent = 1;
  /* Acknowledge now unless the backend is behind; see bconn_write_cb. */
  if (evbuffer_get_length(out) < BACKEND_OUT_HIGH)
    nghttp2_session_consume(session, id, len);
  else
    s->unconsumed += len;
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code,
                           void *user_data) {
  struct stream *s = nghttp2_session_get_stream_user_data(session, id);

  (void)error_code;
  (void)user_data;
  if (!s)
    return 0;
  if (s->unconsumed)
    nghttp2_session_consume_connection(session, s->unconsumed);
  stream_free(s);
  return 0;
}

/* -------------------------------------------------------------- tunnels */

static void tunnel_free(struct tunnel *t) {
  struct agent *ag = t->ag;

  /* nghttp2_session_del() runs no callbacks, so streams go by hand. */
  nghttp2_session_del(t->h2);
  t->h2 = NULL;
  while (t->streams)
    stream_free(t->streams);
  bufferevent_free(t->bev);
  event_free(t->kill_ev);
  if (t->prev)
    t->prev->next = t->next;
  else
    ag->tunnels = t->next;
  if (t->next)
    t->next->prev = t->prev;
  free(t);
  if (ag->stopping && !ag->tunnels)
    event_base_loopbreak(ag->base);
}

static void tunnel_kill_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  tunnel_free(arg);
}

/*
 * Destruction is deferred to a fresh loop iteration so that no caller up
 * the stack (nghttp2 or a backend callback) is left holding freed memory.
 */
static void tunnel_kill(struct tunnel *t, const char *why) {
  if (t->dying)
    return;
  t->dying = 1;
  logmsg("tunnel %" PRIu64 ": closed (%s)", t->conn_id, why);
  bufferevent_disable(t->bev, EV_READ | EV_WRITE);
  event_active(t->kill_ev, 0, 0);
}

static void tunnel_drain_cb(struct bufferevent *bev, void *arg) {
  (void)arg;
  struct evbuffer *in = bufferevent_get_input(bev);

  evbuffer_drain(in, evbuffer_get_length(in));
}

static void tunnel_drain_event_cb(struct bufferevent *bev, short what, void *arg) {
  struct tunnel *t = arg;

  (void)bev;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
    event_active(t->kill_ev, 0, 0);
}

/*
 * Both sides said GOAWAY and nothing is left to send. Closing now, with bytes
 * from the proxy still unread (a PING, a WINDOW_UPDATE), would make the kernel
 * send a reset that can destroy the tail of our last response in flight. So
 * half-close, read and discard until the proxy closes, at most LINGER_S.
 */
static void tunnel_linger(struct tunnel *t) {
  struct timeval tv = {LINGER_S, 0};

  t->dying = 1;
  logmsg("tunnel %" PRIu64 ": session finished", t->conn_id);
  shutdown(bufferevent_getfd(t->bev), SHUT_WR);
  bufferevent_setcb(t->bev, tunnel_drain_cb, NULL, tunnel_drain_event_cb, t);
  bufferevent_set_timeouts(t->bev, NULL, NULL);
  bufferevent_enable(t->bev, EV_READ);
  event_add(t->kill_ev, &tv);
}

static void tunnel_flush(struct tunnel *t) {
  int rv;

  if (t->dying)
    return;
  if ((rv = nghttp2_session_send(t->h2)) != 0) {
    tunnel_kill(t, nghttp2_strerror(rv));
    return;
  }
  /* Both sides said GOAWAY and no stream is left: we are done. */
  if (!nghttp2_session_want_read(t->h2) && !nghttp2_session_want_write(t->h2) &&
      evbuffer_get_length(bufferevent_get_output(t->bev)) == 0)
    tunnel_linger(t);
}

static void tunnel_feed(struct tunnel *t, const uint8_t *p, size_t n) {
  ssize_t rv;

  if (t->dying || n == 0)
    return;
  rv = nghttp2_session_mem_recv(t->h2, p, n);
  if (rv < 0)
    tunnel_kill(t, nghttp2_strerror((int)rv));
}

static void tunnel_read_cb(struct bufferevent *bev, void *arg) {
  struct tunnel *t = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  size_t n;

  while (!t->dying && (n = evbuffer_get_contiguous_space(in)) > 0) {
    tunnel_feed(t, evbuffer_pullup(in, (ev_ssize_t)n), n);
    evbuffer_drain(in, n);
  }
  tunnel_flush(t);
}

static void tunnel_write_cb(struct bufferevent *bev, void *arg) {
  (void)bev;
  tunnel_flush(arg);
}

static void tunnel_event_cb(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  tunnel_kill(arg, (what & BEV_EVENT_EOF) ? "closed by upstream"
                                          : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static nghttp2_session_callbacks *h2_callbacks;
static nghttp2_option *h2_options;

static int h2_setup(void) {
  nghttp2_session_callbacks *cb;

  if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&h2_options) != 0)
    return -1;
  nghttp2_session_callbacks_set_send_callback(cb, send_cb);
  nghttp2_session_callbacks_set_send_data_callback(cb, send_data_cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  /* Window updates follow what the backend absorbed, not what we buffered. */
  nghttp2_option_set_no_auto_window_update(h2_options, 1);
  h2_callbacks = cb;
  return 0;
}

/* The upstream sent its first non-RPING byte: this socket is HTTP/2 now. */
static void tunnel_start(struct slot *sl, const char *prefix, size_t plen) {
  struct agent *ag = sl->ag;
  static const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1024},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
  };
  struct tunnel *t = calloc(1, sizeof(*t));

  if (!t || nghttp2_session_server_new2(&t->h2, h2_callbacks, t, h2_options) != 0 ||
      !(t->kill_ev = event_new(ag->base, -1, 0, tunnel_kill_cb, t))) {
    if (t && t->h2)
      nghttp2_session_del(t->h2);
    free(t);
    slot_retry(sl, -1, "out of memory for HTTP/2 session");
    return;
  }
  t->ag = ag;
  t->conn_id = sl->conn_id;
  t->bev = sl->bev;
  sl->bev = NULL;
  sl->state = SLOT_WAIT;
  t->next = ag->tunnels;
  if (ag->tunnels)
    ag->tunnels->prev = t;
  ag->tunnels = t;
  logmsg("slot %u: tunnel %" PRIu64 " taken by upstream, serving HTTP/2", sl->idx, t->conn_id);

  bufferevent_setcb(t->bev, tunnel_read_cb, tunnel_write_cb, tunnel_event_cb, t);
  bufferevent_setwatermark(t->bev, EV_WRITE, TUN_OUT_LOW, 0);
  nghttp2_submit_settings(t->h2, NGHTTP2_FLAG_NONE, settings,
                          sizeof(settings) / sizeof(settings[0]));
  nghttp2_session_set_local_window_size(t->h2, NGHTTP2_FLAG_NONE, 0, 16 << 20);
  tunnel_feed(t, (const uint8_t *)prefix, plen);
  tunnel_read_cb(t->bev, t);

  /* Keep --count tunnels parked: replace this one right away. */
  slot_connect(sl);
}

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
    if (sl->bev) {
      bufferevent_free(sl->bev);
      sl->bev = NULL;
    }
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
    tunnel_flush(t);
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

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
  struct agent *ag = arg;

  (void)what;
  if (ag->stopping) {
    logmsg("second signal, exiting now");
    event_base_loopbreak(ag->base);
    return;
  }
  logmsg("%s received, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  agent_stop(ag);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f) {
  fputs("Usage: " PROG " --upstream ADDR:PORT --node ID --cluster ID --tenant ID [OPTIONS]\n"
        "Initiator side of an Envoy reverse tunnel: keeps parked tunnels to the\n"
        "upstream proxy, answers RPING, serves HTTP/2 on taken tunnels and\n"
        "forwards each request to a local HTTP/1.1 backend.\n"
        "\n"
        "  --upstream ADDR:PORT          tunnel listener of the upstream proxy (required)\n"
        "  --node ID                     x-envoy-reverse-tunnel-node-id (required)\n"
        "  --cluster ID                  x-envoy-reverse-tunnel-cluster-id (required)\n"
        "  --tenant ID                   x-envoy-reverse-tunnel-tenant-id (required)\n"
        "  --count N                     parked tunnels to keep (default 1)\n"
        "  --backend ADDR:PORT           HTTP/1.1 backend (default 127.0.0.1:8081)\n"
        "  --path PATH                   handshake path (default /reverse_connections/request)\n"
        "  --upstream-cluster-name NAME  send x-envoy-reverse-tunnel-upstream-cluster-name\n"
        "  --upgrade                     use the HTTP upgrade handshake (expects 101)\n"
        "  --max-backoff-ms N            reconnect backoff cap (default 30000)\n"
        "  --verbose                     log every RPING and request\n"
        "  --help                        show this help and exit\n",
        f);
}

/* host:port or [v6]:port, resolved once; the text form goes into host:. */
static int resolve(const char *spec, struct addr *a) {
  struct addrinfo hints, *res = NULL;
  const char *colon = strrchr(spec, ':');
  char host[256], ip[INET6_ADDRSTRLEN];
  size_t hl;
  int64_t port;

  if (!colon || (port = parse_decimal(colon + 1)) < 1 || port > 65535)
    return -1;
  hl = (size_t)(colon - spec);
  if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']')
    spec++, hl -= 2;
  if (hl == 0 || hl >= sizeof(host))
    return -1;
  memcpy(host, spec, hl);
  host[hl] = '\0';
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
    return -1;
  memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
  a->len = res->ai_addrlen;
  freeaddrinfo(res);
  if (getnameinfo((struct sockaddr *)&a->ss, a->len, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST) != 0)
    return -1;
  snprintf(a->text, sizeof(a->text), a->ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip,
           (int)port);
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
      {"node", required_argument, NULL, 'n'},
      {"cluster", required_argument, NULL, 'c'},
      {"tenant", required_argument, NULL, 't'},
      {"count", required_argument, NULL, 'N'},
      {"backend", required_argument, NULL, 'b'},
      {"path", required_argument, NULL, 'p'},
      {"upstream-cluster-name", required_argument, NULL, 'U'},
      {"upgrade", no_argument, NULL, 'g'},
      {"max-backoff-ms", required_argument, NULL, 'm'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  struct agent ag;
  struct config *cfg = &ag.cfg;
  const char *upstream = NULL, *backend = "127.0.0.1:8081";
  struct event *sig_int, *sig_term;
  int64_t v;
  unsigned i;
  int c;

  memset(&ag, 0, sizeof(ag));
  cfg->count = 1;
  cfg->max_backoff_ms = 30000;
  cfg->path = "/reverse_connections/request";
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'u': upstream = optarg; break;
    case 'n': cfg->node = optarg; break;
    case 'c': cfg->cluster = optarg; break;
    case 't': cfg->tenant = optarg; break;
    case 'b': backend = optarg; break;
    case 'p': cfg->path = optarg; break;
    case 'U': cfg->upstream_cluster = optarg; break;
    case 'g': cfg->upgrade = 1; break;
    case 'v': verbose = 1; break;
    case 'N':
      if ((v = parse_decimal(optarg)) < 1 || v > 10000) {
        fprintf(stderr, PROG ": --count must be 1..10000\n");
        return 2;
      }
      cfg->count = (unsigned)v;
      break;
    case 'm':
      if ((v = parse_decimal(optarg)) < 1 || v > 86400000) {
        fprintf(stderr, PROG ": --max-backoff-ms must be 1..86400000\n");
        return 2;
      }
      cfg->max_backoff_ms = (unsigned)v;
      break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc || !upstream || !cfg->node || !cfg->cluster || !cfg->tenant) {
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
  if (resolve(upstream, &cfg->upstream) < 0) {
    fprintf(stderr, PROG ": cannot resolve --upstream '%s'\n", upstream);
    return 2;
  }
  if (resolve(backend, &cfg->backend) < 0) {
    fprintf(stderr, PROG ": cannot resolve --backend '%s'\n", backend);
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
  sig_int = evsignal_new(ag.base, SIGINT, signal_cb, &ag);
  sig_term = evsignal_new(ag.base, SIGTERM, signal_cb, &ag);
  event_add(sig_int, NULL);
  event_add(sig_term, NULL);

  logmsg("node %s cluster %s tenant %s: keeping %u tunnel(s) to %s, "
         "backend %s",
         cfg->node, cfg->cluster, cfg->tenant, cfg->count, cfg->upstream.text, cfg->backend.text);
  for (i = 0; i < cfg->count; i++) {
    ag.slots[i].ag = &ag;
    ag.slots[i].idx = i;
    ag.slots[i].timer = evtimer_new(ag.base, slot_timer_cb, &ag.slots[i]);
    slot_connect(&ag.slots[i]);
  }

  event_base_dispatch(ag.base);

  if (!ag.stopping)
    agent_stop(&ag); /* frees parked tunnels and idle backends */
  while (ag.tunnels)
    tunnel_free(ag.tunnels);
  for (i = 0; i < cfg->count; i++)
    event_free(ag.slots[i].timer);
  free(ag.slots);
  if (ag.grace_ev)
    event_free(ag.grace_ev);
  event_free(sig_int);
  event_free(sig_term);
  event_base_free(ag.base);
  nghttp2_session_callbacks_del(h2_callbacks);
  nghttp2_option_del(h2_options);
  logmsg("exiting");
  return 0;
}
