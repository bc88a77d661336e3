/* The process directory (pool/directory.h): an index of who holds idle
 * sockets for which key, and a mailbox per handle, under one mutex.
 *
 * The index changes only when a handle's idle count for a node or a cluster
 * crosses zero, not at every park and handoff, so the mutex is rarely taken
 * on the hot path. Keys are chosen by agents, so the index hashes them with
 * its own secret key like every other table of the library. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/hash.h"
#include "base/mem.h"
#include "pool/directory.h"

struct dir_entry {
  struct rt_hnode hn;
  uint64_t holders; /* one bit per slot */
  unsigned rr;      /* whose turn it is */
  char key[];
};

struct dir_slot {
  bool attached;
  int wake_fd;
  bool woken;      /* the eventfd was written since the owner last took the mailbox */
  uint64_t serial; /* this attachment of the slot */
  struct rt_dmsg *head, *tail;
};

struct revtun_directory {
  struct rt_mem mem;
  pthread_mutex_t lock;
  atomic_uint refs; /* the creator's, and one per attached handle */
  int n_attached;
  int isolation;    /* -1 until the first handle attaches */
  uint64_t serials; /* attachments so far */
  struct rt_htable index;
  void *logs; /* shared log targets (observe/logfile.c); each holds a reference */
  struct dir_slot slots[REVTUN_DIRECTORY_MAX_HANDLES];
};

int revtun_directory_new(revtun_directory_t **out) {
  if (!out)
    return REVTUN_E_INVAL;
  struct rt_mem mem;
  rt_mem_default(&mem);
  revtun_directory_t *d = rt_calloc(&mem, 1, sizeof(*d));
  if (!d) {
    *out = NULL;
    return REVTUN_E_NOMEM;
  }
  d->mem = mem;
  if (pthread_mutex_init(&d->lock, NULL)) {
    rt_free(&mem, d);
    *out = NULL;
    return REVTUN_E_NOMEM;
  }
  atomic_init(&d->refs, 1);
  d->isolation = -1;
  struct rt_hkey k;
  rt_hkey_random(&k);
  rt_htable_init(&d->index, &k);
  for (int i = 0; i < REVTUN_DIRECTORY_MAX_HANDLES; i++)
    d->slots[i].wake_fd = -1;
  *out = d;
  return REVTUN_OK;
}

static void destroy(revtun_directory_t *d) {
  size_t i;
  struct rt_hnode *n = rt_htable_first(&d->index, &i);
  while (n) {
    struct rt_hnode *next = rt_htable_next(&d->index, n, &i);
    rt_htable_remove(&d->index, n);
    rt_free(&d->mem, n);
    n = next;
  }
  rt_htable_free(&d->mem, &d->index);
  pthread_mutex_destroy(&d->lock);
  rt_free(&d->mem, d);
}

static void unref(revtun_directory_t *d) {
  if (atomic_fetch_sub(&d->refs, 1) == 1)
    destroy(d);
}

void rt_dir_release(revtun_directory_t *d) { unref(d); }

void rt_dir_retain(revtun_directory_t *d) { atomic_fetch_add(&d->refs, 1); }

void **rt_dir_lock_logs(revtun_directory_t *d, const struct rt_mem **mem) {
  pthread_mutex_lock(&d->lock);
  *mem = &d->mem;
  return &d->logs;
}

void rt_dir_unlock_logs(revtun_directory_t *d) { pthread_mutex_unlock(&d->lock); }

void revtun_directory_free(revtun_directory_t *d) {
  if (d)
    unref(d);
}

int rt_dir_attach(revtun_directory_t *d, bool isolation, int *slot_out, int *wake_fd_out) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0)
    return errno == ENOMEM ? REVTUN_E_NOMEM : REVTUN_E_IO;
  int rc = REVTUN_E_LIMIT;
  pthread_mutex_lock(&d->lock);
  if (d->isolation >= 0 && d->n_attached && d->isolation != (int)isolation) {
    rc = REVTUN_E_CONFIG;
  } else {
    for (int i = 0; i < REVTUN_DIRECTORY_MAX_HANDLES; i++) {
      struct dir_slot *s = &d->slots[i];
      if (s->attached || s->wake_fd >= 0)
        continue;
      *s = (struct dir_slot){.attached = true, .wake_fd = fd, .serial = ++d->serials};
      d->n_attached++;
      d->isolation = isolation;
      atomic_fetch_add(&d->refs, 1);
      *slot_out = i;
      *wake_fd_out = fd;
      rc = REVTUN_OK;
      break;
    }
  }
  pthread_mutex_unlock(&d->lock);
  if (rc)
    close(fd);
  return rc;
}

