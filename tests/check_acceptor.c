/* The handshake acceptor end to end over real sockets: every answer's exact bytes and counter,
 * with the request delivered whole, in 1-byte and in 10-byte chunks. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "testutil.h"

static struct tu_rec rec;

static revtun_acceptor_t *acceptor(revtun_t *h, const char *name) {
  size_t len;
  uint8_t *cfg = tu_config(name, &len);
  revtun_acceptor_t *acc = NULL;
  char err[256];
  int rc = revtun_acceptor_new(&acc, h, cfg, len, err, sizeof(err));
  ck_assert_msg(rc == REVTUN_OK, "acceptor %s: %s", name, err);
  free(cfg);
  return acc;
}

static const char *const HDRS_NCT = "x-envoy-reverse-tunnel-node-id: n\r\n"
                                    "x-envoy-reverse-tunnel-cluster-id: c\r\n"
                                    "x-envoy-reverse-tunnel-tenant-id: t\r\n";

static char *request(const char *line, const char *headers) {
  static char buf[4096];
  snprintf(buf, sizeof(buf), "%s\r\nhost: 127.0.0.1:9000\r\n%scontent-length: 0\r\n\r\n", line,
           headers);
  return buf;
}

struct outcome {
  char response[1024]; /* the acceptor's answers are at most 512 bytes */
  int registered;      /* the fd is an idle pool socket */
  int closed;          /* the client saw EOF after the response */
};

/* Delivers req in chunks of `chunk` bytes (0 = whole) over a socketpair,
 * accepted with the connection metadata meta (NULL: none, which is
 * revtun_acceptor_accept), and collects what the acceptor answered. With
 * free_meta, meta is freed as soon as the accept returned: the acceptor
 * keeps its own copy. */
static struct outcome run_meta(revtun_t *h, revtun_acceptor_t *acc, revtun_conn_meta_t *meta,
                               bool free_meta, const char *req, size_t req_len, size_t chunk) {
  struct outcome o;
  memset(&o, 0, sizeof(o));
  int sv[2];
  tu_socketpair(sv);
  int fd = sv[0], cl = sv[1];
  if (meta)
    ck_assert_int_eq(revtun_acceptor_accept_with_meta(acc, fd, NULL, meta, 1), REVTUN_OK);
  else
    ck_assert_int_eq(revtun_acceptor_accept(acc, fd, NULL, 1), REVTUN_OK);
  if (free_meta)
    revtun_conn_meta_free(meta);
  if (!chunk)
    chunk = req_len;
  for (size_t off = 0; off < req_len; off += chunk) {
    size_t n = req_len - off < chunk ? req_len - off : chunk;
    ck_assert_int_eq(send(cl, req + off, n, 0), (ssize_t)n);
    if (revtun_socket_state(h, fd) > 0)
      break; /* already a tunnel */
    revtun_process_io(h, fd, REVTUN_IO_READ, 2);
  }
  size_t got = tu_read_all(cl, o.response, sizeof(o.response));
  (void)got;
  o.registered = revtun_socket_state(h, fd) == REVTUN_SOCK_IDLE;
  if (!o.registered) {
    char b;
    o.closed = recv(cl, &b, 1, MSG_DONTWAIT) == 0; /* half-closed after the reply */
    close(cl);                                     /* lets the acceptor finish lingering */
    revtun_process_io(h, fd, REVTUN_IO_READ, 3);
    ck_assert_uint_eq(revtun_acceptor_pending(acc), 0);
  } else {
    revtun_mark_dead(h, fd, REVTUN_CLOSE_EXPLICIT_CLOSE, 4);
    close(cl);
  }
  return o;
}

static struct outcome run(revtun_t *h, revtun_acceptor_t *acc, const char *req, size_t req_len,
                          size_t chunk) {
  return run_meta(h, acc, NULL, false, req, req_len, chunk);
}

#define OK_200 "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"

static void expect_reject(const struct outcome *o, int status, const char *reason,
                          const char *body) {
  char want[1024];
  snprintf(want, sizeof(want),
           "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\n%stransfer-encoding: chunked\r\n\r\n"
           "%zx\r\n%s\r\n0\r\n\r\n",
           status, reason, status == 426 ? "upgrade: reverse-tunnel\r\n" : "", strlen(body), body);
  ck_assert_str_eq(o->response, want);
  ck_assert(!o->registered);
  ck_assert(o->closed);
}

static const size_t chunks[] = {0, 1, 10};

START_TEST(full_flow_accepts) {
  size_t chunk = chunks[_i];
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_default");
  const char *req = request("GET /reverse_connections/request HTTP/1.1", HDRS_NCT);
  struct outcome o = run(h, acc, req, strlen(req), chunk);
  ck_assert_str_eq(o.response, OK_200);
  ck_assert(o.registered);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.accepted"), 1);
  const struct tu_event *e = tu_nth(&rec, REVTUN_EV_TUNNEL_SETUP, 0);
  ck_assert_str_eq(e->node, "n");
  ck_assert_str_eq(e->cluster, "c");
  ck_assert_str_eq(e->tenant, "t");
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_REPORT_CONNECTED), 1); /* one report per tunnel */
  revtun_free(h);
}
END_TEST

