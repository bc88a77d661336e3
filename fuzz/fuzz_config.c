/* libFuzzer harness: serialized UpstreamReverseConnectionSocketInterface.
 * Validate, create a handle, walk every getter, free. */
#include <stdint.h>
#include <string.h>

#include <revtun/revtun.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[256];
  int v = revtun_config_validate(data, size, NULL, err, sizeof(err));
  revtun_t *h = NULL;
  int rc = revtun_new(&h, data, size, NULL, 0, err, sizeof(err));
  if ((v == REVTUN_OK) != (rc == REVTUN_OK))
    __builtin_trap(); /* validate and new must agree */
  if (rc != REVTUN_OK) {
    if (h || strlen(err) == 0)
      __builtin_trap(); /* a failure always explains itself */
    return 0;
  }
  volatile size_t sink = strlen(revtun_config_stat_prefix(h));
  sink += revtun_config_ping_failure_threshold(h) == 0; /* never 0 */
  if (revtun_config_ping_failure_threshold(h) == 0)
    __builtin_trap();
  sink += (size_t)revtun_config_detailed_stats(h) + (size_t)revtun_config_tenant_isolation(h) +
          revtun_config_max_connections_per_node(h);
  const char *name, *type;
  const uint8_t *val;
  size_t len;
  if (revtun_config_reporter(h, &name, &type, &val, &len) == REVTUN_OK)
    sink += strlen(name) + strlen(type) + len;
  for (size_t i = 0; i < revtun_config_access_log_count(h); i++)
    if (revtun_config_access_log(h, i, &name, &type, &val, &len) == REVTUN_OK)
      sink += strlen(name) + strlen(type) + len;
  (void)sink;
  revtun_free(h);
  return 0;
}
