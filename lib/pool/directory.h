/* The process directory: what the handles of one process share so that every
 * worker can serve every node (pool/directory.c).
 *
 * It knows which handle holds idle sockets for which node and cluster key
 * (one bit per handle, changed only when a handle's idle count for the key
 * crosses zero), and carries messages between handles: a request for a
 * socket, the socket itself, or "none left". Each handle has a mailbox and an
 * eventfd the handle's loop watches; a message wakes the receiver, which
 * handles it on its own thread. One mutex guards it all and is never held
 * across a host callback. */
#ifndef REVTUN_POOL_DIRECTORY_H
#define REVTUN_POOL_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/mem.h"
#include "pool/sockstate.h"
#include "revtun/revtun.h"

enum rt_dmsg_type {
  RT_DMSG_REQUEST = 1, /* send me an idle socket for key */
  RT_DMSG_SOCKET = 2,  /* here it is: fd and its state */
  RT_DMSG_NONE = 3     /* none left for that request */
};

struct rt_dmsg {
  struct rt_dmsg *next;
  uint8_t type;    /* enum rt_dmsg_type */
  int from;        /* the sender's slot */
  uint64_t ticket; /* the requester's ticket, echoed back */
  /* Which attachment of the slots: a slot a handle left is given to the
   * next handle that joins, and a reply to the old one must not reach it. */
  uint64_t from_serial; /* the sender's, stamped by rt_dir_send */
  uint64_t to_serial;   /* a reply: only to this attachment of slot to */
  int fd;               /* SOCKET */
  size_t len;           /* key (REQUEST) or state (SOCKET) bytes in data */
  uint8_t data[];       /* REQUEST: the directory key; SOCKET: the encoded state */
};

/* Joins dir as a new slot; *wake_fd is the eventfd to watch for reading.
 * REVTUN_E_LIMIT when REVTUN_DIRECTORY_MAX_HANDLES are attached,
 * REVTUN_E_CONFIG when isolation differs from the other handles', since
 * their keys would not mean the same. */
int rt_dir_attach(revtun_directory_t *dir, bool isolation, int *slot_out, int *wake_fd_out);
/* Leaves: the slot's bits are cleared and its undelivered messages returned
 * (the caller answers or parks them); the eventfd is closed. The caller
 * still holds its reference, for those answers. */
struct rt_dmsg *rt_dir_detach(revtun_directory_t *dir, int slot);
/* Drops an attached handle's reference (the last one frees dir). */
void rt_dir_release(revtun_directory_t *dir);
/* One more reference, for an object that outlives its handle's attachment
 * (a shared log target); dropped with rt_dir_release(). */
void rt_dir_retain(revtun_directory_t *dir);

/* The log targets the handles share (observe/logfile.c keeps the list; the
 * directory only stores its head, under its lock, so that loggers of one
 * path open it once). Returns the head's address with the lock held, and
 * the directory's allocator in *mem; rt_dir_unlock_logs() releases it. */
void **rt_dir_lock_logs(revtun_directory_t *dir, const struct rt_mem **mem);
void rt_dir_unlock_logs(revtun_directory_t *dir);

/* The slot holds idle sockets for key, or no longer does. */
void rt_dir_publish(revtun_directory_t *dir, int slot, const char *key, size_t len, bool holds);
/* A holder of key other than those in the exclude mask, taking turns;
 * -1 when none. */
int rt_dir_pick(revtun_directory_t *dir, const char *key, size_t len, uint64_t exclude);

struct rt_dmsg *rt_dir_msg_new(revtun_directory_t *dir, int type, int from, uint64_t ticket,
                               const void *data, size_t len);
void rt_dir_msg_free(revtun_directory_t *dir, struct rt_dmsg *m);
/* Puts m in slot to's mailbox and wakes it; REVTUN_E_NOT_FOUND (m still the
 * caller's) when that slot has left, or when m->to_serial is set and names
 * an attachment of the slot that has left. */
int rt_dir_send(revtun_directory_t *dir, int to, struct rt_dmsg *m);
/* The slot's mailbox, oldest first, emptied; its wake counter reset. */
struct rt_dmsg *rt_dir_take(revtun_directory_t *dir, int slot);

#endif
