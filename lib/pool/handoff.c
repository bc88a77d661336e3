/* Handing idle sockets to the host, and the host telling the pool what became
 * of them: handoff by node (FIFO) or by cluster (round robin over member
 * nodes), each candidate checked without consuming bytes first; mark_dead;
 * post-handoff keepalive timeout and GOAWAY notes. All of them may be called
 * from inside callbacks (revtun(7)). */
#define _GNU_SOURCE /* POLLRDHUP */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "base/macros.h"
#include "core/host.h"
#include "pool/pool_int.h"

/* ---------------------------------------------------------------- handoff */

/* Asks the kernel, without consuming a byte, whether the peer is gone: a
 * reset (POLLERR/POLLHUP) or a FIN (POLLRDHUP), even when the FIN is queued
 * behind bytes not yet read, which a one-byte peek would take for life. */
bool rt_pool_still_alive(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now) {
  struct pollfd p = {.fd = s->ent.fd, .events = POLLIN | POLLRDHUP};
  int r;
  do
    r = poll(&p, 1, 0);
  while (r < 0 && errno == EINTR);
  if (r <= 0 || !(p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
    return true; /* nothing says it is dead (a failing poll cannot tell) */
  int err = 0;
  socklen_t len = sizeof(err);
  if ((p.revents & POLLERR) && getsockopt(s->ent.fd, SOL_SOCKET, SO_ERROR, &err, &len))
    err = errno;
  rt_pool_kill(h, s, err ? REVTUN_CLOSE_IDLE_READ_ERROR : REVTUN_CLOSE_IDLE_PEER_CLOSE, err, now);
  return false;
}

void rt_pool_hand_over(revtun_t *h, struct rt_sock *s, revtun_time_ms_t now, int *fd_out,
                       revtun_strip_t *strip_out) {
  rt_pool_leave_idle(h, s);
  s->state = RT_SOCK_HANDED_OFF;
  rt_count(h, RT_C_HANDOFFS);
  rt_stats_record(h, RT_H_UPGRADE, (int64_t)now - s->parked_ms);
  s->parked_ms = (int64_t)now; /* from here: the start of its post-upgrade lifetime */
  *fd_out = s->ent.fd;
  if (strip_out)
    *strip_out = s->ka.partial; /* a partial echo becomes the strip helper's state */
  s->ka.partial = 0;
  rt_pool_emit(h, REVTUN_EV_SOCKET_HANDOFF, s, now);
}

static struct rt_sock *oldest_idle(const struct rt_node *n) {
  struct rt_sock *best = NULL;
  for (const struct rt_member *m = n->members; m; m = m->next_in_node)
    if (m->idle_head && (!best || m->idle_head->seq < best->seq))
      best = m->idle_head;
  return best;
}

/* The next candidate for a handoff by node: the node's oldest idle socket. */
static struct rt_sock *pick_by_node(revtun_t *h, const char *key, size_t len) {
  struct rt_hnode *hn = rt_htable_find(&h->pool->nodes, key, len);
  return hn ? oldest_idle(RT_CONTAINER_OF(hn, struct rt_node, hn)) : NULL;
}

/* By cluster: the next member node, round robin, that has an idle socket. */
static struct rt_sock *pick_by_cluster(revtun_t *h, const char *key, size_t len) {
  struct rt_hnode *hn = rt_htable_find(&h->pool->clusters, key, len);
  struct rt_cluster *c = hn ? RT_CONTAINER_OF(hn, struct rt_cluster, hn) : NULL;
  for (size_t tries = 0; c && tries < c->n_members; tries++) {
    struct rt_member *m = c->members[c->rr % c->n_members];
    c->rr = (c->rr + 1) % c->n_members;
    if (m->idle_head)
      return m->idle_head;
  }
  return NULL;
}

struct rt_sock *rt_pool_pick_live(revtun_t *h, bool by_cluster, const char *key, size_t len,
                                  revtun_time_ms_t now) {
  struct rt_sock *s;
  /* Each pass either finds a live socket or drops a dead one, so it ends. */
  while ((s = by_cluster ? pick_by_cluster(h, key, len) : pick_by_node(h, key, len)))
    if (rt_pool_still_alive(h, s, now))
      return s;
  return NULL;
}

static int handoff(revtun_t *h, const char *id, const char *tenant, revtun_time_ms_t now,
                   int *fd_out, revtun_strip_t *strip_out, bool by_cluster) {
  if (!fd_out)
    return REVTUN_E_INVAL;
  *fd_out = -1;
  struct rt_idpair ids;
  if (!h || rt_ids_check(h->cfg.tenant_isolation, id, tenant, &ids))
    return REVTUN_E_INVAL;
  int rc = rt_enter_nestable(h, now);
  if (rc)
    return rc;
  char key[RT_MAX_KEY_LEN + 1];
  size_t len = rt_ids_key(&ids, key);
  struct rt_sock *s = rt_pool_pick_live(h, by_cluster, key, len, now);
  if (s) {
    rt_pool_hand_over(h, s, now, fd_out, strip_out);
  } else {
    rc = REVTUN_E_NOT_FOUND;
    rt_count(h, RT_C_POOL_MISS);
  }
  rt_leave_nestable(h);
  return rc;
}

int revtun_handoff(revtun_t *h, const char *node_id, const char *tenant_id, revtun_time_ms_t now,
                   int *fd_out, revtun_strip_t *strip_out) {
  return handoff(h, node_id, tenant_id, now, fd_out, strip_out, false);
}

int revtun_handoff_by_cluster(revtun_t *h, const char *cluster_id, const char *tenant_id,
                              revtun_time_ms_t now, int *fd_out, revtun_strip_t *strip_out) {
  return handoff(h, cluster_id, tenant_id, now, fd_out, strip_out, true);
}

int revtun_mark_dead(revtun_t *h, int fd, int reason, revtun_time_ms_t now) {
  if (reason < REVTUN_CLOSE_NONE || reason > REVTUN_CLOSE_HTTP2_PING_TIMEOUT)
    return REVTUN_E_INVAL;
  int rc = rt_enter_nestable(h, now);
  if (rc)
    return rc;
  struct rt_sock *s = rt_pool_sock(h, fd);
  if (!s) {
    rc = REVTUN_E_NOT_FOUND;
  } else {
    /* After a noted HTTP/2 keepalive timeout the close reuses that reason. */
    if (s->h2_timeout_noted && (reason == REVTUN_CLOSE_NONE || reason == REVTUN_CLOSE_LOCAL_CLOSE))
      reason = REVTUN_CLOSE_HTTP2_PING_TIMEOUT;
    if (reason == REVTUN_CLOSE_NONE)
      reason = REVTUN_CLOSE_EXPLICIT_CLOSE;
    rt_pool_kill(h, s, reason, 0, now);
  }
  rt_leave_nestable(h);
  return rc;
}

int revtun_note_keepalive_timeout(revtun_t *h, int fd, revtun_time_ms_t now) {
  int rc = rt_enter_nestable(h, now);
  if (rc)
    return rc;
  struct rt_sock *s = rt_pool_sock(h, fd);
  if (!s || s->state != RT_SOCK_HANDED_OFF) {
    rc = s ? REVTUN_E_STATE : REVTUN_E_NOT_FOUND;
  } else if (!s->h2_timeout_noted) { /* exactly one record per socket */
    s->h2_timeout_noted = 1;
    struct revtun_event ev;
    rt_pool_record(&ev, h, REVTUN_EV_H2_KEEPALIVE_TIMEOUT, now, s);
    ev.close_reason = REVTUN_CLOSE_HTTP2_PING_TIMEOUT;
    rt_emit(h, &ev);
  }
  rt_leave_nestable(h);
  return rc;
}

int revtun_note_goaway(revtun_t *h, int fd, revtun_time_ms_t now) {
  int rc = rt_enter_nestable(h, now);
  if (rc)
    return rc;
  struct rt_sock *s = rt_pool_sock(h, fd);
  if (!s) {
    rc = REVTUN_E_NOT_FOUND;
  } else {
    struct revtun_event ev;
    rt_pool_record(&ev, h, REVTUN_EV_REPORT_GOAWAY, now, s);
    rt_report(h, &ev);
  }
  rt_leave_nestable(h);
  return rc;
}
