/* Shared by the example programs; see common.h. */
#define _POSIX_C_SOURCE 200809L

#include "common.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *log_prog = "revtun";
int verbose;

/* ---------------------------------------------------------------- logging */

static void vlog_line(const char *suffix, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void vlog_line(const char *suffix, const char *fmt, va_list ap) {
  struct timespec ts;
  struct tm tm;
  char when[32];

  clock_gettime(CLOCK_REALTIME, &ts);
  localtime_r(&ts.tv_sec, &tm);
  strftime(when, sizeof(when), "%H:%M:%S", &tm);
  flockfile(stderr); /* one whole line at a time, whichever thread logs */
  fprintf(stderr, "%s.%03ld %s: ", when, ts.tv_nsec / 1000000, log_prog);
  vfprintf(stderr, fmt, ap);
  fputs(suffix, stderr);
  fputc('\n', stderr);
  funlockfile(stderr);
}

void logmsg(const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  vlog_line("", fmt, ap);
  va_end(ap);
}

void logmsg_limited(struct log_limit *l, const char *fmt, ...) {
  struct timespec ts;
  char suffix[64] = "";
  va_list ap;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  if (l->second == ts.tv_sec && l->second != 0) {
    l->suppressed++;
    return;
  }
  if (l->suppressed)
    snprintf(suffix, sizeof(suffix), " (%lu similar line(s) suppressed)", l->suppressed);
  l->second = ts.tv_sec;
  l->suppressed = 0;
  va_start(ap, fmt);
  vlog_line(suffix, fmt, ap);
  va_end(ap);
}

char *log_safe(char *out, size_t cap, const char *s, size_t len) {
  size_t i;

  if (cap == 0)
    return out;
  for (i = 0; i < len && i + 1 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    out[i] = c >= 0x20 && c < 0x7f ? (char)c : '.';
  }
  out[i] = '\0';
  return out;
}

/* -------------------------------------------------------------- addresses */

int hostport_split(const char *spec, char *host, size_t hostlen, uint16_t *port) {
  const char *colon = strrchr(spec, ':');
  uint64_t v;
  size_t hl;

  if (!colon || parse_u64(colon + 1, 65535, &v) < 0)
    return -1;
  hl = (size_t)(colon - spec);
  if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
    spec++;
    hl -= 2;
  }
  if (hl == 0 || hl >= hostlen)
    return -1;
  memcpy(host, spec, hl);
  host[hl] = '\0';
  *port = (uint16_t)v;
  return 0;
}

int addr_resolve(const char *spec, int passive, struct sockaddr_storage *ss, socklen_t *len) {
  char host[256], port[8];
  uint16_t p;
  struct addrinfo hints, *res = NULL;

  if (hostport_split(spec, host, sizeof(host), &p) < 0)
    return -1;
  snprintf(port, sizeof(port), "%u", p);
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  if (getaddrinfo(host, port, &hints, &res) != 0 || !res)
    return -1;
  if (res->ai_addrlen > sizeof(*ss)) {
    freeaddrinfo(res);
    return -1;
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

void addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen) {
  char host[256], port[32];

  if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    snprintf(out, outlen, "?");
    return;
  }
  snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

int addr_is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return !memcmp(a, loop6, 16) || (!memcmp(a, v4mapped, 12) && a[12] == 127);
  }
  return 0;
}

/* ------------------------------------------------------------ flag values */

int parse_u64(const char *s, uint64_t max, uint64_t *out) {
  uint64_t v = 0;

  if (!s || !*s)
    return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    uint64_t digit = (uint64_t)(*s - '0');
    if (digit > max || v > (max - digit) / 10) /* v * 10 + digit would pass max */
      return -1;
    v = v * 10 + digit;
  }
  *out = v;
  return 0;
}

int flag_u32(const char *flag, const char *v, uint32_t min, uint32_t max, uint32_t *out) {
  uint64_t n;

  if (parse_u64(v, max, &n) < 0 || n < min) {
    fprintf(stderr, "%s: %s must be %u..%u\n", log_prog, flag, min, max);
    return -1;
  }
  *out = (uint32_t)n;
  return 0;
}

