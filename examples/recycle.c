/* Size-class free lists for the example programs' heap (see recycle.h). */
#include "recycle.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#if defined(__SANITIZE_ADDRESS__)
#define RECYCLE_PASSTHROUGH 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RECYCLE_PASSTHROUGH 1
#endif
#endif
#ifndef RECYCLE_PASSTHROUGH
#define RECYCLE_PASSTHROUGH 0
#endif

/*
 * Classes: 16-byte steps up to 1 KiB (small objects come in many sizes),
 * then powers of two up to RECYCLE_MAX_BLOCK (libevent's buffer chains are
 * powers of two already). A block carries its class in a 16-byte header,
 * which keeps the payload aligned as malloc's is.
 *
 * Blocks of up to SLAB_MAX bytes are carved from SLAB_BYTES slabs of one
 * class and stay on their class's list once freed (slabs go back to malloc
 * only at recycle_release()). Long-lived small objects (an idle tunnel's
 * event and pool entry) then sit packed together instead of between the
 * short-lived larger blocks of handshakes and requests, whose freed space
 * malloc can coalesce and give back; what the small classes hold is their
 * peak use.
 */
#define SMALL_STEP 16
#define SMALL_MAX 1024
#define N_SMALL (SMALL_MAX / SMALL_STEP)
#define N_LARGE 6 /* 2, 4, 8, 16, 32, 64 KiB */
#define N_CLASSES (N_SMALL + N_LARGE)
#define NO_CLASS 0xffffu
#define SLAB_MAX 256
#define SLAB_BYTES (64 * 1024)

union header {
  struct {
    uint32_t cls; /* NO_CLASS: a block malloc'd for a size beyond the classes */
    uint32_t magic;
  } h;
  max_align_t align;
};

#define MAGIC 0x72637963u      /* "rcyc" */
#define MAGIC_SLAB 0x72637973u /* "rcys": inside a slab, never given to free() */

struct freeblock {
  struct freeblock *next;
};

/* Each thread has its own lists and carves its own slabs, so the fast
 * paths take no lock (the proxy's --workers threads each run one loop). A
 * block freed on another thread than the one that took it joins the
 * freeing thread's list. Only the registry of slabs is shared: it is
 * touched once per 64 KiB slab, under slabs_lock. */
static _Thread_local struct freeblock *lists[N_CLASSES];
static _Thread_local size_t kept[N_CLASSES]; /* blocks on each list */
static _Thread_local size_t kept_total;      /* bytes on all lists */
static _Thread_local uint64_t n_from_malloc, n_reused;
static _Thread_local char *bump[N_CLASSES]; /* the current slab of each small class */
static _Thread_local size_t bump_left[N_CLASSES];
static pthread_mutex_t slabs_lock = PTHREAD_MUTEX_INITIALIZER;
static void **slabs; /* every slab of every thread, for recycle_release() */
static size_t n_slabs, slabs_cap;

static size_t class_size(unsigned c) {
  return c < N_SMALL ? (size_t)(c + 1) * SMALL_STEP : (size_t)SMALL_MAX << (c - N_SMALL + 1);
}

static unsigned class_of(size_t n) {
  unsigned c;

  if (n <= SMALL_MAX)
    return n == 0 ? 0 : (unsigned)((n - 1) / SMALL_STEP);
  if (n > RECYCLE_MAX_BLOCK)
    return NO_CLASS;
  for (c = N_SMALL; class_size(c) < n; c++)
    ;
  return c;
}

/* A block of class c from its slab, carved on demand (untouched pages of
 * a slab stay unresident); a new slab when the current one is used up. */
static void *slab_block(unsigned c) {
  size_t stride = sizeof(union header) + class_size(c);
  union header *b;

  if (bump_left[c] < stride) {
    char *slab = NULL;
    pthread_mutex_lock(&slabs_lock);
    if (n_slabs == slabs_cap) {
      size_t cap = slabs_cap ? slabs_cap * 2 : 64;
      void **v = realloc(slabs, cap * sizeof(*v));
      if (v) {
        slabs = v;
        slabs_cap = cap;
      }
    }
    if (n_slabs < slabs_cap && (slab = malloc(SLAB_BYTES)))
      slabs[n_slabs++] = slab;
    pthread_mutex_unlock(&slabs_lock);
    if (!slab)
      return NULL;
    bump[c] = slab;
    bump_left[c] = SLAB_BYTES;
    n_from_malloc++;
  }
  b = (union header *)(void *)bump[c];
  bump[c] += stride;
  bump_left[c] -= stride;
  b->h.cls = c;
  b->h.magic = MAGIC_SLAB;
  return b + 1;
}

