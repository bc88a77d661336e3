/* See handshake.h. The parser is deliberately small and strict: a handshake
 * is one GET with a handful of headers, so anything unusual is refused
 * rather than interpreted. It never allocates and never reads past len. */
#include <string.h>

#include "acceptor/handshake.h"

static bool is_tchar(unsigned char c) {
  /* RFC 9110 token characters */
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_vchar_or_ws(unsigned char c) {
  return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f);
}

static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

bool rt_str_ieq(struct rt_str s, const char *lit) {
  size_t n = strlen(lit);
  if (s.n != n)
    return false;
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)s.p[i]) != lower((unsigned char)lit[i]))
      return false;
  return true;
}

bool rt_str_eq(struct rt_str s, const char *lit) {
  return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

const struct rt_str *rt_hs_header(const struct rt_hs_request *req, const char *name) {
  for (size_t i = 0; i < req->n_headers; i++)
    if (rt_str_ieq(req->headers[i].name, name))
      return &req->headers[i].value;
  return NULL;
}

/* Finds "\r\n\r\n" from *scan on; a bare LF anywhere is malformed. */
static enum rt_hs_result find_head_end(const uint8_t *buf, size_t len, size_t *scan, size_t *end) {
  for (size_t i = *scan; i < len; i++) {
    if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
      return RT_HS_MALFORMED;
    if (buf[i] == '\n' && i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
      *end = i + 1;
      return RT_HS_DONE;
    }
  }
  *scan = len;
  return RT_HS_NEED_MORE;
}

static bool parse_request_line(const char *p, const char *eol, struct rt_hs_request *req) {
  const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
  if (!sp1 || sp1 == p)
    return false;
  for (const char *c = p; c < sp1; c++)
    if (!is_tchar((unsigned char)*c))
      return false;
  const char *t = sp1 + 1;
  const char *sp2 = memchr(t, ' ', (size_t)(eol - t));
  if (!sp2 || sp2 == t)
    return false;
  for (const char *c = t; c < sp2; c++)
    if ((unsigned char)*c <= 0x20 || (unsigned char)*c == 0x7f)
      return false;
  const char *v = sp2 + 1;
  if (eol - v != 8 || memcmp(v, "HTTP/1.", 7) != 0 || (v[7] != '0' && v[7] != '1'))
    return false;
  req->method = (struct rt_str){p, (size_t)(sp1 - p)};
  req->target = (struct rt_str){t, (size_t)(sp2 - t)};
  req->minor_version = v[7] - '0';
  return true;
}

static enum rt_hs_result parse_header_line(const char *p, const char *eol,
                                           const struct rt_hs_limits *lim,
                                           struct rt_hs_request *req) {
  if (*p == ' ' || *p == '\t')
    return RT_HS_MALFORMED; /* obs-fold */
  const char *colon = memchr(p, ':', (size_t)(eol - p));
  if (!colon || colon == p)
    return RT_HS_MALFORMED;
  for (const char *c = p; c < colon; c++)
    if (!is_tchar((unsigned char)*c))
      return RT_HS_MALFORMED; /* includes whitespace before the colon */
  const char *v = colon + 1, *ve = eol;
  while (v < ve && (*v == ' ' || *v == '\t'))
    v++;
  while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
    ve--;
  for (const char *c = v; c < ve; c++)
    if (!is_vchar_or_ws((unsigned char)*c))
      return RT_HS_MALFORMED;
  if (req->n_headers >= lim->max_headers || req->n_headers >= RT_HS_MAX_HEADERS_CAP)
    return RT_HS_TOO_LARGE;
  req->headers[req->n_headers++] =
      (struct rt_hs_header){{p, (size_t)(colon - p)}, {v, (size_t)(ve - v)}};
  return RT_HS_DONE;
}

/* After the head of a chunked request: only "0" (any number of zeros, with
 * optional extensions), then trailers, then an empty line is acceptable. */
static enum rt_hs_result parse_empty_chunked(const uint8_t *buf, size_t len, size_t start,
                                             size_t *end) {
  const char *p = (const char *)buf + start, *e = (const char *)buf + len;
  const char *eol = memchr(p, '\n', (size_t)(e - p));
  size_t digits = 0;
  for (const char *c = p; c < e && *c != ';' && *c != '\r' && *c != '\n'; c++, digits++) {
    if (*c == '0')
      continue;
    if ((*c >= '1' && *c <= '9') ||
        (lower((unsigned char)*c) >= 'a' && lower((unsigned char)*c) <= 'f'))
      return RT_HS_BODY; /* a data chunk: refuse as soon as it is seen */
    return RT_HS_MALFORMED;
  }
  if (!eol)
    return (size_t)(e - p) > 1024 ? RT_HS_MALFORMED : RT_HS_NEED_MORE;
  if (digits == 0 || eol == p || eol[-1] != '\r')
    return RT_HS_MALFORMED;
  /* trailer section: header lines until an empty line */
  for (p = eol + 1;;) {
    eol = memchr(p, '\n', (size_t)(e - p));
    if (!eol)
      return (size_t)(e - p) > 8192 ? RT_HS_MALFORMED : RT_HS_NEED_MORE;
    if (eol == p || eol[-1] != '\r')
      return RT_HS_MALFORMED;
    if (eol - p == 1) {
      *end = (size_t)(eol + 1 - (const char *)buf);
      return RT_HS_DONE;
    }
    p = eol + 1;
  }
}

/* The method is a token: a byte that cannot be part of one, before the
 * first space, refuses the request at once (an HTTP/1 codec stops there too)
 * instead of waiting for a head that will never come — a TLS ClientHello
 * sent to a plaintext acceptor starts with 0x16. */
static bool bad_method_prefix(const uint8_t *buf, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (buf[i] == ' ')
      return i == 0;
    if (!is_tchar(buf[i]))
      return true;
  }
  return false;
}