START_TEST(rejections_exact) {
  size_t chunk = chunks[_i];
  tu_rec_init(&rec);
  revtun_t *h = tu_new("isolation", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_default");
  struct outcome o;
  const char *path = "GET /reverse_connections/request HTTP/1.1";

  o = run(h, acc, request("GET /health HTTP/1.1", HDRS_NCT),
          strlen(request("GET /health HTTP/1.1", HDRS_NCT)), chunk);
  expect_reject(&o, 404, "Not Found", "Not a reverse tunnel request");
  const char *r = request("PUT /reverse_connections/request HTTP/1.1", HDRS_NCT);
  o = run(h, acc, r, strlen(r), chunk);
  expect_reject(&o, 404, "Not Found", "Not a reverse tunnel request");
  r = request("GET /reverse_connections/request?x=1 HTTP/1.1", HDRS_NCT);
  o = run(h, acc, r, strlen(r), chunk);
  expect_reject(&o, 404, "Not Found", "Not a reverse tunnel request"); /* query: full target */
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.parse_error"), 0);

  r = request(path,
              "x-envoy-reverse-tunnel-cluster-id: c\r\nx-envoy-reverse-tunnel-tenant-id: t\r\n");
  o = run(h, acc, r, strlen(r), chunk);
  expect_reject(&o, 400, "Bad Request", "Missing required reverse tunnel headers");
  r = request(path, "");
  o = run(h, acc, r, strlen(r), chunk);
  expect_reject(&o, 400, "Bad Request", "Missing required reverse tunnel headers");
  r = request(path, "x-envoy-reverse-tunnel-node-id: n\r\nx-envoy-reverse-tunnel-cluster-id: c\r\n"
                    "x-envoy-reverse-tunnel-tenant-id: \r\n");
  o = run(h, acc, r, strlen(r), chunk);
  expect_reject(&o, 400, "Bad Request", "Empty tenant-id header value");
  r = request(path,
              "x-envoy-reverse-tunnel-node-id: node:x\r\nx-envoy-reverse-tunnel-cluster-id: c\r\n"
              "x-envoy-reverse-tunnel-tenant-id: t\r\n");
  o = run(h, acc, r, strlen(r), chunk);
  expect_reject(&o, 400, "Bad Request",
                "Reverse tunnel identifiers must not contain ':' when tenant isolation is enabled");
  r = request(path, "x-envoy-reverse-tunnel-node-id: \r\nx-envoy-reverse-tunnel-cluster-id: c\r\n"
                    "x-envoy-reverse-tunnel-tenant-id: t\r\n");
  o = run(h, acc, r, strlen(r), chunk);
  expect_reject(&o, 400, "Bad Request", "Empty node-id or cluster-id header value");
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.parse_error"), 5);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.accepted"), 0);
  ck_assert_uint_eq(rec.n, 1); /* only server_initialized: no tunnel events */
  ck_assert_int_eq(rec.ev[0].kind, REVTUN_EV_REPORT_SERVER_INITIALIZED);
  revtun_free(h);
}
END_TEST

START_TEST(body_rejected_before_path) {
  size_t chunk = chunks[_i];
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_default");
  const char *bodies[] = {
      "GET /health HTTP/1.1\r\ncontent-length: 4\r\n\r\nbody",
      "GET /reverse_connections/request HTTP/1.1\r\ncontent-length: 00\r\n\r\n",
      ("GET /reverse_connections/request HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
       "4\r\nbody\r\n0\r\n\r\n"),
  };
  for (size_t i = 0; i < 3; i++) {
    struct outcome o = run(h, acc, bodies[i], strlen(bodies[i]), chunk);
    expect_reject(&o, 400, "Bad Request", "Reverse tunnel handshake must not carry a body");
  }
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.body_rejected"), 3);
  /* a zero-length chunked body with trailers is fine */
  char req[1024];
  snprintf(req, sizeof(req),
           "GET /reverse_connections/request HTTP/1.1\r\n%stransfer-encoding: chunked\r\n\r\n"
           "0\r\nx-trailer: 1\r\n\r\n",
           HDRS_NCT);
  struct outcome o = run(h, acc, req, strlen(req), chunk);
  ck_assert_str_eq(o.response, OK_200);
  revtun_free(h);
}
END_TEST

START_TEST(malformed_and_too_large) {
  size_t chunk = chunks[_i];
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_default");
  ck_assert_int_eq(revtun_acceptor_set_limit(acc, REVTUN_ACCEPTOR_MAX_HEADER_BYTES, 256),
                   REVTUN_OK);
  const char *bad[] = {"INVALID\r\n\r\n", "GET / HTTP/999.999\r\n\r\n",
                       "GET / HTTP/1.1\r\nbad header\r\n\r\n",
                       "GET / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n"};
  for (size_t i = 0; i < 4; i++) {
    struct outcome o = run(h, acc, bad[i], strlen(bad[i]), chunk);
    /* Envoy's HTTP/1 codec answers: text/plain, the reason phrase chunked */
    ck_assert_str_eq(o.response, "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n"
                                 "transfer-encoding: chunked\r\n\r\nb\r\nBad Request\r\n"
                                 "0\r\n\r\n");
    ck_assert(!o.registered);
  }
  char big[1024];
  snprintf(big, sizeof(big), "GET /%0300d HTTP/1.1\r\n\r\n", 0);
  struct outcome o = run(h, acc, big, strlen(big), chunk);
  ck_assert_str_eq(o.response, "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                               "content-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
                               "1f\r\nRequest Header Fields Too Large\r\n0\r\n\r\n");
  /* HTTP/1.0 is refused once its headers are in, with a reply it can read */
  const char *old = "GET /reverse_connections/request HTTP/1.0\r\n\r\n";
  o = run(h, acc, old, strlen(old), chunk);
  ck_assert_str_eq(o.response, "HTTP/1.1 426 Upgrade Required\r\ncontent-type: text/plain\r\n"
                               "\r\nUpgrade Required");
  ck_assert(!o.registered);
  /* codec-level errors bump no reverse_tunnel.handshake counter */
  uint64_t v;
  ck_assert_int_eq(revtun_stats_get(h, "reverse_tunnel.handshake.http_error", &v),
                   REVTUN_E_NOT_FOUND);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.parse_error"), 0);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.body_rejected"), 0);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.accepted"), 0);
  revtun_free(h);
}
END_TEST

