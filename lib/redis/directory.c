/* The directory's life: creation, the claim of the instance id, heartbeats,
 * the per-turn flush, release and free.
 *
 * Phases: IDLE (publishes nothing) -> start -> STARTING (claiming) ->
 * CLAIMED (publishing, heartbeating). A claim refused at start ends in IDLE
 * with the start callback's REVTUN_REDIS_E_BUSY; a claim lost later (another
 * instance took the id while this one was cut off) is CONFLICT, retried at
 * every heartbeat. stop releases the claim and returns to IDLE.
 *
 * Callbacks into the host may free the directory: the free then waits for
 * the outermost frame of the directory's code on the stack (rr_enter /
 * rr_leave around every entry point and every event callback). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rr_int.h"

/* ------------------------------------------------------------ plumbing */

static void destroy(revtun_redis_t *r);

void rr_enter(revtun_redis_t *r) { r->depth++; }

void rr_leave(revtun_redis_t *r) {
  if (--r->depth == 0 && r->free_pending && !r->freeing)
    destroy(r);
}

void rr_log(revtun_redis_t *r, int level, const char *fmt, ...) {
  if (!r->o.log_cb || level > r->o.log_level)
    return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  r->o.log_cb(r, level, msg, r->o.log_user);
}

uint64_t rr_now(const revtun_redis_t *r) {
  struct timeval tv;
  if (event_gettime_monotonic(r->base, &tv) != 0)
    return 0;
  return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* Everything that changes during one loop turn goes out in one batch: a
 * zero timeout fires in the next turn, after all of this turn's events. */
void rr_schedule_flush(revtun_redis_t *r) {
  static const struct timeval zero = {0, 0};
  if (!r->freeing && !evtimer_pending(r->flush_ev, NULL))
    evtimer_add(r->flush_ev, &zero);
}

bool rr_conn_ready(const struct rr_conn *c) { return c->state == RC_UP && c->open; }

/* argv[0] and argv[1] are filled here: EVALSHA and the digest, or EVAL and
 * the text once Redis has answered NOSCRIPT on this connection. */
bool rr_eval(revtun_redis_t *r, int kind, int script, void *obj, int argc, const char **argv,
             size_t *lens) {
  if (r->use_eval) {
    argv[0] = "EVAL", argv[1] = rr_script_text[script];
  } else {
    argv[0] = "EVALSHA", argv[1] = r->sha[script];
  }
  lens[0] = strlen(argv[0]), lens[1] = strlen(argv[1]);
  return rr_conn_send(&r->cmd, kind, script, obj, argc, argv, lens);
}

static void call_done(revtun_redis_t *r, revtun_redis_done_cb *cb, void **user, int status) {
  revtun_redis_done_cb f = *cb;
  void *u = *user;
  *cb = NULL, *user = NULL;
  if (f)
    f(r, status, u);
}

/* ---------------------------------------------------------- heartbeats */

static void send_heartbeat(revtun_redis_t *r) {
  const char *argv[8] = {NULL,       NULL,       "3",        r->ikey[0],
                         r->ikey[1], r->ikey[2], r->o.token, r->ttl_str};
  size_t lens[8] = {0,
                    0,
                    1,
                    strlen(r->ikey[0]),
                    strlen(r->ikey[1]),
                    strlen(r->ikey[2]),
                    strlen(r->o.token),
                    strlen(r->ttl_str)};
  if (rr_eval(r, RQ_HEARTBEAT, RR_SCRIPT_HEARTBEAT, NULL, 8, argv, lens))
    r->stats[RS_HEARTBEATS]++;
}

static void send_release(revtun_redis_t *r) {
  const char *argv[10] = {NULL,       NULL,       "3",        r->ikey[0],  r->ikey[1],
                          r->ikey[2], r->o.token, r->channel, r->o.prefix, r->o.instance};
  size_t lens[10] = {0,
                     0,
                     1,
                     strlen(r->ikey[0]),
                     strlen(r->ikey[1]),
                     strlen(r->ikey[2]),
                     strlen(r->o.token),
                     r->channel_len,
                     strlen(r->o.prefix),
                     strlen(r->o.instance)};
  if (!rr_eval(r, RQ_RELEASE, RR_SCRIPT_RELEASE, NULL, 10, argv, lens))
    rr_stopped(r, REVTUN_REDIS_E_UNAVAILABLE);
}

/* Each tick: keep the claim alive, or try again to get it. */
static void on_beat(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  revtun_redis_t *r = arg;
  rr_enter(r);
  if (r->phase == RP_CLAIMED)
    r->beat_due = true;
  else if (r->phase == RP_CONFLICT)
    r->need_claim = true;
  rr_schedule_flush(r);
  rr_leave(r);
}

static void heartbeat_reply(revtun_redis_t *r, const redisReply *rep) {
  if (!rep || r->phase != RP_CLAIMED)
    return;
  if (rr_is_noscript(rep)) {
    r->use_eval = r->beat_due = true;
    rr_schedule_flush(r);
    return;
  }
  switch (rr_decode_simple(rep)) {
  case RV_OK: break;
  case RV_GONE: /* cut off longer than the TTL: claim again, republish */
    rr_log(r, REVTUN_LOG_WARN, "the claim of '%s' had expired; claiming again", r->o.instance);
    r->need_claim = true;
    rr_schedule_flush(r);
    break;
  case RV_FENCED: rr_claim_refused(r, REVTUN_REDIS_E_BUSY); break;
  default: r->stats[RS_ERRORS]++; break;
  }
}

/* --------------------------------------------------------------- claims */

void rr_claimed(revtun_redis_t *r, uint64_t gen) {
  r->gen = gen;
  if (r->phase == RP_STARTING || r->phase == RP_CONFLICT) {
    r->phase = RP_CLAIMED;
    rr_log(r, REVTUN_LOG_INFO, "claimed instance '%s', generation %llu", r->o.instance,
           (unsigned long long)gen);
  }
  call_done(r, &r->start_cb, &r->start_user, REVTUN_OK);
}

void rr_claim_refused(revtun_redis_t *r, int status) {
  r->stats[RS_ID_CONFLICTS]++;
  rr_publish_forget(r);
  if (r->start_cb) { /* at start: the host decides, nothing is retried */
    rr_log(r, REVTUN_LOG_ERROR, "instance id '%s' is %s", r->o.instance,
           status == REVTUN_REDIS_E_BUSY ? "held by another live instance"
                                         : "taken by a value this directory does not own");
    r->phase = RP_IDLE;
    r->need_claim = false;
    evtimer_del(r->beat_ev);
    call_done(r, &r->start_cb, &r->start_user, status);
  } else if (r->phase == RP_CLAIMED || r->phase == RP_STARTING) {
    rr_log(r, REVTUN_LOG_ERROR, "lost the claim of instance id '%s'; retrying every heartbeat",
           r->o.instance);
    r->phase = RP_CONFLICT;
    r->need_claim = false;
  } else {
    r->need_claim = false;
  }
}

void rr_stopped(revtun_redis_t *r, int status) {
  if (r->phase != RP_STOPPING)
    return;
  r->phase = RP_IDLE;
  r->release_due = false;
  rr_publish_forget(r);
  call_done(r, &r->stop_cb, &r->stop_user, status);
}

static void release_reply(revtun_redis_t *r, const redisReply *rep) {
  enum rr_verdict v = rep ? rr_decode_simple(rep) : RV_INVALID;
  rr_stopped(r,
             v == RV_OK || v == RV_GONE || v == RV_FENCED ? REVTUN_OK : REVTUN_REDIS_E_UNAVAILABLE);
}

/* ---------------------------------------------------- connection events */

void rr_on_conn_up(struct rr_conn *c) {
  revtun_redis_t *r = c->r;
  if (c->is_sub) {
    rr_lookup_forget(r); /* answers in flight may predate messages missed meanwhile */
    return;
  }
  r->use_eval = false; /* the handshake loaded every script */
  if (r->phase == RP_STARTING || r->phase == RP_CLAIMED || r->phase == RP_CONFLICT)
    r->need_claim = true; /* a new generation and the full state */
  rr_schedule_flush(r);
}

void rr_on_conn_lost(struct rr_conn *c) {
  revtun_redis_t *r = c->r;
  if (c->is_sub) {
    rr_cache_clear(r); /* no invalidations now: nothing cached can be trusted */
    return;
  }
  /* the claim keeps being tried in the background; the host hears once */
  if (r->phase == RP_STARTING)
    call_done(r, &r->start_cb, &r->start_user, REVTUN_REDIS_E_UNAVAILABLE);
}

void rr_on_reply(struct rr_req *q, const redisReply *rep) {
  revtun_redis_t *r = q->c->r;
  switch (q->kind) {
  case RQ_LOOKUP: rr_lookup_reply(r, q, rep); break;
  case RQ_PUBLISH:
  case RQ_MULTI:
  case RQ_QUEUED:
  case RQ_EXEC: rr_publish_reply(r, q, rep); break;
  case RQ_HEARTBEAT:
    if (!r->freeing)
      heartbeat_reply(r, rep);
    break;
  case RQ_RELEASE:
    if (!r->freeing)
      release_reply(r, rep);
    break;
  default: break;
  }
}

/* ------------------------------------------------------------- the flush */

static void on_flush(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  revtun_redis_t *r = arg;
  rr_enter(r);
  struct rr_conn *c = &r->cmd;
  if (c->state == RC_UP)
    rr_conn_begin(c);
  rr_lookup_flush(r); /* while disconnected: answers "unavailable" */
  rr_publish_flush(r);
  if (rr_conn_ready(c) && r->beat_due && r->phase == RP_CLAIMED && !r->need_claim) {
    r->beat_due = false;
    send_heartbeat(r);
  }
  if (r->release_due && r->phase == RP_STOPPING) {
    r->release_due = false;
    if (rr_conn_ready(c))
      send_release(r);
    else
      rr_stopped(r, REVTUN_REDIS_E_UNAVAILABLE);
  }
  rr_conn_end(c);
  rr_leave(r);
}

/* ------------------------------------------------------------------ API */

static int fail(int rc, char *errbuf, size_t errbuf_len, const char *msg) {
  if (errbuf && errbuf_len)
    snprintf(errbuf, errbuf_len, "%s", msg);
  return rc;
}

static void hex(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++)
    out[2 * i] = digits[in[i] >> 4], out[2 * i + 1] = digits[in[i] & 15];
  out[2 * n] = '\0';
}

