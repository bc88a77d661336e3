/*
 * Size-class free lists for the example programs' heap.
 *
 * Every request through the proxy or the agent used to cost about twenty
 * malloc/free pairs (nghttp2's streams, frames and header buffers,
 * libevent's buffer chains, the programs' own exchange and stream
 * objects), and under load glibc's per-thread cache overflows: the blocks
 * of a few hundred concurrent streams go through the slow paths of
 * malloc. A block freed here goes onto the free list of its size class and
 * the next allocation of that class takes it back, so a steady load reuses
 * the same blocks and calls malloc only while it grows.
 *
 * What the lists keep is bounded (RECYCLE_CLASS_BYTES per class,
 * RECYCLE_TOTAL_BYTES in all); beyond that a freed block goes back to
 * malloc. Blocks above RECYCLE_MAX_BLOCK are never kept. Under
 * AddressSanitizer every call goes straight to malloc, so that
 * use-after-free and leaks are still found.
 *
 * Each thread keeps its own lists (no lock on the fast paths); a block may
 * be freed on another thread than the one that allocated it.
 */
#ifndef REVTUN_EXAMPLES_RECYCLE_H
#define REVTUN_EXAMPLES_RECYCLE_H

#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#define RECYCLE_MAX_BLOCK (64 * 1024)
#define RECYCLE_CLASS_BYTES (4u << 20)
#define RECYCLE_TOTAL_BYTES (32u << 20)

void *recycle_malloc(size_t n);
void *recycle_calloc(size_t nmemb, size_t size);
void *recycle_realloc(void *p, size_t n);
void recycle_free(void *p);

/* For blocks that live briefly and rarely (a handshake's buffers): small
 * ones come from the slabs as usual, larger ones go straight back to
 * malloc when freed instead of waiting on a list. Free with recycle_free. */
void *recycle_malloc_unkept(size_t n);

/* Makes libevent allocate through these functions; call before anything
 * else of libevent. */
void recycle_libevent(void);

/* nghttp2's allocator (pass to nghttp2_session_*_new3). */
nghttp2_mem *recycle_nghttp2_mem(void);

/* Gives every kept block back to malloc (at exit, so leak checkers see
 * only real leaks): every slab, and the calling thread's lists. Call it
 * once the other threads that allocated here have called
 * recycle_release_thread() and ended. */
void recycle_release(void);
void recycle_release_thread(void);

/* Blocks taken from malloc and blocks reused from a list so far. */
void recycle_counts(uint64_t *from_malloc, uint64_t *reused);

#endif
