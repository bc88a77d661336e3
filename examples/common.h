/*
 * What every example program needs: logging (with a rate limit for errors
 * that repeat), host:port parsing and resolving, durations and numbers from
 * flags, reading small files, JSON strings for any byte sequence, and one
 * strict HTTP/1 parser for request heads, response heads and chunked bodies.
 *
 * Nothing here depends on libevent or nghttp2, so every program links it.
 *
 * The HTTP/1 parser works on explicit lengths only: it never runs a C string
 * function on received bytes, and every span it returns lies inside the
 * buffer it was given.
 */
#ifndef REVTUN_EXAMPLES_COMMON_H
#define REVTUN_EXAMPLES_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

/* ---------------------------------------------------------------- logging */

/* "HH:MM:SS.mmm <prog>: message" on stderr; set log_prog before logging. */
extern const char *log_prog;
extern int verbose;
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define VLOG(...)                                                                                  \
  do {                                                                                             \
    if (verbose)                                                                                   \
      logmsg(__VA_ARGS__);                                                                         \
  } while (0)

/* At most one line per second for an error that can repeat in a tight loop
 * (accept(2) failures): the lines in between are counted, and the next line
 * that gets out says how many were suppressed. Zero-initialise. */
struct log_limit {
  time_t second;
  unsigned long suppressed;
};
void logmsg_limited(struct log_limit *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Copies at most len bytes of s into out (size cap, always terminated),
 * with every byte outside printable ASCII shown as '.': peer-supplied text
 * cannot forge log lines. Returns out. */
char *log_safe(char *out, size_t cap, const char *s, size_t len);

/* -------------------------------------------------------------- addresses */

/* "host:port" or "[v6]:port". host gets the host part (terminated); the
 * port must be 0..65535. -1 if malformed or the host does not fit. */
int hostport_split(const char *spec, char *host, size_t hostlen, uint16_t *port);

/* Resolves "host:port" (first address getaddrinfo returns); passive for a
 * listener. 0 or -1. */
int addr_resolve(const char *spec, int passive, struct sockaddr_storage *ss, socklen_t *len);

/* "ip:port" or "[ip6]:port", numeric; "?" if it cannot be formatted. */
void addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen);

/* 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
int addr_is_loopback(const struct sockaddr *sa);

/* ------------------------------------------------------------ flag values */

/* "250ms", "10s", "2m", or a bare number of milliseconds. 0 or -1. */
int parse_duration_ms(const char *s, uint32_t *out);

/* A plain decimal (digits only) no larger than max. 0 or -1. */
int parse_u64(const char *s, uint64_t max, uint64_t *out);

/* A flag's number in min..max, or -1 after saying so on stderr. */
int flag_u32(const char *flag, const char *v, uint32_t min, uint32_t max, uint32_t *out);

/* Reads a whole file of at most max bytes into a new buffer (one extra
 * zero byte after the end). 0, or -1 with errno (EFBIG when too large). */
int read_file(const char *path, size_t max, uint8_t **out, size_t *len);

/* A copy of s[0..len) with a terminating NUL, or NULL. */
char *dup_bytes(const char *s, size_t len);

/* Writes all n bytes to a blocking fd (EINTR retried). 0 or -1. */
int write_all(int fd, const void *p, size_t n);

/* -------------------------------------------------------------------- JSON */

/* Writes s (len bytes) as a JSON string literal, quotes included, to out
 * (cap bytes, terminated if cap > 0) and returns the length the whole
 * literal needs (snprintf-like). Valid for any byte sequence: '"' and '\\'
 * are escaped, control bytes and DEL become \u00XX, well-formed UTF-8 is
 * copied, and every byte that is not part of well-formed UTF-8 (stray
 * continuation bytes, overlong forms, surrogates, code points past
 * U+10FFFF, truncated sequences) becomes \u00XX of its own value, so the
 * output is always valid JSON and distinct inputs stay distinct. */
size_t json_escape(char *out, size_t cap, const uint8_t *s, size_t len);

/* ---------------------------------------------------------------- HTTP/1 */

/* A span of the parsed input. */
struct h1_str {
  const char *p;
  size_t n;
};

