/* The socket pool: sockets keyed by (tenant-scoped) node and cluster, FIFO
 * per (node, cluster) member, round robin over a cluster's member nodes,
 * membership kept while any of a node's sockets lives (idle or handed off),
 * optional per-node limit, the keepalive's verdicts turned into records and
 * deaths, and the single place a socket dies.
 *
 * Every lookup is a hash lookup and every change is O(1) apart from the
 * O(log n) deadline heap, so costs never follow the pool size. */
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>

#include "base/macros.h"
#include "core/host.h"
#include "core/stats.h"
#include "pool/pool_int.h"

/* ----------------------------------------------------------------- keys */

int rt_pool_check_ids(const revtun_t *h, const char *node, const char *cluster, const char *tenant,
                      struct rt_pool_ids *out) {
  bool iso = h->cfg.tenant_isolation;
  if (rt_ids_check(iso, node, tenant, &out->node) ||
      rt_ids_check(iso, cluster, tenant, &out->cluster))
    return REVTUN_E_INVAL;
  return REVTUN_OK;
}

/* A key is stored with the raw id right behind the "tenant:" part. */
static char *make_key(revtun_t *h, const struct rt_idpair *p, const char **raw) {
  char buf[RT_MAX_KEY_LEN + 1];
  size_t n = rt_ids_key(p, buf);
  char *key = rt_strndup(&h->mem, buf, n);
  if (key)
    *raw = key + (n - p->id_len);
  return key;
}

static struct rt_hnode *find_key(const struct rt_htable *t, const struct rt_idpair *p) {
  char buf[RT_MAX_KEY_LEN + 1];
  return rt_htable_find(t, buf, rt_ids_key(p, buf));
}

struct rt_node *rt_pool_find_node(const revtun_t *h, const struct rt_idpair *p) {
  struct rt_hnode *hn = find_key(&h->pool->nodes, p);
  return hn ? RT_CONTAINER_OF(hn, struct rt_node, hn) : NULL;
}

struct rt_cluster *rt_pool_find_cluster(const revtun_t *h, const struct rt_idpair *p) {
  struct rt_hnode *hn = find_key(&h->pool->clusters, p);
  return hn ? RT_CONTAINER_OF(hn, struct rt_cluster, hn) : NULL;
}

/* Live sockets plus registrations prepared but not yet committed. */
size_t rt_pool_count_for_node(const revtun_t *h, const struct rt_idpair *node) {
  const struct rt_node *n = rt_pool_find_node(h, node);
  if (!n)
    return 0;
  size_t count = n->live;
  for (const struct rt_member *m = n->members; m; m = m->next_in_node)
    count += m->pending;
  return count;
}

/* ------------------------------------------- node / cluster / member life */

static struct rt_member *find_member(struct rt_node *n, const struct rt_cluster *c) {
  for (struct rt_member *m = n->members; m; m = m->next_in_node)
    if (m->cluster == c)
      return m;
  return NULL;
}

static void free_node(revtun_t *h, struct rt_node *n) {
  rt_htable_remove(&h->pool->nodes, &n->hn);
  rt_free(&h->mem, n->key);
  rt_free(&h->mem, n);
}

static void free_cluster(revtun_t *h, struct rt_cluster *c) {
  rt_htable_remove(&h->pool->clusters, &c->hn);
  rt_free(&h->mem, c->members);
  rt_free(&h->mem, c->key);
  rt_free(&h->mem, c);
}

/* Drops what has no live (or prepared) socket left; the only place
 * membership ends. */
static void release_member(revtun_t *h, struct rt_member *m) {
  struct rt_node *n = m->node;
  struct rt_cluster *c = m->cluster;
  if (m->live == 0 && m->pending == 0) {
    c->members[m->index_in_cluster] = c->members[--c->n_members];
    c->members[m->index_in_cluster]->index_in_cluster = m->index_in_cluster;
    struct rt_member **pp = &n->members;
    while (*pp != m)
      pp = &(*pp)->next_in_node;
    *pp = m->next_in_node;
    rt_free(&h->mem, m);
  }
  if (n->live == 0 && !n->members)
    free_node(h, n);
  if (c->live == 0 && c->n_members == 0)
    free_cluster(h, c);
}