START_TEST(custom_config_and_defaults) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_default");
  ck_assert_uint_eq(revtun_acceptor_ping_interval_ms(acc), 2000);
  revtun_acceptor_free(acc);
  acc = acceptor(h, "acc_custom");
  ck_assert_uint_eq(revtun_acceptor_ping_interval_ms(acc), 10000);
  const char *r = request("PUT /custom/path HTTP/1.1", HDRS_NCT);
  struct outcome o = run(h, acc, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  r = request("put /custom/path HTTP/1.1", HDRS_NCT); /* method compared case-insensitively */
  o = run(h, acc, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  r = request("GET /custom/path HTTP/1.1", HDRS_NCT);
  o = run(h, acc, r, strlen(r), 0);
  expect_reject(&o, 404, "Not Found", "Not a reverse tunnel request");
  revtun_acceptor_free(acc);
  acc = acceptor(h, "acc_5500");
  ck_assert_uint_eq(revtun_acceptor_ping_interval_ms(acc), 5500);
  r = request("GET /reverse_connections/request HTTP/1.1", HDRS_NCT);
  o = run(h, acc, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  revtun_acceptor_free(acc);
  acc = acceptor(h, "acc_1ms");
  ck_assert_uint_eq(revtun_acceptor_ping_interval_ms(acc), 1); /* 1 ms stays 1 ms */
  revtun_acceptor_free(acc);
  acc = acceptor(h, "acc_flags"); /* accepted, no effect */
  revtun_free(h);
}
END_TEST

static void expect_config_error(const char *name, const char *want) {
  size_t len;
  uint8_t *cfg = tu_config(name, &len);
  char err[256];
  ck_assert_int_eq(revtun_acceptor_config_validate(cfg, len, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_msg(strstr(err, want) != NULL, "%s: '%s' lacks '%s'", name, err, want);
  free(cfg);
}

START_TEST(config_errors) {
  expect_config_error("acc_interval_zero", "ping_interval must be between 1ms and 300s");
  expect_config_error("acc_interval_big", "ping_interval must be between 1ms and 300s");
  expect_config_error("acc_interval_submilli", "ping_interval must be between 1ms and 300s");
  expect_config_error("acc_path_long", "request_path is 256 characters, more than 255");
  /* counted in characters as Envoy counts them: 255 x U+00E9 is 510 bytes */
  expect_config_error("acc_path_utf8_long", "request_path is 256 characters, more than 255");
  size_t utf8_len;
  uint8_t *utf8 = tu_config("acc_path_utf8", &utf8_len);
  char utf8_err[256];
  ck_assert_int_eq(revtun_acceptor_config_validate(utf8, utf8_len, utf8_err, sizeof(utf8_err)),
                   REVTUN_OK);
  free(utf8);
  expect_config_error("acc_val_badop", "Failed to parse node_id_format");
  expect_config_error("acc_val_badop", "UPSTREAM_HOST");
  /* jwt_validator (field 10) is refused rather than ignored */
  static const uint8_t jwt[] = {0x52, 0x02, 0x0a, 0x00};
  char err[256];
  ck_assert_int_eq(revtun_acceptor_config_validate(jwt, sizeof(jwt), err, sizeof(err)),
                   REVTUN_E_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "jwt_validator"));
  static const uint8_t method99[] = {0x20, 0x63};
  ck_assert_int_eq(revtun_acceptor_config_validate(method99, 2, err, sizeof(err)), REVTUN_E_CONFIG);
  static const uint8_t junk[] = {0xff, 0xff, 0xff};
  ck_assert_int_eq(revtun_acceptor_config_validate(junk, 3, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_int_eq(revtun_acceptor_config_validate(NULL, 0, err, sizeof(err)), REVTUN_OK);
}
END_TEST

START_TEST(required_cluster_name) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_cluster_name");
  char hdrs[512];
  const char *line = "GET /reverse_connections/request HTTP/1.1";
  snprintf(hdrs, sizeof(hdrs),
           "%sx-envoy-reverse-tunnel-upstream-cluster-name: my-upstream-cluster\r\n", HDRS_NCT);
  const char *r = request(line, hdrs);
  struct outcome o = run(h, acc, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  snprintf(hdrs, sizeof(hdrs), "%sx-envoy-reverse-tunnel-upstream-cluster-name: wrong-cluster\r\n",
           HDRS_NCT);
  r = request(line, hdrs);
  o = run(h, acc, r, strlen(r), 0);
  expect_reject(&o, 400, "Bad Request", "Cluster name mismatch");
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.validation_failed"), 1);
  r = request(line, HDRS_NCT);
  o = run(h, acc, r, strlen(r), 0);
  expect_reject(&o, 400, "Bad Request", "Missing upstream cluster name header");
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.parse_error"), 1);
  revtun_acceptor_free(acc);
  acc = acceptor(h, "acc_default"); /* no check when unset */
  r = request(line, HDRS_NCT);
  o = run(h, acc, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  revtun_free(h);
}
END_TEST

START_TEST(upgrade_mode) {
  size_t chunk = chunks[_i];
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_upgrade");
  char hdrs[512];
  snprintf(hdrs, sizeof(hdrs), "connection: upgrade\r\nupgrade: reverse-tunnel\r\n%s", HDRS_NCT);
  const char *line = "GET /reverse_connections/request HTTP/1.1";
  const char *r = request(line, hdrs);
  struct outcome o = run(h, acc, r, strlen(r), chunk);
  ck_assert_str_eq(o.response, "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n"
                               "upgrade: reverse-tunnel\r\n\r\n");
  ck_assert(o.registered);
  r = request(line, HDRS_NCT);
  o = run(h, acc, r, strlen(r), chunk);
  expect_reject(&o, 426, "Upgrade Required", "Upgrade: reverse-tunnel required");
  snprintf(hdrs, sizeof(hdrs), "connection: upgrade\r\nupgrade: websocket\r\n%s", HDRS_NCT);
  r = request(line, hdrs);
  o = run(h, acc, r, strlen(r), chunk);
  expect_reject(&o, 426, "Upgrade Required", "Upgrade: reverse-tunnel required");
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.parse_error"), 2);
  revtun_free(h);
}
END_TEST

START_TEST(connection_limit_429) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("limit2", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_limit");
  const char *r = request("GET /reverse_connections/request HTTP/1.1", HDRS_NCT);
  int fds[3], cls[3];
  for (int i = 0; i < 3; i++) {
    int sv[2];
    tu_socketpair(sv);
    fds[i] = sv[0], cls[i] = sv[1];
    ck_assert_int_eq(revtun_acceptor_accept(acc, fds[i], NULL, 1), REVTUN_OK);
    tu_write(cls[i], r);
    revtun_process_io(h, fds[i], REVTUN_IO_READ, 2);
  }
  char resp[512];
  tu_read_all(cls[0], resp, sizeof(resp));
  ck_assert_str_eq(resp, OK_200);
  tu_read_all(cls[2], resp, sizeof(resp));
  ck_assert_str_eq(resp, "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\n"
                         "transfer-encoding: chunked\r\n\r\n8\r\nrejected\r\n0\r\n\r\n");
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.rejected"), 1);
  ck_assert_int_eq(revtun_idle_count(h, "n", "t"), 2);
  /* a tunnel goes away: room again */
  revtun_mark_dead(h, fds[0], REVTUN_CLOSE_EXPLICIT_CLOSE, 3);
  close(cls[0]);
  int sv[2];
  tu_socketpair(sv);
  ck_assert_int_eq(revtun_acceptor_accept(acc, sv[0], NULL, 4), REVTUN_OK);
  tu_write(sv[1], r);
  revtun_process_io(h, sv[0], REVTUN_IO_READ, 4);
  tu_read_all(sv[1], resp, sizeof(resp));
  ck_assert_str_eq(resp, OK_200);
  revtun_free(h);
  close(cls[1]), close(cls[2]), close(sv[1]);
}
END_TEST

START_TEST(limit_not_enforced_without_enable) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("limit2", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_default");
  const char *r = request("GET /reverse_connections/request HTTP/1.1", HDRS_NCT);
  int cls[3];
  for (int i = 0; i < 3; i++) {
    int sv[2];
    tu_socketpair(sv);
    cls[i] = sv[1];
    ck_assert_int_eq(revtun_acceptor_accept(acc, sv[0], NULL, 1), REVTUN_OK);
    tu_write(sv[1], r);
    revtun_process_io(h, sv[0], REVTUN_IO_READ, 2);
  }
  ck_assert_int_eq(revtun_idle_count(h, "n", "t"), 3); /* as Envoy: limit is the filter's choice */
  revtun_free(h);
  for (int i = 0; i < 3; i++)
    close(cls[i]);
}
END_TEST

START_TEST(identity_validation) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  const char *line = "GET /reverse_connections/request HTTP/1.1";
  revtun_acceptor_t *acc = acceptor(h, "acc_val_static");
  const char *ok = request(line, "x-envoy-reverse-tunnel-node-id: test-node\r\n"
                                 "x-envoy-reverse-tunnel-cluster-id: test-cluster\r\n"
                                 "x-envoy-reverse-tunnel-tenant-id: t\r\n");
  struct outcome o = run(h, acc, ok, strlen(ok), 0);
  ck_assert_str_eq(o.response, OK_200);
  const char *bad = request(line, "x-envoy-reverse-tunnel-node-id: wrong-node\r\n"
                                  "x-envoy-reverse-tunnel-cluster-id: wrong-cluster\r\n"
                                  "x-envoy-reverse-tunnel-tenant-id: t\r\n");
  o = run(h, acc, bad, strlen(bad), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.validation_failed"), 1);
  revtun_acceptor_free(acc);
  /* only the configured id is checked */
  acc = acceptor(h, "acc_val_node_only");
  const char *mixed = request(line, "x-envoy-reverse-tunnel-node-id: test-node\r\n"
                                    "x-envoy-reverse-tunnel-cluster-id: anything\r\n"
                                    "x-envoy-reverse-tunnel-tenant-id: t\r\n");
  o = run(h, acc, mixed, strlen(mixed), 0);
  ck_assert_str_eq(o.response, OK_200);
  revtun_acceptor_free(acc);
  acc = acceptor(h, "acc_val_cluster_only");
  o = run(h, acc, mixed, strlen(mixed), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  revtun_acceptor_free(acc);
  /* empty formats skip validation */
  acc = acceptor(h, "acc_val_empty");
  o = run(h, acc, bad, strlen(bad), 0);
  ck_assert_str_eq(o.response, OK_200);
  revtun_acceptor_free(acc);
  /* %REQ(header)% binds the tenant to another header */
  acc = acceptor(h, "acc_val_req");
  char hdrs[512];
  snprintf(hdrs, sizeof(hdrs), "%sx-tenant-claim: t\r\n", HDRS_NCT);
  const char *r = request(line, hdrs);
  o = run(h, acc, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  snprintf(hdrs, sizeof(hdrs), "%sx-tenant-claim: other\r\n", HDRS_NCT);
  r = request(line, hdrs);
  o = run(h, acc, r, strlen(r), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  r = request(line, HDRS_NCT); /* header absent: renders "-", fails closed */
  o = run(h, acc, r, strlen(r), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  revtun_acceptor_free(acc);
  /* a socketpair has no IP address, so the address renders null: closed */
  acc = acceptor(h, "acc_val_complex");
  o = run(h, acc, ok, strlen(ok), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  revtun_free(h);
}
END_TEST

START_TEST(metadata_on_setup_record) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_metadata");
  const char *r = request("GET /reverse_connections/request HTTP/1.1", HDRS_NCT);
  struct outcome o = run(h, acc, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  const struct tu_event *e = tu_nth(&rec, REVTUN_EV_TUNNEL_SETUP, 0);
  ck_assert_ptr_nonnull(strstr(e->meta, "envoy.filters.network.reverse_tunnel:validation_result="
                                        "validation_passed;"));
  ck_assert_ptr_nonnull(strstr(e->meta, "envoy.filters.network.reverse_tunnel:node_id=n;"));
  revtun_acceptor_free(acc);
  acc = acceptor(h, "acc_metadata_ns");
  o = run(h, acc, r, strlen(r), 0);
  ck_assert_ptr_nonnull(strstr(tu_last(&rec, REVTUN_EV_TUNNEL_SETUP)->meta, "my.ns:tenant_id=t;"));
  revtun_free(h);

  /* an access log reads it as %DYNAMIC_METADATA(<namespace>:<key>)% */
  char dir[] = "/tmp/revtun-acc-XXXXXX", old[1024];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  ck_assert_ptr_nonnull(getcwd(old, sizeof(old)));
  ck_assert_int_eq(chdir(dir), 0);
  tu_rec_init(&rec);
  h = tu_new("acc_md_log", &rec, 0);
  acc = acceptor(h, "acc_metadata");
  o = run(h, acc, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  revtun_free(h); /* flushes */
  char line[512] = "";
  FILE *f = fopen("md.log", "r");
  ck_assert_ptr_nonnull(f);
  ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
  fclose(f);
  ck_assert_str_eq(line, "tunnel_setup validation_passed - n\n");
  unlink("md.log");
  ck_assert_int_eq(chdir(old), 0);
  rmdir(dir);
}
END_TEST

/* The connection metadata object: every bound and every bad argument. */
START_TEST(conn_meta_bounds) {
  revtun_conn_meta_t *m = NULL;
  ck_assert_int_eq(revtun_conn_meta_new(NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_new(&m), REVTUN_OK);
  revtun_conn_meta_free(NULL);
  char name[REVTUN_CONN_META_MAX_NAME + 1], value[REVTUN_CONN_META_MAX_VALUE + 1];
  memset(name, 'n', sizeof(name));
  memset(value, 'v', sizeof(value));
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(NULL, "ns", 2, "k", 1, "v", 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, NULL, 2, "k", 1, "v", 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "ns", 0, "k", 1, "v", 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "ns", 2, NULL, 1, "v", 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "ns", 2, "k", 0, "v", 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "ns", 2, "k", 1, NULL, 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_filter_state(NULL, "k", 1, "v", 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_filter_state(m, NULL, 1, "v", 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_filter_state(m, "k", 0, "v", 1), REVTUN_E_INVAL);
  /* embedded NUL (lengths are given) and ':' (the operators split on it) */
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "a\0b", 3, "k", 1, "v", 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "ns", 2, "k\0", 2, "v", 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "ns", 2, "k", 1, "v\0w", 3), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "a:b", 3, "k", 1, "v", 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "ns", 2, "a:b", 3, "v", 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_filter_state(m, "a:b", 3, "v", 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_filter_state(m, "k", 1, "v\0", 2), REVTUN_E_INVAL);
  /* sizes: the constants are the largest accepted */
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, name, sizeof(name), "k", 1, "v", 1),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "ns", 2, name, sizeof(name), "v", 1),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "ns", 2, "k", 1, value, sizeof(value)),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_filter_state(m, name, sizeof(name), "v", 1),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_filter_state(m, "k", 1, value, sizeof(value)),
                   REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, name, sizeof(name) - 1, name, sizeof(name) - 1,
                                                value, sizeof(value) - 1),
                   REVTUN_OK);
  ck_assert_int_eq(revtun_conn_meta_set_filter_state(m, "empty", 5, NULL, 0), REVTUN_OK);
  /* a bounded count; setting an existing entry replaces it and costs nothing */
  for (int i = 2; i < REVTUN_CONN_META_MAX_ENTRIES; i++) {
    char k[16];
    int n = snprintf(k, sizeof(k), "k%d", i);
    ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "ns", 2, k, (size_t)n, "v", 1), REVTUN_OK);
  }
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "ns", 2, "one-more", 8, "v", 1), REVTUN_E_LIMIT);
  ck_assert_int_eq(revtun_conn_meta_set_filter_state(m, "one-more", 8, "v", 1), REVTUN_E_LIMIT);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "ns", 2, "k2", 2, "replaced", 8), REVTUN_OK);
  ck_assert_int_eq(revtun_conn_meta_set_filter_state(m, "empty", 5, "now-set", 7), REVTUN_OK);
  revtun_conn_meta_free(m);
}
END_TEST

static const char *const LINE = "GET /reverse_connections/request HTTP/1.1";

static const char *ids_request(const char *node, const char *cluster, const char *tenant) {
  char hdrs[1024];
  snprintf(hdrs, sizeof(hdrs),
           "x-envoy-reverse-tunnel-node-id: %s\r\nx-envoy-reverse-tunnel-cluster-id: %s\r\n"
           "x-envoy-reverse-tunnel-tenant-id: %s\r\n",
           node, cluster, tenant);
  return request(LINE, hdrs);
}

static revtun_conn_meta_t *allowlist(const char *node) {
  revtun_conn_meta_t *m = NULL;
  ck_assert_int_eq(revtun_conn_meta_new(&m), REVTUN_OK);
  static const char ns[] = "envoy.reverse_tunnel.allowlist";
  ck_assert_int_eq(
      revtun_conn_meta_set_dynamic(m, ns, strlen(ns), "expected_node_id", 16, node, strlen(node)),
      REVTUN_OK);
  return m;
}

/* Envoy's documented example: node_id_format
 * %DYNAMIC_METADATA(envoy.reverse_tunnel.allowlist:expected_node_id)%. */
START_TEST(validation_dynamic_metadata) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_val_dynmeta");
  const char *r = ids_request("edge-1", "c", "t");
  for (size_t i = 0; i < 3; i++) { /* freed right after accept: the acceptor has a copy */
    struct outcome o = run_meta(h, acc, allowlist("edge-1"), true, r, strlen(r), chunks[i]);
    ck_assert_str_eq(o.response, OK_200);
    ck_assert(o.registered);
  }
  revtun_conn_meta_t *m = allowlist("edge-2");
  struct outcome o = run_meta(h, acc, m, false, r, strlen(r), 0); /* not on the list */
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  /* the object is reusable, and setting the key again replaces the value */
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "envoy.reverse_tunnel.allowlist", 30,
                                                "expected_node_id", 16, "edge-1", 6),
                   REVTUN_OK);
  o = run_meta(h, acc, m, true, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  /* nothing attached renders "-", which fails closed as a missing header does */
  o = run(h, acc, r, strlen(r), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  o = run(h, acc, ids_request("-", "c", "t"), strlen(ids_request("-", "c", "t")), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  /* another namespace or key, or filter state of that name, is not the entry */
  ck_assert_int_eq(revtun_conn_meta_new(&m), REVTUN_OK);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "other", 5, "expected_node_id", 16, "edge-1", 6),
                   REVTUN_OK);
  ck_assert_int_eq(revtun_conn_meta_set_filter_state(m, "expected_node_id", 16, "edge-1", 6),
                   REVTUN_OK);
  o = run_meta(h, acc, m, true, r, strlen(r), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  /* an empty value is present but renders empty: refused */
  m = allowlist("");
  o = run_meta(h, acc, m, true, r, strlen(r), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.validation_failed"), 5);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.accepted"), 4);
  revtun_free(h);
}
END_TEST

static revtun_conn_meta_t *filter_state(const char *node, const char *cluster) {
  revtun_conn_meta_t *m = NULL;
  ck_assert_int_eq(revtun_conn_meta_new(&m), REVTUN_OK);
  ck_assert_int_eq(revtun_conn_meta_set_filter_state(m, "expected_node_id", 16, node, strlen(node)),
                   REVTUN_OK);
  ck_assert_int_eq(
      revtun_conn_meta_set_filter_state(m, "expected_cluster_id", 19, cluster, strlen(cluster)),
      REVTUN_OK);
  return m;
}

/* %FILTER_STATE(key:PLAIN)% is the raw string; TYPED (the default, Envoy's
 * documented example) is a JSON string, quotes included, as Envoy prints a
 * string object; FIELD is refused (a string has no fields). */
START_TEST(validation_filter_state) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_val_fs");
  const char *r = ids_request("validated-node", "validated-cluster", "t");
  struct outcome o =
      run_meta(h, acc, filter_state("validated-node", "validated-cluster"), true, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  r = ids_request("wrong-node", "wrong-cluster", "t");
  o = run_meta(h, acc, filter_state("validated-node", "validated-cluster"), true, r, strlen(r), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  r = ids_request("validated-node", "wrong-cluster", "t");
  o = run_meta(h, acc, filter_state("validated-node", "validated-cluster"), true, r, strlen(r), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  revtun_acceptor_free(acc);

  acc = acceptor(h, "acc_val_fs_typed");
  r = ids_request("n", "my-cluster", "t");
  o = run_meta(h, acc, filter_state("n", "my-cluster"), true, r, strlen(r), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  r = ids_request("n", "\"my-cluster\"", "t");
  o = run_meta(h, acc, filter_state("n", "my-cluster"), true, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  revtun_free(h);

  size_t len;
  uint8_t *cfg = tu_config("acc_val_fs_field", &len);
  char err[256];
  ck_assert_int_eq(revtun_acceptor_config_validate(cfg, len, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_str_eq(err, "Failed to parse tenant_id_format: command operator "
                        "%FILTER_STATE(k:FIELD:f)% at offset 0: only the PLAIN and TYPED "
                        "serializations are supported");
  free(cfg);
}
END_TEST

/* A whole namespace renders as a JSON object of its entries (in the order
 * they were first set), ":N" truncates, a path below a string is absent. */
START_TEST(validation_dynamic_metadata_shapes) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_val_dynmeta_shapes");
  revtun_conn_meta_t *m = NULL;
  ck_assert_int_eq(revtun_conn_meta_new(&m), REVTUN_OK);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "allow", 5, "tenant", 6, "acme-corp", 9),
                   REVTUN_OK);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "allow", 5, "q", 1, "a\"b", 3), REVTUN_OK);
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "else", 4, "x", 1, "y", 1), REVTUN_OK);
  const char *r = ids_request("{\"tenant\":\"acme-corp\",\"q\":\"a\\\"b\"}", "c", "acm");
  struct outcome o = run_meta(h, acc, m, false, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  r = ids_request("{\"tenant\":\"acme-corp\",\"q\":\"a\\\"b\"}", "c", "acme-corp");
  o = run_meta(h, acc, m, false, r, strlen(r), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  revtun_acceptor_free(acc);

  acc = acceptor(h, "acc_val_dynmeta_deep");
  ck_assert_int_eq(revtun_conn_meta_set_dynamic(m, "allow", 5, "cluster", 7, "c", 1), REVTUN_OK);
  r = ids_request("n", "c", "t");
  o = run_meta(h, acc, m, true, r, strlen(r), 0);
  expect_reject(&o, 403, "Forbidden", "validation_failed");
  revtun_free(h);
}
END_TEST

/* The acceptor's copy counts against the bytes pending handshakes may hold;
 * an acceptor whose formats do not read metadata keeps none. */
START_TEST(conn_meta_budget) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_val_dynmeta");
  ck_assert_int_eq(revtun_acceptor_set_limit(acc, REVTUN_ACCEPTOR_MAX_BUFFERED_BYTES, 64),
                   REVTUN_OK);
  revtun_conn_meta_t *m = allowlist("edge-1");
  int sv[2];
  tu_socketpair(sv);
  int fl = fcntl(sv[0], F_GETFL);
  ck_assert_int_eq(revtun_acceptor_accept_with_meta(acc, sv[0], NULL, m, 1), REVTUN_E_LIMIT);
  ck_assert_uint_eq(revtun_acceptor_pending(acc), 0);
  ck_assert_int_eq(fcntl(sv[0], F_GETFL), fl); /* the caller gets the fd back as it was */
  ck_assert_int_eq(revtun_acceptor_accept_with_meta(NULL, sv[0], NULL, m, 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_acceptor_accept_with_meta(acc, -1, NULL, m, 1), REVTUN_E_INVAL);
  revtun_acceptor_free(acc);
  acc = acceptor(h, "acc_default");
  ck_assert_int_eq(revtun_acceptor_set_limit(acc, REVTUN_ACCEPTOR_MAX_BUFFERED_BYTES, 64),
                   REVTUN_OK);
  const char *r = ids_request("n", "c", "t");
  struct outcome o = run_meta(h, acc, m, true, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  close(sv[0]);
  close(sv[1]);
  revtun_free(h);
}
END_TEST

START_TEST(handshake_timeout) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_default");
  int sv[2];
  tu_socketpair(sv);
  ck_assert_int_eq(revtun_acceptor_accept(acc, sv[0], NULL, 1000), REVTUN_OK);
  tu_write(sv[1], "GET /reverse_connections/request HTTP/1.1\r\nhost: x\r\n"); /* slowloris */
  revtun_process_io(h, sv[0], REVTUN_IO_READ, 2000);
  ck_assert_int_eq(revtun_next_timeout_ms(h, 2000), 9000);
  ck_assert_int_eq(revtun_tick(h, 10999), REVTUN_OK);
  ck_assert_uint_eq(revtun_acceptor_pending(acc), 1);
  ck_assert_int_eq(revtun_tick(h, 11000), REVTUN_OK);
  ck_assert_uint_eq(revtun_acceptor_pending(acc), 0);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.timeout"), 1);
  char b[64];
  ck_assert_int_eq(recv(sv[1], b, sizeof(b), 0), 0); /* closed without a reply */
  ck_assert(!tu_fd_open(sv[0]));
  /* a shorter configured timeout */
  ck_assert_int_eq(revtun_acceptor_set_limit(acc, REVTUN_ACCEPTOR_HANDSHAKE_TIMEOUT_MS, 50),
                   REVTUN_OK);
  int sv2[2];
  tu_socketpair(sv2);
  ck_assert_int_eq(revtun_acceptor_accept(acc, sv2[0], NULL, 20000), REVTUN_OK);
  ck_assert_int_eq(revtun_next_timeout_ms(h, 20000), 50);
  revtun_free(h);
  close(sv[1]), close(sv2[1]);
}
END_TEST

START_TEST(pipelined_bytes_are_tunnel_bytes) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_default");
  const char *r = request("GET /reverse_connections/request HTTP/1.1", HDRS_NCT);
  static char buf[8400]; /* two requests of up to 4096 bytes */
  /* an early echo and a partial one in the same segment */
  snprintf(buf, sizeof(buf), "%sRPINGRP", r);
  int sv[2];
  tu_socketpair(sv);
  tu_write(sv[1], buf);
  ck_assert_int_eq(revtun_acceptor_accept(acc, sv[0], NULL, 1), REVTUN_OK); /* reads at once */
  ck_assert_int_eq(revtun_socket_state(h, sv[0]), REVTUN_SOCK_IDLE);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_PING_ACK), 1);
  revtun_strip_t st = 9;
  int fd;
  ck_assert_int_eq(revtun_handoff(h, "n", "t", 2, &fd, &st), REVTUN_OK);
  ck_assert_uint_eq(st, 2); /* "RP" held and handed over */
  revtun_mark_dead(h, fd, REVTUN_CLOSE_LOCAL_CLOSE, 3);
  close(fd);
  close(sv[1]);
  /* a pipelined second request is not parsed as a handshake: unexpected data */
  snprintf(buf, sizeof(buf), "%s%s", r, r);
  tu_socketpair(sv);
  tu_write(sv[1], buf);
  ck_assert_int_eq(revtun_acceptor_accept(acc, sv[0], NULL, 5), REVTUN_OK);
  ck_assert_int_eq(tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED)->reason,
                   REVTUN_CLOSE_IDLE_UNEXPECTED_DATA);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.accepted"), 2);
  tu_read_all(sv[1], buf, sizeof(buf));
  ck_assert_str_eq(buf, OK_200); /* exactly one answer */
  revtun_free(h);
  close(sv[1]);
}
END_TEST

