/* Built-in access loggers: which ones exist and how an
 * access_log entry's typed_config becomes a compiled format and a target. */
#ifndef REVTUN_OBSERVE_ACCESSLOG_INT_H
#define REVTUN_OBSERVE_ACCESSLOG_INT_H

#include "base/mem.h"
#include "core/config.h"
#include "format/format.h"

/* Used when an entry gives no format (Envoy's own default is an HTTP line,
 * meaningless for tunnel records). One line per record, for example:
 *   [2026-01-02T03:04:05.678Z] tunnel_setup node=n1 cluster=c1 tenant=- worker=worker_0
 *   fd=7 state=idle miss_count=- close_reason=- remote=10.0.0.1:4242
 * (one line; tenant is "-" when there is none, miss_count only on ping misses). */
#define RT_DEFAULT_LOG_FORMAT                                                                      \
  "[%START_TIME%] %DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:event)%"                        \
  " node=%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:node_id)%"                               \
  " cluster=%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:cluster_id)%"                         \
  " tenant=%FILTER_STATE(envoy.reverse_tunnel.tenant_id:PLAIN)%"                                   \
  " worker=%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:worker)%"                              \
  " fd=%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:fd)%"                                      \
  " state=%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:socket_state)%"                         \
  " miss_count=%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:miss_count)%"                      \
  " close_reason=%CONNECTION_TERMINATION_DETAILS%"                                                 \
  " remote=%DOWNSTREAM_REMOTE_ADDRESS%\n"

enum rt_builtin_logger { RT_LOGGER_NONE = 0, RT_LOGGER_FILE, RT_LOGGER_STDOUT, RT_LOGGER_STDERR };

/* What an entry asks of a built-in logger. */
struct rt_logspec {
  int kind;   /* enum rt_builtin_logger */
  char *path; /* RT_LOGGER_FILE */
  struct rt_fmt *fmt;
};

/* The built-in an entry names: by its typed_config type URL, as Envoy
 * resolves access loggers, or by name when the entry has no typed_config. */
int rt_logger_builtin_kind(const struct rt_ext_entry *e);

/* Decodes and checks entry `index` (a built-in) into spec: the format is
 * compiled, nothing is opened. Errors name the entry and the field. */
int rt_logspec_parse(const struct rt_mem *m, const struct rt_ext_entry *e, size_t index,
                     struct rt_logspec *spec, char *errbuf, size_t errbuf_len);
void rt_logspec_clear(const struct rt_mem *m, struct rt_logspec *spec);

#endif
