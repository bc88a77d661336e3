/* Lookups: which instance holds node X (of tenant T), or a node of cluster C.
 *
 * An answer comes from the cache, or from the lookup script (scripts.c).
 * Lookups of one key waiting for Redis share one query. Answers are cached
 * for cache_ttl_ms, and only while the subscriber connection is up: writers
 * publish the keys whose answers they change, and each message drops those
 * keys here, so a hot node costs no round trip per request and a change is
 * seen as soon as its message arrives. An instance that dies publishes
 * nothing: its claim just expires in Redis, one TTL after its last
 * heartbeat. So an answer that names an owner is kept at most one TTL (this
 * directory's, which the fleet shares) whatever cache_ttl_ms says: a dead
 * owner is forgotten here at most two TTLs after its death, as it is in
 * Redis within one. A query whose key was invalidated
 * while it was in flight answers its waiters but is not cached, and later
 * lookups of that key start a new query.
 *
 * Every accepted lookup gets exactly one callback: the answer, "unavailable"
 * (Redis not connected, or no answer in time), or "cancelled" (from
 * revtun_redis_free()). Cache hits and "unavailable" while disconnected are
 * answered before revtun_redis_lookup_*() returns. */
#include <stdlib.h>
#include <string.h>

#include "rr_int.h"

/* ------------------------------------------------------------------ cache */

bool rr_cache_usable(const revtun_redis_t *r) {
  return r->o.cache_ttl_ms > 0 && r->sub.state == RC_UP;
}

static void cache_del(revtun_redis_t *r, struct rr_cached *c) {
  rr_table_del(&r->cache, &c->hn);
  r->cache_bytes -= c->bytes;
  free(c);
}

static void cache_drop_if(revtun_redis_t *r, bool expired_only, uint64_t now) {
  size_t i;
  struct rr_hnode *hn = rr_table_first(&r->cache, &i), *next;
  for (; hn; hn = next) {
    next = rr_table_next(&r->cache, hn, &i);
    if (!expired_only || ((struct rr_cached *)hn)->expires <= now)
      cache_del(r, (struct rr_cached *)hn);
  }
}

void rr_cache_clear(revtun_redis_t *r) {
  if (r->cache.n)
    r->stats[RS_CACHE_FLUSHES]++;
  cache_drop_if(r, false, 0);
}

static struct rr_cached *cache_get(revtun_redis_t *r, const char *key, size_t len, uint64_t now) {
  struct rr_cached *c = (struct rr_cached *)rr_table_find(&r->cache, key, len);
  if (c && c->expires <= now) {
    cache_del(r, c);
    c = NULL;
  }
  return c;
}

static void cache_put(revtun_redis_t *r, const char *key, size_t len, const struct rr_answer *a) {
  if (!rr_cache_usable(r))
    return;
  uint64_t now = rr_now(r);
  size_t il = a->status == REVTUN_OK ? a->instance_len : 0;
  size_t al = a->status == REVTUN_OK ? a->address_len : 0;
  size_t bytes = sizeof(struct rr_cached) + len + il + al + 2;
  struct rr_cached *c = (struct rr_cached *)rr_table_find(&r->cache, key, len);
  if (c)
    cache_del(r, c);
  if (r->cache.n >= RR_CACHE_MAX || r->cache_bytes + bytes > RR_CACHE_BYTES)
    cache_drop_if(r, true, now);
  if (r->cache.n >= RR_CACHE_MAX || r->cache_bytes + bytes > RR_CACHE_BYTES)
    rr_cache_clear(r); /* all live: start over rather than track recency */
  if (!(c = malloc(bytes)))
    return;
  char *inst = c->mem + len, *addr = inst + il + 1;
  memcpy(c->mem, key, len);
  if (il)
    memcpy(inst, a->instance, il);
  if (al)
    memcpy(addr, a->address, al);
  inst[il] = addr[al] = '\0';
  c->status = a->status;
  c->owner = (struct revtun_redis_owner){inst, addr, il, al, a->generation, a->claim};
  uint32_t life = r->o.cache_ttl_ms;
  if (a->status == REVTUN_OK && r->o.ttl_ms < life)
    life = r->o.ttl_ms; /* an owner's death is seen only as its claim's expiry */
  c->expires = now + life;
  c->bytes = bytes;
  c->hn.key = c->mem;
  c->hn.keylen = len;
  rr_table_add(&r->cache, &c->hn);
  r->cache_bytes += bytes;
}

/* ---------------------------------------------------------------- queries */

static void unindex(revtun_redis_t *r, struct rr_query *q) {
  if (q->in_table)
    rr_table_del(&r->queries, &q->hn);
  q->in_table = false;
}

static void query_free(revtun_redis_t *r, struct rr_query *q) {
  unindex(r, q);
  *q->pprev = q->next;
  if (q->next)
    q->next->pprev = q->pprev;
  free(q);
}