START_TEST(accept_misuse) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_default");
  ck_assert_int_eq(revtun_acceptor_accept(NULL, 3, NULL, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_acceptor_accept(acc, -1, NULL, 0), REVTUN_E_INVAL);
  int sv[2];
  tu_socketpair(sv);
  ck_assert_int_eq(revtun_acceptor_accept(acc, sv[0], NULL, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_acceptor_accept(acc, sv[0], NULL, 0), REVTUN_E_EXISTS);
  ck_assert_int_eq(tu_register(h, sv[0], "n", "c", NULL, 0, 0), REVTUN_E_EXISTS);
  ck_assert_int_eq(revtun_mark_dead(h, sv[0], 0, 0), REVTUN_E_NOT_FOUND); /* not a tunnel */
  ck_assert_int_eq(revtun_acceptor_set_limit(acc, REVTUN_ACCEPTOR_MAX_PENDING, 1), REVTUN_OK);
  int sv2[2];
  tu_socketpair(sv2);
  ck_assert_int_eq(revtun_acceptor_accept(acc, sv2[0], NULL, 0), REVTUN_E_LIMIT);
  ck_assert(tu_fd_open(sv2[0])); /* still the caller's */
  ck_assert_int_eq(revtun_acceptor_set_header_prefix(acc, "bad prefix"), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_acceptor_set_limit(acc, 99, 1), REVTUN_E_INVAL);
  revtun_acceptor_free(acc); /* closes the pending handshake */
  ck_assert(!tu_fd_open(sv[0]));
  revtun_free(h);
  close(sv[1]), close(sv2[0]), close(sv2[1]);
}
END_TEST

START_TEST(custom_header_prefix) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_default");
  ck_assert_int_eq(revtun_acceptor_set_header_prefix(acc, "x-acme"), REVTUN_OK);
  const char *r =
      request("GET /reverse_connections/request HTTP/1.1",
              "x-acme-reverse-tunnel-node-id: n\r\nx-acme-reverse-tunnel-cluster-id: c\r\n"
              "x-acme-reverse-tunnel-tenant-id: t\r\n");
  struct outcome o = run(h, acc, r, strlen(r), 0);
  ck_assert_str_eq(o.response, OK_200);
  r = request("GET /reverse_connections/request HTTP/1.1", HDRS_NCT);
  o = run(h, acc, r, strlen(r), 0);
  expect_reject(&o, 400, "Bad Request", "Missing required reverse tunnel headers");
  revtun_free(h);
}
END_TEST

