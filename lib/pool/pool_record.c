/* The lifecycle record and reporter event of a pool socket: core fills in
 * the handle's part (kind, time, worker), this the socket's identity,
 * initiator, addresses and state. */
#include "base/text.h"
#include "pool/pool_int.h"

void rt_pool_record(struct revtun_event *ev, const revtun_t *h, int kind, revtun_time_ms_t now,
                    const struct rt_sock *s) {
  rt_event_init(ev, h, kind, now);
  const struct rt_member *m = s->member;
  ev->node_id = m->node->id;
  ev->cluster_id = m->cluster->id;
  ev->node_key = m->node->key;
  ev->cluster_key = m->cluster->key;
  ev->tenant_id = rt_istr_str(s->tenant);
  ev->init_worker = rt_istr_str(s->init_worker);
  ev->init_conn =
      s->has_conn_num ? rt_u64_str(s->init_conn_num, ev->conn_buf) : rt_istr_str(s->init_conn);
  ev->initiation_time_ms = s->initiation_time_ms;
  ev->fd = s->ent.fd;
  ev->sock_user = s->ent.sock_user;
  ev->miss_count = s->ka.misses;
  ev->local = &s->local;
  ev->remote = &s->remote;
  if (kind == REVTUN_EV_SOCKET_HANDOFF) {
    ev->socket_state = REVTUN_SOCK_HANDED_OFF;
    ev->handoff_kind = "pool_to_upstream";
  } else {
    ev->socket_state = s->state == RT_SOCK_IDLE ? REVTUN_SOCK_IDLE : REVTUN_SOCK_IN_USE;
  }
}

void rt_pool_emit(revtun_t *h, int kind, const struct rt_sock *s, revtun_time_ms_t now) {
  if (!rt_wants_records(h))
    return; /* nobody listens: per-ping records cost nothing */
  struct revtun_event ev;
  rt_pool_record(&ev, h, kind, now, s);
  rt_emit(h, &ev);
}
