/* One hiredis connection driven by the host's libevent loop.
 *
 * The glue between hiredis and libevent does what hiredis' own libevent
 * adapter does, plus one check before every read: the reader must not hold
 * more unparsed bytes than the connection's bound (hiredis 0.14 would buffer
 * a bulk string of any size). Everything else is hiredis' asynchronous API.
 *
 * hiredis 0.14 has no timeouts either. Commands are written in batches (all
 * that one flush writes, one round trip); each batch has a deadline, and the
 * connection's single timer watches the oldest one. A batch whose replies do
 * not arrive in time drops the connection: every pending callback then runs
 * with no reply, which fails its callers. The deadline is meant to catch a
 * Redis that does not answer, not a host loop that runs late: a batch is
 * written to the socket when it is closed (not at the next turn's write
 * readiness), and a deadline that comes due first reads what the socket
 * holds, so a loop turn longer than the timeout (a starved or busy host)
 * does not drop a connection whose answers are already there. A dropped connection is opened
 * again after a backoff that doubles from the minimum to the maximum and
 * returns to the minimum once a connection is up.
 *
 * Every command's callback runs exactly once (with its reply, or with NULL
 * when the connection goes), except SUBSCRIBE's, which runs once per message
 * until the connection goes. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "rr_int.h"

/* The command connection reads only what the scripts return (they bound it
 * server-side); the subscriber reads messages anyone may publish. */
static const struct rr_limits cmd_limits = {
    .max_string = 64u << 10, .max_elements = 65536, .max_objects = 262144, .max_buffer = 1u << 20};
static const struct rr_limits sub_limits = {.max_string = 2 * RR_INV_MAX,
                                            .max_elements = 8,
                                            .max_objects = 16,
                                            .max_buffer = 4 * RR_INV_MAX};

/* ------------------------------------------------------------------ glue */

struct glue {
  struct rr_conn *c;
  redisAsyncContext *ac;
  struct event *rev, *wev;
};

static void glue_read(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  struct glue *g = arg;
  struct rr_conn *c = g->c;
  revtun_redis_t *r = c->r;
  rr_enter(r);
  if (rr_guard_overfull(&c->guard, g->ac->c.reader)) {
    c->guard.rejected++;
    rr_conn_drop(c, "a reply exceeds the size bound");
  } else {
    redisAsyncHandleRead(g->ac); /* may free g */
  }
  rr_leave(r);
}

static void glue_write(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  struct glue *g = arg;
  revtun_redis_t *r = g->c->r;
  rr_enter(r);
  redisAsyncHandleWrite(g->ac); /* may free g */
  rr_leave(r);
}

static void glue_add_read(void *p) { event_add(((struct glue *)p)->rev, NULL); }
static void glue_del_read(void *p) { event_del(((struct glue *)p)->rev); }
static void glue_add_write(void *p) { event_add(((struct glue *)p)->wev, NULL); }
static void glue_del_write(void *p) { event_del(((struct glue *)p)->wev); }

static void glue_cleanup(void *p) {
  struct glue *g = p;
  event_free(g->rev);
  event_free(g->wev);
  free(g);
}

static int glue_attach(struct rr_conn *c, redisAsyncContext *ac) {
  struct glue *g = calloc(1, sizeof(*g));
  if (!g)
    return -1;
  g->c = c;
  g->ac = ac;
  g->rev = event_new(c->r->base, ac->c.fd, EV_READ, glue_read, g);
  g->wev = event_new(c->r->base, ac->c.fd, EV_WRITE, glue_write, g);
  if (!g->rev || !g->wev) {
    if (g->rev)
      event_free(g->rev);
    if (g->wev)
      event_free(g->wev);
    free(g);
    return -1;
  }
  ac->ev.addRead = glue_add_read;
  ac->ev.delRead = glue_del_read;
  ac->ev.addWrite = glue_add_write;
  ac->ev.delWrite = glue_del_write;
  ac->ev.cleanup = glue_cleanup;
  ac->ev.data = g;
  /* as hiredis' adapter does: writability tells that the connect finished */
  event_add(g->rev, NULL);
  event_add(g->wev, NULL);
  return 0;
}

/* --------------------------------------------------------------- batches */

static void arm(struct rr_conn *c) {
  if (!c->head) {
    evtimer_del(c->timer);
    return;
  }
  uint64_t now = rr_now(c->r), due = c->head->deadline;
  uint64_t ms = due > now ? due - now : 0;
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
  evtimer_add(c->timer, &tv);
}

