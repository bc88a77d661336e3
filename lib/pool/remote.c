/* Handoffs across the handles of one process (revtun_handoff_request): a
 * worker asked for a node it holds no idle socket for asks the handle that
 * does, through the process directory (pool/directory.h), and gets the
 * socket moved over with its keepalive state.
 *
 *   A: revtun_handoff_request  -> REQUEST to B, a ticket, REVTUN_E_PENDING
 *   B: on its wake fd          -> takes a live idle socket, exports it,
 *                                 SOCKET to A (or NONE)
 *   A: on its wake fd          -> imports it; hands it to the host through
 *                                 the arrival callback (or asks the next
 *                                 holder, and after the last: not found)
 *
 * A socket is never in two pools: B forgets it before the message leaves, A
 * adopts it when the message arrives, and a socket whose addressee has left
 * goes back to its sender's pool. No reporter event is sent for these moves:
 * the process, which is what a reporter sees, still holds the tunnel. */
#include <string.h>
#include <unistd.h>

#include "base/macros.h"
#include "core/fdtable.h"
#include "core/host.h"
#include "pool/directory.h"
#include "pool/move.h"
#include "pool/pool_int.h"
#include "pool/remote.h"

/* Most handoffs one handle may have pending at once. */
#define MAX_TICKETS 65536u
/* A directory key: its kind, then the pool key. */
#define DIR_KEY_MAX (RT_MAX_KEY_LEN + 1)

struct ticket {
  uint32_t gen; /* odd while in use */
  bool cancelled;
  bool by_cluster;
  uint64_t tried; /* slots asked already */
  void *request_user;
  size_t key_len;
  char key[DIR_KEY_MAX];
};

struct rt_remote {
  struct rt_fdent wake; /* kind RT_FD_WAKE: the directory's eventfd */
  revtun_directory_t *dir;
  int slot;
  struct ticket **tickets; /* by index, allocated as needed */
  uint32_t n_tickets, cap_tickets;
  uint32_t *free_list, n_free;
  size_t pending;
};

static size_t dir_key(char *out, bool by_cluster, const char *key, size_t len) {
  out[0] = by_cluster ? 'c' : 'n';
  memcpy(out + 1, key, len);
  return len + 1;
}

/* ------------------------------------------------------------- publishing */

/* The pool's idle_changed hook while attached. */
static void idle_changed(revtun_t *h, const struct rt_member *m) {
  struct rt_remote *r = h->remote;
  /* Called when the member's idle count crossed zero; the node's and the
   * cluster's crossed too when they now equal what the member's did. */
  bool up = m->idle > 0;
  char key[DIR_KEY_MAX];
  if (up ? m->node->idle == 1 : m->node->idle == 0)
    rt_dir_publish(r->dir, r->slot, key, dir_key(key, false, m->node->key, m->node->hn.keylen), up);
  if (up ? m->cluster->idle == 1 : m->cluster->idle == 0)
    rt_dir_publish(r->dir, r->slot, key, dir_key(key, true, m->cluster->key, m->cluster->hn.keylen),
                   up);
}

/* ---------------------------------------------------------------- tickets */

static uint64_t ticket_id(uint32_t index, uint32_t gen) { return (uint64_t)gen << 32 | index; }

static struct ticket *ticket_get(struct rt_remote *r, uint64_t id) {
  uint32_t index = (uint32_t)id, gen = (uint32_t)(id >> 32);
  if (index >= r->n_tickets || !r->tickets[index])
    return NULL;
  struct ticket *t = r->tickets[index];
  return t->gen == gen && (gen & 1) ? t : NULL;
}

