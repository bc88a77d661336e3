/* Serialized envoy.extensions.filters.network.reverse_tunnel.v3.ReverseTunnel
 * -> validated acceptor config, applying the filter's PGV rules by hand. */
#include <stdio.h>
#include <string.h>

#include "acceptor/acceptor_int.h"
#include "envoy/extensions/filters/network/reverse_tunnel/v3/reverse_tunnel.pb-c.h"
#include "base/macros.h"
#include "base/proto.h"
#include "base/text.h"

typedef Envoy__Extensions__Filters__Network__ReverseTunnel__V3__ReverseTunnel ReverseTunnel;
typedef Envoy__Extensions__Filters__Network__ReverseTunnel__V3__Validation Validation;

#define DEFAULT_PATH "/reverse_connections/request"
#define DEFAULT_MD_NAMESPACE "envoy.filters.network.reverse_tunnel"
#define MAX_PATH_LEN 255u
#define MAX_FORMAT_LEN 1024u

static const char *const methods[] = {"GET",    "GET",     "HEAD",    "POST",  "PUT",
                                      "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};

void rt_acc_config_clear(const struct rt_mem *m, struct rt_acc_config *c) {
  rt_free(m, c->request_path);
  rt_free(m, c->required_cluster_name);
  rt_free(m, c->md_namespace);
  for (int i = 0; i < RT_ACC_N_IDS; i++) {
    rt_fmt_free(m, c->id_format[i]);
  }
  memset(c, 0, sizeof(*c));
}

/* Envoy's max_len rules count characters (runes), not bytes: every byte
 * that is not a UTF-8 continuation byte starts one. */
static int check_len(const char *field, const char *v, size_t max, char *err, size_t errlen) {
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)v; p && *p; p++)
    n += (*p & 0xc0) != 0x80;
  if (n > max)
    return rt_fail(REVTUN_E_CONFIG, err, errlen, "%s is %zu characters, more than %zu", field, n,
                   max);
  return REVTUN_OK;
}

static int parse_interval(const Google__Protobuf__Duration *d, uint32_t *ms, char *err,
                          size_t errlen) {
  if (!d) {
    *ms = RT_DEFAULT_PING_INTERVAL_MS;
    return REVTUN_OK;
  }
  if (d->seconds < 0 || d->nanos < 0 || d->nanos > 999999999 ||
      d->seconds > (int64_t)RT_MAX_PING_INTERVAL_MS / 1000)
    return rt_fail(REVTUN_E_CONFIG, err, errlen,
                   "ping_interval must be between 1ms and 300s (got %llds %dns)",
                   (long long)d->seconds, d->nanos);
  uint64_t v = (uint64_t)d->seconds * 1000u + (uint64_t)d->nanos / 1000000u;
  if (v < 1 || v > RT_MAX_PING_INTERVAL_MS || (v == RT_MAX_PING_INTERVAL_MS && d->nanos % 1000000))
    return rt_fail(REVTUN_E_CONFIG, err, errlen,
                   "ping_interval must be between 1ms and 300s (got %llds %dns)",
                   (long long)d->seconds, d->nanos);
  *ms = (uint32_t)v;
  return REVTUN_OK;
}

static int parse_validation(const struct rt_mem *m, const Validation *v, struct rt_acc_config *c,
                            char *err, size_t errlen) {
  const char *texts[RT_ACC_N_IDS] = {v->node_id_format, v->cluster_id_format, v->tenant_id_format};
  static const char *const names[RT_ACC_N_IDS] = {"node_id_format", "cluster_id_format",
                                                  "tenant_id_format"};
  int rc;
  for (int i = 0; i < RT_ACC_N_IDS; i++) {
    if (!texts[i] || !*texts[i])
      continue; /* empty: that id is not checked */
    char what[64];
    snprintf(what, sizeof(what), "validation.%s", names[i]);
    if ((rc = check_len(what, texts[i], MAX_FORMAT_LEN, err, errlen)))
      return rc;
    char msg[200];
    rc = rt_fmt_compile(m, texts[i], strlen(texts[i]), RT_FMT_OPS_HANDSHAKE, 0, &c->id_format[i],
                        msg, sizeof(msg));
    if (rc)
      return rt_fail(rc, err, errlen, "Failed to parse %s: %s", names[i], msg);
    if (rt_fmt_ops_used(c->id_format[i]) & (RT_FMT_OP_DYNAMIC_METADATA | RT_FMT_OP_FILTER_STATE))
      c->reads_conn_meta = true;
  }
  if ((rc = check_len("validation.dynamic_metadata_namespace", v->dynamic_metadata_namespace, 255,
                      err, errlen)))
    return rc;
  c->emit_metadata = v->emit_dynamic_metadata;
  const char *ns = v->dynamic_metadata_namespace && *v->dynamic_metadata_namespace
                       ? v->dynamic_metadata_namespace
                       : DEFAULT_MD_NAMESPACE;
  return (c->md_namespace = rt_strdup(m, ns)) ? REVTUN_OK : REVTUN_E_NOMEM;
}