/* One command of batch b got its answer (or will never get one). A batch
 * still being filled (the connection dropped while a flush was writing) is
 * left to rr_conn_end. */
static void answered(struct rr_conn *c, struct rr_batch *b) {
  if (!b || --b->outstanding || b == c->open)
    return;
  struct rr_batch **p = &c->head, *prev = NULL;
  while (*p && *p != b)
    prev = *p, p = &(*p)->next;
  if (*p) {
    *p = b->next;
    if (c->tail == b)
      c->tail = prev;
  }
  free(b);
  arm(c);
}

void rr_conn_begin(struct rr_conn *c) {
  if (c->open || !c->ac)
    return;
  c->open = calloc(1, sizeof(*c->open));
  if (c->open)
    c->open->deadline = rr_now(c->r) + c->r->o.timeout_ms;
}

void rr_conn_end(struct rr_conn *c) {
  struct rr_batch *b = c->open;
  c->open = NULL;
  if (!b)
    return;
  if (b->sent)
    c->r->stats[RS_ROUND_TRIPS]++;
  if (!b->outstanding) {
    free(b);
    return;
  }
  if (c->tail)
    c->tail->next = b;
  else
    c->head = b;
  c->tail = b;
  if (c->head == b)
    arm(c);
  /* Out now: the deadline then measures Redis, not also the wait for the
   * next loop turn. Not while connecting: hiredis would take a connect in
   * progress for a finished one. */
  if (c->ac && (c->ac->c.flags & REDIS_CONNECTED))
    redisAsyncHandleWrite(c->ac); /* may drop the connection */
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

bool rr_conn_send(struct rr_conn *c, int kind, int script, void *obj, int argc, const char **argv,
                  const size_t *argvlen) {
  if (!c->ac || !c->open)
    return false;
  struct rr_req *q = calloc(1, sizeof(*q));
  if (!q)
    return false;
  *q = (struct rr_req){.c = c, .b = c->open, .kind = kind, .script = script, .obj = obj};
  if (redisAsyncCommandArgv(c->ac, on_reply, q, argc, argv, argvlen) != REDIS_OK) {
    free(q);
    return false;
  }
  c->open->outstanding++;
  c->open->sent++;
  c->r->stats[RS_COMMANDS]++;
  return true;
}

/* ---------------------------------------------------------- connection */

static void on_retry(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  struct rr_conn *c = arg;
  rr_enter(c->r);
  if (c->state == RC_WAIT)
    rr_conn_connect(c);
  rr_leave(c->r);
}

static bool overdue(const struct rr_conn *c) {
  return c->ac && c->head && c->head->deadline <= rr_now(c->r);
}

/* The socket holds bytes (or an error) now. */
static bool readable(const struct rr_conn *c) {
  struct pollfd p = {.fd = c->ac->c.fd, .events = POLLIN};
  return poll(&p, 1, 0) == 1 && p.revents;
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  struct rr_conn *c = arg;
  revtun_redis_t *r = c->r;
  rr_enter(r);
  /* The answers may be in the socket, unread because the loop ran late:
   * read them first, as the read event would (bounded: a reply that keeps
   * coming is a Redis that answers). */
  for (int i = 0; i < 64 && overdue(c) && readable(c); i++) {
    if (rr_guard_overfull(&c->guard, c->ac->c.reader)) {
      c->guard.rejected++;
      rr_conn_drop(c, "a reply exceeds the size bound");
    } else {
      redisAsyncHandleRead(c->ac); /* may drop the connection */
    }
  }
  if (overdue(c)) {
    r->stats[RS_TIMEOUTS]++;
    rr_conn_drop(c, "no answer within the timeout");
  } else if (c->ac) {
    arm(c);
  }
  rr_leave(r);
}

static void schedule_retry(struct rr_conn *c) {
  const struct revtun_redis_options *o = &c->r->o;
  uint32_t d = c->backoff_ms ? c->backoff_ms : o->backoff_min_ms;
  c->backoff_ms = d > o->backoff_max_ms / 2 ? o->backoff_max_ms : d * 2;
  uint32_t jitter = 0; /* up to 10% more, so a fleet does not come back in step */
  if (d >= 10 && rr_random(&jitter, sizeof(jitter)) == 0)
    jitter %= d / 10;
  else
    jitter = 0;
  uint64_t ms = (uint64_t)d + jitter;
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
  c->state = RC_WAIT;
  evtimer_add(c->retry, &tv);
}

/* The connection is gone (or going: hiredis frees it after this). */
static void lost(struct rr_conn *c) {
  if (!c->ac)
    return;
  c->ac = NULL;
  c->handshake_left = 0;
  evtimer_del(c->timer);
  if (c->r->freeing) {
    c->state = RC_DOWN;
    return;
  }
  schedule_retry(c);
  rr_on_conn_lost(c);
}

void rr_conn_drop(struct rr_conn *c, const char *why) {
  redisAsyncContext *ac = c->ac;
  if (!ac)
    return;
  if (why)
    rr_log(c->r, REVTUN_LOG_WARN, "%s connection dropped: %s", c->is_sub ? "subscriber" : "command",
           why);
  lost(c);
  redisAsyncFree(ac); /* inside a hiredis callback, hiredis finishes it on return */
}

static void on_connect(const redisAsyncContext *ac, int status) {
  struct rr_conn *c = ac->data;
  if (status == REDIS_OK || c->ac != ac)
    return;
  c->r->stats[RS_CONNECT_FAILURES]++;
  rr_log(c->r, REVTUN_LOG_WARN, "cannot connect to Redis: %s", ac->errstr);
  lost(c); /* hiredis frees the context after this callback */
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  struct rr_conn *c = ac->data;
  (void)status;
  if (c->ac != ac)
    return; /* dropped by us */
  if (ac->err)
    rr_log(c->r, REVTUN_LOG_WARN, "Redis connection lost: %s", ac->errstr);
  lost(c);
}

static void handshake_sent(struct rr_conn *c, int kind, int script, int argc, const char **argv,
                           const size_t *lens) {
  if (rr_conn_send(c, kind, script, NULL, argc, argv, lens))
    c->handshake_left++;
}

/* AUTH when configured, then SCRIPT LOAD of every script (command
 * connection) or SUBSCRIBE (subscriber); the connection is up once all
 * succeeded. Each is a command of the first batch, whose deadline also
 * bounds the TCP connect. */
static void send_handshake(struct rr_conn *c) {
  const struct revtun_redis_options *o = &c->r->o;
  rr_conn_begin(c);
  if (o->password[0]) {
    const char *argv[3] = {"AUTH", o->username, o->password};
    size_t lens[3] = {4, strlen(o->username), strlen(o->password)};
    if (o->username[0])
      handshake_sent(c, RQ_HANDSHAKE, -1, 3, argv, lens);
    else
      handshake_sent(c, RQ_HANDSHAKE, -1, 2, (const char *[]){"AUTH", o->password},
                     (const size_t[]){4, lens[2]});
  }
  if (c->is_sub) {
    const char *argv[2] = {"SUBSCRIBE", c->r->channel};
    size_t lens[2] = {9, c->r->channel_len};
    handshake_sent(c, RQ_SUBSCRIBE, -1, 2, argv, lens);
  } else {
    for (int i = 0; i < RR_N_SCRIPTS; i++) {
      const char *argv[3] = {"SCRIPT", "LOAD", rr_script_text[i]};
      size_t lens[3] = {6, 4, strlen(rr_script_text[i])};
      handshake_sent(c, RQ_HANDSHAKE, i, 3, argv, lens);
    }
  }
  rr_conn_end(c);
}

void rr_conn_connect(struct rr_conn *c) {
  revtun_redis_t *r = c->r;
  if (c->ac || r->freeing)
    return;
  evtimer_del(c->retry);
  redisAsyncContext *ac = r->o.host[0] == '/' ? redisAsyncConnectUnix(r->o.host)
                                              : redisAsyncConnect(r->o.host, r->o.port);
  if (!ac || ac->err || glue_attach(c, ac) != 0) {
    r->stats[RS_CONNECT_FAILURES]++;
    rr_log(r, REVTUN_LOG_WARN, "cannot connect to Redis: %s",
           ac && ac->err ? ac->errstr : "out of memory");
    if (ac)
      redisAsyncFree(ac);
    schedule_retry(c);
    return;
  }
  ac->data = c;
  rr_guard_install(&c->guard, ac->c.reader, c->is_sub ? &sub_limits : &cmd_limits);
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  c->ac = ac;
  c->state = RC_CONNECTING;
  c->handshake_left = 0;
  send_handshake(c);
  if (c->ac && c->handshake_left == 0) /* nothing could be queued */
    rr_conn_drop(c, "cannot queue the handshake");
}

/* Handshake replies: AUTH's +OK, a SCRIPT LOAD's digest, SUBSCRIBE's ack. */
static void handshake_reply(struct rr_conn *c, struct rr_req *q, const redisReply *rep) {
  revtun_redis_t *r = c->r;
  bool ok;
  if (q->kind == RQ_SUBSCRIBE)
    ok = true; /* the caller checked the ack */
  else if (q->script >= 0)
    ok = rr_decode_sha(rep, r->sha[q->script]);
  else
    ok = rr_decode_status(rep, "OK");
  if (!ok) {
    r->stats[RS_ERRORS]++;
    rr_log(r, REVTUN_LOG_ERROR, "Redis refused the connection setup: %.200s",
           rep && rep->type == REDIS_REPLY_ERROR && rep->str ? rep->str : "unexpected reply");
    rr_conn_drop(c, NULL);
    return;
  }
  if (--c->handshake_left > 0 || c->state != RC_CONNECTING)
    return;
  c->state = RC_UP;
  c->backoff_ms = 0;
  if (c->ever_up)
    r->stats[RS_RECONNECTS]++;
  c->ever_up = true;
  rr_on_conn_up(c);
}

/* SUBSCRIBE's callback: the ack, then one call per message. */
static void sub_reply(struct rr_conn *c, struct rr_req *q, const redisReply *rep) {
  revtun_redis_t *r = c->r;
  bool ack;
  const redisReply *payload = rr_decode_message(rep, r->channel, r->channel_len, &ack);
  if (!q->answered) {
    q->answered = true;
    answered(c, q->b);
    if (ack)
      handshake_reply(c, q, rep);
    else
      rr_conn_drop(c, "unexpected answer to SUBSCRIBE");
  } else if (payload) {
    rr_lookup_message(r, payload);
  } else if (!ack) {
    r->stats[RS_REJECTED]++; /* not a message on our channel: forget what it might have said */
    rr_cache_clear(r);
  }
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv) {
  struct rr_req *q = priv;
  struct rr_conn *c = q->c;
  revtun_redis_t *r = c->r;
  const redisReply *rep = reply;
  if (!rep && c->ac == ac)
    lost(c); /* hiredis is freeing the context */
  if (q->kind == RQ_SUBSCRIBE && rep) {
    if (!r->freeing)
      sub_reply(c, q, rep);
    return;
  }
  if (!q->answered)
    answered(c, q->b);
  q->answered = true;
  if (rep && rep->type == REDIS_REPLY_ERROR && !rr_is_noscript(rep))
    r->stats[RS_ERRORS]++;
  if ((q->kind == RQ_HANDSHAKE || q->kind == RQ_SUBSCRIBE) && !r->freeing) {
    if (rep && c->ac == ac)
      handshake_reply(c, q, rep);
  } else if (q->kind != RQ_HANDSHAKE && q->kind != RQ_SUBSCRIBE) {
    rr_on_reply(q, rep); /* also when freeing: it releases what q carries */
  }
  free(q);
}

int rr_conn_init(struct rr_conn *c, revtun_redis_t *r, bool is_sub) {
  memset(c, 0, sizeof(*c));
  c->r = r;
  c->is_sub = is_sub;
  c->state = RC_DOWN;
  c->guard.rejected = 0;
  c->timer = evtimer_new(r->base, on_timer, c);
  c->retry = evtimer_new(r->base, on_retry, c);
  return c->timer && c->retry ? 0 : -1;
}

void rr_conn_fini(struct rr_conn *c) {
  if (c->ac) {
    redisAsyncContext *ac = c->ac;
    lost(c);
    redisAsyncFree(ac); /* every pending callback runs now, with NULL */
  }
  free(c->open);
  c->open = NULL;
  while (c->head) { /* only left if hiredis skipped a callback */
    struct rr_batch *b = c->head;
    c->head = b->next;
    free(b);
  }
  c->tail = NULL;
  if (c->timer)
    event_free(c->timer);
  if (c->retry)
    event_free(c->retry);
  c->timer = c->retry = NULL;
}