int revtun_redis_new(revtun_redis_t **out, struct event_base *base,
                     const revtun_redis_options_t *opts, char *errbuf, size_t errbuf_len) {
  if (!out || !base)
    return fail(REVTUN_E_INVAL, errbuf, errbuf_len, "out and base are required");
  *out = NULL;
  if (!opts || !opts->instance[0])
    return fail(REVTUN_E_CONFIG, errbuf, errbuf_len,
                "an instance id and address are required (revtun_redis_options_set_instance)");
  revtun_redis_t *r = calloc(1, sizeof(*r));
  if (!r)
    return fail(REVTUN_E_NOMEM, errbuf, errbuf_len, "out of memory");
  r->base = base;
  r->o = *opts;
  if (!r->o.ttl_ms)
    r->o.ttl_ms = 3 * r->o.heartbeat_ms;
  snprintf(r->ttl_str, sizeof(r->ttl_str), "%u", (unsigned)r->o.ttl_ms);
  uint64_t k[2];
  unsigned char tok[16];
  if (rr_random(k, sizeof(k)) || (!r->o.token[0] && rr_random(tok, sizeof(tok)))) {
    free(r);
    return fail(REVTUN_E_IO, errbuf, errbuf_len, "getrandom(2) gave no randomness");
  }
  if (!r->o.token[0])
    hex(tok, sizeof(tok), r->o.token);
  static const char *const fam[3] = {"i:", "in:", "ic:"};
  for (int i = 0; i < 3; i++)
    snprintf(r->ikey[i], sizeof(r->ikey[i]), "%s%s%s", r->o.prefix, fam[i], r->o.instance);
  snprintf(r->seqkey, sizeof(r->seqkey), "%sseq", r->o.prefix);
  r->channel_len = (size_t)snprintf(r->channel, sizeof(r->channel), "%sinv", r->o.prefix);
  r->depth = 1; /* destroy() below must not run through rr_leave */
  if (rr_publish_init(r, k[0], k[1]) || rr_lookup_init(r, k[0], k[1]) ||
      rr_conn_init(&r->cmd, r, false) || rr_conn_init(&r->sub, r, true) ||
      !(r->flush_ev = evtimer_new(base, on_flush, r)) ||
      !(r->beat_ev = event_new(base, -1, EV_PERSIST, on_beat, r))) {
    destroy(r);
    return fail(REVTUN_E_NOMEM, errbuf, errbuf_len, "out of memory");
  }
  r->depth = 0;
  *out = r;
  return REVTUN_OK;
}

