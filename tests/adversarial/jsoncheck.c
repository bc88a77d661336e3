/*
 * jsoncheck: exits 0 if standard input is one valid JSON text (one value,
 * strings as well-formed UTF-8 with valid escapes), 1 otherwise, saying
 * where. For the proxy's /tunnels in tests/adversarial/proxy.sh. It
 * shares no code with the proxy's JSON escaping on purpose: a check that
 * reused the code it checks would agree with its mistakes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *s;
static size_t n, i;
static int depth;

static void fail(const char *why) __attribute__((noreturn));
static void fail(const char *why) {
  fprintf(stderr, "jsoncheck: %s at byte %zu\n", why, i);
  exit(1);
}

static void ws(void) {
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
    i++;
}

static int hex(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static void utf8(void) {
  unsigned char b = s[i];
  size_t k;
  unsigned char lo = 0x80, hi = 0xbf;
  if (b >= 0xc2 && b <= 0xdf)
    k = 2;
  else if (b >= 0xe0 && b <= 0xef)
    k = 3, lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;
  else if (b >= 0xf0 && b <= 0xf4)
    k = 4, lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;
  else
    fail("invalid UTF-8 lead byte");
  if (i + k > n || s[i + 1] < lo || s[i + 1] > hi)
    fail("invalid UTF-8 sequence");
  for (size_t j = 2; j < k; j++)
    if (s[i + j] < 0x80 || s[i + j] > 0xbf)
      fail("invalid UTF-8 continuation");
  i += k;
}

static void string(void) {
  i++; /* " */
  for (;;) {
    if (i >= n)
      fail("unterminated string");
    if (s[i] == '"') {
      i++;
      return;
    }
    if (s[i] < 0x20)
      fail("control byte in a string");
    if (s[i] == '\\') {
      i++;
      if (i >= n)
        fail("unterminated escape");
      if (s[i] == 'u') {
        if (i + 4 >= n || !hex(s[i + 1]) || !hex(s[i + 2]) || !hex(s[i + 3]) || !hex(s[i + 4]))
          fail("bad \\u escape");
        i += 5;
      } else if (strchr("\"\\/bfnrt", s[i])) {
        i++;
      } else {
        fail("bad escape");
      }
    } else if (s[i] >= 0x80) {
      utf8();
    } else {
      i++;
    }
  }
}

static void value(void);

static void number(void) {
  size_t start = i;
  if (s[i] == '-')
    i++;
  if (i < n && s[i] == '0')
    i++;
  else if (i < n && s[i] >= '1' && s[i] <= '9')
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
  else
    fail("bad number");
  if (i < n && s[i] == '.') {
    i++;
    if (i >= n || s[i] < '0' || s[i] > '9')
      fail("bad fraction");
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-'))
      i++;
    if (i >= n || s[i] < '0' || s[i] > '9')
      fail("bad exponent");
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
  }
  (void)start;
}

static void composite(unsigned char close, int object) {
  if (++depth > 256)
    fail("too deep");
  i++;
  ws();
  if (i < n && s[i] == close) {
    i++;
    depth--;
    return;
  }
  for (;;) {
    ws();
    if (object) {
      if (i >= n || s[i] != '"')
        fail("object key expected");
      string();
      ws();
      if (i >= n || s[i] != ':')
        fail("':' expected");
      i++;
      ws();
    }
    value();
    ws();
    if (i < n && s[i] == ',') {
      i++;
      continue;
    }
    if (i < n && s[i] == close) {
      i++;
      depth--;
      return;
    }
    fail("',' or end expected");
  }
}

static void value(void) {
  ws();
  if (i >= n)
    fail("value expected");
  switch (s[i]) {
  case '{': composite('}', 1); break;
  case '[': composite(']', 0); break;
  case '"': string(); break;
  case 't':
    if (n - i < 4 || memcmp(s + i, "true", 4))
      fail("bad literal");
    i += 4;
    break;
  case 'f':
    if (n - i < 5 || memcmp(s + i, "false", 5))
      fail("bad literal");
    i += 5;
    break;
  case 'n':
    if (n - i < 4 || memcmp(s + i, "null", 4))
      fail("bad literal");
    i += 4;
    break;
  default: number();
  }
}

int main(void) {
  size_t cap = 1 << 16;
  s = malloc(cap);
  for (size_t r; s && (r = fread(s + n, 1, cap - n, stdin)) > 0;) {
    n += r;
    if (n == cap)
      s = realloc(s, cap *= 2);
  }
  if (!s)
    return 2;
  value();
  ws();
  if (i != n)
    fail("trailing bytes");
  free(s);
  return 0;
}
