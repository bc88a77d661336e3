/*
 * h2evil: hostile HTTP/2 peers for tests/adversarial/proxy.sh. Frames are
 * written by hand (no nghttp2) so that they can be what no library sends:
 * an "HPACK bomb", a header block that is small on the wire and huge once
 * decoded. One literal field with incremental indexing puts a ~4000-byte
 * value in the dynamic table; every following byte 0xbe (indexed field 62)
 * then decodes to that whole field again. 16 KiB of HEADERS plus
 * CONTINUATION frames of it decode to tens of megabytes.
 *
 *   h2evil agent HOST:PORT NODE CLUSTER TENANT [CONNS]
 *       a reverse-tunnel agent: handshake, RPING echoes, then it answers
 *       every request with a bomb response (HEADERS + 8 CONTINUATION).
 *       NODE may hold \xNN escapes (for odd ids). Runs until killed,
 *       keeping CONNS (default 2) tunnels.
 *   h2evil client HOST:PORT NODE
 *       an h2c client sending one bomb request for NODE; prints what came
 *       back (reset, goaway, eof, status N) and exits 0 unless nothing
 *       came within 10 s or a 2xx answered.
 *   h2evil proxy PORT
 *       an upstream proxy for one agent: answers its handshake, sends a
 *       bomb request on stream 1 and a plain GET / on stream 3; exits 0 if
 *       stream 1 was refused (RST_STREAM or GOAWAY) and stream 3 got a
 *       response, printing both.
 */
#define _GNU_SOURCE /* memmem */

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define FRAME_MAX 16384
#define BOMB_VALUE 4000
#define CONTINUATIONS 8
#define MAXCONN 16

enum { DATA = 0, HEADERS = 1, RST_STREAM = 3, SETTINGS = 4, PING = 6, GOAWAY = 7, CONT = 9 };
enum { END_STREAM = 1, ACK = 1, END_HEADERS = 4 };

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void die(const char *what) {
  fprintf(stderr, "h2evil: %s: %s\n", what, strerror(errno));
  exit(2);
}

static int frame(int fd, int type, int flags, uint32_t stream, const void *payload, size_t len) {
  uint8_t h[9] = {(uint8_t)(len >> 16),    (uint8_t)(len >> 8),    (uint8_t)len,
                  (uint8_t)type,           (uint8_t)flags,         (uint8_t)(stream >> 24),
                  (uint8_t)(stream >> 16), (uint8_t)(stream >> 8), (uint8_t)stream};
  return write_all(fd, h, 9) < 0 || write_all(fd, payload, len) < 0 ? -1 : 0;
}

/* A header block: prefix (pseudo-headers), the indexed literal, then 0xbe
 * to fill FRAME_MAX; sent as HEADERS then CONTINUATION frames of 0xbe. */
static int send_bomb(int fd, uint32_t stream, const uint8_t *prefix, size_t plen) {
  static uint8_t block[FRAME_MAX];
  size_t n = 0;

  memcpy(block, prefix, plen);
  n = plen;
  block[n++] = 0x40; /* literal, incremental indexing, new name */
  block[n++] = 3;
  memcpy(block + n, "x-b", 3);
  n += 3;
  block[n++] = 0x7f; /* value length 4000 = 127 + 3873 */
  block[n++] = 0x80 | (3873 & 0x7f);
  block[n++] = 3873 >> 7;
  memset(block + n, 'v', BOMB_VALUE);
  n += BOMB_VALUE;
  memset(block + n, 0xbe, FRAME_MAX - n);
  if (frame(fd, HEADERS, 0, stream, block, FRAME_MAX) < 0)
    return -1;
  memset(block, 0xbe, FRAME_MAX);
  for (int i = 0; i < CONTINUATIONS; i++)
    if (frame(fd, CONT, i == CONTINUATIONS - 1 ? END_HEADERS : 0, stream, block, FRAME_MAX) < 0)
      return -1;
  return 0;
}

