/* libFuzzer harness for the example programs' HTTP/1 parser
 * (examples/common.c): request heads, response heads and chunked bodies.
 *
 * The first input byte picks the limits and how the chunked decoder is fed;
 * the rest is the message. Besides "no crash, no out-of-bounds read", it
 * checks what the callers rely on:
 *   - every span the parser returns lies inside the input;
 *   - a parsed head ends with CR LF CR LF within max_head, its names are
 *     tokens and its values hold no CR, LF or NUL;
 *   - parsing is prefix-consistent: the head alone parses the same, and
 *     every shorter prefix is "incomplete", never an error or a success;
 *   - the chunked decoder gives the same body, the same consumed length
 *     and the same verdict whether it is fed everything at once or in
 *     small pieces with a small max_data. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 16

static void check(int ok) {
  if (!ok)
    abort();
}

static void check_span(struct h1_str s, const char *d, size_t n) {
  check(s.p != NULL || s.n == 0);
  if (s.n)
    check(s.p >= d && s.p + s.n <= d + n);
}

static void check_head(int request, const char *d, size_t n, size_t max_head) {
  struct h1_field fields[MAX_FIELDS], again_fields[MAX_FIELDS];
  struct h1_head h, again;
  int rc = request ? h1_parse_request(d, n, max_head, fields, MAX_FIELDS, &h)
                   : h1_parse_response(d, n, max_head, fields, MAX_FIELDS, &h);

  check(rc <= H1_OK && rc >= H1_BAD_VERSION);
  if (rc == H1_TOO_LARGE)
    check(n >= max_head);
  if (rc != H1_OK)
    return;
  check(h.head_len >= 4 && h.head_len <= n && h.head_len <= max_head);
  check(!memcmp(d + h.head_len - 4, "\r\n\r\n", 4));
  check(h.nfields <= MAX_FIELDS);
  check(h.minor == 0 || h.minor == 1);
  if (request) {
    check_span(h.method, d, h.head_len);
    check_span(h.target, d, h.head_len);
    check(h.method.n > 0 && h.target.n > 0);
  } else {
    check(h.status >= 100 && h.status <= 999);
    check_span(h.reason, d, h.head_len);
  }
  for (size_t i = 0; i < h.nfields; i++) {
    struct h1_field *f = &fields[i];
    check_span(f->name, d, h.head_len);
    check_span(f->value, d, h.head_len);
    check(f->name.n > 0);
    for (size_t k = 0; k < f->name.n; k++)
      check(h1_is_tchar((unsigned char)f->name.p[k]));
    check(!memchr(f->value.p, '\r', f->value.n) && !memchr(f->value.p, '\n', f->value.n) &&
          !memchr(f->value.p, '\0', f->value.n));
  }
  check(!(h.te_present && h.content_length >= 0));
  /* the head alone parses the same */
  rc = request ? h1_parse_request(d, h.head_len, max_head, again_fields, MAX_FIELDS, &again)
               : h1_parse_response(d, h.head_len, max_head, again_fields, MAX_FIELDS, &again);
  check(rc == H1_OK && again.head_len == h.head_len && again.nfields == h.nfields);
  /* every shorter prefix is incomplete */
  size_t step = h.head_len > 512 ? h.head_len / 97 + 1 : 1;
  for (size_t p = 0; p < h.head_len; p += step) {
    rc = request ? h1_parse_request(d, p, max_head, again_fields, MAX_FIELDS, &again)
                 : h1_parse_response(d, p, max_head, again_fields, MAX_FIELDS, &again);
    check(rc == H1_INCOMPLETE);
  }
}

/* Decodes d[0..n) feeding `piece` bytes at a time with max_data; returns
 * the consumed length or -1, the body in out (cap n). */
static ssize_t dechunk(const char *d, size_t n, size_t piece, size_t max_data, char *out,
                       size_t *outlen, int *done) {
  struct h1_chunked c;
  size_t pos = 0;

  memset(&c, 0, sizeof(c));
  *outlen = 0;
  while (pos < n && !h1_chunked_done(&c)) {
    size_t avail = n - pos < piece ? n - pos : piece, off, len;
    ssize_t used = h1_chunked_decode(&c, d + pos, avail, max_data, &off, &len);
    if (used < 0)
      return -1;
    check((size_t)used <= avail);
    if (len) {
      check(len <= max_data && off + len <= (size_t)used);
      check(*outlen + len <= n);
      memcpy(out + *outlen, d + pos + off, len);
      *outlen += len;
    }
    if (used == 0 && len == 0)
      check(avail == 0 || max_data == 0);
    pos += (size_t)used;
    if (used == 0)
      break;
  }
  *done = h1_chunked_done(&c);
  return (ssize_t)pos;
}

static void check_chunked(const char *d, size_t n, uint8_t mode) {
  char *a = malloc(n + 1), *b = malloc(n + 1);
  size_t alen, blen;
  int adone, bdone;
  size_t piece = 1 + (mode & 7), max_data = 1 + ((mode >> 3) & 7);

  if (!a || !b) {
    free(a);
    free(b);
    return;
  }
  ssize_t ra = dechunk(d, n, n ? n : 1, (size_t)-1, a, &alen, &adone);
  ssize_t rb = dechunk(d, n, piece, max_data, b, &blen, &bdone);
  check((ra < 0) == (rb < 0));
  if (ra >= 0) {
    check(ra == rb && adone == bdone && alen == blen && !memcmp(a, b, alen));
    check(!adone || ra <= (ssize_t)n);
  }
  free(a);
  free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t mode = data[0];
  /* an exact-size copy, so that a read past the end is caught */
  size_t n = size - 1;
  char *d = malloc(n ? n : 1);
  if (!d)
    return 0;
  memcpy(d, data + 1, n);
  size_t max_head = 8 + (size_t)(mode & 0x3f) * 64;
  check_head(1, d, n, max_head);
  check_head(0, d, n, max_head);
  check_head(1, d, n, 1 << 16);
  check_head(0, d, n, 1 << 16);
  check_chunked(d, n, mode);
  free(d);
  return 0;
}
