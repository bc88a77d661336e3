/* Idle sockets moving between handles: to another worker's handle through
 * the process directory (pool/remote.c), or to another process with the
 * state as a byte string (revtun_export_socket, revtun_import_socket). A
 * socket that moves keeps its identity, initiator, keepalive phase and age;
 * it leaves with a socket_exported record and joins with socket_imported,
 * never with tunnel_closed and tunnel_setup, and no RPING is lost or sent
 * twice: the next deadline travels as the time left to it. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "base/text.h"
#include "core/event.h"
#include "core/host.h"
#include "core/reentry.h"
#include "pool/move.h"
#include "pool/pool_int.h"

static struct rt_span span_of(const char *s) { return (struct rt_span){s, s ? strlen(s) : 0}; }

/* The encoded state of an idle socket into buf; its length, or 0 when cap
 * is too small (*need says how much is). */
static size_t encode(const struct rt_sock *s, revtun_time_ms_t now, uint8_t *buf, size_t cap,
                     size_t *need) {
  const struct rt_member *m = s->member;
  char conn_buf[24];
  struct rt_sockstate st = {
      .node = span_of(m->node->id),
      .cluster = span_of(m->cluster->id),
      .tenant = span_of(rt_istr_str(s->tenant)),
      .init_worker = span_of(rt_istr_str(s->init_worker)),
      .init_conn = span_of(s->has_conn_num ? rt_u64_str(s->init_conn_num, conn_buf)
                                           : rt_istr_str(s->init_conn)),
      .interval_ms = s->ka.interval_ms,
      .misses = s->ka.misses,
      .initiation_time_ms = s->initiation_time_ms,
      .partial = s->ka.partial,
      .awaiting_reply = s->ka.awaiting_reply,
  };
  uint64_t deadline = s->ent.tm.deadline;
  st.deadline_in_ms = deadline > now ? (uint32_t)(deadline - now) : 0;
  st.age_ms = (int64_t)now > s->parked_ms ? (uint64_t)((int64_t)now - s->parked_ms) : 0;
  *need = rt_sockstate_size(&st);
  return rt_sockstate_encode(&st, buf, cap);
}

int rt_pool_export(revtun_t *h, struct rt_sock *s, bool report, revtun_time_ms_t now, uint8_t *buf,
                   size_t cap, size_t *len_out) {
  size_t need;
  size_t n = encode(s, now, buf, cap, &need);
  *len_out = n ? n : need;
  if (!n)
    return need > cap ? REVTUN_E_NOSPACE : REVTUN_E_INVAL;
  rt_pool_release(h, s, report, now);
  return REVTUN_OK;
}

/* The decoded strings, NUL-terminated, in one block; the keys of the lost
 * record behind them. */
struct import_strings {
  char *node, *cluster, *tenant, *init_worker, *init_conn;
  char *block;
};

static char *put_span(char **at, struct rt_span sp) {
  char *s = *at;
  if (sp.n)
    memcpy(s, sp.p, sp.n);
  s[sp.n] = '\0';
  *at += sp.n + 1;
  return s;
}

static int strings_of(revtun_t *h, const struct rt_sockstate *st, struct import_strings *out) {
  size_t total =
      st->node.n + st->cluster.n + st->tenant.n + st->init_worker.n + st->init_conn.n + 5;
  char *at = out->block = rt_malloc(&h->mem, total);
  if (!at)
    return REVTUN_E_NOMEM;
  out->node = put_span(&at, st->node);
  out->cluster = put_span(&at, st->cluster);
  out->tenant = put_span(&at, st->tenant);
  out->init_worker = put_span(&at, st->init_worker);
  out->init_conn = put_span(&at, st->init_conn);
  return REVTUN_OK;
}

/* The record of a socket that could not join after it left its old pool:
 * its tunnel ends here, with reason move_failed. */
static void record_lost(revtun_t *h, int fd, const struct import_strings *ids,
                        const struct rt_sockstate *st, int sys_errno, revtun_time_ms_t now) {
  rt_count(h, (enum rt_counter)(RT_C_CLOSED_BASE + REVTUN_CLOSE_MOVE_FAILED));
  if (!rt_wants_records(h))
    return;
  struct revtun_event ev;
  rt_event_init(&ev, h, REVTUN_EV_TUNNEL_CLOSED, now);
  ev.node_id = ev.node_key = ids ? ids->node : "";
  ev.cluster_id = ev.cluster_key = ids ? ids->cluster : "";
  ev.tenant_id = ids ? ids->tenant : "";
  ev.init_worker = ids ? ids->init_worker : "";
  ev.init_conn = ids ? ids->init_conn : "";
  ev.initiation_time_ms = st->initiation_time_ms;
  ev.fd = fd;
  ev.socket_state = REVTUN_SOCK_IDLE;
  ev.miss_count = st->misses;
  ev.close_reason = REVTUN_CLOSE_MOVE_FAILED;
  ev.sys_errno = sys_errno;
  rt_emit(h, &ev);
}

