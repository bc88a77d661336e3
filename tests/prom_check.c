/* prom_check FILE: exits 0 when FILE is valid Prometheus text by the strict
 * parser of the tests (prom_parse.h), else prints the deviation and exits 1.
 * tests/e2e.sh runs it on the proxy's /stats. */
#include <stdio.h>
#include <stdlib.h>

#include "prom_parse.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: prom_check FILE\n");
    return 2;
  }
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    perror(argv[1]);
    return 2;
  }
  size_t cap = 1 << 16, len = 0, n;
  char *buf = malloc(cap);
  while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      char *b = realloc(buf, cap *= 2);
      if (!b)
        free(buf);
      buf = b;
    }
  }
  fclose(f);
  if (!buf)
    return 2;
  struct prom_result r;
  int rc = prom_parse(buf, len, &r);
  if (rc)
    fprintf(stderr, "%s: %s\n", argv[1], r.err);
  else
    printf("%s: %zu families, %zu samples\n", argv[1], r.nf, r.n);
  prom_free(&r);
  free(buf);
  return rc ? 1 : 0;
}