void *recycle_malloc(size_t n) {
  union header *b;
  unsigned c;

  if (RECYCLE_PASSTHROUGH)
    return malloc(n);
  c = class_of(n);
  if (c != NO_CLASS && lists[c]) {
    struct freeblock *f = lists[c];
    lists[c] = f->next;
    kept[c]--;
    if (class_size(c) > SLAB_MAX)
      kept_total -= class_size(c);
    n_reused++;
    return f;
  }
  if (c != NO_CLASS && class_size(c) <= SLAB_MAX)
    return slab_block(c);
  if (n > SIZE_MAX - sizeof(*b) || !(b = malloc(sizeof(*b) + (c == NO_CLASS ? n : class_size(c)))))
    return NULL;
  n_from_malloc++;
  b->h.cls = c;
  b->h.magic = MAGIC;
  return b + 1;
}

void recycle_free(void *p) {
  union header *b;
  unsigned c;
  size_t sz;

  if (RECYCLE_PASSTHROUGH || !p) {
    free(p);
    return;
  }
  b = (union header *)p - 1;
  if (b->h.magic == MAGIC_SLAB) {
    c = b->h.cls;
    ((struct freeblock *)p)->next = lists[c];
    lists[c] = p;
    kept[c]++;
    return;
  }
  if (b->h.magic != MAGIC)
    abort(); /* not ours, or the header was overwritten: stop now */
  c = b->h.cls;
  if (c == NO_CLASS) {
    free(b);
    return;
  }
  sz = class_size(c);
  if ((kept[c] + 1) * sz > RECYCLE_CLASS_BYTES || kept_total + sz > RECYCLE_TOTAL_BYTES) {
    free(b);
    return;
  }
  ((struct freeblock *)p)->next = lists[c];
  lists[c] = p;
  kept[c]++;
  kept_total += sz;
}

void *recycle_calloc(size_t nmemb, size_t size) {
  void *p;

  if (RECYCLE_PASSTHROUGH)
    return calloc(nmemb, size);
  if (size && nmemb > SIZE_MAX / size)
    return NULL;
  if ((p = recycle_malloc(nmemb * size)))
    memset(p, 0, nmemb * size);
  return p;
}

void *recycle_realloc(void *p, size_t n) {
  union header *b;
  size_t have;
  void *q;

  if (RECYCLE_PASSTHROUGH)
    return realloc(p, n);
  if (!p)
    return recycle_malloc(n);
  b = (union header *)p - 1;
  if (b->h.magic != MAGIC && b->h.magic != MAGIC_SLAB)
    abort();
  if (b->h.cls == NO_CLASS) { /* stays a plain malloc block */
    if (n > SIZE_MAX - sizeof(*b) || !(b = realloc(b, sizeof(*b) + n)))
      return NULL;
    return b + 1;
  } else {
    have = class_size(b->h.cls);
    if (n <= have && class_of(n) == b->h.cls)
      return p;
  }
  if (!(q = recycle_malloc(n)))
    return NULL;
  memcpy(q, p, n < have ? n : have);
  recycle_free(p);
  return q;
}

void *recycle_malloc_unkept(size_t n) {
  union header *b;
  unsigned c;

  if (RECYCLE_PASSTHROUGH)
    return malloc(n);
  c = class_of(n);
  if (c != NO_CLASS && class_size(c) <= SLAB_MAX)
    return recycle_malloc(n);
  if (n > SIZE_MAX - sizeof(*b) || !(b = malloc(sizeof(*b) + n)))
    return NULL;
  b->h.cls = NO_CLASS;
  b->h.magic = MAGIC;
  return b + 1;
}

void recycle_release_thread(void) {
  for (unsigned c = 0; c < N_CLASSES; c++) {
    while (lists[c]) {
      struct freeblock *f = lists[c];
      lists[c] = f->next;
      if (class_size(c) > SLAB_MAX)
        free((union header *)(void *)f - 1);
    }
    kept[c] = 0;
  }
  kept_total = 0;
  memset(bump, 0, sizeof(bump));
  memset(bump_left, 0, sizeof(bump_left));
}

void recycle_release(void) {
  recycle_release_thread();
  pthread_mutex_lock(&slabs_lock);
  for (size_t i = 0; i < n_slabs; i++)
    free(slabs[i]);
  free(slabs);
  slabs = NULL;
  n_slabs = slabs_cap = 0;
  pthread_mutex_unlock(&slabs_lock);
}

void recycle_counts(uint64_t *from_malloc, uint64_t *reused) {
  *from_malloc = n_from_malloc;
  *reused = n_reused;
}

void recycle_libevent(void) {
  if (!RECYCLE_PASSTHROUGH)
    event_set_mem_functions(recycle_malloc, recycle_realloc, recycle_free);
}

static void *mem_malloc(size_t n, void *ud) {
  (void)ud;
  return recycle_malloc(n);
}
static void mem_free(void *p, void *ud) {
  (void)ud;
  recycle_free(p);
}
static void *mem_calloc(size_t nmemb, size_t size, void *ud) {
  (void)ud;
  return recycle_calloc(nmemb, size);
}
static void *mem_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  return recycle_realloc(p, n);
}

nghttp2_mem *recycle_nghttp2_mem(void) {
  static nghttp2_mem mem = {NULL, mem_malloc, mem_free, mem_calloc, mem_realloc};
  return &mem;
}