/* ---------------------- a byte-exact Envoy initiator over loopback TCP */

static int listen_tcp(struct sockaddr_in *sa) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  sa->sin_family = AF_INET;
  sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa->sin_port = 0;
  socklen_t sl = sizeof(*sa);
  ck_assert_int_eq(bind(ls, (struct sockaddr *)sa, sizeof(*sa)), 0);
  ck_assert_int_eq(listen(ls, 16), 0);
  getsockname(ls, (struct sockaddr *)sa, &sl);
  return ls;
}

/* The request exactly as Envoy's rc_connection_wrapper writes it. */
static int initiator_connect(const struct sockaddr_in *sa, const char *node, const char *cluster,
                             const char *tenant, int conn_id) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_eq(connect(fd, (const struct sockaddr *)sa, sizeof(*sa)), 0);
  char req[1024];
  int n = snprintf(req, sizeof(req),
                   "GET /reverse_connections/request HTTP/1.1\r\n"
                   "host: 127.0.0.1:%d\r\n"
                   "x-envoy-reverse-tunnel-node-id: %s\r\n"
                   "x-envoy-reverse-tunnel-cluster-id: %s\r\n"
                   "x-envoy-reverse-tunnel-tenant-id: %s\r\n"
                   "x-envoy-reverse-tunnel-upstream-cluster-name: upstream\r\n"
                   "x-envoy-reverse-tunnel-initiation-time: 1795800725515\r\n"
                   "x-envoy-reverse-tunnel-worker-id: worker_2\r\n"
                   "x-envoy-reverse-tunnel-connection-id: %d\r\n"
                   "content-length: 0\r\n\r\n",
                   ntohs(sa->sin_port), node, cluster, tenant, conn_id);
  ck_assert_int_eq(send(fd, req, (size_t)n, 0), n);
  return fd;
}

