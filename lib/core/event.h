/* The event record: one type for lifecycle records (access log, kinds
 * 1..63) and reporter events (64..), built on the stack, dispatched to the
 * host's callbacks and then to the sinks built from the config (through the
 * handle's upcalls), read through the public getters, gone when the
 * callbacks return. */
#ifndef REVTUN_CORE_EVENT_H
#define REVTUN_CORE_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sockaddr.h"
#include "core/handle.h"
#include "revtun/revtun.h"

/* A key and value the record carries besides its own fields, e.g. the
 * handshake's validation metadata ("<namespace>:<key>"). */
struct rt_meta_kv {
  const char *key;
  const char *value;
};

/* The peer identity behind a record: a transport session's answer to
 * "what does the peer's certificate say" (revtun_event_peer()). */
struct rt_peer {
  int (*field)(void *conn, int field, const char **value, size_t *len);
  void *conn;
};

struct revtun_event {
  int kind;
  revtun_time_ms_t time;
  const char *node_id, *cluster_id, *tenant_id;
  const char *node_key, *cluster_key;
  const char *worker;
  const char *init_worker, *init_conn;
  const char *handoff_kind;
  int64_t initiation_time_ms;
  int fd;
  void *sock_user;
  int socket_state;
  int close_reason;
  int sys_errno;
  uint32_t miss_count;
  const struct rt_addr *local, *remote;
  const struct rt_meta_kv *extra;
  size_t n_extra;
  const struct rt_peer *peer; /* tunnel_setup and handshake_failed through a transport */
  /* numbers formatted for the metadata view */
  char fd_buf[24];
  char miss_buf[24];
  char conn_buf[24];
};

/* The handle's part of a record: kind, time, worker; no socket (the pool
 * fills in a socket's part). */
void rt_event_init(struct revtun_event *ev, const revtun_t *h, int kind, revtun_time_ms_t now);
/* A lifecycle record: the host's access-log callback, then the access
 * loggers built from the config. */
void rt_emit(revtun_t *h, struct revtun_event *ev);
/* A reporter event: the host's reporter callback, then the reporter built
 * from the config. */
void rt_report(revtun_t *h, struct revtun_event *ev);
/* Whether anyone reads lifecycle records / reporter events: building a
 * record nobody reads is skipped on the hot paths. */
static inline bool rt_wants_records(const revtun_t *h) {
  return h->opts.access_log_cb || h->upcalls.record;
}
static inline bool rt_wants_reports(const revtun_t *h) {
  return h->opts.reporter_cb || h->upcalls.report;
}

#endif