enum rt_hs_result rt_hs_parse(const uint8_t *buf, size_t len, const struct rt_hs_limits *lim,
                              size_t *scan, struct rt_hs_request *req) {
  if (bad_method_prefix(buf, len < 32 ? len : 32))
    return RT_HS_MALFORMED;
  size_t head_end = 0;
  enum rt_hs_result r = find_head_end(buf, len, scan, &head_end);
  if (r == RT_HS_NEED_MORE)
    return len >= lim->max_header_bytes ? RT_HS_TOO_LARGE : RT_HS_NEED_MORE;
  if (r != RT_HS_DONE)
    return r;
  if (head_end > lim->max_header_bytes)
    return RT_HS_TOO_LARGE;
  memset(req, 0, offsetof(struct rt_hs_request, headers));
  req->n_headers = 0;
  const char *p = (const char *)buf, *end = (const char *)buf + head_end - 2;
  const char *eol = memchr(p, '\r', (size_t)(end - p));
  if (!eol || eol[1] != '\n' || !parse_request_line(p, eol, req))
    return RT_HS_MALFORMED;
  for (p = eol + 2; p < end; p = eol + 2) {
    eol = memchr(p, '\r', (size_t)(end - p));
    if (!eol || eol[1] != '\n')
      return RT_HS_MALFORMED; /* a stray CR inside a line */
    if ((r = parse_header_line(p, eol, lim, req)) != RT_HS_DONE)
      return r;
  }

  /* Body rules, before anything else looks at the request: a request with a
   * body is refused whatever its method, path and headers say. */
  const struct rt_str *cl = rt_hs_header(req, "content-length");
  const struct rt_str *te = rt_hs_header(req, "transfer-encoding");
  if (cl && te)
    return RT_HS_MALFORMED; /* ambiguous framing */
  if (cl) {
    for (size_t i = 0; i < cl->n; i++)
      if (cl->p[i] < '0' || cl->p[i] > '9')
        return RT_HS_MALFORMED;
    if (!rt_str_eq(*cl, "0"))
      return cl->n ? RT_HS_BODY : RT_HS_MALFORMED;
  }
  if (te) {
    if (!rt_str_ieq(*te, "chunked"))
      return RT_HS_MALFORMED;
    return parse_empty_chunked(buf, len, head_end, &req->consumed);
  }
  req->consumed = head_end;
  return RT_HS_DONE;
}

/* ------------------------------------------------------------ responses */

static const char *reason_phrase(int status) {
  switch (status) {
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

/* Appends n bytes at *len, keeping room for a NUL within RT_HS_RESPONSE_CAP;
 * false when they would not fit (an answer is never cut short). */
static bool put(char *buf, size_t *len, const char *s, size_t n) {
  if (n >= RT_HS_RESPONSE_CAP - *len)
    return false;
  memcpy(buf + *len, s, n);
  *len += n;
  buf[*len] = '\0';
  return true;
}

static bool put_str(char *buf, size_t *len, const char *s) { return put(buf, len, s, strlen(s)); }

static bool put_status_line(char *buf, size_t *len, int status) {
  char code[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                  (char)('0' + status % 10), ' '};
  return put_str(buf, len, "HTTP/1.1 ") && put(buf, len, code, 4) &&
         put_str(buf, len, reason_phrase(status)) && put_str(buf, len, "\r\n");
}

size_t rt_hs_response_ok(char *buf, bool upgrade) {
  size_t len = 0;
  put_str(buf, &len,
          upgrade ? "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n"
                    "upgrade: reverse-tunnel\r\n\r\n"
                  : "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
  return len;
}

/* Envoy's local replies: text/plain, the body as one chunk. A reply to an
 * HTTP/1.0 request cannot be chunked; its body ends with the connection. */
size_t rt_hs_response_reject(char *buf, int status, const char *body, unsigned flags) {
  static const char hex[] = "0123456789abcdef";
  size_t len = 0, n = strlen(body);
  if (status < 100 || status > 999 || n >= 0x1000)
    return 0;
  char size[4] = {hex[n >> 8], hex[(n >> 4) & 15], hex[n & 15], 0};
  const char *sz = size;
  while (*sz == '0' && sz[1])
    sz++;
  bool ok =
      put_status_line(buf, &len, status) && put_str(buf, &len, "content-type: text/plain\r\n");
  if (flags & RT_HS_REPLY_UPGRADE_HEADER)
    ok = ok && put_str(buf, &len, "upgrade: reverse-tunnel\r\n");
  if (flags & RT_HS_REPLY_HTTP10)
    ok = ok && put_str(buf, &len, "\r\n") && put(buf, &len, body, n);
  else
    ok = ok && put_str(buf, &len, "transfer-encoding: chunked\r\n\r\n") && put_str(buf, &len, sz) &&
         put_str(buf, &len, "\r\n") && put(buf, &len, body, n) &&
         put_str(buf, &len, "\r\n0\r\n\r\n");
  return ok ? len : 0;
}

const char *rt_hs_reason_phrase(int status) { return reason_phrase(status); }