int parse_duration_ms(const char *s, uint32_t *out) {
  const char *unit = s;
  uint64_t v = 0, mult;

  while (*unit >= '0' && *unit <= '9') {
    if (v > UINT32_MAX)
      return -1;
    v = v * 10 + (uint64_t)(*unit++ - '0');
  }
  if (unit == s)
    return -1;
  if (!strcmp(unit, "") || !strcmp(unit, "ms"))
    mult = 1;
  else if (!strcmp(unit, "s"))
    mult = 1000;
  else if (!strcmp(unit, "m"))
    mult = 60000;
  else
    return -1;
  if (v > UINT32_MAX / mult)
    return -1;
  *out = (uint32_t)(v * mult);
  return 0;
}

int read_file(const char *path, size_t max, uint8_t **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  size_t n = 0, cap = 0;
  int err = 0;

  if (!f)
    return -1;
  for (;;) {
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 4096;
      uint8_t *nb;
      if (cap > max) {
        err = EFBIG;
        break;
      }
      if (!(nb = realloc(buf, ncap + 1))) {
        err = ENOMEM;
        break;
      }
      buf = nb;
      cap = ncap;
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0)
      break;
  }
  if (!err && (ferror(f) || !feof(f)))
    err = errno ? errno : EIO;
  if (!err && n > max)
    err = EFBIG;
  fclose(f);
  if (err) {
    free(buf);
    errno = err;
    return -1;
  }
  if (!buf && !(buf = malloc(1))) {
    errno = ENOMEM;
    return -1;
  }
  buf[n] = 0;
  *out = buf;
  *len = n;
  return 0;
}

char *dup_bytes(const char *s, size_t len) {
  char *d = malloc(len + 1);

  if (d) {
    memcpy(d, s, len);
    d[len] = '\0';
  }
  return d;
}

