/* The handshake acceptor's private declarations. */
#ifndef REVTUN_ACCEPTOR_INT_H
#define REVTUN_ACCEPTOR_INT_H

#include "format.h"
#include "handshake.h"
#include "revtun_int.h"

enum { RT_ACC_NODE, RT_ACC_CLUSTER, RT_ACC_TENANT, RT_ACC_N_IDS };

struct rt_acc_config {
  uint32_t ping_interval_ms;
  const char *method; /* static string */
  char *request_path;
  char *required_cluster_name; /* NULL: not checked */
  bool auto_close, use_upgrade, skip_rebalancing, enable_connection_limit;
  char *id_format_text[RT_ACC_N_IDS];
  struct rt_fmt *id_format[RT_ACC_N_IDS]; /* NULL: not validated */
  bool emit_metadata;
  char *md_namespace;
};

int rt_acc_config_parse(const struct rt_mem *m, const void *buf, size_t len, uint64_t max_bytes,
                        struct rt_acc_config *c, char *err, size_t errlen);
void rt_acc_config_clear(const struct rt_mem *m, struct rt_acc_config *c);

#endif