struct h1_field {
  struct h1_str name, value; /* value without surrounding whitespace */
};

/* Results of the head parsers. */
enum h1_result {
  H1_OK = 0,
  H1_INCOMPLETE = -1, /* no complete head yet, nothing wrong so far */
  H1_TOO_LARGE = -2,  /* the head does not end within max_head bytes */
  H1_TOO_MANY = -3,   /* more than max_fields header fields */
  H1_BAD = -4,        /* malformed: the connection cannot go on */
  H1_BAD_VERSION = -5 /* a well-formed HTTP version other than 1.0 and 1.1 */
};

struct h1_head {
  /* request line */
  struct h1_str method, target;
  /* status line */
  int status;
  struct h1_str reason;
  int minor; /* HTTP/1.<minor>: 0 or 1 */
  /* header fields, in order, names as sent (compare with h1_str_ieq) */
  struct h1_field *fields;
  size_t nfields;
  size_t head_len; /* bytes of the head, final CRLF CRLF included */
  /* message framing and connection options, from the fields */
  int64_t content_length; /* -1: none */
  int chunked;            /* Transfer-Encoding ends with chunked */
  int te_present;         /* any Transfer-Encoding field */
  int conn_close, conn_keepalive;
  int expect_continue, expect_other;
  int host_count;
};

/* Parses a request head at the start of data[0..len). Refuses NUL and other
 * control bytes, bare LF or CR, obs-fold, whitespace before a colon, a
 * request target with spaces or non-ASCII bytes, Content-Length that is not
 * plain digits or that appears twice with different values, Content-Length
 * together with Transfer-Encoding, a Transfer-Encoding whose last coding is
 * not chunked, chunked twice, and more than one Host. fields must hold
 * max_fields entries. */
int h1_parse_request(const char *data, size_t len, size_t max_head, struct h1_field *fields,
                     size_t max_fields, struct h1_head *out);

/* Same rules for a status line and its fields ("HTTP/1.x NNN reason");
 * a Transfer-Encoding whose last coding is not chunked is allowed here
 * (the body then ends at close), Content-Length with it is not. */
int h1_parse_response(const char *data, size_t len, size_t max_head, struct h1_field *fields,
                      size_t max_fields, struct h1_head *out);

/* Case-insensitive comparison of a span with a lowercase literal. */
int h1_str_ieq(struct h1_str s, const char *lit);

/* The first field named name (lowercase literal), or NULL. */
const struct h1_field *h1_find(const struct h1_head *h, const char *name);

/* Iterates a comma-separated list ("a, b ,c"): each call stores the next
 * non-empty element (whitespace trimmed) in *tok and returns 1, or 0 at the
 * end. *pos starts at 0. */
int h1_list_next(struct h1_str list, size_t *pos, struct h1_str *tok);

/* 1 if the list holds token (lowercase literal), case-insensitively. */
int h1_list_has(struct h1_str list, const char *token);

/* 1 if c may appear in an HTTP token (a method, a field name). */
int h1_is_tchar(unsigned char c);

/* Decoder of a chunked body, fed any split of the bytes. Zero-initialise. */
struct h1_chunked {
  int state;
  uint64_t remaining; /* of the current chunk */
  size_t line;        /* bytes of the current size or trailer line */
  size_t trailers;    /* bytes of the trailer section so far */
  int digits, ext;
};

#define H1_CHUNK_LINE_MAX 4096           /* a chunk-size line with its extensions */
#define H1_CHUNK_TRAILERS_MAX (64 << 10) /* the whole trailer section */

/* Consumes a prefix of in[0..n) and returns its length, or -1 if the body
 * is malformed (or a line or the trailers are too long). Stops after the
 * first stretch of chunk data, which is in[*data_off .. *data_off +
 * *data_len) and at most max_data bytes (*data_len is 0 when none), or when
 * the input is used up, or at the end of the body. */
ssize_t h1_chunked_decode(struct h1_chunked *c, const char *in, size_t n, size_t max_data,
                          size_t *data_off, size_t *data_len);

/* 1 once the last chunk and the trailers have been consumed. */
int h1_chunked_done(const struct h1_chunked *c);

#endif