int rt_acc_config_parse(const struct rt_mem *m, const void *buf, size_t len, uint64_t max_bytes,
                        struct rt_acc_config *c, char *err, size_t errlen) {
  memset(c, 0, sizeof(*c));
  if (!buf && len)
    return rt_fail(REVTUN_E_INVAL, err, errlen, "config is NULL but its length is %zu", len);
  if (len > max_bytes)
    return rt_fail(REVTUN_E_CONFIG, err, errlen,
                   "config is %zu bytes, more than the limit of %llu bytes", len,
                   (unsigned long long)max_bytes);
  ProtobufCMessage *msg;
  int rc = rt_pb_unpack(
      m, &envoy__extensions__filters__network__reverse_tunnel__v3__reverse_tunnel__descriptor, buf,
      len, "ReverseTunnel", &msg, err, errlen);
  if (rc)
    return rc;
  const ReverseTunnel *rt = (const ReverseTunnel *)msg;
  if (rt_pb_has_unknown(msg, 10)) {
    rc = rt_fail(REVTUN_E_CONFIG, err, errlen,
                 "jwt_validator is not supported by this library (handshakes would go "
                 "unauthenticated); authenticate in the host or drop the field");
    goto done;
  }
  if ((rc = parse_interval(rt->ping_interval, &c->ping_interval_ms, err, errlen)))
    goto done;
  if ((unsigned)rt->request_method >= RT_COUNT_OF(methods)) {
    rc = rt_fail(REVTUN_E_CONFIG, err, errlen, "request_method %d is not a defined RequestMethod",
                 (int)rt->request_method);
    goto done;
  }
  c->method = methods[rt->request_method];
  if ((rc = check_len("request_path", rt->request_path, MAX_PATH_LEN, err, errlen)) ||
      (rc = check_len("required_cluster_name", rt->required_cluster_name, 255, err, errlen)))
    goto done;
  c->request_path =
      rt_strdup(m, rt->request_path && *rt->request_path ? rt->request_path : DEFAULT_PATH);
  c->required_cluster_name = rt->required_cluster_name && *rt->required_cluster_name
                                 ? rt_strdup(m, rt->required_cluster_name)
                                 : NULL;
  if (!c->request_path ||
      (rt->required_cluster_name && *rt->required_cluster_name && !c->required_cluster_name)) {
    rc = rt_fail(REVTUN_E_NOMEM, err, errlen, "out of memory");
    goto done;
  }
  c->use_upgrade = rt->use_http_upgrade;
  c->enable_connection_limit = rt->enable_connection_limit;
  if (rt->validation && (rc = parse_validation(m, rt->validation, c, err, errlen)))
    goto done;
done:
  rt_pb_free(m, msg);
  if (rc)
    rt_acc_config_clear(m, c);
  return rc;
}

int revtun_acceptor_config_validate(const void *config, size_t len, char *errbuf,
                                    size_t errbuf_len) {
  struct rt_mem m;
  rt_mem_default(&m);
  struct rt_acc_config c;
  int rc = rt_acc_config_parse(&m, config, len, 1u << 20, &c, errbuf, errbuf_len);
  if (!rc) {
    rt_acc_config_clear(&m, &c);
    if (errbuf && errbuf_len)
      errbuf[0] = '\0';
  }
  return rc;
}
