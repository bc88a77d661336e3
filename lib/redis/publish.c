/* What the observed handle can reach, and how Redis learns it.
 *
 * The handle's events (tunnel_setup / connected, socket_handoff,
 * tunnel_closed / disconnected, goaway) are folded per fd into sockets, and
 * per node and cluster key into entries that count the sockets able to take
 * traffic: idle in the pool, or handed off to an HTTP/2 session that has not
 * seen GOAWAY. An entry whose count crosses zero is marked dirty; nothing is
 * written then. Once per loop turn the flush writes every dirty entry whose
 * state differs from what Redis holds, in script calls of up to
 * RR_CHUNK_OPS operations, all in one pipeline: 10,000 registrations in one
 * turn are one round trip. One write is in flight at a time; changes made
 * meanwhile wait for the next flush.
 *
 * A claim (at start, after every reconnect, after a failed write) is one
 * MULTI/EXEC: the claim script, which starts a new generation and wipes what
 * the previous one published, then the full state. Other instances see the
 * old state or the new one, never a mix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rr_int.h"

/* ---------------------------------------------------------------- entries */

static void mark_dirty(revtun_redis_t *r, struct rr_entry *e) {
  if (!e->dirty) {
    e->dirty = true;
    e->next_dirty = r->dirty;
    r->dirty = e;
  }
  rr_schedule_flush(r);
}

static struct rr_entry *entry_get(revtun_redis_t *r, char kind, const char *key, size_t len) {
  char buf[1 + RR_MAX_KEY];
  buf[0] = kind;
  memcpy(buf + 1, key, len);
  struct rr_hnode *hn = rr_table_find(&r->entries, buf, len + 1);
  if (hn)
    return (struct rr_entry *)hn;
  struct rr_entry *e = calloc(1, sizeof(*e) + len + 1);
  if (!e)
    return NULL;
  memcpy(e->key, buf, len + 1);
  e->hn.key = e->key;
  e->hn.keylen = len + 1;
  rr_table_add(&r->entries, &e->hn);
  return e;
}

static void entry_maybe_free(revtun_redis_t *r, struct rr_entry *e) {
  if (e->refs || e->pub || e->dirty || e->inflight)
    return;
  rr_table_del(&r->entries, &e->hn);
  free(e);
}

static void set_pub(revtun_redis_t *r, struct rr_entry *e, bool pub) {
  if (e->pub != pub)
    r->n_published += pub ? 1 : (size_t)-1;
  e->pub = pub;
}

static void serve(revtun_redis_t *r, struct rr_entry *e, bool more) {
  bool before = e->serving > 0;
  e->serving += more ? 1 : (uint32_t)-1;
  if (before != (e->serving > 0)) {
    r->n_serving += more ? 1 : (size_t)-1;
    mark_dirty(r, e);
  }
}

/* ---------------------------------------------------------------- sockets */

static void sock_drop(revtun_redis_t *r, struct rr_sock *s) {
  if (s->serving) {
    serve(r, s->node, false);
    serve(r, s->cluster, false);
  }
  s->node->refs--, s->cluster->refs--;
  rr_table_del(&r->socks, &s->hn);
  entry_maybe_free(r, s->node);
  entry_maybe_free(r, s->cluster);
  free(s);
}

static struct rr_sock *sock_find(revtun_redis_t *r, int fd) {
  return (struct rr_sock *)rr_table_find(&r->socks, &fd, sizeof(fd));
}

static bool same_key(const struct rr_entry *e, const char *key, size_t len) {
  return e->hn.keylen == len + 1 && memcmp(e->key + 1, key, len) == 0;
}

/* The socket of ev can take traffic: track it (once per fd). */
static bool sock_track(revtun_redis_t *r, const revtun_event_t *ev) {
  int fd = revtun_event_fd(ev);
  size_t nl, cl, tl;
  const char *node = revtun_event_node_id(ev, &nl), *cluster = revtun_event_cluster_id(ev, &cl);
  const char *tenant = revtun_event_tenant_id(ev, &tl);
  char nk[RR_MAX_KEY], ck[RR_MAX_KEY];
  size_t nkl = rr_ids_key(r->o.isolation, node, nl, tenant, tl, nk);
  size_t ckl = rr_ids_key(r->o.isolation, cluster, cl, tenant, tl, ck);
  if (fd < 0 || !nkl || !ckl)
    return false;
  struct rr_sock *s = sock_find(r, fd);
  if (s && same_key(s->node, nk, nkl) && same_key(s->cluster, ck, ckl))
    return true; /* tunnel_setup and connected both announce it */
  if (s)
    sock_drop(r, s); /* an fd number reused without a close we saw */
  s = calloc(1, sizeof(*s));
  struct rr_entry *n = s ? entry_get(r, 'n', nk, nkl) : NULL;
  struct rr_entry *c = n ? entry_get(r, 'c', ck, ckl) : NULL;
  if (!c) {
    if (n)
      entry_maybe_free(r, n);
    free(s);
    return false;
  }
  s->fd = fd;
  s->hn.key = &s->fd;
  s->hn.keylen = sizeof(s->fd);
  s->node = n, s->cluster = c;
  n->refs++, c->refs++;
  s->serving = true;
  serve(r, n, true);
  serve(r, c, true);
  rr_table_add(&r->socks, &s->hn);
  return true;
}