int rt_pool_import(revtun_t *h, int fd, const struct rt_sockstate *st, void *sock_user, bool report,
                   revtun_time_ms_t now) {
  struct import_strings ids = {0};
  int rc = strings_of(h, st, &ids);
  if (rc) {
    record_lost(h, fd, NULL, st, ENOMEM, now);
    return rc;
  }
  struct rt_ka_resume resume = {
      .age_ms = st->age_ms,
      .deadline_in_ms = st->deadline_in_ms,
      .misses = st->misses,
      .partial = st->partial,
      .awaiting_reply = st->awaiting_reply,
      .report = report,
  };
  struct rt_reg_args a = {
      .node_id = ids.node,
      .cluster_id = ids.cluster,
      .tenant_id = ids.tenant[0] ? ids.tenant : NULL,
      .interval_ms = st->interval_ms,
      .initiation_time_ms = st->initiation_time_ms,
      .init_worker = ids.init_worker[0] ? ids.init_worker : NULL,
      .init_conn = ids.init_conn[0] ? ids.init_conn : NULL,
      .sock_user = sock_user,
      .resume = &resume,
  };
  /* A socket already admitted is not a new registration: no per-node limit. */
  rc = rt_pool_register(h, fd, &a, now);
  if (rc == REVTUN_E_NOMEM || rc == REVTUN_E_IO || rc == REVTUN_E_HOST)
    record_lost(h, fd, &ids, st, rc == REVTUN_E_NOMEM ? ENOMEM : 0, now);
  rt_free(&h->mem, ids.block);
  return rc;
}

/* ------------------------------------------------------------ public API */

int revtun_export_socket(revtun_t *h, int fd, revtun_time_ms_t now, void *state, size_t cap,
                         size_t *len_out, void **sock_user_out) {
  if (len_out)
    *len_out = 0;
  if (sock_user_out)
    *sock_user_out = NULL;
  if (!h || fd < 0 || !len_out || (!state && cap))
    return REVTUN_E_INVAL;
  int rc = rt_enter_nestable(h, now);
  if (rc)
    return rc;
  struct rt_sock *s = rt_pool_sock(h, fd);
  if (!s) {
    rc = REVTUN_E_NOT_FOUND;
  } else if (s->state != RT_SOCK_IDLE) {
    rc = REVTUN_E_STATE; /* a handed-off socket is the host's */
  } else {
    void *user = s->ent.sock_user;
    rc = rt_pool_export(h, s, true, now, state, cap, len_out);
    if (!rc && sock_user_out)
      *sock_user_out = user;
  }
  rt_leave_nestable(h);
  return rc;
}

int revtun_export_next(revtun_t *h, revtun_time_ms_t now, int *fd_out, void *state, size_t cap,
                       size_t *len_out, void **sock_user_out) {
  if (fd_out)
    *fd_out = -1;
  if (len_out)
    *len_out = 0;
  if (sock_user_out)
    *sock_user_out = NULL;
  if (!h || !fd_out || !len_out || (!state && cap))
    return REVTUN_E_INVAL;
  int rc = rt_enter_nestable(h, now);
  if (rc)
    return rc;
  struct rt_sock *s = rt_pool_next_idle(h);
  if (!s) {
    rc = REVTUN_E_NOT_FOUND;
  } else {
    int fd = s->ent.fd;
    void *user = s->ent.sock_user;
    rc = rt_pool_export(h, s, true, now, state, cap, len_out);
    if (!rc) {
      *fd_out = fd;
      if (sock_user_out)
        *sock_user_out = user;
    }
  }
  rt_leave_nestable(h);
  return rc;
}

/* Only a connected stream socket can be a tunnel. */
static bool is_stream_socket(int fd) {
  int type = 0;
  socklen_t len = sizeof(type);
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

int revtun_import_socket(revtun_t *h, int fd, const void *state, size_t len, void *sock_user,
                         revtun_time_ms_t now) {
  if (!h || fd < 0 || !state)
    return REVTUN_E_INVAL;
  struct rt_sockstate st;
  const char *why = NULL;
  int rc = rt_sockstate_decode(state, len, &st, &why);
  if (rc) {
    rt_log(h, REVTUN_LOG_WARN, "refused socket state for fd %d: %s", fd, why);
    return rc;
  }
  if (!is_stream_socket(fd))
    return REVTUN_E_INVAL;
  if ((rc = rt_enter_nestable(h, now)))
    return rc;
  if (rt_fd_get(h, fd))
    rc = REVTUN_E_EXISTS;
  else
    rc = rt_pool_import(h, fd, &st, sock_user, true, now);
  rt_leave_nestable(h);
  return rc;
}