static struct ticket *ticket_new(revtun_t *h, struct rt_remote *r, uint64_t *id_out) {
  uint32_t index;
  if (r->n_free) {
    index = r->free_list[--r->n_free];
  } else {
    if (r->n_tickets == MAX_TICKETS)
      return NULL;
    if (r->n_tickets == r->cap_tickets) {
      uint32_t cap = r->cap_tickets ? r->cap_tickets * 2 : 16;
      struct ticket **t = rt_realloc(&h->mem, r->tickets, cap * sizeof(*t));
      if (!t)
        return NULL;
      r->tickets = t;
      uint32_t *f = rt_realloc(&h->mem, r->free_list, cap * sizeof(*f));
      if (!f)
        return NULL;
      r->free_list = f;
      r->cap_tickets = cap;
    }
    struct ticket *t = rt_calloc(&h->mem, 1, sizeof(*t));
    if (!t)
      return NULL;
    index = r->n_tickets++;
    r->tickets[index] = t;
  }
  struct ticket *t = r->tickets[index];
  t->gen++; /* now odd: in use */
  t->cancelled = false;
  t->tried = UINT64_C(1) << r->slot;
  r->pending++;
  *id_out = ticket_id(index, t->gen);
  return t;
}

static void ticket_done(struct rt_remote *r, struct ticket *t, uint64_t id) {
  t->gen++; /* even: free; an old id no longer matches */
  r->free_list[r->n_free++] = (uint32_t)id;
  r->pending--;
}

/* Asks the next holder of the ticket's key; false when none is left. */
static bool ask_next(struct rt_remote *r, struct ticket *t, uint64_t id) {
  for (int tries = 0; tries < REVTUN_DIRECTORY_MAX_HANDLES; tries++) {
    int slot = rt_dir_pick(r->dir, t->key, t->key_len, t->tried);
    if (slot < 0)
      return false;
    t->tried |= UINT64_C(1) << slot;
    struct rt_dmsg *m = rt_dir_msg_new(r->dir, RT_DMSG_REQUEST, r->slot, id, t->key, t->key_len);
    if (!m)
      return false;
    if (rt_dir_send(r->dir, slot, m) == REVTUN_OK)
      return true;
    rt_dir_msg_free(r->dir, m); /* that handle left meanwhile: the next one */
  }
  return false;
}

/* --------------------------------------------------------- the public API */

int revtun_handoff_request(revtun_t *h, int lookup, const char *id, const char *tenant,
                           void *request_user, revtun_time_ms_t now, int *fd_out,
                           revtun_strip_t *strip_out, uint64_t *ticket_out) {
  if (fd_out)
    *fd_out = -1;
  if (ticket_out)
    *ticket_out = 0;
  if (!h || !fd_out || !ticket_out ||
      (lookup != REVTUN_LOOKUP_NODE && lookup != REVTUN_LOOKUP_CLUSTER))
    return REVTUN_E_INVAL;
  bool by_cluster = lookup == REVTUN_LOOKUP_CLUSTER;
  struct rt_idpair ids;
  if (rt_ids_check(h->cfg.tenant_isolation, id, tenant, &ids))
    return REVTUN_E_INVAL;
  int rc = rt_enter_nestable(h, now);
  if (rc)
    return rc;
  char key[DIR_KEY_MAX];
  size_t len = rt_ids_key(&ids, key + 1) + 1;
  key[0] = by_cluster ? 'c' : 'n';
  /* A local socket first: no message, no move. */
  struct rt_sock *s = rt_pool_pick_live(h, by_cluster, key + 1, len - 1, now);
  struct rt_remote *r = h->remote;
  struct ticket *t;
  uint64_t tid;
  if (s) {
    rt_pool_hand_over(h, s, now, fd_out, strip_out);
  } else if (!r || !h->opts.arrival_cb) {
    rc = REVTUN_E_NOT_FOUND;
  } else if (!(t = ticket_new(h, r, &tid))) {
    rc = r->n_tickets == MAX_TICKETS && !r->n_free ? REVTUN_E_LIMIT : REVTUN_E_NOMEM;
  } else {
    t->by_cluster = by_cluster;
    t->request_user = request_user;
    t->key_len = len;
    memcpy(t->key, key, len);
    if (ask_next(r, t, tid)) {
      *ticket_out = tid;
      rc = REVTUN_E_PENDING;
    } else {
      ticket_done(r, t, tid);
      rc = REVTUN_E_NOT_FOUND;
    }
  }
  if (rc == REVTUN_E_NOT_FOUND)
    rt_count(h, RT_C_POOL_MISS);
  rt_leave_nestable(h);
  return rc;
}