static void sock_untrack(revtun_redis_t *r, const revtun_event_t *ev) {
  struct rr_sock *s = sock_find(r, revtun_event_fd(ev));
  if (s)
    sock_drop(r, s);
}

/* GOAWAY: the initiator drains the session; no new streams go there. */
static void sock_drain(revtun_redis_t *r, const revtun_event_t *ev) {
  struct rr_sock *s = sock_find(r, revtun_event_fd(ev));
  if (s && s->serving) {
    s->serving = false;
    serve(r, s->node, false);
    serve(r, s->cluster, false);
  }
}

void revtun_redis_on_event(revtun_t *h, const revtun_event_t *ev, void *user) {
  revtun_redis_t *r = user;
  if (!r || !ev || r->freeing || r->free_pending)
    return;
  int kind = revtun_event_kind(ev);
  if (kind != REVTUN_EV_TUNNEL_SETUP && kind != REVTUN_EV_REPORT_CONNECTED &&
      kind != REVTUN_EV_SOCKET_HANDOFF && kind != REVTUN_EV_TUNNEL_CLOSED &&
      kind != REVTUN_EV_REPORT_DISCONNECTED && kind != REVTUN_EV_REPORT_GOAWAY)
    return;
  rr_enter(r);
  r->stats[RS_EVENTS]++;
  if (!r->observed)
    r->observed = h;
  bool ok = true;
  if (h != r->observed || (h && (revtun_config_tenant_isolation(h) != 0) != r->o.isolation)) {
    ok = false;
    if (!r->mismatch_logged)
      rr_log(r, REVTUN_LOG_ERROR,
             "events ignored: a directory observes one handle, with the same tenant isolation");
    r->mismatch_logged = true;
  } else if (kind == REVTUN_EV_TUNNEL_CLOSED || kind == REVTUN_EV_REPORT_DISCONNECTED) {
    sock_untrack(r, ev);
  } else if (kind == REVTUN_EV_REPORT_GOAWAY) {
    sock_drain(r, ev);
  } else {
    ok = sock_track(r, ev);
  }
  if (!ok)
    r->stats[RS_EVENTS_IGNORED]++;
  rr_leave(r);
}

/* ------------------------------------------------------------------ writes */

static bool push_op(struct rr_write *w, struct rr_entry *e, bool add) {
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 64;
    struct rr_wop *ops = realloc(w->ops, cap * sizeof(*ops));
    if (!ops)
      return false;
    w->ops = ops, w->cap = cap;
  }
  w->ops[w->n++] = (struct rr_wop){e, add};
  e->inflight = true;
  return true;
}

/* Keys every script of this instance names: i:I in:I ic:I (and seq). */
static int put_keys(const revtun_redis_t *r, const char **argv, size_t *lens, int n, int nkeys) {
  argv[n] = nkeys == 4 ? "4" : "3", lens[n++] = 1;
  for (int i = 0; i < 3; i++)
    argv[n] = r->ikey[i], lens[n++] = strlen(r->ikey[i]);
  if (nkeys == 4)
    argv[n] = r->seqkey, lens[n++] = strlen(r->seqkey);
  return n;
}

/* One publish call for ops[from, to) with op '+' where add. */
static bool send_chunk(revtun_redis_t *r, struct rr_write *w, size_t from, size_t to, int kind) {
  size_t argc = 12 + 3 * (to - from);
  const char **argv = malloc(argc * sizeof(*argv));
  size_t *lens = malloc(argc * sizeof(*lens));
  bool ok = false;
  if (argv && lens) {
    int n = put_keys(r, argv, lens, 2, 4);
    const char *args[5] = {r->o.token, r->ttl_str, r->channel, r->o.prefix, r->o.instance};
    for (int i = 0; i < 5; i++)
      argv[n] = args[i], lens[n++] = strlen(args[i]);
    for (size_t i = from; i < to; i++) {
      struct rr_entry *e = w->ops[i].e;
      argv[n] = w->ops[i].add ? "+" : "-", lens[n++] = 1;
      argv[n] = e->key, lens[n++] = 1;
      argv[n] = e->key + 1, lens[n++] = e->hn.keylen - 1;
    }
    ok = rr_eval(r, kind, RR_SCRIPT_PUBLISH, w, n, argv, lens);
  }
  free(argv);
  free(lens);
  if (ok) {
    w->pending++;
    r->stats[RS_PUBLISH_OPS] += to - from;
  }
  return ok;
}