/* Finds or creates node, cluster and their member entry, all or nothing. */
static int get_member(revtun_t *h, const struct rt_pool_ids *ids, struct rt_member **out) {
  const struct rt_mem *mem = &h->mem;
  struct rt_node *n = rt_pool_find_node(h, &ids->node);
  struct rt_cluster *c = rt_pool_find_cluster(h, &ids->cluster);
  struct rt_member *m = (n && c) ? find_member(n, c) : NULL;
  if (m) {
    *out = m;
    return REVTUN_OK;
  }
  bool new_n = !n, new_c = !c;
  if (new_n) {
    n = rt_calloc(mem, 1, sizeof(*n));
    if (!n || !(n->key = make_key(h, &ids->node, &n->id)) ||
        rt_htable_insert(mem, &h->pool->nodes, &n->hn, n->key, strlen(n->key)))
      goto nomem;
  }
  if (new_c) {
    c = rt_calloc(mem, 1, sizeof(*c));
    if (!c || !(c->key = make_key(h, &ids->cluster, &c->id)) ||
        rt_htable_insert(mem, &h->pool->clusters, &c->hn, c->key, strlen(c->key)))
      goto nomem;
  }
  if (c->n_members == c->cap_members) {
    size_t cap = c->cap_members ? 2 * c->cap_members : 4;
    struct rt_member **v = rt_realloc(mem, c->members, cap * sizeof(*v));
    if (!v)
      goto nomem;
    c->members = v;
    c->cap_members = cap;
  }
  m = rt_calloc(mem, 1, sizeof(*m));
  if (!m)
    goto nomem;
  m->node = n;
  m->cluster = c;
  m->index_in_cluster = c->n_members;
  c->members[c->n_members++] = m;
  m->next_in_node = n->members;
  n->members = m;
  *out = m;
  return REVTUN_OK;
nomem:
  /* Undo only what this call created; the hash tables hold it by now. */
  if (new_c && c) {
    if (c->key && rt_htable_find(&h->pool->clusters, c->key, strlen(c->key)) == &c->hn)
      rt_htable_remove(&h->pool->clusters, &c->hn);
    rt_free(mem, c->members);
    rt_free(mem, c->key);
    rt_free(mem, c);
  }
  if (new_n && n) {
    if (n->key && rt_htable_find(&h->pool->nodes, n->key, strlen(n->key)) == &n->hn)
      rt_htable_remove(&h->pool->nodes, &n->hn);
    rt_free(mem, n->key);
    rt_free(mem, n);
  }
  return REVTUN_E_NOMEM;
}

/* --------------------------------------------------------- idle FIFOs */

static void fifo_push(struct rt_member *m, struct rt_sock *s) {
  s->next = NULL;
  s->prev = m->idle_tail;
  if (m->idle_tail)
    m->idle_tail->next = s;
  else
    m->idle_head = s;
  m->idle_tail = s;
}

static void fifo_unlink(struct rt_member *m, struct rt_sock *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    m->idle_head = s->next;
  if (s->next)
    s->next->prev = s->prev;
  else
    m->idle_tail = s->prev;
  s->prev = s->next = NULL;
}

/* Leaves the idle pool: FIFO, counters, deadline and io interest. */
void rt_pool_leave_idle(revtun_t *h, struct rt_sock *s) {
  struct rt_member *m = s->member;
  fifo_unlink(m, s);
  m->idle--;
  m->node->idle--;
  m->cluster->idle--;
  h->pool->n_idle--;
  if (m->idle == 0 && h->pool->idle_changed)
    h->pool->idle_changed(h, m);
  rt_unschedule(h, &s->ent);
  if (rt_io(h, &s->ent, REVTUN_IO_REMOVE))
    rt_log(h, REVTUN_LOG_WARN, "io callback failed removing fd %d", s->ent.fd);
}

static void stats_socket(revtun_t *h, const struct rt_sock *s, int delta) {
  const struct rt_member *m = s->member;
  rt_stats_socket(h, m->node->id, m->cluster->id, rt_istr_str(s->tenant), delta);
}

/* ------------------------------------------------------------ keepalive */

static bool alive_and_idle(const struct rt_sock *s) { return !s->dead && s->state == RT_SOCK_IDLE; }

/* A keepalive verdict on s: its counter and record, and for a close the
 * socket's death. */
