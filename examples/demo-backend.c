/*
 * revtun-demo-backend: a tiny HTTP/1.1 origin used by the reverse-tunnel
 * demos, tests and benchmarks.  It sits behind revtun-downstream-agent.
 *
 *   GET /             200 "hello from backend\n"
 *   GET /bytes/N      200, N bytes, byte i = 'a' + i % 26 (N <= 1 GiB)
 *   GET /size/N       same body as /bytes/N (a separate name for benchmarks)
 *   ANY /echo         200, request body echoed, x-echo-method: <method>
 *   GET /headers      200, the request's header fields, one "name: value"
 *                     line each (non-printable bytes shown as '.')
 *   anything else     404
 *
 * Every response carries x-backend: <--name> (default "demo"), so a test
 * can tell which backend, behind which agent, answered.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common.h"

#define PROG "revtun-demo-backend"
#define MAX_BODY (1024ULL * 1024 * 1024)

/*
 * Pattern bodies are built from references to this one static block, so a
 * 1 GiB reply costs a few hundred KiB of chain bookkeeping and no copying.
 * Its length is a multiple of 26, so every block starts again at 'a'.
 */
#define PATTERN_LEN (26 * 2521)
static char pattern[PATTERN_LEN];

static const char *backend_name = "demo";

static const char *method_name(enum evhttp_cmd_type m) {
  switch (m) {
  case EVHTTP_REQ_GET: return "GET";
  case EVHTTP_REQ_POST: return "POST";
  case EVHTTP_REQ_HEAD: return "HEAD";
  case EVHTTP_REQ_PUT: return "PUT";
  case EVHTTP_REQ_DELETE: return "DELETE";
  case EVHTTP_REQ_OPTIONS: return "OPTIONS";
  case EVHTTP_REQ_TRACE: return "TRACE";
  case EVHTTP_REQ_CONNECT: return "CONNECT";
  case EVHTTP_REQ_PATCH: return "PATCH";
  }
  return "UNKNOWN";
}

/* Strict decimal: no sign, no spaces, no trailing junk, at most 1 GiB. */
static int parse_size(const char *s, uint64_t *out) {
  uint64_t v = 0;

  if (*s == '\0')
    return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    v = v * 10 + (uint64_t)(*s - '0');
    if (v > MAX_BODY)
      return -1;
  }
  *out = v;
  return 0;
}

static void reply(struct evhttp_request *req, int code, const char *reason, struct evbuffer *body) {
  if (verbose) {
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;

    logmsg("%s %s -> %d (%zu bytes)", method_name(evhttp_request_get_command(req)),
           path ? path : "?", code, body ? evbuffer_get_length(body) : (size_t)0);
  }
  evhttp_send_reply(req, code, reason, body);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text) {
  struct evbuffer *b = evbuffer_new();

  if (!b) {
    evhttp_send_error(req, HTTP_INTERNAL, NULL);
    return;
  }
  evbuffer_add(b, text, strlen(text));
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
  reply(req, code, reason, b);
  evbuffer_free(b);
}

static void reply_pattern(struct evhttp_request *req, uint64_t n) {
  struct evbuffer *b = evbuffer_new();

  if (!b) {
    evhttp_send_error(req, HTTP_INTERNAL, NULL);
    return;
  }
  while (n > 0) {
    size_t take = n < PATTERN_LEN ? (size_t)n : PATTERN_LEN;

    if (evbuffer_add_reference(b, pattern, take, NULL, NULL) < 0) {
      evbuffer_free(b);
      evhttp_send_error(req, HTTP_INTERNAL, NULL);
      return;
    }
    n -= take;
  }
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                    "application/octet-stream");
  reply(req, HTTP_OK, "OK", b);
  evbuffer_free(b);
}

static void reply_echo(struct evhttp_request *req) {
  struct evkeyvalq *out = evhttp_request_get_output_headers(req);
  const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");

  evhttp_add_header(out, "x-echo-method", method_name(evhttp_request_get_command(req)));
  evhttp_add_header(out, "Content-Type", ct ? ct : "application/octet-stream");
  /* The input buffer is ours until the reply; evhttp drains what it sends. */
  reply(req, HTTP_OK, "OK", evhttp_request_get_input_buffer(req));
}

