/* The sans-I/O handshake parser and response bytes (lib/handshake.c),
 * tested directly: every split point, limits, strictness, body rules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acceptor/handshake.h"
#include "testutil.h"

static const struct rt_hs_limits lim = {8192, 100};

static const char *const good = "GET /reverse_connections/request HTTP/1.1\r\n"
                                "host: 127.0.0.1:9000\r\n"
                                "x-envoy-reverse-tunnel-node-id: n\r\n"
                                "X-Envoy-Reverse-Tunnel-Cluster-Id:  c \r\n"
                                "x-envoy-reverse-tunnel-tenant-id: t\r\n"
                                "x-envoy-reverse-tunnel-tenant-id: second\r\n"
                                "content-length: 0\r\n"
                                "\r\n";

static enum rt_hs_result parse(const char *s, struct rt_hs_request *req) {
  size_t scan = 0;
  return rt_hs_parse((const uint8_t *)s, strlen(s), &lim, &scan, req);
}

START_TEST(complete_request) {
  struct rt_hs_request *req = malloc(sizeof(*req));
  ck_assert_int_eq(parse(good, req), RT_HS_DONE);
  ck_assert(rt_str_eq(req->method, "GET"));
  ck_assert(rt_str_eq(req->target, "/reverse_connections/request"));
  ck_assert_int_eq(req->minor_version, 1);
  ck_assert_uint_eq(req->n_headers, 6);
  ck_assert_uint_eq(req->consumed, strlen(good));
  const struct rt_str *v = rt_hs_header(req, "x-envoy-reverse-tunnel-cluster-id");
  ck_assert(v && rt_str_eq(*v, "c")); /* case-insensitive name, trimmed value */
  v = rt_hs_header(req, "X-ENVOY-REVERSE-TUNNEL-TENANT-ID");
  ck_assert(v && rt_str_eq(*v, "t")); /* first value of a repeated header */
  ck_assert_ptr_null(rt_hs_header(req, "x-absent"));
  free(req);
}
END_TEST

START_TEST(every_split_point_needs_more_then_completes) {
  struct rt_hs_request *req = malloc(sizeof(*req));
  size_t n = strlen(good);
  for (size_t cut = 0; cut < n; cut++) {
    size_t scan = 0;
    ck_assert_int_eq(rt_hs_parse((const uint8_t *)good, cut, &lim, &scan, req), RT_HS_NEED_MORE);
    /* resuming with the remembered scan position gives the same result */
    ck_assert_int_eq(rt_hs_parse((const uint8_t *)good, n, &lim, &scan, req), RT_HS_DONE);
    ck_assert_uint_eq(req->consumed, n);
  }
  free(req);
}
END_TEST

START_TEST(bytes_after_the_request_are_not_consumed) {
  struct rt_hs_request *req = malloc(sizeof(*req));
  char buf[1024];
  snprintf(buf, sizeof(buf), "%sRPINGGET / HTTP/1.1\r\n\r\n", good);
  ck_assert_int_eq(parse(buf, req), RT_HS_DONE);
  ck_assert_uint_eq(req->consumed, strlen(good));
  free(req);
}
END_TEST

static enum rt_hs_result parse_one(const char *s) {
  struct rt_hs_request *req = malloc(sizeof(*req));
  enum rt_hs_result r = parse(s, req);
  free(req);
  return r;
}