int revtun_redis_start(revtun_redis_t *r, revtun_redis_done_cb cb, void *user) {
  if (!r)
    return REVTUN_E_INVAL;
  if (r->freeing || r->free_pending || r->phase != RP_IDLE)
    return REVTUN_E_STATE;
  rr_enter(r);
  r->phase = RP_STARTING;
  r->need_claim = true;
  r->start_cb = cb, r->start_user = user;
  struct timeval tv = {(time_t)(r->o.heartbeat_ms / 1000),
                       (suseconds_t)(r->o.heartbeat_ms % 1000) * 1000};
  evtimer_add(r->beat_ev, &tv);
  if (r->cmd.state == RC_DOWN)
    rr_conn_connect(&r->cmd);
  if (r->sub.state == RC_DOWN)
    rr_conn_connect(&r->sub);
  rr_schedule_flush(r);
  rr_leave(r);
  return REVTUN_OK;
}

int revtun_redis_stop(revtun_redis_t *r, revtun_redis_done_cb cb, void *user) {
  if (!r)
    return REVTUN_E_INVAL;
  if (r->freeing || r->free_pending || r->phase == RP_IDLE || r->phase == RP_STOPPING)
    return REVTUN_E_STATE;
  rr_enter(r);
  call_done(r, &r->start_cb, &r->start_user, REVTUN_REDIS_E_CANCELLED);
  bool held = r->phase == RP_CLAIMED || r->write; /* a claim may be in flight */
  r->phase = RP_STOPPING;
  r->need_claim = r->beat_due = false;
  r->stop_cb = cb, r->stop_user = user;
  evtimer_del(r->beat_ev);
  if (held) {
    r->release_due = true; /* after any write in flight: same connection, in order */
    rr_schedule_flush(r);
  } else {
    rr_stopped(r, REVTUN_OK);
  }
  rr_leave(r);
  return REVTUN_OK;
}

static void destroy(revtun_redis_t *r) {
  r->freeing = true;
  r->depth++;
  call_done(r, &r->start_cb, &r->start_user, REVTUN_REDIS_E_CANCELLED);
  call_done(r, &r->stop_cb, &r->stop_user, REVTUN_REDIS_E_CANCELLED);
  rr_lookup_cancel(r);
  rr_conn_fini(&r->cmd); /* pending callbacks run with NULL and release their objects */
  rr_conn_fini(&r->sub);
  rr_publish_fini(r);
  rr_lookup_fini(r);
  if (r->flush_ev)
    event_free(r->flush_ev);
  if (r->beat_ev)
    event_free(r->beat_ev);
  explicit_bzero(&r->o, sizeof(r->o)); /* the password */
  free(r);
}

void revtun_redis_free(revtun_redis_t *r) {
  if (!r || r->freeing)
    return;
  if (r->depth) {
    r->free_pending = true;
    return;
  }
  destroy(r);
}