static void apply(revtun_t *h, struct rt_sock *s, struct rt_ka_verdict v, revtun_time_ms_t now) {
  switch (v.outcome) {
  case RT_KA_QUIET: return;
  case RT_KA_PING_SENT:
    rt_count(h, RT_C_PINGS_SENT);
    rt_pool_emit(h, REVTUN_EV_PING_SENT, s, now);
    return;
  case RT_KA_ACK:
    rt_count(h, RT_C_PING_ACKS);
    rt_pool_emit(h, REVTUN_EV_PING_ACK, s, now);
    return;
  case RT_KA_MISS:
    rt_count(h, RT_C_PING_MISSES);
    rt_pool_emit(h, REVTUN_EV_PING_MISS, s, now);
    return;
  case RT_KA_TIMEOUT:
    rt_count(h, RT_C_PING_MISSES);
    rt_pool_emit(h, REVTUN_EV_PING_TIMEOUT, s, now);
    if (alive_and_idle(s)) /* a callback may have handed it off or killed it */
      rt_pool_kill(h, s, REVTUN_CLOSE_IDLE_PING_TIMEOUT, 0, now);
    return;
  case RT_KA_CLOSE: rt_pool_kill(h, s, v.reason, v.sys_errno, now); return;
  }
}

void rt_pool_on_io(revtun_t *h, struct rt_fdent *ent, int events, revtun_time_ms_t now) {
  struct rt_sock *s = (struct rt_sock *)ent;
  if (s->state == RT_SOCK_IDLE && (events & REVTUN_IO_READ))
    apply(h, s, rt_ka_on_readable(h, &s->ent, &s->ka, now), now);
}

void rt_pool_on_deadline(revtun_t *h, struct rt_fdent *ent, revtun_time_ms_t now) {
  struct rt_sock *s = (struct rt_sock *)ent;
  if (alive_and_idle(s))
    apply(h, s, rt_ka_on_deadline(h, &s->ent, &s->ka, now), now);
}

/* --------------------------------------------------------- registration */

/* Envoy's initiator sends a decimal connection id; keeping it as a number
 * saves an allocation per socket. Anything else is interned as a string. */
static bool parse_conn_id(const char *s, uint64_t *v) {
  if (!s || !*s || (s[0] == '0' && s[1]) || strnlen(s, 20) > 19)
    return false;
  uint64_t r = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return false;
    r = r * 10 + (uint64_t)(*s - '0');
  }
  *v = r;
  return true;
}

static void release_strings(revtun_t *h, struct rt_sock *s) {
  rt_istr_put(h, s->tenant);
  rt_istr_put(h, s->init_worker);
  rt_istr_put(h, s->init_conn);
}

static bool intern(revtun_t *h, const char *v, struct rt_istr **out) {
  *out = rt_istr_get(h, v);
  return *out || !v || !*v;
}

/* Registration: see pool.h for the two phases. */
int rt_pool_prepare(revtun_t *h, int fd, const struct rt_reg_args *a, struct rt_sock **out) {
  *out = NULL;
  struct rt_pool_ids ids;
  if (fd < 0 || rt_pool_check_ids(h, a->node_id, a->cluster_id, a->tenant_id, &ids) ||
      !rt_ids_optional_ok(a->init_worker) || !rt_ids_optional_ok(a->init_conn) ||
      a->interval_ms > RT_MAX_PING_INTERVAL_MS)
    return REVTUN_E_INVAL;
  uint32_t limit = h->cfg.max_connections_per_node;
  if (a->enforce_limit && limit && rt_pool_count_for_node(h, &ids.node) >= limit) {
    rt_count(h, RT_C_REGISTRATION_REJECTED);
    return REVTUN_E_LIMIT;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0)
    return REVTUN_E_IO;

  struct rt_sock *s = rt_calloc(&h->mem, 1, sizeof(*s));
  struct rt_member *m = NULL;
  if (!s)
    return REVTUN_E_NOMEM;
  s->ent.fd = fd;
  s->ent.kind = RT_FD_POOL;
  s->ent.sock_user = a->sock_user;
  s->ent.tm.idx = RT_TIMER_IDLE;
  s->ka.interval_ms = a->interval_ms ? a->interval_ms : RT_DEFAULT_PING_INTERVAL_MS;
  s->initiation_time_ms = a->initiation_time_ms;
  s->has_conn_num = parse_conn_id(a->init_conn, &s->init_conn_num);
  if (!intern(h, a->tenant_id, &s->tenant) || !intern(h, a->init_worker, &s->init_worker) ||
      (!s->has_conn_num && !intern(h, a->init_conn, &s->init_conn)) ||
      rt_pool_reserve_deadline(h) != REVTUN_OK || rt_fd_set(h, fd, rt_fd_get(h, fd)) != REVTUN_OK ||
      get_member(h, &ids, &m) != REVTUN_OK ||
      rt_stats_reserve(h, a->node_id, a->cluster_id, a->tenant_id) != REVTUN_OK) {
    if (m && m->live == 0 && m->pending == 0) {
      rt_stats_unreserve(h, a->node_id, a->cluster_id, a->tenant_id);
      release_member(h, m);
    }
    release_strings(h, s);
    rt_free(&h->mem, s);
    return REVTUN_E_NOMEM;
  }
  s->member = m;
  m->pending++;
  h->pool->n_prepared++;
  if (!(fl & O_NONBLOCK)) {
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
      rt_pool_abort(h, s);
      return REVTUN_E_IO;
    }
    s->set_nonblock = 1;
  }
  *out = s; /* m->pending keeps the member alive until commit or abort */
  return REVTUN_OK;
}

