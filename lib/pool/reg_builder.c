/* revtun_reg_t: a reusable description of one registration. It borrows the
 * strings it is given (they must stay valid until revtun_register_socket
 * returns), so registering costs no allocation for the description. */
#include <string.h>

#include "core/handle.h"
#include "core/reentry.h"
#include "pool/pool.h"

struct revtun_reg {
  struct rt_mem mem;
  struct rt_reg_args args;
};

int revtun_reg_new(revtun_t *h, revtun_reg_t **out) {
  if (!h || !out)
    return REVTUN_E_INVAL;
  revtun_reg_t *r = rt_calloc(&h->mem, 1, sizeof(*r));
  *out = r;
  if (!r)
    return REVTUN_E_NOMEM;
  r->mem = h->mem;
  revtun_reg_reset(r);
  return REVTUN_OK;
}

void revtun_reg_free(revtun_reg_t *r) {
  if (r)
    rt_free(&r->mem, r);
}

void revtun_reg_reset(revtun_reg_t *r) {
  if (!r)
    return;
  memset(&r->args, 0, sizeof(r->args));
  r->args.enforce_limit = true;
}

int revtun_reg_set_ids(revtun_reg_t *r, const char *node_id, const char *cluster_id,
                       const char *tenant_id) {
  if (!r)
    return REVTUN_E_INVAL;
  r->args.node_id = node_id;
  r->args.cluster_id = cluster_id;
  r->args.tenant_id = tenant_id;
  return REVTUN_OK;
}

int revtun_reg_set_ping_interval(revtun_reg_t *r, uint32_t interval_ms) {
  if (!r || interval_ms == 0 || interval_ms > RT_MAX_PING_INTERVAL_MS)
    return REVTUN_E_INVAL;
  r->args.interval_ms = interval_ms;
  return REVTUN_OK;
}

int revtun_reg_set_initiator(revtun_reg_t *r, int64_t initiation_time_ms, const char *worker_id,
                             const char *connection_id) {
  if (!r || initiation_time_ms < 0)
    return REVTUN_E_INVAL;
  r->args.initiation_time_ms = initiation_time_ms;
  r->args.init_worker = worker_id;
  r->args.init_conn = connection_id;
  return REVTUN_OK;
}

int revtun_reg_set_sock_user(revtun_reg_t *r, void *sock_user) {
  if (!r)
    return REVTUN_E_INVAL;
  r->args.sock_user = sock_user;
  return REVTUN_OK;
}

int revtun_register_socket(revtun_t *h, int fd, const revtun_reg_t *reg, revtun_time_ms_t now) {
  if (!reg)
    return REVTUN_E_INVAL;
  int rc = rt_enter(h, now);
  if (rc)
    return rc;
  rc = rt_pool_register(h, fd, &reg->args, now);
  rt_leave(h);
  return rc;
}
