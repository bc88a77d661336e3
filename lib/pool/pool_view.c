/* Views of the pool: Envoy's host pick for a cluster (getNodeWithSocket,
 * which moves the cluster's round-robin cursor), the read-only queries (idle
 * counts, a cluster's member nodes, a socket's identity and state), and the
 * walks over nodes and clusters, whose callback may free the handle. */
#include <limits.h>
#include <string.h>

#include "base/macros.h"
#include "pool/pool_int.h"

/* The members of c with a live socket (a member whose only registration is
 * still being answered does not count). */
static size_t live_members(const struct rt_cluster *c) {
  size_t nodes = 0;
  for (size_t k = 0; k < c->n_members; k++)
    nodes += c->members[k]->live != 0;
  return nodes;
}

/* ------------------------------------------------------------- lookups */

int revtun_lookup_cluster(revtun_t *h, const char *cluster_id, const char *tenant_id,
                          const char **node_id_out) {
  if (!node_id_out)
    return REVTUN_E_INVAL;
  *node_id_out = NULL;
  struct rt_idpair key;
  if (!h || rt_ids_check(h->cfg.tenant_isolation, cluster_id, tenant_id, &key))
    return REVTUN_E_INVAL;
  struct rt_cluster *c = rt_pool_find_cluster(h, &key);
  for (size_t tries = 0; c && tries < c->n_members; tries++) {
    struct rt_member *m = c->members[c->rr % c->n_members];
    c->rr = (c->rr + 1) % c->n_members;
    if (m->live) { /* not a registration still being answered */
      *node_id_out = m->node->id;
      return REVTUN_OK;
    }
  }
  return REVTUN_E_NOT_FOUND;
}

int revtun_cluster_node_count(const revtun_t *h, const char *cluster_id, const char *tenant_id) {
  struct rt_idpair key;
  if (!h || rt_ids_check(h->cfg.tenant_isolation, cluster_id, tenant_id, &key))
    return REVTUN_E_INVAL;
  const struct rt_cluster *c = rt_pool_find_cluster(h, &key);
  size_t n = c ? live_members(c) : 0;
  return n > INT_MAX ? INT_MAX : (int)n;
}

int revtun_cluster_member(const revtun_t *h, const char *cluster_id, const char *tenant_id,
                          size_t index, const char **node_id_out) {
  if (!node_id_out)
    return REVTUN_E_INVAL;
  *node_id_out = NULL;
  struct rt_idpair key;
  if (!h || rt_ids_check(h->cfg.tenant_isolation, cluster_id, tenant_id, &key))
    return REVTUN_E_INVAL;
  const struct rt_cluster *c = rt_pool_find_cluster(h, &key);
  for (size_t k = 0; c && k < c->n_members; k++) { /* the order the round robin follows */
    const struct rt_member *m = c->members[k];
    if (m->live && index-- == 0) {
      *node_id_out = m->node->id;
      return REVTUN_OK;
    }
  }
  return REVTUN_E_NOT_FOUND;
}

int revtun_idle_count(const revtun_t *h, const char *node_id, const char *tenant_id) {
  struct rt_idpair key;
  if (!h || rt_ids_check(h->cfg.tenant_isolation, node_id, tenant_id, &key))
    return REVTUN_E_INVAL;
  const struct rt_node *n = rt_pool_find_node(h, &key);
  return n ? (int)n->idle : 0;
}

int revtun_idle_count_cluster(const revtun_t *h, const char *cluster_id, const char *tenant_id) {
  struct rt_idpair key;
  if (!h || rt_ids_check(h->cfg.tenant_isolation, cluster_id, tenant_id, &key))
    return REVTUN_E_INVAL;
  const struct rt_cluster *c = rt_pool_find_cluster(h, &key);
  return c ? (int)c->idle : 0;
}

int revtun_socket_identity(const revtun_t *h, int fd, const char **node_id, const char **cluster_id,
                           const char **tenant_id) {
  const struct rt_sock *s = rt_pool_sock(h, fd);
  if (!s)
    return h ? REVTUN_E_NOT_FOUND : REVTUN_E_INVAL;
  if (node_id)
    *node_id = s->member->node->id;
  if (cluster_id)
    *cluster_id = s->member->cluster->id;
  if (tenant_id)
    *tenant_id = rt_istr_str(s->tenant);
  return REVTUN_OK;
}

int revtun_socket_state(const revtun_t *h, int fd) {
  const struct rt_sock *s = rt_pool_sock(h, fd);
  if (!s)
    return h ? REVTUN_E_NOT_FOUND : REVTUN_E_INVAL;
  return s->state == RT_SOCK_IDLE ? REVTUN_SOCK_IDLE : REVTUN_SOCK_IN_USE;
}

/* The tenant part of a scoped key, or "" when the key is not scoped. */
static const char *key_tenant(const char *key, const char *id, char *buf, size_t cap) {
  size_t n = (size_t)(id - key);
  if (n == 0 || n > cap)
    return "";
  memcpy(buf, key, n - 1);
  buf[n - 1] = '\0';
  return buf;
}

int revtun_walk_nodes(revtun_t *h, revtun_node_cb cb, void *user) {
  if (!h || !cb)
    return REVTUN_E_INVAL;
  size_t i;
  char tenant[RT_MAX_ID_LEN + 1];
  rt_walk_begin(h);
  for (struct rt_hnode *hn = rt_htable_first(&h->pool->nodes, &i); hn;
       hn = rt_htable_next(&h->pool->nodes, hn, &i)) {
    const struct rt_node *n = RT_CONTAINER_OF(hn, struct rt_node, hn);
    if (!n->live)
      continue;
    /* the cluster of its oldest membership with live sockets */
    const struct rt_member *first = NULL;
    for (const struct rt_member *m = n->members; m; m = m->next_in_node)
      if (m->live)
        first = m;
    if (cb(n->id, key_tenant(n->key, n->id, tenant, sizeof(tenant)), first->cluster->id, n->idle,
           n->live, user))
      break;
  }
  rt_walk_end(h); /* may free h */
  return REVTUN_OK;
}

int revtun_walk_clusters(revtun_t *h, revtun_cluster_cb cb, void *user) {
  if (!h || !cb)
    return REVTUN_E_INVAL;
  size_t i;
  char tenant[RT_MAX_ID_LEN + 1];
  rt_walk_begin(h);
  for (struct rt_hnode *hn = rt_htable_first(&h->pool->clusters, &i); hn;
       hn = rt_htable_next(&h->pool->clusters, hn, &i)) {
    const struct rt_cluster *c = RT_CONTAINER_OF(hn, struct rt_cluster, hn);
    if (!c->live)
      continue;
    if (cb(c->id, key_tenant(c->key, c->id, tenant, sizeof(tenant)), live_members(c), c->idle,
           c->live, user))
      break;
  }
  rt_walk_end(h); /* may free h */
  return REVTUN_OK;
}

/* The walks of 0.1 take a const handle, but their callback may free it (the
 * free is deferred to the end of the walk): they are the walks above. */
int revtun_foreach_node(const revtun_t *h, revtun_node_cb cb, void *user) {
  return revtun_walk_nodes((revtun_t *)h, cb, user);
}

int revtun_foreach_cluster(const revtun_t *h, revtun_cluster_cb cb, void *user) {
  return revtun_walk_clusters((revtun_t *)h, cb, user);
}
