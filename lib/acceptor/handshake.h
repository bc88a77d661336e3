/* Sans-I/O HTTP/1.1 request parser for the reverse-tunnel handshake, and the
 * exact response bytes Envoy's HTTP/1 codec produces for it. Bounded and
 * strict: CRLF only, token header names, no obs-fold, request line and
 * headers within a byte and count limit, no body. */
#ifndef REVTUN_ACCEPTOR_HANDSHAKE_H
#define REVTUN_ACCEPTOR_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RT_HS_MAX_HEADERS_CAP 256u

struct rt_hs_limits {
  size_t max_header_bytes; /* request line + headers + blank line */
  size_t max_headers;      /* <= RT_HS_MAX_HEADERS_CAP */
};

enum rt_hs_result {
  RT_HS_NEED_MORE = 0,
  RT_HS_DONE,      /* a complete request without body */
  RT_HS_MALFORMED, /* not HTTP/1.x as the codec accepts it */
  RT_HS_TOO_LARGE, /* limits exceeded */
  RT_HS_BODY       /* a body, a non-"0" content-length or a data chunk */
};

struct rt_str {
  const char *p;
  size_t n;
};

struct rt_hs_header {
  struct rt_str name, value;
};

struct rt_hs_request {
  struct rt_str method, target;
  int minor_version;
  struct rt_hs_header headers[RT_HS_MAX_HEADERS_CAP];
  size_t n_headers;
  size_t consumed; /* bytes of the request, including a zero-length chunked body */
};

/* Parses buf[0..len), the bytes received so far (the caller re-parses as
 * more arrive; *scan remembers where the header terminator search stopped). */
enum rt_hs_result rt_hs_parse(const uint8_t *buf, size_t len, const struct rt_hs_limits *lim,
                              size_t *scan, struct rt_hs_request *req);

/* First value of a header, case-insensitive name; NULL if absent. */
const struct rt_str *rt_hs_header(const struct rt_hs_request *req, const char *name);

bool rt_str_ieq(struct rt_str s, const char *lit);
bool rt_str_eq(struct rt_str s, const char *lit);

/* Response bytes, written into buf (at least RT_HS_RESPONSE_CAP bytes).
 * Returns the length, or 0 when the answer would not fit (never a prefix). */
#define RT_HS_RESPONSE_CAP 512u
size_t rt_hs_response_ok(char *buf, bool upgrade);
#define RT_HS_REPLY_UPGRADE_HEADER 1u /* "upgrade: reverse-tunnel" (426) */
#define RT_HS_REPLY_HTTP10 2u         /* to an HTTP/1.0 request: not chunked */
size_t rt_hs_response_reject(char *buf, int status, const char *body, unsigned flags);
/* The standard reason phrase; the body of the replies to malformed requests. */
const char *rt_hs_reason_phrase(int status);

#endif