START_TEST(malformed_inputs) {
  static const char *const bad[] = {
      "INVALID\r\n\r\n",
      "GET / HTTP/999.999\r\n\r\n",
      "GET / HTTP/2.0\r\n\r\n",
      "GET /\r\n\r\n",
      "GET  / HTTP/1.1\r\n\r\n",
      "G@T / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\nhost: x\r\n\r\n",              /* bare LF */
      "GET / HTTP/1.1\r\nhost : x\r\n\r\n",           /* space before colon */
      "GET / HTTP/1.1\r\nhost: x\r\n folded\r\n\r\n", /* obs-fold */
      "GET / HTTP/1.1\r\n: x\r\n\r\n",                /* empty name */
      "GET / HTTP/1.1\r\nnocolon\r\n\r\n",
      "GET / HTTP/1.1\r\nh: a\rb\r\n\r\n", /* stray CR */
      "GET / HTTP/1.1\r\ncontent-length: abc\r\n\r\n",
      "GET / HTTP/1.1\r\ncontent-length: 0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
      "GET / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
      "GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n\r\n",
      "\x16\x03\x01\x02\x01\x01\xfc\x03\x03\r\n\r\n", /* a TLS ClientHello */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    ck_assert_msg(parse_one(bad[i]) == RT_HS_MALFORMED, "input %zu", i);
  /* a NUL inside a header value */
  char nul[] = "GET / HTTP/1.1\r\nh: a\0b\r\n\r\n";
  struct rt_hs_request *req = malloc(sizeof(*req));
  size_t scan = 0;
  ck_assert_int_eq(rt_hs_parse((uint8_t *)nul, sizeof(nul) - 1, &lim, &scan, req), RT_HS_MALFORMED);
  free(req);
  ck_assert_int_eq(parse_one("GET / HTTP/1.0\r\n\r\n"), RT_HS_DONE);
}
END_TEST

/* A byte that cannot be in a method is refused as soon as it arrives, not
 * after a head that will never come (a ClientHello's first byte is 0x16). */
START_TEST(a_bad_method_is_refused_at_once) {
  static const char *const early[] = {"\x16", "\x16\x03\x01", "G\x01", " GET", "GE@"};
  for (size_t i = 0; i < sizeof(early) / sizeof(early[0]); i++) {
    struct rt_hs_request *req = malloc(sizeof(*req));
    size_t scan = 0;
    ck_assert_msg(rt_hs_parse((const uint8_t *)early[i], strlen(early[i]), &lim, &scan, req) ==
                      RT_HS_MALFORMED,
                  "input %zu", i);
    free(req);
  }
  /* while a method still being spelled waits for more */
  struct rt_hs_request *req = malloc(sizeof(*req));
  size_t scan = 0;
  ck_assert_int_eq(rt_hs_parse((const uint8_t *)"GE", 2, &lim, &scan, req), RT_HS_NEED_MORE);
  scan = 0;
  ck_assert_int_eq(rt_hs_parse((const uint8_t *)"GET /rev", 8, &lim, &scan, req), RT_HS_NEED_MORE);
  free(req);
}
END_TEST

START_TEST(body_rules) {
  ck_assert_int_eq(parse_one("GET / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello"), RT_HS_BODY);
  ck_assert_int_eq(parse_one("GET / HTTP/1.1\r\ncontent-length: 00\r\n\r\n"), RT_HS_BODY);
  ck_assert_int_eq(parse_one("POST /x HTTP/1.1\r\ncontent-length: 100\r\n\r\n"), RT_HS_BODY);
  ck_assert_int_eq(parse_one("GET / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"), RT_HS_DONE);
  ck_assert_int_eq(parse_one("GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello"),
                   RT_HS_BODY);
  ck_assert_int_eq(parse_one("GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\na"), RT_HS_BODY);
  ck_assert_int_eq(parse_one("GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0"),
                   RT_HS_NEED_MORE);
  ck_assert_int_eq(parse_one("GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n"),
                   RT_HS_NEED_MORE);
  /* a zero-length chunked body with trailers completes */
  const char *t = "GET / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n000;ext=1\r\nx-t: 1\r\n\r\n";
  struct rt_hs_request *req = malloc(sizeof(*req));
  ck_assert_int_eq(parse(t, req), RT_HS_DONE);
  ck_assert_uint_eq(req->consumed, strlen(t));
  free(req);
}
END_TEST

START_TEST(limits) {
  struct rt_hs_limits small = {64, 3};
  struct rt_hs_request *req = malloc(sizeof(*req));
  size_t scan = 0;
  const char *big =
      "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n";
  ck_assert_int_eq(rt_hs_parse((const uint8_t *)big, strlen(big), &small, &scan, req),
                   RT_HS_TOO_LARGE);
  const char *many = "GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n";
  scan = 0;
  small.max_header_bytes = 8192;
  ck_assert_int_eq(rt_hs_parse((const uint8_t *)many, strlen(many), &small, &scan, req),
                   RT_HS_TOO_LARGE);
  free(req);
}
END_TEST

static void assert_bytes(const char *buf, size_t n, const char *expect) {
  ck_assert_uint_eq(n, strlen(expect));
  ck_assert_mem_eq(buf, expect, n);
}

START_TEST(response_bytes) {
  char buf[RT_HS_RESPONSE_CAP];
  assert_bytes(buf, rt_hs_response_ok(buf, false), "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
  assert_bytes(buf, rt_hs_response_ok(buf, true),
               "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n"
               "upgrade: reverse-tunnel\r\n\r\n");
  assert_bytes(buf, rt_hs_response_reject(buf, 404, "Not a reverse tunnel request", 0),
               "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n"
               "transfer-encoding: chunked\r\n\r\n1c\r\nNot a reverse tunnel request\r\n"
               "0\r\n\r\n");
  assert_bytes(buf,
               rt_hs_response_reject(buf, 426, "Upgrade: reverse-tunnel required",
                                     RT_HS_REPLY_UPGRADE_HEADER),
               "HTTP/1.1 426 Upgrade Required\r\ncontent-type: text/plain\r\n"
               "upgrade: reverse-tunnel\r\ntransfer-encoding: chunked\r\n\r\n"
               "20\r\nUpgrade: reverse-tunnel required\r\n0\r\n\r\n");
  /* what the HTTP/1 codec answers before the filter: the reason as the body */
  assert_bytes(buf, rt_hs_response_reject(buf, 400, rt_hs_reason_phrase(400), 0),
               "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n"
               "transfer-encoding: chunked\r\n\r\nb\r\nBad Request\r\n0\r\n\r\n");
  assert_bytes(buf, rt_hs_response_reject(buf, 431, rt_hs_reason_phrase(431), 0),
               "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
               "transfer-encoding: chunked\r\n\r\n1f\r\nRequest Header Fields Too Large\r\n"
               "0\r\n\r\n");
  /* an HTTP/1.0 client cannot read chunks: the body ends with the connection */
  assert_bytes(buf, rt_hs_response_reject(buf, 426, rt_hs_reason_phrase(426), RT_HS_REPLY_HTTP10),
               "HTTP/1.1 426 Upgrade Required\r\ncontent-type: text/plain\r\n\r\n"
               "Upgrade Required");
  /* 0x100 bytes of body: three hex digits, no leading zero */
  char body[257];
  memset(body, 'x', 256);
  body[256] = '\0';
  size_t n = rt_hs_response_reject(buf, 403, body, 0);
  ck_assert_uint_gt(n, 0);
  ck_assert_ptr_nonnull(strstr(buf, "\r\n\r\n100\r\nxxx"));
  /* an answer that does not fit is refused whole, never cut */
  char big[RT_HS_RESPONSE_CAP];
  memset(big, 'y', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  ck_assert_uint_eq(rt_hs_response_reject(buf, 400, big, 0), 0);
  ck_assert_uint_eq(rt_hs_response_reject(buf, 99, "x", 0), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("handshake");
  TCase *tc = tcase_create("parser");
  tcase_add_test(tc, complete_request);
  tcase_add_test(tc, every_split_point_needs_more_then_completes);
  tcase_add_test(tc, bytes_after_the_request_are_not_consumed);
  tcase_add_test(tc, malformed_inputs);
  tcase_add_test(tc, a_bad_method_is_refused_at_once);
  tcase_add_test(tc, body_rules);
  tcase_add_test(tc, limits);
  tcase_add_test(tc, response_bytes);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