int write_all(int fd, const void *p, size_t n) {
  const char *b = p;

  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

/* -------------------------------------------------------------------- JSON */

/* Length of the well-formed UTF-8 sequence at s, or 0: shortest form only,
 * no surrogates (U+D800..DFFF), nothing past U+10FFFF. */
static size_t utf8_len(const uint8_t *s, size_t n) {
  uint8_t b = s[0], lo = 0x80, hi = 0xbf;
  size_t k;

  if (b >= 0xc2 && b <= 0xdf)
    k = 2;
  else if (b >= 0xe0 && b <= 0xef)
    k = 3, lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;
  else if (b >= 0xf0 && b <= 0xf4)
    k = 4, lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;
  else
    return 0;
  if (n < k || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < k; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return k;
}

size_t json_escape(char *out, size_t cap, const uint8_t *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t need = 0;
#define PUT(ch)                                                                                    \
  do {                                                                                             \
    if (need + 1 < cap)                                                                            \
      out[need] = (char)(ch);                                                                      \
    need++;                                                                                        \
  } while (0)

  PUT('"');
  for (size_t i = 0; i < len; i++) {
    uint8_t b = s[i];
    size_t k;
    if (b == '"' || b == '\\') {
      PUT('\\');
      PUT(b);
    } else if (b >= 0x20 && b < 0x7f) {
      PUT(b);
    } else if (b >= 0x80 && (k = utf8_len(s + i, len - i)) > 0) {
      for (size_t j = 0; j < k; j++)
        PUT(s[i + j]);
      i += k - 1;
    } else {
      PUT('\\');
      PUT('u');
      PUT('0');
      PUT('0');
      PUT(hex[b >> 4]);
      PUT(hex[b & 15]);
    }
  }
  PUT('"');
#undef PUT
  if (cap > 0)
    out[need < cap ? need : cap - 1] = '\0';
  return need;
}

/* ---------------------------------------------------------------- HTTP/1 */

int h1_is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return 1;
  switch (c) {
  case '!':
  case '#':
  case '$':
  case '%':
  case '&':
  case '\'':
  case '*':
  case '+':
  case '-':
  case '.':
  case '^':
  case '_':
  case '`':
  case '|':
  case '~': return 1;
  default: return 0;
  }
}

static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

int h1_str_ieq(struct h1_str s, const char *lit) {
  size_t i;

  /* no strlen(lit) first: most names differ from the literal early */
  for (i = 0; i < s.n; i++)
    if (!lit[i] || lower((unsigned char)s.p[i]) != (unsigned char)lit[i])
      return 0;
  return lit[i] == '\0';
}

const struct h1_field *h1_find(const struct h1_head *h, const char *name) {
  for (size_t i = 0; i < h->nfields; i++)
    if (h1_str_ieq(h->fields[i].name, name))
      return &h->fields[i];
  return NULL;
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

int h1_list_next(struct h1_str list, size_t *pos, struct h1_str *tok) {
  size_t i = *pos;

  while (i < list.n) {
    size_t start, end;
    while (i < list.n && (is_ows(list.p[i]) || list.p[i] == ','))
      i++;
    start = i;
    while (i < list.n && list.p[i] != ',')
      i++;
    end = i;
    while (end > start && is_ows(list.p[end - 1]))
      end--;
    if (end > start) {
      tok->p = list.p + start;
      tok->n = end - start;
      *pos = i;
      return 1;
    }
  }
  *pos = i;
  return 0;
}

int h1_list_has(struct h1_str list, const char *token) {
  struct h1_str t;
  size_t pos = 0;

  while (h1_list_next(list, &pos, &t))
    if (h1_str_ieq(t, token))
      return 1;
  return 0;
}

/* Finds the CR LF ending the line that starts at pos, within d[0..len):
 * *eol is the index of the CR. Refuses bare LF, bare CR and control bytes
 * other than HTAB. */
static int line_end(const char *d, size_t len, size_t pos, size_t *eol) {
  for (size_t i = pos; i < len; i++) {
    unsigned char c = (unsigned char)d[i];
    if (c == '\r') {
      if (i + 1 >= len)
        return H1_INCOMPLETE;
      if (d[i + 1] != '\n')
        return H1_BAD;
      *eol = i;
      return H1_OK;
    }
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      return H1_BAD; /* NUL, bare LF, other controls */
  }
  return H1_INCOMPLETE;
}

/* "HTTP/d.d" at p (8 bytes available): 0 for 1.0/1.1 (*minor set),
 * H1_BAD_VERSION for another d.d, H1_BAD otherwise. */
static int parse_version(const char *p, int *minor) {
  if (memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' || p[7] < '0' ||
      p[7] > '9')
    return H1_BAD;
  if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
    return H1_BAD_VERSION;
  *minor = p[7] - '0';
  return H1_OK;
}

static int parse_request_line(const char *l, size_t n, struct h1_head *h) {
  size_t i = 0, t;

  while (i < n && h1_is_tchar((unsigned char)l[i]))
    i++;
  if (i == 0 || i >= n || l[i] != ' ')
    return H1_BAD;
  h->method = (struct h1_str){l, i};
  t = ++i;
  while (i < n && (unsigned char)l[i] > 0x20 && (unsigned char)l[i] < 0x7f)
    i++;
  if (i == t || i >= n || l[i] != ' ')
    return H1_BAD;
  h->target = (struct h1_str){l + t, i - t};
  i++;
  if (n - i != 8)
    return H1_BAD;
  return parse_version(l + i, &h->minor);
}

static int parse_status_line(const char *l, size_t n, struct h1_head *h) {
  int rc;

  if (n < 12 || (rc = parse_version(l, &h->minor)) != H1_OK)
    return n < 12 ? H1_BAD : rc;
  if (l[8] != ' ' || l[9] < '1' || l[9] > '9' || l[10] < '0' || l[10] > '9' || l[11] < '0' ||
      l[11] > '9')
    return H1_BAD;
  h->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
  if (n == 12) {
    h->reason = (struct h1_str){l + 12, 0};
    return H1_OK;
  }
  if (l[12] != ' ')
    return H1_BAD;
  h->reason = (struct h1_str){l + 13, n - 13}; /* HTAB, SP, VCHAR, obs-text: line_end checked */
  return H1_OK;
}

static int parse_field_line(const char *l, size_t n, struct h1_field *f) {
  size_t i = 0, v, e;

  while (i < n && h1_is_tchar((unsigned char)l[i]))
    i++;
  /* also refuses obs-fold (a leading space) and "name :" */
  if (i == 0 || i >= n || l[i] != ':')
    return H1_BAD;
  f->name = (struct h1_str){l, i};
  for (v = i + 1; v < n && is_ows(l[v]); v++)
    ;
  for (e = n; e > v && is_ows(l[e - 1]); e--)
    ;
  f->value = (struct h1_str){l + v, e - v};
  return H1_OK;
}

/* Content-Length: 1*DIGIT, below 2^62. */
static int parse_content_length(struct h1_str v, int64_t *out) {
  int64_t n = 0;

  if (v.n == 0 || v.n > 18)
    return -1;
  for (size_t i = 0; i < v.n; i++) {
    if (v.p[i] < '0' || v.p[i] > '9')
      return -1;
    n = n * 10 + (v.p[i] - '0');
  }
  *out = n;
  return 0;
}

/* Message framing and connection options from the fields. */
static int analyse_fields(struct h1_head *h) {
  int chunked_seen = 0;

  h->content_length = -1;
  for (size_t i = 0; i < h->nfields; i++) {
    struct h1_str name = h->fields[i].name, v = h->fields[i].value;
    if (h1_str_ieq(name, "content-length")) {
      int64_t n;
      if (parse_content_length(v, &n) < 0 || (h->content_length >= 0 && h->content_length != n))
        return H1_BAD;
      h->content_length = n;
    } else if (h1_str_ieq(name, "transfer-encoding")) {
      struct h1_str t;
      size_t pos = 0;
      int any = 0;
      h->te_present = 1;
      while (h1_list_next(v, &pos, &t)) {
        for (size_t k = 0; k < t.n; k++)
          if (!h1_is_tchar((unsigned char)t.p[k]))
            return H1_BAD;
        any = 1;
        h->chunked = h1_str_ieq(t, "chunked");
        if (h->chunked && chunked_seen++)
          return H1_BAD;
      }
      if (!any)
        return H1_BAD;
    } else if (h1_str_ieq(name, "connection")) {
      if (h1_list_has(v, "close"))
        h->conn_close = 1;
      if (h1_list_has(v, "keep-alive"))
        h->conn_keepalive = 1;
    } else if (h1_str_ieq(name, "expect")) {
      if (h1_str_ieq(v, "100-continue"))
        h->expect_continue = 1;
      else
        h->expect_other = 1;
    } else if (h1_str_ieq(name, "host")) {
      h->host_count++;
    }
  }
  /* chunked not last means a later coding follows it: the length is unknown */
  if (chunked_seen && !h->chunked)
    return H1_BAD;
  if (h->te_present && h->content_length >= 0)
    return H1_BAD;
  return H1_OK;
}

static int parse_head(const char *data, size_t len, size_t max_head, struct h1_field *fields,
                      size_t max_fields, struct h1_head *h, int request) {
  size_t lim = len < max_head ? len : max_head, pos, eol;
  int rc;

  memset(h, 0, sizeof(*h));
  h->fields = fields;
  h->content_length = -1;
  if ((rc = line_end(data, lim, 0, &eol)) != H1_OK)
    goto stop;
  rc = request ? parse_request_line(data, eol, h) : parse_status_line(data, eol, h);
  if (rc != H1_OK)
    return rc;
  for (pos = eol + 2;; pos = eol + 2) {
    if ((rc = line_end(data, lim, pos, &eol)) != H1_OK)
      goto stop;
    if (eol == pos)
      break;
    if (h->nfields == max_fields)
      return H1_TOO_MANY;
    if ((rc = parse_field_line(data + pos, eol - pos, &fields[h->nfields])) != H1_OK)
      return rc;
    h->nfields++;
  }
  h->head_len = eol + 2;
  if ((rc = analyse_fields(h)) != H1_OK)
    return rc;
  if (request && (h->host_count > 1 || (h->te_present && !h->chunked)))
    return H1_BAD;
  return H1_OK;
stop:
  if (rc == H1_INCOMPLETE && len >= max_head)
    return H1_TOO_LARGE;
  return rc;
}

int h1_parse_request(const char *data, size_t len, size_t max_head, struct h1_field *fields,
                     size_t max_fields, struct h1_head *out) {
  return parse_head(data, len, max_head, fields, max_fields, out, 1);
}

int h1_parse_response(const char *data, size_t len, size_t max_head, struct h1_field *fields,
                      size_t max_fields, struct h1_head *out) {
  return parse_head(data, len, max_head, fields, max_fields, out, 0);
}

/* ------------------------------------------------------- chunked bodies */

enum {
  CS_SIZE,       /* hex digits */
  CS_EXT,        /* after the digits: whitespace, ";" extensions, up to CR */
  CS_SIZE_LF,    /* the LF ending the size line */
  CS_DATA,       /* chunk data */
  CS_DATA_CR,    /* the CR LF after chunk data */
  CS_DATA_LF,    /* */
  CS_TRAILER,    /* the start of a trailer line, or the final CR LF */
  CS_TRAILER_IN, /* inside a trailer line */
  CS_TRAILER_LF, /* the LF ending a trailer line */
  CS_END_LF,     /* the LF of the final empty line */
  CS_DONE
};

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = lower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int is_ctl(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

ssize_t h1_chunked_decode(struct h1_chunked *c, const char *in, size_t n, size_t max_data,
                          size_t *data_off, size_t *data_len) {
  size_t i = 0;

  *data_off = *data_len = 0;
  while (i < n) {
    unsigned char b = (unsigned char)in[i];
    int v;
    switch (c->state) {
    case CS_SIZE:
      if ((v = hexval(b)) >= 0) {
        if (c->digits == 15) /* stays below 2^60 */
          return -1;
        c->remaining = c->remaining * 16 + (uint64_t)v;
        c->digits++;
        c->line++;
        i++;
        break;
      }
      if (c->digits == 0)
        return -1;
      c->state = CS_EXT;
      c->ext = 0;
      break;
    case CS_EXT:
      if (b == '\r') {
        c->state = CS_SIZE_LF;
      } else if (is_ctl(b) || ++c->line > H1_CHUNK_LINE_MAX) {
        return -1;
      } else if (b == ';') {
        c->ext = 1;
      } else if (!c->ext && !is_ows((char)b)) {
        return -1; /* only whitespace may come between the size and a ';' */
      }
      i++;
      break;
    case CS_SIZE_LF:
      if (b != '\n')
        return -1;
      i++;
      c->digits = 0;
      c->line = 0;
      c->state = c->remaining ? CS_DATA : CS_TRAILER;
      break;
    case CS_DATA: {
      size_t take = n - i;
      if (take > c->remaining)
        take = (size_t)c->remaining;
      if (take > max_data)
        take = max_data;
      if (take == 0)
        return (ssize_t)i;
      *data_off = i;
      *data_len = take;
      c->remaining -= take;
      if (c->remaining == 0)
        c->state = CS_DATA_CR;
      return (ssize_t)(i + take);
    }
    case CS_DATA_CR:
      if (b != '\r')
        return -1;
      c->state = CS_DATA_LF;
      i++;
      break;
    case CS_DATA_LF:
      if (b != '\n')
        return -1;
      c->state = CS_SIZE;
      i++;
      break;
    case CS_TRAILER:
      if (b == '\r') {
        c->state = CS_END_LF;
        i++;
      } else if (is_ows((char)b)) {
        return -1; /* obs-fold */
      } else {
        c->state = CS_TRAILER_IN;
      }
      break;
    case CS_TRAILER_IN:
      if (++c->trailers > H1_CHUNK_TRAILERS_MAX)
        return -1;
      if (b == '\r')
        c->state = CS_TRAILER_LF;
      else if (is_ctl(b))
        return -1;
      i++;
      break;
    case CS_TRAILER_LF:
      if (b != '\n')
        return -1;
      c->state = CS_TRAILER;
      i++;
      break;
    case CS_END_LF:
      if (b != '\n')
        return -1;
      c->state = CS_DONE;
      return (ssize_t)(i + 1);
    case CS_DONE: return (ssize_t)i;
    default: return -1;
    }
  }
  return (ssize_t)i;
}

int h1_chunked_done(const struct h1_chunked *c) { return c->state == CS_DONE; }