static void enqueue(revtun_redis_t *r, struct rr_query *q) {
  q->next_queued = NULL;
  *r->queued_tail = q;
  r->queued_tail = &q->next_queued;
  rr_schedule_flush(r);
}

/* Calls every waiter once. The query leaves the index first, so that a
 * callback asking again starts a new query. */
static void answer(revtun_redis_t *r, struct rr_query *q, int status,
                   const struct revtun_redis_owner *owner) {
  unindex(r, q);
  struct rr_waiter *w = q->waiters, *next;
  q->waiters = NULL;
  q->wtail = &q->waiters;
  for (; w; w = next) {
    next = w->next;
    r->n_waiters--;
    if (status == REVTUN_REDIS_E_UNAVAILABLE)
      r->stats[RS_UNAVAILABLE]++;
    w->cb(r, status, owner, w->user);
    free(w);
  }
}

static bool send_query(revtun_redis_t *r, struct rr_query *q) {
  static const char maxh[] = "1024", maxid[] = "128", maxaddr[] = "255";
  _Static_assert(RR_MAX_HOLDERS == 1024 && RR_MAX_INSTANCE == 128 && RR_MAX_ADDR == 255,
                 "the script's bounds are the client's");
  const char *argv[9] = {NULL, NULL, "0", r->o.prefix, q->key, q->key + 1, maxh, maxid, maxaddr};
  size_t lens[9] = {0, 0, 1, strlen(r->o.prefix), 1, q->hn.keylen - 1, 4, 3, 3};
  return rr_eval(r, RQ_LOOKUP, RR_SCRIPT_LOOKUP, q, 9, argv, lens);
}

void rr_lookup_flush(revtun_redis_t *r) {
  struct rr_query *q;
  while ((q = r->queued)) {
    r->queued = q->next_queued;
    if (!r->queued)
      r->queued_tail = &r->queued;
    if (!send_query(r, q)) {
      answer(r, q, REVTUN_REDIS_E_UNAVAILABLE, NULL);
      query_free(r, q);
    }
  }
}

void rr_lookup_reply(revtun_redis_t *r, struct rr_req *req, const redisReply *rep) {
  struct rr_query *q = req->obj;
  if (r->freeing) { /* its waiters were cancelled */
    query_free(r, q);
    return;
  }
  if (rep && rr_is_noscript(rep) && !q->use_eval) {
    q->use_eval = r->use_eval = true; /* Redis lost its scripts: send the text */
    enqueue(r, q);
    return;
  }
  struct rr_answer a = {.status = REVTUN_REDIS_E_UNAVAILABLE};
  if (rep && rep->type != REDIS_REPLY_ERROR) {
    rr_decode_lookup(rep, &a);
    r->stats[RS_REJECTED] += a.bad;
    if (a.status != REVTUN_REDIS_E_REJECTED && !q->tainted)
      cache_put(r, q->key, q->hn.keylen, &a);
  }
  struct revtun_redis_owner owner = {a.instance,    a.address,    a.instance_len,
                                     a.address_len, a.generation, a.claim};
  answer(r, q, a.status, a.status == REVTUN_OK ? &owner : NULL);
  query_free(r, q);
}

/* -------------------------------------------------------- invalidations */

static void taint(revtun_redis_t *r, struct rr_query *q) {
  q->tainted = true;
  unindex(r, q);
}

static void invalidate(void *ctx, char kind, const char *key, size_t len) {
  revtun_redis_t *r = ctx;
  char buf[1 + RR_MAX_KEY];
  buf[0] = kind;
  memcpy(buf + 1, key, len);
  struct rr_hnode *hn = rr_table_find(&r->cache, buf, len + 1);
  if (hn)
    cache_del(r, (struct rr_cached *)hn);
  if ((hn = rr_table_find(&r->queries, buf, len + 1)))
    taint(r, (struct rr_query *)hn);
}

void rr_lookup_forget(revtun_redis_t *r) {
  rr_cache_clear(r);
  for (struct rr_query *q = r->all; q; q = q->next)
    taint(r, q);
}

void rr_lookup_message(revtun_redis_t *r, const redisReply *payload) {
  bool all;
  r->stats[RS_INVALIDATIONS]++;
  if (!rr_parse_invalidation(payload->str, payload->len, invalidate, r, &all)) {
    r->stats[RS_REJECTED]++;
    all = true;
  }
  if (all)
    rr_lookup_forget(r);
}

/* ------------------------------------------------------------------ API */