static int dial(const char *spec) {
  struct sockaddr_storage ss;
  socklen_t len;
  int fd, one = 1;

  if (addr_resolve(spec, 0, &ss, &len) < 0) {
    fprintf(stderr, "h2evil: cannot resolve %s\n", spec);
    exit(2);
  }
  if ((fd = socket(ss.ss_family, SOCK_STREAM, 0)) < 0)
    die("socket");
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Reads with a deadline: bytes, 0 at EOF, -1 on error or timeout. */
static ssize_t read_some(int fd, void *buf, size_t n, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  int r = poll(&p, 1, ms);
  if (r <= 0)
    return -1;
  return read(fd, buf, n);
}

/* A buffered connection that yields whole frames. */
struct conn {
  int fd;
  uint8_t buf[1 << 17];
  size_t len;
  int h2; /* past the RPING phase (agent) */
};

/* The next complete frame in c->buf: 1 (hdr and payload set), 0 none yet. */
static int next_frame(struct conn *c, uint8_t hdr[9], const uint8_t **payload, size_t *plen,
                      size_t *consumed) {
  size_t len;
  if (c->len < 9)
    return 0;
  len = (size_t)c->buf[0] << 16 | (size_t)c->buf[1] << 8 | c->buf[2];
  if (c->len < 9 + len)
    return 0;
  memcpy(hdr, c->buf, 9);
  *payload = c->buf + 9;
  *plen = len;
  *consumed = 9 + len;
  return 1;
}

static void consume(struct conn *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

static uint32_t stream_of(const uint8_t hdr[9]) {
  return ((uint32_t)hdr[5] << 24 | (uint32_t)hdr[6] << 16 | (uint32_t)hdr[7] << 8 | hdr[8]) &
         0x7fffffff;
}

/* Answers SETTINGS and PING; returns the frame type handled, -1 on error. */
static int common_frame(struct conn *c, const uint8_t hdr[9], const uint8_t *payload, size_t n) {
  if (hdr[3] == SETTINGS && !(hdr[4] & ACK))
    return frame(c->fd, SETTINGS, ACK, 0, NULL, 0);
  if (hdr[3] == PING && !(hdr[4] & ACK))
    return frame(c->fd, PING, ACK, 0, payload, n);
  return 0;
}

/* ------------------------------------------------------------------ agent */

static char *unescape(const char *s, size_t *out_len) {
  char *o = malloc(strlen(s) + 1);
  size_t n = 0;
  for (size_t i = 0; s[i]; i++) {
    unsigned v;
    if (s[i] == '\\' && s[i + 1] == 'x' && sscanf(s + i + 2, "%2x", &v) == 1) {
      o[n++] = (char)v;
      i += 3;
    } else {
      o[n++] = s[i];
    }
  }
  *out_len = n;
  return o;
}

static int agent_connect(const char *up, const char *node, size_t nlen, const char *cluster,
                         const char *tenant) {
  int fd = dial(up);
  char head[8192];
  int n;

  if (fd < 0)
    return -1;
  n = snprintf(head, sizeof(head),
               "GET /reverse_connections/request HTTP/1.1\r\nhost: %s\r\n"
               "x-envoy-reverse-tunnel-node-id: ",
               up);
  if (n < 0 || (size_t)n + nlen + 512 > sizeof(head)) {
    close(fd);
    return -1;
  }
  memcpy(head + n, node, nlen);
  n += (int)nlen;
  n += snprintf(head + n, sizeof(head) - (size_t)n,
                "\r\nx-envoy-reverse-tunnel-cluster-id: %s\r\n"
                "x-envoy-reverse-tunnel-tenant-id: %s\r\ncontent-length: 0\r\n\r\n",
                cluster, tenant);
  if (write_all(fd, head, (size_t)n) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int agent_input(struct conn *c) {
  uint8_t hdr[9];
  const uint8_t *payload;
  size_t plen, used;
  static const uint8_t status200[] = {0x88};

  if (!c->h2) {
    /* the handshake answer, then RPINGs, until the client preface */
    uint8_t *end;
    if (c->len >= 4 && !memcmp(c->buf, "HTTP", 4)) {
      end = memmem(c->buf, c->len, "\r\n\r\n", 4);
      if (!end)
        return 0;
      if (memcmp(c->buf, "HTTP/1.1 200", 12) != 0) {
        fprintf(stderr, "h2evil agent: handshake refused: %.40s\n", c->buf);
        return -1;
      }
      consume(c, (size_t)(end + 4 - c->buf));
    }
    while (c->len >= 5 && !memcmp(c->buf, "RPING", 5)) {
      if (write_all(c->fd, "RPING", 5) < 0)
        return -1;
      consume(c, 5);
    }
    if (c->len < 24)
      return 0;
    if (memcmp(c->buf, PREFACE, 24) != 0)
      return -1;
    consume(c, 24);
    c->h2 = 1;
    if (frame(c->fd, SETTINGS, 0, 0, NULL, 0) < 0)
      return -1;
  }
  while (next_frame(c, hdr, &payload, &plen, &used)) {
    if (common_frame(c, hdr, payload, plen) < 0)
      return -1;
    if (hdr[3] == HEADERS && (hdr[4] & END_HEADERS) &&
        send_bomb(c->fd, stream_of(hdr), status200, sizeof(status200)) < 0)
      return -1;
    if (hdr[3] == GOAWAY)
      return -1;
    consume(c, used);
  }
  return 0;
}

static int run_agent(int argc, char **argv) {
  struct conn *cs[MAXCONN] = {0};
  size_t nlen;
  char *node;
  int want;

  if (argc < 6)
    return 2;
  node = unescape(argv[3], &nlen);
  want = argc > 6 ? atoi(argv[6]) : 2;
  if (want < 1 || want > MAXCONN)
    want = 2;
  for (;;) {
    struct pollfd pfd[MAXCONN];
    int n = 0;
    for (int i = 0; i < want; i++) {
      if (!cs[i]) {
        int fd = agent_connect(argv[2], node, nlen, argv[4], argv[5]);
        if (fd >= 0 && (cs[i] = calloc(1, sizeof(**cs))))
          cs[i]->fd = fd;
        else if (fd >= 0)
          close(fd);
      }
      pfd[i].fd = cs[i] ? cs[i]->fd : -1;
      pfd[i].events = POLLIN;
      n++;
    }
    if (poll(pfd, (nfds_t)n, 200) < 0 && errno != EINTR)
      die("poll");
    for (int i = 0; i < n; i++) {
      struct conn *c = cs[i];
      ssize_t r;
      if (!c || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
      if (r > 0)
        c->len += (size_t)r;
      if (r <= 0 || c->len == sizeof(c->buf) || agent_input(c) < 0) {
        close(c->fd);
        free(c);
        cs[i] = NULL;
      }
    }
  }
}

/* ----------------------------------------------------------------- client */

/* Reads frames until one says what became of stream 1. */
static const char *await_verdict(struct conn *c, uint32_t stream, int ms, int *status) {
  struct timespec t0, t;
  uint8_t hdr[9];
  const uint8_t *payload;
  size_t plen, used;

  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    ssize_t r;
    while (next_frame(c, hdr, &payload, &plen, &used)) {
      if (common_frame(c, hdr, payload, plen) < 0)
        return "eof";
      if (hdr[3] == RST_STREAM && stream_of(hdr) == stream)
        return "reset";
      if (hdr[3] == GOAWAY)
        return "goaway";
      if (hdr[3] == HEADERS && stream_of(hdr) == stream) {
        /* the first field of a response is :status; static index 8..14 */
        *status = plen > 0 && payload[0] >= 0x88 && payload[0] <= 0x8e
                      ? (int[]){200, 204, 206, 304, 400, 404, 500}[payload[0] - 0x88]
                      : -1;
        return "status";
      }
      consume(c, used);
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    int left = ms - (int)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
    if (left <= 0)
      return NULL;
    r = read_some(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, left);
    if (r == 0)
      return "eof";
    if (r < 0)
      return errno == ECONNRESET ? "eof" : NULL;
    c->len += (size_t)r;
  }
}

static int run_client(int argc, char **argv) {
  static struct conn c;
  uint8_t prefix[2048];
  size_t n = 0, nl;
  const char *v;
  int status = 0;

  if (argc < 4)
    return 2;
  if ((c.fd = dial(argv[2])) < 0)
    die("connect");
  nl = strlen(argv[3]);
  if (nl > 1000)
    return 2;
  prefix[n++] = 0x82; /* :method GET */
  prefix[n++] = 0x86; /* :scheme http */
  prefix[n++] = 0x84; /* :path / */
  prefix[n++] = 0x01; /* :authority, literal without indexing */
  prefix[n++] = 1;
  prefix[n++] = 'x';
  prefix[n++] = 0x00; /* x-remote-node-id, literal without indexing, new name */
  prefix[n++] = 16;
  memcpy(prefix + n, "x-remote-node-id", 16);
  n += 16;
  prefix[n++] = (uint8_t)(nl < 127 ? nl : 127);
  memcpy(prefix + n, argv[3], nl < 127 ? nl : 127);
  n += nl < 127 ? nl : 127;
  if (write_all(c.fd, PREFACE, 24) < 0 || frame(c.fd, SETTINGS, 0, 0, NULL, 0) < 0 ||
      send_bomb(c.fd, 1, prefix, n) < 0) {
    puts("eof (while sending)");
    return 0;
  }
  v = await_verdict(&c, 1, 10000, &status);
  if (!v) {
    puts("timeout");
    return 1;
  }
  if (!strcmp(v, "status")) {
    printf("status %d\n", status);
    return status >= 200 && status < 300;
  }
  puts(v);
  return 0;
}

/* ------------------------------------------------------------------ proxy */

static int run_proxy(int argc, char **argv) {
  static struct conn c;
  struct sockaddr_in sa;
  int lfd, one = 1, status = 0;
  static const uint8_t plain[] = {0x82, 0x86, 0x84, 0x01, 1, 'x'};
  const char *v1, *v3;
  char *end;

  if (argc < 3)
    return 2;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)atoi(argv[2]));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
    die("socket");
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4) < 0)
    die("listen");
  alarm(30); /* never hang a test */
  if ((c.fd = accept(lfd, NULL, NULL)) < 0)
    die("accept");
  /* the handshake request, then our answer */
  while (!(end = memmem(c.buf, c.len, "\r\n\r\n", 4))) {
    ssize_t r = read_some(c.fd, c.buf + c.len, sizeof(c.buf) - c.len, 10000);
    if (r <= 0) {
      puts("no handshake");
      return 1;
    }
    c.len += (size_t)r;
  }
  consume(&c, (size_t)((uint8_t *)end + 4 - c.buf));
  if (write_all(c.fd, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 38) < 0 ||
      write_all(c.fd, PREFACE, 24) < 0 || frame(c.fd, SETTINGS, 0, 0, NULL, 0) < 0 ||
      send_bomb(c.fd, 1, plain, sizeof(plain)) < 0) {
    puts("eof (while sending)");
    return 1;
  }
  v1 = await_verdict(&c, 1, 10000, &status);
  printf("stream 1 (bomb): %s\n", v1 ? v1 : "timeout");
  if (!v1 || (strcmp(v1, "reset") && strcmp(v1, "goaway")))
    return 1;
  if (!strcmp(v1, "goaway")) {
    puts("stream 3 not tried: the agent ended the session");
    return 0;
  }
  /* the session goes on: a plain request is still served */
  if (frame(c.fd, HEADERS, END_HEADERS | END_STREAM, 3, plain, sizeof(plain)) < 0)
    return 1;
  v3 = await_verdict(&c, 3, 10000, &status);
  if (!v3 || strcmp(v3, "status")) {
    printf("stream 3 (GET /): %s\n", v3 ? v3 : "timeout");
    return 1;
  }
  printf("stream 3 (GET /): status %d\n", status);
  return status == 200 ? 0 : 1;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && !strcmp(argv[1], "agent"))
    return run_agent(argc, argv);
  if (argc >= 2 && !strcmp(argv[1], "client"))
    return run_client(argc, argv);
  if (argc >= 2 && !strcmp(argv[1], "proxy"))
    return run_proxy(argc, argv);
  fprintf(stderr, "usage: h2evil agent HOST:PORT NODE CLUSTER TENANT [CONNS]\n"
                  "       h2evil client HOST:PORT NODE\n"
                  "       h2evil proxy PORT\n");
  return 2;
}