void rt_pool_abort(revtun_t *h, struct rt_sock *s) {
  struct rt_member *m = s->member;
  if (s->set_nonblock) { /* the caller keeps the fd as it gave it */
    int fl = fcntl(s->ent.fd, F_GETFL);
    if (fl >= 0)
      fcntl(s->ent.fd, F_SETFL, fl & ~O_NONBLOCK);
  }
  m->pending--;
  h->pool->n_prepared--;
  if (m->live == 0 && m->pending == 0) {
    rt_stats_unreserve(h, m->node->id, m->cluster->id, rt_istr_str(s->tenant));
    release_member(h, m);
  }
  release_strings(h, s);
  rt_free(&h->mem, s);
}

int rt_pool_commit(revtun_t *h, struct rt_sock *s, const struct rt_reg_args *a,
                   revtun_time_ms_t now) {
  struct rt_member *m = s->member;
  int rc = rt_io(h, &s->ent, REVTUN_IO_READ);
  if (rc) {
    rt_pool_abort(h, s);
    return rc;
  }
  const struct rt_ka_resume *r = a->resume;
  m->pending--;
  h->pool->n_prepared--;
  rt_fd_set(h, s->ent.fd, &s->ent); /* cannot fail: prepare made the slot */
  s->state = RT_SOCK_IDLE;
  s->seq = h->pool->next_seq++;
  s->parked_ms = r ? (int64_t)now - (int64_t)r->age_ms : (int64_t)now;
  rt_addr_of_socket(s->ent.fd, &s->local, &s->remote);
  fifo_push(m, s);
  m->live++, m->idle++;
  h->pool->n_live_nodes += m->node->live++ == 0;
  h->pool->n_live_clusters += m->cluster->live++ == 0;
  m->node->idle++, m->cluster->idle++;
  h->pool->n_sockets++, h->pool->n_idle++;
  rt_count(h, r ? RT_C_SOCKETS_IMPORTED : RT_C_TUNNELS_SETUP);
  stats_socket(h, s, +1);
  if (m->idle == 1 && h->pool->idle_changed)
    h->pool->idle_changed(h, m);
  if (r) {
    s->ka.misses = r->misses;
    s->ka.partial = r->partial;
    rt_ka_resume(h, &s->ent, &s->ka, r->awaiting_reply, now + r->deadline_in_ms);
  } else {
    rt_ka_start(h, &s->ent, &s->ka, now);
  }

  struct revtun_event ev;
  if (rt_wants_records(h)) {
    rt_pool_record(&ev, h, r ? REVTUN_EV_SOCKET_IMPORTED : REVTUN_EV_TUNNEL_SETUP, now, s);
    ev.extra = a->extra;
    ev.n_extra = a->n_extra;
    ev.peer = a->peer;
    rt_emit(h, &ev);
  }
  /* A move inside one process is invisible to the reporter, which sees the
   * process's view; a socket that comes from another process is news. */
  if (!s->dead && (!r || r->report) && rt_wants_reports(h)) {
    rt_pool_record(&ev, h, REVTUN_EV_REPORT_CONNECTED, now, s);
    rt_report(h, &ev);
  }
  if (alive_and_idle(s) && a->n_early)
    apply(h, s, rt_ka_feed(h, &s->ent, &s->ka, a->early_bytes, a->n_early, now), now);
  return REVTUN_OK;
}

int rt_pool_register(revtun_t *h, int fd, const struct rt_reg_args *a, revtun_time_ms_t now) {
  if (rt_fd_get(h, fd))
    return REVTUN_E_EXISTS;
  struct rt_sock *s;
  int rc = rt_pool_prepare(h, fd, a, &s);
  return rc ? rc : rt_pool_commit(h, s, a, now);
}

/* ----------------------------------------------------------------- death */

/* Out of the pool, the fd table and the counts: what a death and a move
 * share. The record (tunnel_closed or socket_exported) and the reporter
 * event are sent while the member still counts s as live, so nothing the
 * callbacks do can free the node or cluster the records point at. */
