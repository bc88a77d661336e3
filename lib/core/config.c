/* Serialized UpstreamReverseConnectionSocketInterface -> validated rt_config.
 * protobuf-c applies none of Envoy's validation rules, so each one is here,
 * with a sentence naming the field when it fails. The decoded message never
 * outlives this file: what the handle needs is copied into rt_config. */
#include <stdio.h>
#include <string.h>

#include "envoy/extensions/bootstrap/reverse_tunnel/upstream_socket_interface/v3/upstream_reverse_connection_socket_interface.pb-c.h"
#include "base/proto.h"
#include "base/text.h"
#include "core/config.h"

#define RT_DEFAULT_STAT_PREFIX "reverse_tunnel_acceptor"
#define RT_DEFAULT_THRESHOLD 3u

#define RT_MAX_STAT_PREFIX 256u

typedef Envoy__Extensions__Bootstrap__ReverseTunnel__UpstreamSocketInterface__V3__UpstreamReverseConnectionSocketInterface
    UpstreamConfig;
#define UPSTREAM_CONFIG_DESC                                                                       \
  envoy__extensions__bootstrap__reverse_tunnel__upstream_socket_interface__v3__upstream_reverse_connection_socket_interface__descriptor

static int copy_any(const struct rt_mem *m, const char *name, const Google__Protobuf__Any *any,
                    struct rt_ext_entry *e) {
  e->name = rt_strdup(m, name ? name : "");
  e->type_url = rt_strdup(m, any && any->type_url ? any->type_url : "");
  e->value_len = any ? any->value.len : 0;
  e->value = rt_malloc(m, e->value_len);
  if (!e->name || !e->type_url || !e->value)
    return REVTUN_E_NOMEM;
  if (e->value_len)
    memcpy(e->value, any->value.data, e->value_len);
  return REVTUN_OK;
}

static void clear_entry(const struct rt_mem *m, struct rt_ext_entry *e) {
  rt_free(m, e->name);
  rt_free(m, e->type_url);
  rt_free(m, e->value);
  memset(e, 0, sizeof(*e));
}

void rt_config_clear(const struct rt_mem *m, struct rt_config *cfg) {
  rt_free(m, cfg->stat_prefix);
  clear_entry(m, &cfg->reporter);
  for (size_t i = 0; i < cfg->n_access_logs; i++)
    clear_entry(m, &cfg->access_logs[i]);
  rt_free(m, cfg->access_logs);
  memset(cfg, 0, sizeof(*cfg));
}

static int check_reporter(const Envoy__Config__Core__V3__TypedExtensionConfig *r, char *errbuf,
                          size_t errbuf_len) {
  if (!r->name || !*r->name)
    return rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len, "reporter_config.name must not be empty");
  if (!r->typed_config)
    return rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len,
                   "reporter_config.typed_config is required (reporter '%s')", r->name);
  return REVTUN_OK;
}

static int check_access_logs(const UpstreamConfig *c, const struct rt_limits *limits, char *errbuf,
                             size_t errbuf_len) {
  if (c->n_access_log > limits->access_logs)
    return rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len,
                   "access_log has %zu entries, more than the limit of %llu", c->n_access_log,
                   (unsigned long long)limits->access_logs);
  for (size_t i = 0; i < c->n_access_log; i++) {
    /* AccessLog.filter (field 2) is not in our schema: refusing it beats
     * logging records the operator meant to filter out. */
    if (rt_pb_has_unknown(&c->access_log[i]->base, 2))
      return rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len,
                     "access_log[%zu].filter is not supported by this library", i);
  }
  return REVTUN_OK;
}

int rt_config_parse(const struct rt_mem *m, const void *buf, size_t len,
                    const struct rt_limits *limits, struct rt_config *out, char *errbuf,
                    size_t errbuf_len) {
  memset(out, 0, sizeof(*out));
  if (!buf && len)
    return rt_fail(REVTUN_E_INVAL, errbuf, errbuf_len, "config is NULL but its length is %zu", len);
  if (len > limits->config_bytes)
    return rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len,
                   "config is %zu bytes, more than the limit of %llu bytes", len,
                   (unsigned long long)limits->config_bytes);
  ProtobufCMessage *msg;
  int rc = rt_pb_unpack(m, &UPSTREAM_CONFIG_DESC, buf, len,
                        "UpstreamReverseConnectionSocketInterface", &msg, errbuf, errbuf_len);
  if (rc)
    return rc;
  const UpstreamConfig *c = (const UpstreamConfig *)msg;

  if (c->ping_failure_threshold && c->ping_failure_threshold->value < 1) {
    rc = rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len,
                 "ping_failure_threshold must be >= 1 (got %u)", c->ping_failure_threshold->value);
    goto done;
  }
  if (c->stat_prefix && strlen(c->stat_prefix) > RT_MAX_STAT_PREFIX) {
    rc = rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len, "stat_prefix is %zu bytes, more than %u",
                 strlen(c->stat_prefix), RT_MAX_STAT_PREFIX);
    goto done;
  }
  if (c->reporter_config && (rc = check_reporter(c->reporter_config, errbuf, errbuf_len)))
    goto done;
  if ((rc = check_access_logs(c, limits, errbuf, errbuf_len)))
    goto done;

  out->ping_failure_threshold =
      c->ping_failure_threshold ? c->ping_failure_threshold->value : RT_DEFAULT_THRESHOLD;
  out->detailed_stats = c->enable_detailed_stats;
  out->tenant_isolation = c->enable_tenant_isolation && c->enable_tenant_isolation->value;
  out->max_connections_per_node = c->max_connections_per_node;
  out->stat_prefix =
      rt_strdup(m, c->stat_prefix && *c->stat_prefix ? c->stat_prefix : RT_DEFAULT_STAT_PREFIX);
  rc = out->stat_prefix ? REVTUN_OK : REVTUN_E_NOMEM;
  if (!rc && c->reporter_config) {
    out->has_reporter = true;
    rc = copy_any(m, c->reporter_config->name, c->reporter_config->typed_config, &out->reporter);
  }
  if (!rc && c->n_access_log) {
    out->access_logs = rt_calloc(m, c->n_access_log, sizeof(*out->access_logs));
    if (!out->access_logs)
      rc = REVTUN_E_NOMEM;
    for (size_t i = 0; !rc && i < c->n_access_log; i++) {
      const Envoy__Config__Accesslog__V3__AccessLog *al = c->access_log[i];
      out->n_access_logs = i + 1;
      rc = copy_any(m, al->name, al->typed_config, &out->access_logs[i]);
    }
  }
  if (rc == REVTUN_E_NOMEM)
    rt_fail(rc, errbuf, errbuf_len, "out of memory while copying the config");
done:
  rt_pb_free(m, msg);
  if (rc)
    rt_config_clear(m, out);
  return rc;
}
