/*
 * http1_cases: the verdicts of the examples' HTTP/1 parser
 * (examples/common.c) on the messages request smuggling and crash reports
 * are made of, one "ok - " or "FAIL - " line each; exit 1 on any FAIL.
 * The fuzzer checks invariants on arbitrary bytes; this checks answers.
 */
#include <stdio.h>
#include <string.h>

#include "common.h"

static int fails;

static void expect(const char *what, int got, int want) {
  printf("%s - %s (%d)\n", got == want ? "ok" : "FAIL", what, got);
  fails += got != want;
}

static int req(const char *s, size_t n, size_t max_head, size_t max_fields, struct h1_head *h) {
  static struct h1_field f[64];
  return h1_parse_request(s, n, max_head, f, max_fields, h);
}

#define REQ(what, lit, want)                                                                       \
  do {                                                                                             \
    struct h1_head h_;                                                                             \
    expect(what, req(lit, sizeof(lit) - 1, 65536, 64, &h_), want);                                 \
  } while (0)

static int resp(const char *s, size_t n, struct h1_head *h) {
  static struct h1_field f[64];
  return h1_parse_response(s, n, 65536, f, 64, h);
}

#define RESP(what, lit, want)                                                                      \
  do {                                                                                             \
    struct h1_head h_;                                                                             \
    expect(what, resp(lit, sizeof(lit) - 1, &h_), want);                                           \
  } while (0)

/* Decodes a whole chunked body; returns the verdict, the body in out. */
static int dechunk(const char *s, size_t n, char *out, size_t *outlen) {
  struct h1_chunked c;
  size_t pos = 0;

  memset(&c, 0, sizeof(c));
  *outlen = 0;
  while (pos < n && !h1_chunked_done(&c)) {
    size_t off, len;
    ssize_t used = h1_chunked_decode(&c, s + pos, n - pos, 3, &off, &len);
    if (used < 0)
      return -1;
    memcpy(out + *outlen, s + pos + off, len);
    *outlen += len;
    pos += (size_t)used;
  }
  return h1_chunked_done(&c) ? (int)pos : 0;
}