int revtun_handoff_cancel(revtun_t *h, uint64_t ticket) {
  if (!h)
    return REVTUN_E_INVAL;
  struct ticket *t = h->remote ? ticket_get(h->remote, ticket) : NULL;
  if (!t || t->cancelled)
    return REVTUN_E_NOT_FOUND;
  t->cancelled = true; /* freed when the answer comes: it names the ticket */
  return REVTUN_OK;
}

/* --------------------------------------------------------------- messages */

static void arrive(revtun_t *h, uint64_t id, int status, int fd, revtun_strip_t strip,
                   void *request_user) {
  h->cb_depth++;
  h->opts.arrival_cb(h, id, status, fd, strip, request_user, h->opts.user_data);
  h->cb_depth--;
}

/* Parks a socket that came with its state; false (the fd closed, the loss
 * recorded where the pool could) when it cannot. */
static bool adopt(revtun_t *h, int fd, const uint8_t *state, size_t len, revtun_time_ms_t now) {
  struct rt_sockstate st;
  const char *why = "";
  int rc = rt_sockstate_decode(state, len, &st, &why);
  if (!rc && (rc = rt_pool_import(h, fd, &st, NULL, false, now)) == REVTUN_OK)
    return true;
  rt_log(h, REVTUN_LOG_WARN, "socket fd %d moved from another handle was dropped (%s)", fd,
         rc ? revtun_strerror(rc) : why);
  close(fd);
  return false;
}

/* B's side: a live idle socket for the key, moved to the requester. */
static void serve_request(revtun_t *h, struct rt_remote *r, const struct rt_dmsg *req,
                          revtun_time_ms_t now) {
  uint8_t state[RT_SOCKSTATE_MAX];
  struct rt_sock *s = NULL;
  bool key_ok = req->len >= 2 && req->len <= DIR_KEY_MAX;
  if (key_ok)
    s = rt_pool_pick_live(h, req->data[0] == 'c', (const char *)req->data + 1, req->len - 1, now);
  size_t len = 0;
  int fd = s ? s->ent.fd : -1;
  if (s && rt_pool_export(h, s, false, now, state, sizeof(state), &len) != REVTUN_OK)
    fd = -1; /* cannot happen: every state fits RT_SOCKSTATE_MAX */
  struct rt_dmsg *m = fd >= 0
                          ? rt_dir_msg_new(r->dir, RT_DMSG_SOCKET, r->slot, req->ticket, state, len)
                          : rt_dir_msg_new(r->dir, RT_DMSG_NONE, r->slot, req->ticket, NULL, 0);
  if (m) {
    m->fd = fd;
    m->to_serial = req->from_serial; /* not to a handle that took its slot */
    if (rt_dir_send(r->dir, req->from, m) == REVTUN_OK)
      return;
    rt_dir_msg_free(r->dir, m);
  }
  /* The requester left, or no memory for the message: the socket stays. */
  if (fd >= 0)
    adopt(h, fd, state, len, now);
}

/* A's side: the answer to one of its tickets. */
static void take_answer(revtun_t *h, struct rt_remote *r, const struct rt_dmsg *m,
                        revtun_time_ms_t now) {
  struct ticket *t = ticket_get(r, m->ticket);
  /* A socket that could not join is no answer: the request goes on as after
   * a "none", to the next holder or to not found. */
  if (m->type == RT_DMSG_SOCKET && adopt(h, m->fd, m->data, m->len, now)) {
    if (!t || t->cancelled) {
      if (t) /* cancelled: the socket stays parked here */
        ticket_done(r, t, m->ticket);
      return;
    }
    int fd;
    revtun_strip_t strip;
    void *user = t->request_user;
    rt_pool_hand_over(h, rt_pool_sock(h, m->fd), now, &fd, &strip);
    rt_count(h, RT_C_REMOTE_HANDOFFS);
    ticket_done(r, t, m->ticket);
    arrive(h, m->ticket, REVTUN_OK, fd, strip, user);
    return;
  }
  if (!t)
    return;
  if (!t->cancelled && ask_next(r, t, m->ticket))
    return;
  bool tell = !t->cancelled;
  void *user = t->request_user;
  ticket_done(r, t, m->ticket);
  if (tell) {
    rt_count(h, RT_C_POOL_MISS);
    arrive(h, m->ticket, REVTUN_E_NOT_FOUND, -1, 0, user);
  }
}