/* Runs the library until the predicate holds: poll on every fd it watches. */
static void pump(revtun_t *h, int fd, revtun_time_ms_t now) {
  struct pollfd p = {fd, POLLIN, 0};
  ck_assert_int_eq(poll(&p, 1, 5000), 1);
  revtun_process_io(h, fd, REVTUN_IO_READ, now);
}

/* Drives the acceptor on `conn` until the agent has an answer to read. */
static void await_response(revtun_t *h, int conn, int agent, char *resp, size_t cap) {
  for (int i = 0; i < 100; i++) {
    struct pollfd p = {agent, POLLIN, 0};
    if (poll(&p, 1, 0) == 1)
      break;
    struct pollfd q = {conn, POLLIN, 0};
    if (poll(&q, 1, 50) == 1)
      revtun_process_io(h, conn, REVTUN_IO_READ, 2);
  }
  tu_read_all(agent, resp, cap);
}

START_TEST(envoy_initiator_end_to_end) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_val_addr");
  struct sockaddr_in sa;
  int ls = listen_tcp(&sa);
  int agents[2], conns[2];
  const char *nodes[2] = {"node-127.0.0.1", "node-127.0.0.1"};
  for (int i = 0; i < 2; i++) {
    agents[i] = initiator_connect(&sa, nodes[i], "edge", "acme", 40 + i);
    conns[i] = accept(ls, NULL, NULL);
    ck_assert_int_eq(revtun_acceptor_accept(acc, conns[i], NULL, 100), REVTUN_OK);
    char resp[256];
    await_response(h, conns[i], agents[i], resp, sizeof(resp));
    ck_assert_str_eq(resp, OK_200);
  }
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel.handshake.accepted"), 2);
  ck_assert_int_eq(revtun_idle_count(h, "node-127.0.0.1", "acme"), 2);
  const struct tu_event *e = tu_nth(&rec, REVTUN_EV_TUNNEL_SETUP, 1);
  ck_assert_str_eq(e->init_worker, "worker_2");
  ck_assert_str_eq(e->init_conn, "41");
  ck_assert_int_eq(e->initiation_time, 1795800725515);
  ck_assert_int_eq(tu_nth(&rec, REVTUN_EV_REPORT_CONNECTED, 0)->initiation_time, 1795800725515);
  /* keepalive: ping, echo like Envoy's initiator, ack */
  int64_t wait = revtun_next_timeout_ms(h, 100);
  revtun_time_ms_t now = 100 + (revtun_time_ms_t)wait;
  revtun_tick(h, now);
  revtun_tick(h, now + 300); /* jitter may put the second one later */
  for (int i = 0; i < 2; i++) {
    char b[16];
    struct pollfd p = {agents[i], POLLIN, 0};
    ck_assert_int_eq(poll(&p, 1, 5000), 1);
    ck_assert_int_eq(recv(agents[i], b, sizeof(b), 0), 5);
    ck_assert_mem_eq(b, "RPING", 5);
    ck_assert_int_eq(send(agents[i], "RPING", 5, 0), 5);
    pump(h, conns[i], now + 301);
  }
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_PING_ACK), 2);
  /* handoff: the host gets a live socket that reaches the initiator */
  int fd;
  ck_assert_int_eq(revtun_handoff_by_cluster(h, "edge", "acme", now + 400, &fd, NULL), REVTUN_OK);
  ck_assert_int_eq(send(fd, "PRI * HTTP/2.0", 14, 0), 14);
  char b[32];
  struct pollfd p = {fd == conns[0] ? agents[0] : agents[1], POLLIN, 0};
  ck_assert_int_eq(poll(&p, 1, 5000), 1);
  ck_assert_int_eq(recv(p.fd, b, sizeof(b), 0), 14);
  revtun_mark_dead(h, fd, REVTUN_CLOSE_LOCAL_CLOSE, now + 500);
  close(fd);
  revtun_free(h);
  close(agents[0]), close(agents[1]), close(ls);
}
END_TEST

