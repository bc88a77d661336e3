/* Replays a libFuzzer corpus through a harness without libFuzzer, so every
 * `make check` (gcc, valgrind, sanitizers) re-runs every input ever saved.
 * Built once per harness with -DCORPUS_DIR pointing at fuzz/corpus/<name>. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return -1;
  }
  size_t cap = 1 << 16, len = 0;
  uint8_t *buf = malloc(cap);
  size_t n;
  while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      uint8_t *bigger = realloc(buf, cap * 2);
      if (!bigger)
        break;
      buf = bigger;
      cap *= 2;
    }
  }
  fclose(f);
  if (!buf)
    return -1;
  /* an exact-size copy so that sanitizers see any read past the end */
  uint8_t *exact = malloc(len ? len : 1);
  memcpy(exact, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : CORPUS_DIR;
  DIR *d = opendir(dir);
  if (!d) {
    perror(dir);
    return 1;
  }
  int files = 0, failed = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    failed += replay_file(path) != 0;
    files++;
  }
  closedir(d);
  printf("%s: replayed %d inputs\n", dir, files);
  return failed || files == 0 ? 1 : 0;
}