static void reply_headers(struct evhttp_request *req) {
  struct evkeyvalq *in = evhttp_request_get_input_headers(req);
  struct evbuffer *b = evbuffer_new();
  struct evkeyval *kv;
  char name[256], value[1024];

  if (!b) {
    evhttp_send_error(req, HTTP_INTERNAL, NULL);
    return;
  }
  TAILQ_FOREACH(kv, in, next) {
    evbuffer_add_printf(b, "%s: %s\n", log_safe(name, sizeof(name), kv->key, strlen(kv->key)),
                        log_safe(value, sizeof(value), kv->value, strlen(kv->value)));
  }
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
  reply(req, HTTP_OK, "OK", b);
  evbuffer_free(b);
}

static void handle(struct evhttp_request *req, void *arg) {
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
  enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
  int readonly = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
  uint64_t n;

  (void)arg;
  evhttp_add_header(evhttp_request_get_output_headers(req), "x-backend", backend_name);
  if (!path || !*path)
    path = "/";

  if (strcmp(path, "/echo") == 0) {
    reply_echo(req);
  } else if (strcmp(path, "/headers") == 0 && readonly) {
    reply_headers(req);
  } else if (strcmp(path, "/") == 0 && readonly) {
    reply_text(req, HTTP_OK, "OK", "hello from backend\n");
  } else if ((strncmp(path, "/bytes/", 7) == 0 && readonly && parse_size(path + 7, &n) == 0) ||
             (strncmp(path, "/size/", 6) == 0 && readonly && parse_size(path + 6, &n) == 0)) {
    reply_pattern(req, n);
  } else {
    reply_text(req, HTTP_NOTFOUND, "Not Found", "not found\n");
  }
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)sig;
  (void)what;
  event_base_loopbreak(arg);
}

static void usage(FILE *f) {
  fputs("Usage: revtun-demo-backend [OPTIONS]\n"
        "Tiny HTTP/1.1 backend for reverse-tunnel demos and tests.\n"
        "\n"
        "  --listen ADDR:PORT  listen address (default 127.0.0.1:8081)\n"
        "  --name NAME         the x-backend value of every response (default demo)\n"
        "  --verbose           log one line per request to stderr\n"
        "  --help              show this help and exit\n"
        "\n"
        "Routes: GET / | GET /bytes/N | GET /size/N | any method /echo | GET /headers\n",
        f);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"listen", required_argument, NULL, 'l'},
      {"name", required_argument, NULL, 'n'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *listen_at = "127.0.0.1:8081";
  char host[256];
  uint16_t port;
  struct event_base *base;
  struct evhttp *http;
  struct event *sigint_ev, *sigterm_ev;
  size_t i;
  int c;

  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'l': listen_at = optarg; break;
    case 'n': backend_name = optarg; break;
    case 'v': verbose = 1; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  log_prog = PROG;
  if (hostport_split(listen_at, host, sizeof(host), &port) < 0 || port == 0) {
    fprintf(stderr, PROG ": bad --listen '%s'\n", listen_at);
    return 2;
  }

  for (i = 0; i < PATTERN_LEN; i++)
    pattern[i] = (char)('a' + i % 26);

  /* A peer that vanishes mid-reply must not kill the process. */
  signal(SIGPIPE, SIG_IGN);

  base = event_base_new();
  http = base ? evhttp_new(base) : NULL;
  if (!http) {
    fprintf(stderr, PROG ": out of memory\n");
    return 1;
  }
  evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                       EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                       EVHTTP_REQ_PATCH);
  evhttp_set_gencb(http, handle, NULL);
  if (!evhttp_bind_socket_with_handle(http, host, port)) {
    fprintf(stderr, PROG ": cannot listen on %s: %s\n", listen_at, strerror(errno));
    evhttp_free(http);
    event_base_free(base);
    return 1;
  }
  sigint_ev = evsignal_new(base, SIGINT, on_signal, base);
  sigterm_ev = evsignal_new(base, SIGTERM, on_signal, base);
  event_add(sigint_ev, NULL);
  event_add(sigterm_ev, NULL);
  if (verbose)
    logmsg("listening on %s", listen_at);

  event_base_dispatch(base);

  event_free(sigint_ev);
  event_free(sigterm_ev);
  evhttp_free(http);
  event_base_free(base);
  return 0;
}