START_TEST(address_validation_over_tcp) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  revtun_acceptor_t *acc = acceptor(h, "acc_val_complex");
  struct sockaddr_in sa;
  int ls = listen_tcp(&sa);
  char resp[512];
  /* prefix-<addr>-suffix against a plain node id -> 403 */
  int a = initiator_connect(&sa, "node", "c", "t", 1);
  int c = accept(ls, NULL, NULL);
  ck_assert_int_eq(revtun_acceptor_accept(acc, c, NULL, 1), REVTUN_OK);
  await_response(h, c, a, resp, sizeof(resp));
  ck_assert_ptr_nonnull(strstr(resp, "HTTP/1.1 403 Forbidden\r\n"));
  /* and the matching one is accepted */
  int a2 = initiator_connect(&sa, "prefix-127.0.0.1-suffix", "c", "t", 2);
  int c2 = accept(ls, NULL, NULL);
  ck_assert_int_eq(revtun_acceptor_accept(acc, c2, NULL, 1), REVTUN_OK);
  await_response(h, c2, a2, resp, sizeof(resp));
  ck_assert_str_eq(resp, OK_200);
  ck_assert_int_eq(revtun_socket_state(h, c2), REVTUN_SOCK_IDLE);
  revtun_free(h);
  close(a), close(a2), close(ls);
}
END_TEST

