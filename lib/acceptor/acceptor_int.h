/* The handshake acceptor's private declarations. */
#ifndef REVTUN_ACCEPTOR_ACCEPTOR_INT_H
#define REVTUN_ACCEPTOR_ACCEPTOR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acceptor/acceptor.h"
#include "acceptor/handshake.h"
#include "acceptor/transport.h"
#include "core/event.h"
#include "core/fdtable.h"
#include "core/handle.h"
#include "core/stats.h"
#include "format/format.h"
#include "pool/pool.h"

enum { RT_ACC_NODE, RT_ACC_CLUSTER, RT_ACC_TENANT, RT_ACC_N_IDS };

/* Envoy's HTTP/1 codec defaults: 60 KiB of request headers, 100 headers. */
#define RT_ACC_DEFAULT_HEADER_BYTES (60u * 1024u)
#define RT_ACC_MAX_TIMEOUT_MS 3600000u    /* an hour: longer is a leak, not a handshake */
#define RT_ACC_MAX_PENDING_CAP (1u << 20) /* concurrent handshakes */
/* Request bytes all pending handshakes may buffer beyond 1 KiB each. */
#define RT_ACC_DEFAULT_BUFFERED (32u << 20)
#define RT_ACC_MAX_BUFFERED_CAP (1ull << 32)

struct rt_acc_config {
  uint32_t ping_interval_ms;
  const char *method; /* static string */
  char *request_path;
  char *required_cluster_name; /* NULL: not checked */
  bool use_upgrade, enable_connection_limit;
  struct rt_fmt *id_format[RT_ACC_N_IDS]; /* NULL: not validated */
  bool reads_conn_meta;                   /* a format names %DYNAMIC_METADATA% or %FILTER_STATE% */
  bool emit_metadata;
  char *md_namespace;
};

/* TRANSPORT_HANDSHAKE only when the acceptor has a transport (TLS). */
enum rt_acc_phase { TRANSPORT_HANDSHAKE = 1, READ_REQUEST, WRITE_OK, WRITE_REJECT, LINGER };

struct rt_hs_conn {
  struct rt_fdent ent; /* must be first */
  revtun_acceptor_t *acc;
  struct rt_hs_conn *prev, *next;
  uint8_t phase;
  uint8_t interest;           /* what the host watches for this fd (REVTUN_IO_*) */
  void *tp_conn;              /* the transport's session, NULL for plaintext */
  struct revtun_transport tp; /* the callbacks it was opened with, kept per
                                 connection: the acceptor's may be replaced */
  struct rt_peer peer;
  uint8_t *buf;
  size_t len, cap, scan, consumed;
  char resp[RT_HS_RESPONSE_CAP];
  size_t resp_len, resp_off;
  size_t drained;
  struct rt_sock *prepared;
  struct rt_reg_args args; /* strings point into ids */
  char *ids;
  struct rt_meta_kv meta[4];
  char *meta_keys;
  revtun_conn_meta_t *conn_meta; /* the acceptor's copy of what the host attached */
  size_t conn_meta_bytes;        /* its size, counted against max_buffered */
};

struct revtun_acceptor {
  revtun_t *h;
  revtun_acceptor_t *next;
  bool free_pending; /* freed from inside a library call: finished by rt_leave */
  struct rt_acc_config cfg;
  uint64_t timeout_ms, max_header_bytes, max_headers, max_pending, max_buffered;
  uint64_t buffered; /* request buffer bytes held beyond the first 1 KiB of each */
  char prefix[64];
  struct revtun_transport tp; /* a copy; unused unless has_tp */
  bool has_tp;
  struct rt_hs_conn *conns;
  size_t n_pending;
};

/* How to answer a request that is not accepted. */
struct rt_acc_verdict {
  int status;
  const char *body;        /* Envoy's exact text */
  enum rt_counter counter; /* RT_C_COUNT: none */
};

bool rt_acc_validate(revtun_t *h, struct rt_hs_conn *c, const struct rt_hs_request *req,
                     struct rt_acc_verdict *v);
void rt_acc_attach_metadata(revtun_t *h, struct rt_hs_conn *c);

int rt_acc_config_parse(const struct rt_mem *m, const void *buf, size_t len, uint64_t max_bytes,
                        struct rt_acc_config *c, char *err, size_t errlen);
void rt_acc_config_clear(const struct rt_mem *m, struct rt_acc_config *c);

#endif
