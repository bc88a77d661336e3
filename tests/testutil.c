/* See testutil.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

void tu_rec_init(struct tu_rec *r) {
  memset(r, 0, sizeof(*r));
  for (size_t i = 0; i < sizeof(r->io_events) / sizeof(r->io_events[0]); i++)
    r->io_events[i] = -1;
  r->io_fail_fd = -2;
  r->timer_ms = -1;
}

static void copy(char *dst, size_t cap, const char *src) {
  snprintf(dst, cap, "%s", src ? src : "");
}

static void record(revtun_t *h, const revtun_event_t *ev, void *user) {
  struct tu_rec *r = user;
  if (r->n < TU_MAX_EVENTS) {
    struct tu_event *e = &r->ev[r->n++];
    memset(e, 0, sizeof(*e));
    e->kind = revtun_event_kind(ev);
    e->time = revtun_event_time_ms(ev);
    copy(e->node, sizeof(e->node), revtun_event_node_id(ev, NULL));
    copy(e->cluster, sizeof(e->cluster), revtun_event_cluster_id(ev, NULL));
    copy(e->tenant, sizeof(e->tenant), revtun_event_tenant_id(ev, NULL));
    copy(e->node_key, sizeof(e->node_key), revtun_event_node_key(ev, NULL));
    copy(e->cluster_key, sizeof(e->cluster_key), revtun_event_cluster_key(ev, NULL));
    copy(e->worker, sizeof(e->worker), revtun_event_worker(ev, NULL));
    copy(e->init_worker, sizeof(e->init_worker), revtun_event_initiator_worker_id(ev, NULL));
    copy(e->init_conn, sizeof(e->init_conn), revtun_event_initiator_connection_id(ev, NULL));
    e->initiation_time = revtun_event_initiation_time_ms(ev);
    e->fd = revtun_event_fd(ev);
    e->state = revtun_event_socket_state(ev);
    e->reason = revtun_event_close_reason(ev);
    e->sys_errno = revtun_event_sys_errno(ev);
    e->misses = revtun_event_miss_count(ev);
    e->sock_user = revtun_event_sock_user(ev);
    size_t n = revtun_event_meta_count(ev), off = 0;
    for (size_t i = 0; i < n; i++) {
      const char *k, *v;
      if (revtun_event_meta_get(ev, i, &k, &v) == REVTUN_OK && off < sizeof(e->meta))
        off += (size_t)snprintf(e->meta + off, sizeof(e->meta) - off, "%s=%s;", k, v);
    }
  }
  if (r->on_event)
    r->on_event(h, ev, r);
}

static int io_cb(revtun_t *h, int fd, int events, void *sock_user, void *user) {
  (void)h;
  (void)sock_user;
  struct tu_rec *r = user;
  r->io_calls++;
  if (fd == r->io_fail_fd || r->io_fail_fd == -1)
    return -1;
  if (fd >= 0 && fd < 65536)
    r->io_events[fd] = events;
  return 0;
}

static int timer_cb(revtun_t *h, int64_t ms, void *user) {
  (void)h;
  struct tu_rec *r = user;
  r->timer_calls++;
  r->timer_ms = ms;
  return 0;
}

void tu_options(revtun_options_t *o, struct tu_rec *r) {
  ck_assert_int_eq(revtun_options_set_user_data(o, r), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_access_log_cb(o, record), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_reporter_cb(o, record), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_io_cb(o, io_cb), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_timer_cb(o, timer_cb), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_seed(o, 42), REVTUN_OK);
}

uint8_t *tu_config(const char *name, size_t *len) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s.bin", TEST_CONFIG_DIR, name);
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "missing encoded config %s (make check builds it)", path);
  uint8_t *buf = malloc(1 << 20);
  ck_assert_ptr_nonnull(buf);
  *len = fread(buf, 1, 1 << 20, f);
  fclose(f);
  return buf;
}

revtun_t *tu_new_opts(const char *config_name, revtun_options_t *o, revtun_time_ms_t now) {
  size_t len = 0;
  uint8_t *cfg = config_name ? tu_config(config_name, &len) : NULL;
  revtun_t *h = NULL;
  char err[256];
  int rc = revtun_new(&h, cfg, len, o, now, err, sizeof(err));
  ck_assert_msg(rc == REVTUN_OK, "revtun_new(%s): %s: %s", config_name ? config_name : "(empty)",
                revtun_status_name(rc), err);
  free(cfg);
  return h;
}

revtun_t *tu_new(const char *config_name, struct tu_rec *r, revtun_time_ms_t now) {
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, r);
  revtun_t *h = tu_new_opts(config_name, o, now);
  revtun_options_free(o);
  return h;
}

void tu_socketpair(int sv[2]) {
  ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
}

int tu_register(revtun_t *h, int fd, const char *node, const char *cluster, const char *tenant,
                uint32_t interval_ms, revtun_time_ms_t now) {
  revtun_reg_t *reg;
  ck_assert_int_eq(revtun_reg_new(h, &reg), REVTUN_OK);
  revtun_reg_set_ids(reg, node, cluster, tenant);
  if (interval_ms)
    revtun_reg_set_ping_interval(reg, interval_ms);
  int rc = revtun_register_socket(h, fd, reg, now);
  revtun_reg_free(reg);
  return rc;
}

size_t tu_count(const struct tu_rec *r, int kind) {
  size_t n = 0;
  for (size_t i = 0; i < r->n; i++)
    n += r->ev[i].kind == kind;
  return n;
}

const struct tu_event *tu_nth(const struct tu_rec *r, int kind, size_t nth) {
  for (size_t i = 0; i < r->n; i++)
    if (r->ev[i].kind == kind && nth-- == 0)
      return &r->ev[i];
  return NULL;
}

const struct tu_event *tu_last(const struct tu_rec *r, int kind) {
  for (size_t i = r->n; i-- > 0;)
    if (r->ev[i].kind == kind)
      return &r->ev[i];
  return NULL;
}

int tu_open_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  while (d && (e = readdir(d)))
    n += e->d_name[0] != '.';
  if (d)
    closedir(d);
  return n - 1; /* the directory stream itself */
}

bool tu_fd_open(int fd) { return fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

uint64_t tu_stat(const revtun_t *h, const char *name) {
  uint64_t v = 0;
  int rc = revtun_stats_get(h, name, &v);
  ck_assert_msg(rc == REVTUN_OK, "stat %s: %s", name, revtun_status_name(rc));
  return v;
}

void tu_write(int fd, const char *s) {
  size_t n = strlen(s);
  ck_assert_int_eq(write(fd, s, n), (ssize_t)n);
}

size_t tu_read_all(int fd, char *buf, size_t cap) {
  size_t off = 0;
  while (off + 1 < cap) {
    ssize_t r = recv(fd, buf + off, cap - 1 - off, MSG_DONTWAIT);
    if (r <= 0)
      break;
    off += (size_t)r;
  }
  buf[off] = '\0';
  return off;
}

revtun_time_ms_t tu_tick_next(revtun_t *h, revtun_time_ms_t now) {
  int64_t ms = revtun_next_timeout_ms(h, now);
  ck_assert_int_ge(ms, 0);
  now += (revtun_time_ms_t)ms;
  ck_assert_int_eq(revtun_tick(h, now), REVTUN_OK);
  return now;
}

void tu_expect_rping(int peer) {
  char buf[16];
  ck_assert_int_eq(recv(peer, buf, sizeof(buf), MSG_DONTWAIT), 5);
  ck_assert_mem_eq(buf, "RPING", 5);
}

int tu_run(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_ENV);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