static bool send_plain(revtun_redis_t *r, struct rr_write *w, int kind, const char *cmd) {
  size_t len = strlen(cmd);
  bool ok = rr_conn_send(&r->cmd, kind, -1, w, 1, &cmd, &len);
  w->pending += ok;
  return ok;
}

static void write_complete(revtun_redis_t *r, struct rr_write *w);

/* Send ops[0, n_send) in chunks; in a resync, inside MULTI/EXEC after the
 * claim. Any command that cannot be queued drops the connection: a MULTI
 * without its EXEC must never stay open. */
static void write_send(revtun_redis_t *r, struct rr_write *w, size_t n_send) {
  bool ok = true;
  int kind = RQ_PUBLISH;
  if (w->resync) {
    kind = RQ_QUEUED;
    ok = send_plain(r, w, RQ_MULTI, "MULTI");
    const char *argv[11];
    size_t lens[11];
    int n = put_keys(r, argv, lens, 2, 4);
    const char *args[4] = {r->o.token, r->o.address, r->ttl_str, r->channel};
    for (int i = 0; i < 4; i++)
      argv[n] = args[i], lens[n++] = strlen(args[i]);
    if (ok && rr_eval(r, RQ_QUEUED, RR_SCRIPT_CLAIM, w, n, argv, lens))
      w->pending++;
    else
      ok = false;
  }
  for (size_t from = 0; ok && from < n_send; from += RR_CHUNK_OPS)
    ok = send_chunk(r, w, from, from + RR_CHUNK_OPS < n_send ? from + RR_CHUNK_OPS : n_send, kind);
  if (ok && w->resync)
    ok = send_plain(r, w, RQ_EXEC, "EXEC");
  if (!ok) {
    w->failed = true;
    rr_conn_drop(&r->cmd, "cannot queue a write");
  }
  w->building = false;
  if (w->pending == 0)
    write_complete(r, w);
}

static void abort_write(struct rr_write *w) {
  for (size_t i = 0; i < w->n; i++)
    w->ops[i].e->inflight = false;
  free(w->ops);
  free(w);
}

/* The claim and the full state: ops[0, n_send) are the entries that can take
 * traffic, sent; the others follow, unsent: once the write succeeds, Redis
 * holds none of them. */
static bool send_resync(revtun_redis_t *r, struct rr_write *w) {
  size_t i, n_send = 0;
  w->resync = true;
  for (int pass = 0; pass < 2; pass++) {
    struct rr_hnode *hn = rr_table_first(&r->entries, &i);
    for (; hn; hn = rr_table_next(&r->entries, hn, &i)) {
      struct rr_entry *e = (struct rr_entry *)hn;
      if ((e->serving > 0) == (pass == 0) && !push_op(w, e, pass == 0))
        return false;
    }
    if (pass == 0)
      n_send = w->n;
  }
  for (struct rr_entry *e = r->dirty; e; e = e->next_dirty)
    e->dirty = false; /* the full state covers every change so far */
  r->dirty = NULL;
  r->need_claim = false;
  r->write = w;
  r->stats[RS_REPUBLISHES]++;
  write_send(r, w, n_send);
  return true;
}

/* Every dirty entry whose state differs from what Redis holds. */
static bool send_changes(revtun_redis_t *r, struct rr_write *w) {
  struct rr_entry *e = r->dirty, *next;
  r->dirty = NULL;
  bool ok = true;
  for (; e; e = next) {
    next = e->next_dirty;
    e->dirty = false;
    bool want = e->serving > 0;
    if (ok && want != e->pub)
      ok = push_op(w, e, want);
    if (!ok) /* no memory: keep it for the next flush */
      mark_dirty(r, e);
    else if (!e->inflight)
      entry_maybe_free(r, e);
  }
  if (w->n == 0)
    return false;
  r->write = w;
  write_send(r, w, w->n);
  return true;
}

bool rr_publish_flush(revtun_redis_t *r) {
  bool claiming = r->phase == RP_STARTING || r->phase == RP_CONFLICT;
  bool resync = r->need_claim && (claiming || r->phase == RP_CLAIMED);
  if (r->write || !rr_conn_ready(&r->cmd) || (!resync && (r->phase != RP_CLAIMED || !r->dirty)))
    return false;
  struct rr_write *w = calloc(1, sizeof(*w));
  if (!w)
    return false;
  w->building = true;
  bool sent = resync ? send_resync(r, w) : send_changes(r, w);
  if (!sent && r->write != w)
    abort_write(w);
  return sent;
}

