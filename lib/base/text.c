/* See text.h. */
#include <stdarg.h>
#include <stdio.h>

#include "base/text.h"

int rt_fail(int status, char *errbuf, size_t errbuf_len, const char *fmt, ...) {
  if (errbuf && errbuf_len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errbuf_len, fmt, ap);
    va_end(ap);
  }
  return status;
}

size_t rt_u64_dec(uint64_t v, char *buf) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++)
    buf[i] = tmp[n - 1 - i];
  return n;
}

char *rt_u64_str(uint64_t v, char *buf) {
  buf[rt_u64_dec(v, buf)] = '\0';
  return buf;
}