struct rt_dmsg *rt_dir_detach(revtun_directory_t *d, int slot) {
  uint64_t bit = UINT64_C(1) << slot;
  pthread_mutex_lock(&d->lock);
  struct dir_slot *s = &d->slots[slot];
  s->attached = false;
  d->n_attached--;
  size_t i;
  struct rt_hnode *n = rt_htable_first(&d->index, &i);
  while (n) {
    struct rt_hnode *next = rt_htable_next(&d->index, n, &i);
    struct dir_entry *e = (struct dir_entry *)n;
    if ((e->holders &= ~bit) == 0) {
      rt_htable_remove(&d->index, n);
      rt_free(&d->mem, e);
    }
    n = next;
  }
  struct rt_dmsg *left = s->head;
  int fd = s->wake_fd;
  *s = (struct dir_slot){.wake_fd = -1};
  pthread_mutex_unlock(&d->lock);
  /* Senders write the eventfd only under the lock and only to an attached
   * slot, so nobody can be writing to it now. */
  close(fd);
  return left;
}

static struct dir_entry *find(revtun_directory_t *d, const char *key, size_t len) {
  return (struct dir_entry *)rt_htable_find(&d->index, key, len);
}

void rt_dir_publish(revtun_directory_t *d, int slot, const char *key, size_t len, bool holds) {
  uint64_t bit = UINT64_C(1) << slot;
  pthread_mutex_lock(&d->lock);
  struct dir_entry *e = find(d, key, len);
  if (holds && !e) {
    /* Best effort: without memory for the entry other handles do not learn
     * of these sockets, and requests for them end as not found. */
    e = rt_malloc(&d->mem, sizeof(*e) + len + 1);
    if (e) {
      memcpy(e->key, key, len);
      e->key[len] = '\0';
      e->holders = 0;
      e->rr = 0;
      if (rt_htable_insert(&d->mem, &d->index, &e->hn, e->key, len)) {
        rt_free(&d->mem, e);
        e = NULL;
      }
    }
  }
  if (e) {
    if (holds)
      e->holders |= bit;
    else if ((e->holders &= ~bit) == 0) {
      rt_htable_remove(&d->index, &e->hn);
      rt_free(&d->mem, e);
    }
  }
  pthread_mutex_unlock(&d->lock);
}

int rt_dir_pick(revtun_directory_t *d, const char *key, size_t len, uint64_t exclude) {
  int slot = -1;
  pthread_mutex_lock(&d->lock);
  struct dir_entry *e = find(d, key, len);
  uint64_t cand = e ? e->holders & ~exclude : 0;
  if (cand) {
    for (unsigned k = 0; k < REVTUN_DIRECTORY_MAX_HANDLES; k++) {
      unsigned i = (e->rr + k) % REVTUN_DIRECTORY_MAX_HANDLES;
      if (cand & (UINT64_C(1) << i)) {
        slot = (int)i;
        e->rr = i + 1;
        break;
      }
    }
  }
  pthread_mutex_unlock(&d->lock);
  return slot;
}

struct rt_dmsg *rt_dir_msg_new(revtun_directory_t *d, int type, int from, uint64_t ticket,
                               const void *data, size_t len) {
  struct rt_dmsg *m = rt_malloc(&d->mem, sizeof(*m) + len);
  if (!m)
    return NULL;
  *m =
      (struct rt_dmsg){.type = (uint8_t)type, .from = from, .ticket = ticket, .fd = -1, .len = len};
  if (len)
    memcpy(m->data, data, len);
  return m;
}

void rt_dir_msg_free(revtun_directory_t *d, struct rt_dmsg *m) { rt_free(&d->mem, m); }

int rt_dir_send(revtun_directory_t *d, int to, struct rt_dmsg *m) {
  int rc = REVTUN_E_NOT_FOUND;
  pthread_mutex_lock(&d->lock);
  struct dir_slot *s = &d->slots[to];
  if (s->attached && (!m->to_serial || m->to_serial == s->serial)) {
    const struct dir_slot *from = &d->slots[m->from];
    m->from_serial = from->attached ? from->serial : 0;
    m->next = NULL;
    if (s->tail)
      s->tail->next = m;
    else
      s->head = m;
    s->tail = m;
    if (!s->woken) {
      /* One write per batch: the counter cannot overflow, and a failure
       * (none is possible on a valid eventfd) would only delay the
       * delivery to the next wake. */
      uint64_t one = 1;
      s->woken = write(s->wake_fd, &one, sizeof(one)) == (ssize_t)sizeof(one);
    }
    rc = REVTUN_OK;
  }
  pthread_mutex_unlock(&d->lock);
  return rc;
}

struct rt_dmsg *rt_dir_take(revtun_directory_t *d, int slot) {
  pthread_mutex_lock(&d->lock);
  struct dir_slot *s = &d->slots[slot];
  uint64_t count;
  if (s->woken) {
    ssize_t r = read(s->wake_fd, &count, sizeof(count)); /* resets it; EAGAIN if already */
    (void)r;
    s->woken = false;
  }
  struct rt_dmsg *m = s->head;
  s->head = s->tail = NULL;
  pthread_mutex_unlock(&d->lock);
  return m;
}
