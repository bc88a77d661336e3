/* Shared helpers for the Check suites: configs encoded at build time,
 * recording callbacks, socket pairs and fd accounting. */
#ifndef REVTUN_TESTUTIL_H
#define REVTUN_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <revtun/revtun.h>

#define TU_MAX_EVENTS 4096

/* One recorded lifecycle record or reporter event (strings copied). */
struct tu_event {
  int kind;
  revtun_time_ms_t time;
  char node[64], cluster[64], tenant[64], node_key[128], cluster_key[128], worker[32];
  char init_worker[32], init_conn[32];
  int64_t initiation_time;
  int fd;
  int state;
  int reason;
  int sys_errno;
  uint32_t misses;
  void *sock_user;
  char meta[512]; /* "k=v;k=v;..." */
};

struct tu_rec {
  struct tu_event ev[TU_MAX_EVENTS];
  size_t n;
  /* timer and io bookkeeping from the callbacks */
  int64_t timer_ms;
  int timer_calls;
  int io_events[65536]; /* last interest per fd; -1 unknown */
  int io_calls;
  int io_fail_fd; /* io_cb returns -1 for this fd (or -2 for none) */
  /* hooks a test can set to act from inside a callback */
  void (*on_event)(revtun_t *h, const revtun_event_t *ev, struct tu_rec *rec);
  void *test_data;
};

void tu_rec_init(struct tu_rec *r);
void tu_options(revtun_options_t *o, struct tu_rec *r); /* wires all recording callbacks */
uint8_t *tu_config(const char *name, size_t *len);      /* tests/configs/<name>.bin, malloc'd */
revtun_t *tu_new(const char *config_name, struct tu_rec *r, revtun_time_ms_t now);
revtun_t *tu_new_opts(const char *config_name, revtun_options_t *o, revtun_time_ms_t now);
void tu_socketpair(int sv[2]);
int tu_register(revtun_t *h, int fd, const char *node, const char *cluster, const char *tenant,
                uint32_t interval_ms, revtun_time_ms_t now);
size_t tu_count(const struct tu_rec *r, int kind);
const struct tu_event *tu_last(const struct tu_rec *r, int kind);
const struct tu_event *tu_nth(const struct tu_rec *r, int kind, size_t nth);
int tu_open_fds(void); /* number of open descriptors of this process */
bool tu_fd_open(int fd);
uint64_t tu_stat(const revtun_t *h, const char *name); /* fails the test if missing */
void tu_write(int fd, const char *s);
size_t tu_read_all(int fd, char *buf, size_t cap); /* non-blocking drain */
/* Ticks h at its next deadline; returns the time it ticked at. */
revtun_time_ms_t tu_tick_next(revtun_t *h, revtun_time_ms_t now);
void tu_expect_rping(int peer); /* exactly one RPING waits on peer */
int tu_run(Suite *s);           /* srunner boilerplate; returns the exit status */

#endif
