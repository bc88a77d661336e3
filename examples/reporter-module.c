/* A reverse-tunnel reporter as a dynamic module (include/revtun/reporter_module.h):
 * it appends one line per call to a file, which makes it a handy tap for
 * tests and a starting point for a real one (a fleet directory, a metrics
 * push, a control-plane client).
 *
 * Config (reporter_config in DynamicModuleReverseTunnelReporter):
 *   google.protobuf.StringValue  the path of the file, or
 *   google.protobuf.Struct       {"path": "<file>", ...}  (arrives as JSON)
 * Lines:
 *   new <config bytes>
 *   server_initialized
 *   connected node=<n> cluster=<c> tenant=<t>
 *   disconnected node=<n> cluster=<c>
 *   goaway node=<n> cluster=<c>
 *   destroy
 *
 * Build it alone:
 *   cc -shared -fPIC -I include -o libreporter_example.so examples/reporter-module.c
 * and point the config at it with dynamic_module_config { name: "reporter_example" } and
 * ENVOY_DYNAMIC_MODULES_SEARCH_PATH=<dir>, or module { local { filename: "<path>" } }.
 *
 * Built with -DREVTUN_EXAMPLE_OMIT_DESTROY it lacks a mandatory symbol, which
 * the tests use to check the loader's error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <revtun/reporter_module.h>

#if defined(__GNUC__)
#define EXPORT __attribute__((visibility("default")))
#else
#define EXPORT
#endif

struct reporter {
  FILE *out;
};

/* "path" from a flat JSON object, or the whole config as a path. Enough for
 * a test module; a real one would use a JSON parser. */
static char *config_path(const char *cfg, size_t len) {
  const char *start = cfg, *end = cfg + len;
  if (len && cfg[0] == '{') {
    static const char key[] = "\"path\":\"";
    const char *k = NULL;
    for (const char *p = cfg; !k && (size_t)(end - p) >= sizeof(key) - 1; p++)
      if (memcmp(p, key, sizeof(key) - 1) == 0)
        k = p;
    if (!k)
      return NULL;
    start = k + sizeof(key) - 1;
    end = memchr(start, '"', (size_t)(cfg + len - start));
    if (!end)
      return NULL;
  }
  char *path = malloc((size_t)(end - start) + 1);
  if (path) {
    memcpy(path, start, (size_t)(end - start));
    path[end - start] = '\0';
  }
  return path;
}

static void line(struct reporter *r, const char *what, const revtun_module_buffer_t *bufs,
                 const char *const *names, size_t n) {
  fputs(what, r->out);
  for (size_t i = 0; i < n; i++)
    fprintf(r->out, " %s=%.*s", names[i], (int)bufs[i].length, bufs[i].ptr);
  fputc('\n', r->out);
  fflush(r->out); /* the test reads the file while the module is loaded */
}

EXPORT revtun_module_reporter_t
envoy_dynamic_module_on_reverse_tunnel_reporter_new(revtun_module_buffer_t config) {
  char *path = config_path(config.ptr, config.length);
  if (!path || !*path) {
    free(path);
    return NULL; /* refusing a config makes revtun_new() fail */
  }
  struct reporter *r = calloc(1, sizeof(*r));
  if (r)
    r->out = fopen(path, "a");
  free(path);
  if (!r || !r->out) {
    free(r);
    return NULL;
  }
  fprintf(r->out, "new %.*s\n", (int)config.length, config.ptr);
  fflush(r->out);
  return r;
}

#ifndef REVTUN_EXAMPLE_OMIT_DESTROY
EXPORT void envoy_dynamic_module_on_reverse_tunnel_reporter_destroy(revtun_module_reporter_t p) {
  struct reporter *r = p;
  fputs("destroy\n", r->out);
  fclose(r->out);
  free(r);
}
#endif

EXPORT void envoy_dynamic_module_on_reverse_tunnel_server_initialized(revtun_module_reporter_t p) {
  line(p, "server_initialized", NULL, NULL, 0);
}

EXPORT void envoy_dynamic_module_on_reverse_tunnel_connected(revtun_module_reporter_t p,
                                                             revtun_module_buffer_t node,
                                                             revtun_module_buffer_t cluster,
                                                             revtun_module_buffer_t tenant) {
  static const char *const names[] = {"node", "cluster", "tenant"};
  revtun_module_buffer_t b[] = {node, cluster, tenant};
  line(p, "connected", b, names, 3);
}

EXPORT void envoy_dynamic_module_on_reverse_tunnel_disconnected(revtun_module_reporter_t p,
                                                                revtun_module_buffer_t node,
                                                                revtun_module_buffer_t cluster) {
  static const char *const names[] = {"node", "cluster"};
  revtun_module_buffer_t b[] = {node, cluster};
  line(p, "disconnected", b, names, 2);
}

EXPORT void envoy_dynamic_module_on_reverse_tunnel_goaway(revtun_module_reporter_t p,
                                                          revtun_module_buffer_t node,
                                                          revtun_module_buffer_t cluster) {
  static const char *const names[] = {"node", "cluster"};
  revtun_module_buffer_t b[] = {node, cluster};
  line(p, "goaway", b, names, 2);
}

/* Envoy requires this symbol; libupstream-revtun calls it when present. */
EXPORT const char *envoy_dynamic_module_on_program_init(void) { return "revtun-example"; }