void rt_remote_on_io(revtun_t *h, struct rt_fdent *ent, revtun_time_ms_t now) {
  struct rt_remote *r = RT_CONTAINER_OF(ent, struct rt_remote, wake);
  struct rt_dmsg *m = rt_dir_take(r->dir, r->slot);
  /* Every message taken is handled, even if a callback frees the handle:
   * its memory stays until the outermost call returns, and a socket in a
   * message would otherwise be lost. */
  while (m) {
    struct rt_dmsg *next = m->next;
    if (m->type == RT_DMSG_REQUEST)
      serve_request(h, r, m, now);
    else
      take_answer(h, r, m, now);
    rt_dir_msg_free(r->dir, m);
    m = next;
  }
}

/* ---------------------------------------------------------- attach, detach */

int rt_remote_attach(revtun_t *h, revtun_directory_t *dir) {
  struct rt_remote *r = rt_calloc(&h->mem, 1, sizeof(*r));
  if (!r)
    return REVTUN_E_NOMEM;
  int fd, rc = rt_dir_attach(dir, h->cfg.tenant_isolation, &r->slot, &fd);
  if (rc) {
    rt_free(&h->mem, r);
    return rc;
  }
  r->dir = dir;
  r->wake.fd = fd;
  r->wake.kind = RT_FD_WAKE;
  r->wake.tm.idx = RT_TIMER_IDLE;
  if ((rc = rt_fd_set(h, fd, &r->wake)) == REVTUN_OK) {
    h->remote = r;
    if ((rc = rt_io(h, &r->wake, REVTUN_IO_READ)) == REVTUN_OK) {
      h->pool->idle_changed = idle_changed;
      return REVTUN_OK;
    }
    h->remote = NULL;
    rt_fd_clear(h, fd);
  }
  rt_dir_msg_free(dir, rt_dir_detach(dir, r->slot)); /* nothing can be queued yet */
  rt_dir_release(dir);
  rt_free(&h->mem, r);
  return rc;
}

void rt_remote_detach(revtun_t *h, revtun_time_ms_t now) {
  struct rt_remote *r = h->remote;
  if (!r)
    return;
  h->pool->idle_changed = NULL;
  if (rt_io(h, &r->wake, REVTUN_IO_REMOVE))
    rt_log(h, REVTUN_LOG_WARN, "io callback failed removing the directory's fd %d", r->wake.fd);
  rt_fd_clear(h, r->wake.fd);
  struct rt_dmsg *m = rt_dir_detach(r->dir, r->slot);
  /* What was on its way here: requests get their "none", sockets join this
   * pool so that freeing it closes them with their records. */
  while (m) {
    struct rt_dmsg *next = m->next;
    if (m->type == RT_DMSG_REQUEST) {
      struct rt_dmsg *none = rt_dir_msg_new(r->dir, RT_DMSG_NONE, r->slot, m->ticket, NULL, 0);
      if (none)
        none->to_serial = m->from_serial;
      if (none && rt_dir_send(r->dir, m->from, none) != REVTUN_OK)
        rt_dir_msg_free(r->dir, none);
    } else if (m->type == RT_DMSG_SOCKET) {
      adopt(h, m->fd, m->data, m->len, now);
    }
    rt_dir_msg_free(r->dir, m);
    m = next;
  }
  for (uint32_t i = 0; i < r->n_tickets; i++)
    rt_free(&h->mem, r->tickets[i]);
  rt_free(&h->mem, r->tickets);
  rt_free(&h->mem, r->free_list);
  rt_dir_release(r->dir);
  h->remote = NULL;
  rt_free(&h->mem, r);
}