/* ------------------------------------------------------------ the answers */

/* The claim's verdict, from EXEC's first element. */
static void claim_result(struct rr_write *w, const redisReply *rep) {
  switch (rr_decode_claim(rep, &w->gen)) {
  case RV_OK: w->claimed = true; break;
  case RV_BUSY: w->refused = REVTUN_REDIS_E_BUSY; break;
  case RV_BAD: w->refused = REVTUN_REDIS_E_REJECTED; break;
  default: w->failed = true; break;
  }
}

static void publish_result(revtun_redis_t *r, struct rr_write *w, const redisReply *rep) {
  uint64_t bad = 0;
  switch (rr_decode_publish(rep, &bad)) {
  case RV_OK: r->stats[RS_REJECTED] += bad; break;
  case RV_GONE: w->gone = true; break;
  case RV_FENCED: w->fenced = true; break;
  default: w->failed = true; break;
  }
}

void rr_publish_reply(revtun_redis_t *r, struct rr_req *q, const redisReply *rep) {
  struct rr_write *w = q->obj;
  if (!rep || r->freeing) {
    w->failed = true;
  } else if (rr_is_noscript(rep)) {
    w->failed = true;
    r->use_eval = true;
  } else if (q->kind == RQ_MULTI) {
    w->failed |= !rr_decode_status(rep, "OK");
  } else if (q->kind == RQ_QUEUED) {
    w->failed |= !rr_decode_status(rep, "QUEUED");
  } else if (q->kind == RQ_PUBLISH) {
    publish_result(r, w, rep);
  } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || !rep->element) {
    w->failed = true; /* EXEC: nil, or EXECABORT */
  } else {
    claim_result(w, rep->element[0]);
    for (size_t i = 1; i < rep->elements; i++)
      if (!w->refused)
        publish_result(r, w, rep->element[i]);
  }
  if (--w->pending == 0 && !w->building)
    write_complete(r, w);
}

static void write_complete(revtun_redis_t *r, struct rr_write *w) {
  if (r->write == w)
    r->write = NULL;
  bool ok = !w->failed && !w->refused && !w->fenced && !w->gone && (!w->resync || w->claimed);
  for (size_t i = 0; i < w->n; i++) {
    struct rr_entry *e = w->ops[i].e;
    e->inflight = false;
    if (ok)
      set_pub(r, e, w->ops[i].add);
    else if (!r->freeing)
      mark_dirty(r, e); /* decided again by the next write (or claim) */
    if (!r->freeing)
      entry_maybe_free(r, e);
  }
  free(w->ops);
  if (!r->freeing) {
    if (ok && w->resync)
      rr_claimed(r, w->gen);
    else if (w->refused || w->fenced)
      rr_claim_refused(r, w->refused ? w->refused : REVTUN_REDIS_E_BUSY);
    else if (!ok) {
      r->need_claim = true; /* Redis may hold part of it: start over from a claim */
      if (!w->gone)
        rr_conn_drop(&r->cmd, "a write failed");
    }
    rr_schedule_flush(r);
  }
  free(w);
}

/* ---------------------------------------------------------- life, stats */

int rr_publish_init(revtun_redis_t *r, uint64_t k0, uint64_t k1) {
  if (rr_table_init(&r->socks, k0, k1) || rr_table_init(&r->entries, k0 ^ 1, k1))
    return -1;
  return 0;
}

/* Redis holds nothing of this instance any more (released, or the claim was
 * lost): forget what was published, keep what is tracked. */
void rr_publish_forget(revtun_redis_t *r) {
  size_t i;
  struct rr_hnode *hn = rr_table_first(&r->entries, &i), *next;
  for (; hn; hn = next) {
    next = rr_table_next(&r->entries, hn, &i);
    struct rr_entry *e = (struct rr_entry *)hn;
    set_pub(r, e, false);
    entry_maybe_free(r, e);
  }
}

void rr_publish_fini(revtun_redis_t *r) {
  size_t i;
  struct rr_hnode *hn, *next;
  for (hn = rr_table_first(&r->socks, &i); hn; hn = next) {
    next = rr_table_next(&r->socks, hn, &i);
    free(hn);
  }
  for (hn = rr_table_first(&r->entries, &i); hn; hn = next) {
    next = rr_table_next(&r->entries, hn, &i);
    free(hn);
  }
  rr_table_fini(&r->socks);
  rr_table_fini(&r->entries);
}