int main(void) {
  Suite *s = suite_create("acceptor");
  TCase *tc = tcase_create("acceptor");
  tcase_add_loop_test(tc, full_flow_accepts, 0, 3);
  tcase_add_loop_test(tc, rejections_exact, 0, 3);
  tcase_add_loop_test(tc, body_rejected_before_path, 0, 3);
  tcase_add_loop_test(tc, malformed_and_too_large, 0, 3);
  tcase_add_loop_test(tc, upgrade_mode, 0, 3);
  tcase_add_test(tc, custom_config_and_defaults);
  tcase_add_test(tc, config_errors);
  tcase_add_test(tc, required_cluster_name);
  tcase_add_test(tc, connection_limit_429);
  tcase_add_test(tc, limit_not_enforced_without_enable);
  tcase_add_test(tc, identity_validation);
  tcase_add_test(tc, metadata_on_setup_record);
  tcase_add_test(tc, conn_meta_bounds);
  tcase_add_test(tc, validation_dynamic_metadata);
  tcase_add_test(tc, validation_filter_state);
  tcase_add_test(tc, validation_dynamic_metadata_shapes);
  tcase_add_test(tc, conn_meta_budget);
  tcase_add_test(tc, handshake_timeout);
  tcase_add_test(tc, pipelined_bytes_are_tunnel_bytes);
  tcase_add_test(tc, accept_misuse);
  tcase_add_test(tc, custom_header_prefix);
  tcase_add_test(tc, envoy_initiator_end_to_end);
  tcase_add_test(tc, address_validation_over_tcp);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