static void depart(revtun_t *h, struct rt_sock *s, struct revtun_event *record, bool report,
                   revtun_time_ms_t now) {
  struct revtun_event ev;
  if (report && rt_wants_reports(h)) {
    rt_pool_record(&ev, h, REVTUN_EV_REPORT_DISCONNECTED, now, s);
    rt_report(h, &ev);
  }
  if (record)
    rt_emit(h, record);

  struct rt_member *m = s->member;
  m->live--;
  h->pool->n_live_nodes -= --m->node->live == 0;
  h->pool->n_live_clusters -= --m->cluster->live == 0;
  release_member(h, m);
  release_strings(h, s);
  rt_free_deferred(h, s, &s->freed); /* a caller frame may still hold s */
}

void rt_pool_kill(revtun_t *h, struct rt_sock *s, int reason, int sys_errno, revtun_time_ms_t now) {
  if (s->dead)
    return;
  s->dead = 1;
  bool was_idle = s->state == RT_SOCK_IDLE;
  if (was_idle)
    rt_pool_leave_idle(h, s);
  /* idle: since parked; handed off: since the handoff (parked_ms then) */
  rt_stats_record(h, was_idle ? RT_H_IDLE_EXPIRE : RT_H_POST_UPGRADE, (int64_t)now - s->parked_ms);
  rt_fd_clear(h, s->ent.fd);
  h->pool->n_sockets--;
  if (was_idle) { /* after handoff the fd belongs to the host */
    if (!h->opts.close_cb)
      shutdown(s->ent.fd, SHUT_RDWR);
    rt_close_fd(h, s->ent.fd, s->ent.sock_user);
  }
  if (reason >= REVTUN_CLOSE_IDLE_PEER_CLOSE && reason <= REVTUN_CLOSE_MOVE_FAILED)
    rt_count(h, (enum rt_counter)(RT_C_CLOSED_BASE + reason));
  stats_socket(h, s, -1);

  struct revtun_event ev, *record = NULL;
  if (rt_wants_records(h)) {
    rt_pool_record(&ev, h, REVTUN_EV_TUNNEL_CLOSED, now, s);
    ev.close_reason = reason;
    ev.sys_errno = sys_errno;
    record = &ev;
  }
  depart(h, s, record, true, now);
}

void rt_pool_release(revtun_t *h, struct rt_sock *s, bool report, revtun_time_ms_t now) {
  s->dead = 1;
  rt_pool_leave_idle(h, s);
  rt_fd_clear(h, s->ent.fd);
  h->pool->n_sockets--;
  rt_count(h, RT_C_SOCKETS_EXPORTED);
  stats_socket(h, s, -1);
  struct revtun_event ev, *record = NULL;
  if (rt_wants_records(h)) {
    rt_pool_record(&ev, h, REVTUN_EV_SOCKET_EXPORTED, now, s);
    record = &ev;
  }
  depart(h, s, record, report, now);
}

/* ------------------------------------------------------------ the pool */

void rt_pool_init(revtun_t *h, struct rt_pool *p) {
  memset(p, 0, sizeof(*p));
  rt_htable_init(&p->nodes, &h->hkey);
  rt_htable_init(&p->clusters, &h->hkey);
  h->pool = p;
}

void rt_pool_free(revtun_t *h) {
  struct rt_pool *p = h->pool;
  for (int fd = 0; (size_t)fd < h->fds_cap && p->n_sockets; fd++) {
    struct rt_sock *s = rt_pool_sock(h, fd);
    if (s)
      rt_pool_kill(h, s, REVTUN_CLOSE_SHUTDOWN, 0, h->last_now);
  }
  rt_htable_free(&h->mem, &p->nodes);
  rt_htable_free(&h->mem, &p->clusters);
}

int rt_pool_reserve_deadline(revtun_t *h) {
  return rt_schedule_reserve(h, h->pool->n_prepared + 1);
}

struct rt_sock *rt_pool_sock(const revtun_t *h, int fd) {
  struct rt_fdent *e = h ? rt_fd_get(h, fd) : NULL;
  return e && e->kind == RT_FD_POOL ? (struct rt_sock *)e : NULL;
}

struct rt_sock *rt_pool_next_idle(revtun_t *h) {
  struct rt_pool *p = h->pool;
  if (!p->n_idle)
    return NULL;
  size_t cap = h->fds_cap;
  for (size_t i = 0; i < cap; i++) {
    size_t fd = ((size_t)p->export_cursor + i) % cap;
    struct rt_sock *s = rt_pool_sock(h, (int)fd);
    if (s && s->state == RT_SOCK_IDLE) {
      p->export_cursor = (int)((fd + 1) % cap);
      return s;
    }
  }
  return NULL;
}