int main(void) {
  struct h1_head h;
  char body[256], big[70000];
  size_t blen;

  REQ("a plain request", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", H1_OK);
  REQ("NUL in the request line", "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", H1_BAD);
  REQ("NUL before any CR LF (no waiting for more)", "GET /\0", H1_BAD);
  REQ("DEL in a value", "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", H1_BAD);
  REQ("bare LF ending the request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", H1_BAD);
  REQ("bare CR in a value", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", H1_BAD);
  REQ("obs-fold", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", H1_BAD);
  REQ("space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", H1_BAD);
  REQ("empty field name", "GET / HTTP/1.1\r\n: a\r\n\r\n", H1_BAD);
  REQ("two spaces in the request line", "GET  / HTTP/1.1\r\n\r\n", H1_BAD);
  REQ("non-ASCII request target", "GET /\x80 HTTP/1.1\r\n\r\n", H1_BAD);
  REQ("HTTP/2.0 in an HTTP/1 request line", "GET / HTTP/2.0\r\n\r\n", H1_BAD_VERSION);
  REQ("HTTP/1.2", "GET / HTTP/1.2\r\n\r\n", H1_BAD_VERSION);
  REQ("not HTTP at all", "GET / FTP/1.1\r\n\r\n", H1_BAD);
  REQ("two different Content-Length",
      "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", H1_BAD);
  REQ("two equal Content-Length",
      "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", H1_OK);
  REQ("Content-Length list", "POST / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n", H1_BAD);
  REQ("signed Content-Length", "POST / HTTP/1.1\r\nContent-Length: +2\r\n\r\n", H1_BAD);
  REQ("Content-Length and Transfer-Encoding",
      "POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", H1_BAD);
  REQ("chunked not last", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", H1_BAD);
  REQ("chunked twice",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      H1_BAD);
  REQ("a coding that is not a token", "POST / HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
      H1_BAD);
  REQ("gzip then chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", H1_OK);
  REQ("two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", H1_BAD);
  REQ("head not finished yet", "GET / HTTP/1.1\r\nHost: a\r\n", H1_INCOMPLETE);
  REQ("obs-text in a value is allowed", "GET / HTTP/1.1\r\nX: \xc3\xa9\xff\r\n\r\n", H1_OK);
  memset(big, 'a', sizeof(big));
  memcpy(big, "GET /", 5);
  expect("a head longer than max_head", req(big, sizeof(big), 65536, 64, &h), H1_TOO_LARGE);
  expect("more fields than max_fields",
         req("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 37, 65536, 2, &h), H1_TOO_MANY);
  {
    static const char r[] = "POST /u HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 12\r\n"
                            "Expect: 100-continue\r\n\r\n";
    expect("an HTTP/1.0 request with options", req(r, sizeof(r) - 1, 65536, 64, &h), H1_OK);
  }
  expect("HTTP/1.0 minor", h.minor, 0);
  expect("keep-alive token", h.conn_keepalive, 1);
  expect("Content-Length value", (int)h.content_length, 12);
  expect("Expect: 100-continue", h.expect_continue, 1);

  RESP("a plain response", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", H1_OK);
  RESP("a status line without a reason", "HTTP/1.1 204\r\n\r\n", H1_OK);
  RESP("a status of two digits", "HTTP/1.1 20 OK\r\n\r\n", H1_BAD);
  RESP("status 099", "HTTP/1.1 099 x\r\n\r\n", H1_BAD);
  RESP("NUL in a response field", "HTTP/1.1 200 OK\r\nX: \0\r\n\r\n", H1_BAD);
  RESP("response with gzip only (body until close)",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", H1_OK);
  RESP("response with Content-Length and chunked",
       "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", H1_BAD);

  {
    static const char ok[] = "5\r\nhello\r\na;x=1\r\n0123456789\r\n0\r\nT: 1\r\n\r\nNEXT";
    int used = dechunk(ok, sizeof(ok) - 1, body, &blen);
    expect("chunked body with an extension and a trailer ends before the next message", used,
           (int)sizeof(ok) - 1 - 4);
    expect("its body is the chunks' bytes", blen == 15 && !memcmp(body, "hello0123456789", 15), 1);
  }
  expect("chunk size without digits", dechunk(";x\r\n", 4, body, &blen), -1);
  expect("chunk data not followed by CR LF", dechunk("1\r\nab\r\n", 7, body, &blen), -1);
  expect("chunk size with 16 hex digits", dechunk("1000000000000000\r\n", 18, body, &blen), -1);
  expect("bare LF after a chunk size", dechunk("1\nx\r\n", 5, body, &blen), -1);
  expect("text between size and ';'", dechunk("1 x\r\nx\r\n", 8, body, &blen), -1);
  expect("obs-fold in trailers", dechunk("0\r\nT: 1\r\n x\r\n\r\n", 15, body, &blen), -1);

  {
    char out[128];
    size_t n =
        json_escape(out, sizeof(out), (const uint8_t *)"a\"\\\x01\xc3\xa9\xed\xa0\x80\xff", 10);
    expect("JSON: quote, backslash, control, UTF-8 kept, surrogate and 0xff escaped",
           !strcmp(out, "\"a\\\"\\\\\\u0001\xc3\xa9\\u00ed\\u00a0\\u0080\\u00ff\""), 1);
    expect("JSON: the returned length", (int)n, (int)strlen(out));
    expect("JSON: truncated output stays terminated",
           (int)json_escape(out, 4, (const uint8_t *)"abcdef", 6) == 8 && strlen(out) == 3, 1);
  }
  printf("%s\n", fails ? "http1_cases: some checks failed" : "http1_cases: all checks passed");
  return fails ? 1 : 0;
}
