/* The handle's configuration: a serialized
 * UpstreamReverseConnectionSocketInterface, checked against Envoy's
 * validation rules and copied into plain C (the decoded message never
 * outlives the parse), and the creation-time limits a host may set. */
#ifndef REVTUN_CORE_CONFIG_H
#define REVTUN_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/mem.h"

/* A TypedExtensionConfig or an AccessLog entry, kept verbatim for the
 * factory that builds it. */
struct rt_ext_entry {
  char *name;
  char *type_url;
  uint8_t *value;
  size_t value_len;
};

struct rt_config {
  char *stat_prefix;
  uint32_t ping_failure_threshold;
  bool detailed_stats;
  bool tenant_isolation;
  uint32_t max_connections_per_node;
  bool has_reporter;
  struct rt_ext_entry reporter;
  struct rt_ext_entry *access_logs;
  size_t n_access_logs;
};

/* revtun_options_set_limit() */
struct rt_limits {
  uint64_t config_bytes;
  uint64_t log_buffer_bytes;
  uint64_t access_logs;
  uint64_t log_flush_ms;
};

/* REVTUN_OK, or REVTUN_E_CONFIG / REVTUN_E_INVAL / REVTUN_E_NOMEM with a
 * sentence naming the field; *out is empty after a failure. */
int rt_config_parse(const struct rt_mem *mem, const void *buf, size_t len,
                    const struct rt_limits *limits, struct rt_config *out, char *errbuf,
                    size_t errbuf_len);
void rt_config_clear(const struct rt_mem *mem, struct rt_config *cfg);

#endif