static int lookup(revtun_redis_t *r, char kind, const char *id, const char *tenant,
                  revtun_redis_lookup_cb cb, void *user) {
  if (!r || !cb || !id)
    return REVTUN_E_INVAL;
  if (r->freeing || r->free_pending)
    return REVTUN_E_STATE;
  char key[1 + RR_MAX_KEY];
  key[0] = kind;
  size_t il = strnlen(id, RR_MAX_ID + 1), tl = tenant ? strnlen(tenant, RR_MAX_ID + 1) : 0;
  size_t len = rr_ids_key(r->o.isolation, id, il, tenant, tl, key + 1);
  if (!len)
    return REVTUN_E_INVAL;
  len++;
  int rc = REVTUN_OK;
  rr_enter(r);
  r->stats[RS_LOOKUPS]++;
  struct rr_cached *c = rr_cache_usable(r) ? cache_get(r, key, len, rr_now(r)) : NULL;
  r->stats[c ? RS_CACHE_HITS : RS_CACHE_MISSES]++;
  if (c) {
    /* copies: the callback may make the cache drop c */
    char inst[RR_MAX_INSTANCE + 1], addr[RR_MAX_ADDR + 1];
    struct revtun_redis_owner o = c->owner;
    memcpy(inst, o.instance, o.instance_len + 1);
    memcpy(addr, o.address, o.address_len + 1);
    o.instance = inst, o.address = addr;
    cb(r, c->status, c->status == REVTUN_OK ? &o : NULL, user);
  } else if (r->cmd.state != RC_UP) {
    r->stats[RS_UNAVAILABLE]++;
    cb(r, REVTUN_REDIS_E_UNAVAILABLE, NULL, user);
  } else if (r->n_waiters >= RR_MAX_WAITERS) {
    rc = REVTUN_E_LIMIT;
  } else {
    rc = REVTUN_E_NOMEM;
    struct rr_waiter *w = calloc(1, sizeof(*w));
    struct rr_query *q = (struct rr_query *)rr_table_find(&r->queries, key, len);
    if (q) {
      r->stats[RS_COALESCED]++;
    } else if (w && (q = calloc(1, sizeof(*q) + len))) {
      memcpy(q->key, key, len);
      q->hn.key = q->key;
      q->hn.keylen = len;
      q->wtail = &q->waiters;
      q->in_table = true;
      rr_table_add(&r->queries, &q->hn);
      q->next = r->all;
      if (r->all)
        r->all->pprev = &q->next;
      q->pprev = &r->all;
      r->all = q;
      enqueue(r, q);
    }
    if (w && q) {
      *w = (struct rr_waiter){NULL, cb, user};
      *q->wtail = w;
      q->wtail = &w->next;
      r->n_waiters++;
      rc = REVTUN_OK;
    } else {
      free(w);
    }
  }
  rr_leave(r);
  return rc;
}

int revtun_redis_lookup_node(revtun_redis_t *r, const char *node_id, const char *tenant_id,
                             revtun_redis_lookup_cb cb, void *user) {
  return lookup(r, 'n', node_id, tenant_id, cb, user);
}

int revtun_redis_lookup_cluster(revtun_redis_t *r, const char *cluster_id, const char *tenant_id,
                                revtun_redis_lookup_cb cb, void *user) {
  return lookup(r, 'c', cluster_id, tenant_id, cb, user);
}

const char *revtun_redis_owner_instance(const revtun_redis_owner_t *o, size_t *len) {
  if (len)
    *len = o ? o->instance_len : 0;
  return o ? o->instance : NULL;
}

const char *revtun_redis_owner_address(const revtun_redis_owner_t *o, size_t *len) {
  if (len)
    *len = o ? o->address_len : 0;
  return o ? o->address : NULL;
}

uint64_t revtun_redis_owner_generation(const revtun_redis_owner_t *o) {
  return o ? o->generation : 0;
}

uint64_t revtun_redis_owner_claim(const revtun_redis_owner_t *o) { return o ? o->claim : 0; }

/* ------------------------------------------------------------------ life */

int rr_lookup_init(revtun_redis_t *r, uint64_t k0, uint64_t k1) {
  r->queued_tail = &r->queued;
  if (rr_table_init(&r->queries, k0 ^ 2, k1) || rr_table_init(&r->cache, k0 ^ 3, k1))
    return -1;
  return 0;
}

void rr_lookup_cancel(revtun_redis_t *r) {
  for (struct rr_query *q = r->all; q; q = q->next)
    answer(r, q, REVTUN_REDIS_E_CANCELLED, NULL);
  struct rr_query *q, *next;
  for (q = r->queued; q; q = next) { /* never sent: nothing else frees them */
    next = q->next_queued;
    query_free(r, q);
  }
  r->queued = NULL;
  r->queued_tail = &r->queued;
}

void rr_lookup_fini(revtun_redis_t *r) {
  while (r->all)
    query_free(r, r->all);
  cache_drop_if(r, false, 0);
  rr_table_fini(&r->queries);
  rr_table_fini(&r->cache);
}
