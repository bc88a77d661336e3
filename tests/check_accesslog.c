/* Built-in access loggers through a real handle: every lifecycle event
 * through a text, a JSON and the default file logger, stdout and stderr
 * (fd 1/2 redirected in a forked child), the deprecated format fields,
 * flushing (deadline, 64 KiB, free), rotation with revtun_reopen_logs, the
 * buffer limit, write errors, a full or closed pipe, and the config errors
 * with their exact sentences. Files live in a fresh temporary directory per
 * test; configs name them relative to it. */
#include <arpa/inet.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static struct tu_rec rec;
static char tmpdir[256], oldcwd[1024];
static int host_events, n_logged;

static void enter_tmpdir(void) {
  ck_assert_ptr_nonnull(getcwd(oldcwd, sizeof(oldcwd)));
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(tmpdir, sizeof(tmpdir), "%s/revtun-al-XXXXXX", base);
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
  ck_assert_int_eq(chdir(tmpdir), 0);
  tu_rec_init(&rec);
  host_events = n_logged = 0;
}

static void leave_tmpdir(void) {
  ck_assert_int_eq(chdir(oldcwd), 0);
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
  ck_assert_int_eq(system(cmd), 0);
}

/* The whole file, NUL-terminated ("" when it does not exist). */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  size_t cap = 4096, len = 0, n;
  char *buf = malloc(cap);
  while (f && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 2)
      buf = realloc(buf, cap *= 2);
  }
  if (f)
    fclose(f);
  buf[len] = '\0';
  return buf;
}

static void assert_file(const char *path, const char *expected) {
  char *got = slurp(path);
  ck_assert_str_eq(got, expected);
  free(got);
}

static off_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? st.st_size : -1;
}

static revtun_t *new_with(const char *config, revtun_options_t *o) {
  if (!o) {
    ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
    tu_options(o, &rec);
    revtun_t *h = tu_new_opts(config, o, 0);
    revtun_options_free(o);
    return h;
  }
  return tu_new_opts(config, o, 0);
}

static int pair(int *peer) {
  int sv[2];
  tu_socketpair(sv);
  *peer = sv[1];
  return sv[0];
}

/* Ticks at each deadline until `kind` has been recorded `count` times. */
static revtun_time_ms_t step_until(revtun_t *h, int kind, size_t count, revtun_time_ms_t now) {
  for (int guard = 0; tu_count(&rec, kind) < count; guard++) {
    ck_assert_int_lt(guard, 100);
    int64_t t = revtun_next_timeout_ms(h, now);
    ck_assert_int_ge(t, 0);
    now += (revtun_time_ms_t)t;
    ck_assert_int_eq(revtun_tick(h, now), REVTUN_OK);
  }
  return now;
}

/* ------------------------------------------------------ the lifecycle tour
 * Every lifecycle event kind, with the values each record must carry. */

struct exp {
  const char *event, *node, *cluster, *tenant, *state, *handoff, *reason;
  int fd, misses; /* -1: absent */
};

static struct exp tour_exp[32];
static size_t n_exp;

static void expect(const char *event, const char *node, const char *cluster, const char *tenant,
                   const char *state, const char *handoff, const char *reason, int fd, int misses) {
  tour_exp[n_exp++] =
      (struct exp){event, node, cluster, tenant, state, handoff, reason, fd, misses};
}

static void tour(revtun_t *h) {
  n_exp = 0;
  revtun_time_ms_t now = 0;
  int peer, a = pair(&peer), fd;
  char buf[64];
  /* A: keepalive -- sent, ack, sent, miss, sent, timeout, closed */
  ck_assert_int_eq(tu_register(h, a, "n1", "c1", "t1", 1000, now), REVTUN_OK);
  expect("tunnel_setup", "n1", "c1", "t1", "idle", NULL, NULL, a, -1);
  now = step_until(h, REVTUN_EV_PING_SENT, 1, now);
  expect("idle_ping_sent", "n1", "c1", "t1", "idle", NULL, NULL, a, -1);
  ck_assert_uint_eq(tu_read_all(peer, buf, sizeof(buf)), 5);
  tu_write(peer, "RPING");
  ck_assert_int_eq(revtun_process_io(h, a, REVTUN_IO_READ, now), REVTUN_OK);
  expect("idle_ping_ack", "n1", "c1", "t1", "idle", NULL, NULL, a, -1);
  now = step_until(h, REVTUN_EV_PING_SENT, 2, now);
  expect("idle_ping_sent", "n1", "c1", "t1", "idle", NULL, NULL, a, -1);
  now = step_until(h, REVTUN_EV_PING_MISS, 1, now);
  expect("idle_ping_miss", "n1", "c1", "t1", "idle", NULL, NULL, a, 1);
  now = step_until(h, REVTUN_EV_PING_SENT, 3, now);
  expect("idle_ping_sent", "n1", "c1", "t1", "idle", NULL, NULL, a, -1);
  now = step_until(h, REVTUN_EV_PING_TIMEOUT, 1, now);
  expect("idle_ping_timeout", "n1", "c1", "t1", "idle", NULL, NULL, a, 2);
  expect("tunnel_closed", "n1", "c1", "t1", "idle", NULL, "idle_ping_timeout", a, -1);
  close(peer);
  /* B: handoff, HTTP/2 keepalive timeout (noted twice, logged once), close */
  int b = pair(&peer);
  ck_assert_int_eq(tu_register(h, b, "n2", "c1", "t1", 60000, now), REVTUN_OK);
  expect("tunnel_setup", "n2", "c1", "t1", "idle", NULL, NULL, b, -1);
  ck_assert_int_eq(revtun_handoff(h, "n2", "t1", now, &fd, NULL), REVTUN_OK);
  ck_assert_int_eq(fd, b);
  expect("socket_handoff", "n2", "c1", "t1", "handed_off", "pool_to_upstream", NULL, b, -1);
  ck_assert_int_eq(revtun_note_keepalive_timeout(h, b, now), REVTUN_OK);
  ck_assert_int_eq(revtun_note_keepalive_timeout(h, b, now), REVTUN_OK);
  expect("http2_keepalive_timeout", "n2", "c1", "t1", "in_use", NULL, "http2_ping_timeout", b, -1);
  ck_assert_int_eq(revtun_mark_dead(h, b, REVTUN_CLOSE_LOCAL_CLOSE, now), REVTUN_OK);
  expect("tunnel_closed", "n2", "c1", "t1", "in_use", NULL, "http2_ping_timeout", b, -1);
  close(b);
  close(peer);
  /* C: no tenant; the peer goes away while idle */
  int c = pair(&peer);
  ck_assert_int_eq(tu_register(h, c, "n3", "c2", NULL, 60000, now), REVTUN_OK);
  expect("tunnel_setup", "n3", "c2", "", "idle", NULL, NULL, c, -1);
  close(peer);
  ck_assert_int_eq(revtun_process_io(h, c, REVTUN_IO_READ, now), REVTUN_OK);
  expect("tunnel_closed", "n3", "c2", "", "idle", NULL, "idle_peer_close", c, -1);
  /* D and E: remote and local close after handoff */
  int d = pair(&peer);
  ck_assert_int_eq(tu_register(h, d, "n4", "c2", "t2", 60000, now), REVTUN_OK);
  expect("tunnel_setup", "n4", "c2", "t2", "idle", NULL, NULL, d, -1);
  ck_assert_int_eq(revtun_handoff(h, "n4", "t2", now, &fd, NULL), REVTUN_OK);
  expect("socket_handoff", "n4", "c2", "t2", "handed_off", "pool_to_upstream", NULL, d, -1);
  ck_assert_int_eq(revtun_mark_dead(h, d, REVTUN_CLOSE_REMOTE_CLOSE, now), REVTUN_OK);
  expect("tunnel_closed", "n4", "c2", "t2", "in_use", NULL, "remote_close", d, -1);
  close(d);
  close(peer);
  int e = pair(&peer);
  ck_assert_int_eq(tu_register(h, e, "n5", "c2", "t2", 60000, now), REVTUN_OK);
  expect("tunnel_setup", "n5", "c2", "t2", "idle", NULL, NULL, e, -1);
  ck_assert_int_eq(revtun_handoff(h, "n5", "t2", now, &fd, NULL), REVTUN_OK);
  expect("socket_handoff", "n5", "c2", "t2", "handed_off", "pool_to_upstream", NULL, e, -1);
  ck_assert_int_eq(revtun_mark_dead(h, e, REVTUN_CLOSE_LOCAL_CLOSE, now), REVTUN_OK);
  expect("tunnel_closed", "n5", "c2", "t2", "in_use", NULL, "local_close", e, -1);
  close(e);
  close(peer);
  /* F: still idle when the handle is freed */
  int f = pair(&peer);
  ck_assert_int_eq(tu_register(h, f, "n6", "c3", "t3", 60000, now), REVTUN_OK);
  expect("tunnel_setup", "n6", "c3", "t3", "idle", NULL, NULL, f, -1);
  revtun_free(h);
  expect("tunnel_closed", "n6", "c3", "t3", "idle", NULL, "shutdown", f, -1);
  close(peer);
}

static const char *or_dash(const char *s) { return s && *s ? s : "-"; }

static void text_line(const struct exp *x, char *out, size_t cap) {
  char misses[16] = "-", fs_tenant[32] = "-";
  if (x->misses >= 0)
    snprintf(misses, sizeof(misses), "%d", x->misses);
  if (*x->tenant)
    snprintf(fs_tenant, sizeof(fs_tenant), "\"%s\"", x->tenant);
  snprintf(out, cap,
           "%s node=%s cluster=%s tenant=%s worker=worker_0 state=%s kind=%s reason=%s fd=%d "
           "misses=%s fs=%s/%s/%d term=%s remote=- 100%%\n",
           x->event, x->node, x->cluster, x->tenant, x->state, or_dash(x->handoff),
           or_dash(x->reason), x->fd, misses, x->node, fs_tenant, x->fd, or_dash(x->reason));
}

static void json_line(const struct exp *x, char *out, size_t cap) {
  char misses[16] = "null", reason[48] = "null", tenant[32] = "null";
  if (x->misses >= 0)
    snprintf(misses, sizeof(misses), "%d", x->misses);
  if (x->reason)
    snprintf(reason, sizeof(reason), "\"%s\"", x->reason);
  if (*x->tenant)
    snprintf(tenant, sizeof(tenant), "\"%s\"", x->tenant);
  snprintf(out, cap,
           "{\"event\":\"%s\",\"fd\":%d,\"misses\":%s,\"reason\":%s,\"ids\":{\"node\":\"%s\","
           "\"tenant\":%s},\"line\":\"%s@%s\",\"v\":2}\n",
           x->event, x->fd, misses, reason, x->node, tenant, x->event, x->state);
}

/* The default format after its "[START_TIME] " prefix. */
static void default_tail(const struct exp *x, char *out, size_t cap) {
  char misses[16] = "-";
  if (x->misses >= 0)
    snprintf(misses, sizeof(misses), "%d", x->misses);
  snprintf(out, cap,
           "%s node=%s cluster=%s tenant=%s worker=worker_0 fd=%d state=%s miss_count=%s "
           "close_reason=%s remote=-\n",
           x->event, x->node, x->cluster, or_dash(x->tenant), x->fd, x->state, misses,
           or_dash(x->reason));
}

static char *expected_file(void (*line)(const struct exp *, char *, size_t)) {
  char *all = calloc(1, 64 * 1024);
  for (size_t i = 0; i < n_exp; i++)
    line(&tour_exp[i], all + strlen(all), 1024);
  return all;
}

START_TEST(every_event_through_text_json_and_default_file_loggers) {
  revtun_t *h = new_with("al_tour", NULL);
  /* nothing is written before a flush */
  ck_assert_int_eq(file_size("al.log"), 0);
  tour(h); /* ends with revtun_free, which flushes */
  ck_assert_uint_eq(n_exp, 22);
  char *text = expected_file(text_line), *json = expected_file(json_line);
  assert_file("al.log", text);
  assert_file("al.json", json);
  free(text);
  free(json);
  /* the default format: "[2026-01-02T03:04:05.678Z] <event> node=..." */
  char *got = slurp("al.default");
  regex_t re;
  ck_assert_int_eq(
      regcomp(&re, "^\\[[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z\\] ",
              REG_EXTENDED),
      0);
  char *line = got;
  for (size_t i = 0; i < n_exp; i++) {
    char *nl = strchr(line, '\n');
    ck_assert_ptr_nonnull(nl);
    *nl = '\0';
    ck_assert_msg(regexec(&re, line, 0, NULL, 0) == 0, "bad time prefix: %s", line);
    char tail[512];
    default_tail(&tour_exp[i], tail, sizeof(tail));
    tail[strlen(tail) - 1] = '\0';
    ck_assert_str_eq(line + 27, tail);
    line = nl + 1;
  }
  ck_assert_str_eq(line, "");
  regfree(&re);
  free(got);
}
END_TEST

START_TEST(tcp_addresses_and_omit_empty_json) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(sa);
  ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  ck_assert_int_eq(listen(lfd, 1), 0);
  ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
  int client = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_eq(connect(client, (struct sockaddr *)&sa, sizeof(sa)), 0);
  struct sockaddr_in peer;
  len = sizeof(peer);
  int server = accept(lfd, (struct sockaddr *)&peer, &len);
  ck_assert_int_ge(server, 0);
  revtun_t *h = new_with("al_tour", NULL);
  ck_assert_int_eq(tu_register(h, server, "tcp", "c", NULL, 60000, 0), REVTUN_OK);
  revtun_free(h);
  close(client);
  close(lfd);
  char *got = slurp("al.log");
  char want[128];
  snprintf(want, sizeof(want), " remote=127.0.0.1:%u 100%%\n", ntohs(peer.sin_port));
  ck_assert_ptr_nonnull(strstr(got, want));
  free(got);
  /* omit_empty_values in JSON leaves absent keys out; mixed strings keep "" */
  unlink("al.json");
  h = new_with("al_json_omit", NULL);
  int p, s = pair(&p);
  ck_assert_int_eq(tu_register(h, s, "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_mark_dead(h, s, REVTUN_CLOSE_EXPLICIT_CLOSE, 0), REVTUN_OK);
  revtun_free(h);
  close(p);
  assert_file("al.json", "{\"event\":\"tunnel_setup\",\"r\":\"<>\"}\n"
                         "{\"event\":\"tunnel_closed\",\"reason\":\"explicit_close\","
                         "\"r\":\"<explicit_close>\"}\n");
}
END_TEST

START_TEST(deprecated_format_fields) {
  revtun_t *h = new_with("al_legacy", NULL);
  int p, s = pair(&p), fd;
  ck_assert_int_eq(tu_register(h, s, "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_handoff(h, "n", NULL, 0, &fd, NULL), REVTUN_OK);
  revtun_free(h); /* closes the books on the handed-off socket too (shutdown) */
  close(s);
  close(p);
  char want[256];
  snprintf(want, sizeof(want), "tunnel_setup fd=%d\nsocket_handoff fd=%d\ntunnel_closed fd=%d\n", s,
           s, s);
  assert_file("l.format", want);
  snprintf(want, sizeof(want),
           "{\"fd\":\"%d\",\"kind\":\"-\"}\n{\"fd\":\"%d\",\"kind\":\"pool_to_upstream\"}\n"
           "{\"fd\":\"%d\",\"kind\":\"-\"}\n",
           s, s, s);
  assert_file("l.json", want);
  snprintf(want, sizeof(want),
           "{\"fd\":%d,\"kind\":null}\n{\"fd\":%d,\"kind\":\"pool_to_upstream\"}\n"
           "{\"fd\":%d,\"kind\":null}\n",
           s, s, s);
  assert_file("l.typed", want);
  assert_file("l.textformat", "tf tunnel_setup\ntf socket_handoff\ntf tunnel_closed\n");
  assert_file("l.bytes", "ib tunnel_setup\nib socket_handoff\nib tunnel_closed\n");
  char *def = slurp("l.empty"); /* an empty `format` is the default format */
  ck_assert_ptr_nonnull(strstr(def, "] tunnel_setup node=n cluster=c tenant=- worker=worker_0"));
  free(def);
}
END_TEST

/* --------------------------------------------------- post-handoff (10.4) */

START_TEST(keepalive_timeout_logged_once_and_reused_by_close) {
  /* filter state node/cluster/tenant/fd, one http2_keepalive_timeout
   * (UpstreamEnd) for two notes, and the close reuses the reason */
  revtun_t *h = new_with("al_tour", NULL);
  int p, s = pair(&p), fd;
  ck_assert_int_eq(tu_register(h, s, "node-c", "cluster-c", "tenant-c", 60000, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_handoff(h, "node-c", "tenant-c", 1, &fd, NULL), REVTUN_OK);
  ck_assert_int_eq(revtun_note_keepalive_timeout(h, s, 2), REVTUN_OK);
  ck_assert_int_eq(revtun_note_keepalive_timeout(h, s, 3), REVTUN_OK);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_H2_KEEPALIVE_TIMEOUT), 1);
  ck_assert_int_eq(revtun_mark_dead(h, s, REVTUN_CLOSE_NONE, 4), REVTUN_OK);
  /* once dead, a late note finds nothing and logs nothing */
  ck_assert_int_eq(revtun_note_keepalive_timeout(h, s, 5), REVTUN_E_NOT_FOUND);
  revtun_free(h);
  close(s);
  close(p);
  char want[2048];
  snprintf(want, sizeof(want),
           "tunnel_setup node=node-c cluster=cluster-c tenant=tenant-c worker=worker_0 state=idle "
           "kind=- reason=- fd=%d misses=- fs=node-c/\"tenant-c\"/%d term=- remote=- 100%%\n"
           "socket_handoff node=node-c cluster=cluster-c tenant=tenant-c worker=worker_0 "
           "state=handed_off kind=pool_to_upstream reason=- fd=%d misses=- "
           "fs=node-c/\"tenant-c\"/%d term=- remote=- 100%%\n"
           "http2_keepalive_timeout node=node-c cluster=cluster-c tenant=tenant-c worker=worker_0 "
           "state=in_use kind=- reason=http2_ping_timeout fd=%d misses=- fs=node-c/\"tenant-c\"/%d "
           "term=http2_ping_timeout remote=- 100%%\n"
           "tunnel_closed node=node-c cluster=cluster-c tenant=tenant-c worker=worker_0 "
           "state=in_use kind=- reason=http2_ping_timeout fd=%d misses=- fs=node-c/\"tenant-c\"/%d "
           "term=http2_ping_timeout remote=- 100%%\n",
           s, s, s, s, s, s, s, s);
  assert_file("al.log", want);
}
END_TEST

START_TEST(close_after_handoff_reasons) {
  /* remote_close, local_close; and no reason -> explicit_close */
  static const struct {
    int reason;
    const char *name;
  } cases[] = {{REVTUN_CLOSE_REMOTE_CLOSE, "remote_close"},
               {REVTUN_CLOSE_LOCAL_CLOSE, "local_close"},
               {REVTUN_CLOSE_NONE, "explicit_close"}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    unlink("al.log");
    revtun_t *h = new_with("al_tour", NULL);
    int p, s = pair(&p), fd;
    ck_assert_int_eq(tu_register(h, s, "n", "c", NULL, 60000, 0), REVTUN_OK);
    ck_assert_int_eq(revtun_handoff(h, "n", NULL, 0, &fd, NULL), REVTUN_OK);
    ck_assert_int_eq(revtun_mark_dead(h, s, cases[i].reason, 0), REVTUN_OK);
    revtun_free(h);
    close(s);
    close(p);
    char *got = slurp("al.log");
    char *last = strstr(got, "tunnel_closed");
    ck_assert_ptr_nonnull(last);
    char want[512];
    snprintf(want, sizeof(want),
             "tunnel_closed node=n cluster=c tenant= worker=worker_0 state=in_use kind=- "
             "reason=%s fd=%d misses=- fs=n/-/%d term=%s remote=- 100%%\n",
             cases[i].name, s, s, cases[i].name);
    ck_assert_str_eq(last, want);
    free(got);
  }
}
END_TEST

/* ----------------------------------------------------- stdout and stderr */

/* Runs in a forked child with `target` (1 or 2) redirected to out_fd: one
 * socket (moved to fd 100, so the parent knows the number) set up and
 * closed. No Check calls here: the exit status is the verdict. */
static int child_logs(const char *config, int target, int out_fd) {
  if (dup2(out_fd, target) < 0)
    return 10;
  size_t len;
  uint8_t *cfg = tu_config(config, &len);
  revtun_t *h;
  if (revtun_new(&h, cfg, len, NULL, 0, NULL, 0) != REVTUN_OK)
    return 11;
  free(cfg);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || dup2(sv[0], 100) != 100)
    return 12;
  close(sv[0]);
  revtun_reg_t *reg;
  if (revtun_reg_new(h, &reg) || revtun_reg_set_ids(reg, "n1", "c1", NULL) ||
      revtun_register_socket(h, 100, reg, 0))
    return 13;
  revtun_reg_free(reg);
  if (revtun_mark_dead(h, 100, REVTUN_CLOSE_LOCAL_CLOSE, 1))
    return 14;
  revtun_free(h);
  return 0;
}

static void run_child(const char *config, int target, const char *expected) {
  int out = open("captured", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ck_assert_int_ge(out, 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0)
    _exit(child_logs(config, target, out));
  close(out);
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
  if (expected)
    assert_file("captured", expected);
}

START_TEST(stdout_stderr_and_stdout_json) {
  run_child("al_stdout", STDOUT_FILENO,
            "out tunnel_setup n1 -\nout tunnel_closed n1 local_close\n");
  run_child("al_stderr", STDERR_FILENO, "err tunnel_setup n1\nerr tunnel_closed n1\n");
  run_child("al_stdout_json", STDOUT_FILENO,
            "{\"event\":\"tunnel_setup\",\"node\":\"n1\",\"fd\":100}\n"
            "{\"event\":\"tunnel_closed\",\"node\":\"n1\",\"fd\":100}\n");
  /* no format, and no typed_config at all: the default line */
  run_child("al_stdout_default", STDOUT_FILENO, NULL);
  char *got = slurp("captured");
  ck_assert_ptr_nonnull(strstr(got, "] tunnel_setup node=n1 cluster=c1 tenant=- worker=worker_0 "
                                    "fd=100 state=idle miss_count=- close_reason=- remote=-\n"));
  ck_assert_ptr_nonnull(strstr(got, "] tunnel_closed node=n1 cluster=c1 tenant=- worker=worker_0 "
                                    "fd=100 state=idle miss_count=- close_reason=local_close "
                                    "remote=-\n"));
  free(got);
  run_child("al_by_name", STDOUT_FILENO, NULL);
  got = slurp("captured");
  ck_assert_ptr_nonnull(strstr(got, "] tunnel_closed node=n1 "));
  free(got);
}
END_TEST

/* stdout is a pipe nobody reads yet: logging must not block; once the
 * reader drains it, every line arrives whole, in order, exactly once. */
/* The parent's side of a child that logs to the pipe pfd: after 100 ms
 * (the child fills the pipe meanwhile) it tells the child to go on through
 * go, reads everything the child writes, and checks that it exited 0. */
static char *read_child_output(pid_t pid, int pfd[2], int go[2]) {
  close(pfd[1]);
  close(go[0]);
  usleep(100000);
  ck_assert_int_eq(write(go[1], "g", 1), 1);
  close(go[1]);
  size_t cap = 1 << 20, len = 0;
  char *all = malloc(cap);
  ssize_t r;
  while ((r = read(pfd[0], all + len, cap - len - 1)) > 0)
    len += (size_t)r;
  all[len] = '\0';
  close(pfd[0]);
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
  return all;
}

START_TEST(full_pipe_never_blocks_and_loses_nothing) {
  int pfd[2], go[2];
  ck_assert_int_eq(pipe(pfd), 0);
  ck_assert_int_eq(pipe(go), 0);
  const int n = 600;
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(pfd[0]);
    close(go[1]);
    alarm(20); /* a blocked write would end here, as a signal */
    dup2(pfd[1], STDOUT_FILENO);
    size_t len;
    uint8_t *cfg = tu_config("al_stdout", &len);
    revtun_t *h;
    if (revtun_new(&h, cfg, len, NULL, 0, NULL, 0))
      _exit(11);
    free(cfg);
    revtun_time_ms_t now = 0;
    for (int i = 0; i < n; i++) { /* ~40 KiB each way: more than a pipe holds */
      int sv[2];
      char node[64];
      snprintf(node, sizeof(node), "node-%04d-%s", i, "padding-padding-padding");
      if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        _exit(12);
      revtun_reg_t *reg;
      if (revtun_reg_new(h, &reg) || revtun_reg_set_ids(reg, node, "c", NULL) ||
          revtun_register_socket(h, sv[0], reg, now))
        _exit(13);
      revtun_reg_free(reg);
      revtun_mark_dead(h, sv[0], REVTUN_CLOSE_LOCAL_CLOSE, now);
      close(sv[1]);
    }
    char c = 0;
    if (read(go[0], &c, 1) != 1) /* the parent starts reading now */
      _exit(14);
    int64_t t;
    for (int guard = 0; (t = revtun_next_timeout_ms(h, now)) >= 0 && guard < 10000; guard++) {
      now += (revtun_time_ms_t)t;
      revtun_tick(h, now);
      usleep(1000);
    }
    uint64_t dropped = 1;
    revtun_stats_get(h, "reverse_tunnel_acceptor.access_log.dropped_records", &dropped);
    revtun_free(h);
    _exit(t == -1 && dropped == 0 ? 0 : 15);
  }
  /* the child filled the pipe without blocking (else alarm would kill it) */
  char *all = read_child_output(pid, pfd, go);
  char *line = all;
  for (int i = 0; i < n; i++) {
    char want[128];
    snprintf(want, sizeof(want),
             "out tunnel_setup node-%04d-padding-padding-padding -\n"
             "out tunnel_closed node-%04d-padding-padding-padding local_close\n",
             i, i);
    ck_assert_int_eq(strncmp(line, want, strlen(want)), 0);
    line += strlen(want);
  }
  ck_assert_str_eq(line, "");
  free(all);
}
END_TEST

/* The reader of stdout is gone: EPIPE is counted, the process lives on
 * (no SIGPIPE reaches it), and the bytes are kept for a retry. */
START_TEST(closed_pipe_raises_no_sigpipe) {
  int pfd[2];
  ck_assert_int_eq(pipe(pfd), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(pfd[0]); /* nobody will ever read */
    signal(SIGPIPE, SIG_DFL);
    _exit(child_logs("al_stdout", STDOUT_FILENO, pfd[1]) ? 20 : 0);
  }
  close(pfd[0]);
  close(pfd[1]);
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status), "child killed by signal %d", WTERMSIG(status));
  ck_assert_int_eq(WEXITSTATUS(status), 0);
  /* and in-process: the counter */
  ck_assert_int_eq(pipe(pfd), 0);
  int saved = dup(STDOUT_FILENO);
  fflush(stdout);
  dup2(pfd[1], STDOUT_FILENO);
  close(pfd[0]);
  close(pfd[1]);
  revtun_t *h = new_with("al_stdout", NULL);
  int p, s = pair(&p);
  ck_assert_int_eq(tu_register(h, s, "n", "c", NULL, 60000, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_tick(h, 1000), REVTUN_OK);
  uint64_t errors = tu_stat(h, "reverse_tunnel_acceptor.access_log.write_errors");
  ck_assert_int_eq(revtun_next_timeout_ms(h, 1000), 1000); /* retried later, not in a loop */
  revtun_free(h);
  close(p);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  ck_assert_uint_eq(errors, 1);
}
END_TEST

/* ------------------------------------------------------------- flushing */

static int host_create(const char *type_url, const uint8_t *cfg, size_t len, void *user,
                       void **instance, char *err, size_t errlen) {
  (void)type_url, (void)cfg, (void)len, (void)err, (void)errlen;
  *instance = user;
  return REVTUN_OK;
}
static void host_event(void *instance, const revtun_event_t *ev) {
  (void)instance, (void)ev;
  host_events++;
}

static revtun_options_t *opts_with_host_logger(const char *name) {
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, &rec);
  ck_assert_int_eq(revtun_access_logger_register(o, name, host_create, host_event, NULL, NULL),
                   REVTUN_OK);
  return o;
}

START_TEST(flush_deadline_arms_the_host_timer) {
  revtun_options_t *o = opts_with_host_logger("test.host.logger");
  revtun_t *h = new_with("al_host_and_builtin", o);
  int p, s = pair(&p);
  ck_assert_int_eq(tu_register(h, s, "n", "c", NULL, 60000, 0), REVTUN_OK);
  ck_assert_int_eq(host_events, 1);     /* the host factory saw it too */
  ck_assert_int_eq(rec.timer_ms, 1000); /* the flush, before the first ping */
  ck_assert_int_eq(revtun_next_timeout_ms(h, 0), 1000);
  ck_assert_int_eq(revtun_tick(h, 999), REVTUN_OK);
  ck_assert_int_eq(file_size("al.log"), 0);
  ck_assert_int_eq(revtun_tick(h, 1000), REVTUN_OK);
  assert_file("al.log", "tunnel_setup\n");
  int64_t next = revtun_next_timeout_ms(h, 1000); /* back to the ping deadline */
  ck_assert_int_ge(next, 59000);
  ck_assert_int_eq(rec.timer_ms, next);
  revtun_free(h);
  revtun_options_free(o);
  close(p);
  assert_file("al.log", "tunnel_setup\ntunnel_closed\n");
}
END_TEST

START_TEST(flush_at_64k_without_waiting) {
  revtun_options_t *o = opts_with_host_logger("test.host.logger");
  ck_assert_int_eq(revtun_options_set_limit(o, REVTUN_LIMIT_LOG_FLUSH_MS, 1000000), REVTUN_OK);
  revtun_t *h = new_with("al_host_and_builtin", o);
  int i;
  for (i = 0; file_size("al.log") == 0; i++) {
    ck_assert_int_lt(i, 10000);
    int p, s = pair(&p);
    ck_assert_int_eq(tu_register(h, s, "n", "c", NULL, 60000, 0), REVTUN_OK);
    ck_assert_int_eq(revtun_mark_dead(h, s, REVTUN_CLOSE_LOCAL_CLOSE, 0), REVTUN_OK);
    close(p);
  }
  /* 13 + 14 bytes a pair: flushed by the call that took it past 64 KiB,
   * whether that was the register (13) or the mark_dead (14) */
  off_t size = file_size("al.log");
  ck_assert_int_ge(size, 65536);
  ck_assert_int_lt(size, 65536 + 14);
  ck_assert(size % 27 == 0 || size % 27 == 13);
  revtun_free(h);
  revtun_options_free(o);
}
END_TEST

START_TEST(buffer_limit_drops_whole_records_and_counts_them) {
  revtun_options_t *o = opts_with_host_logger("test.host.logger");
  ck_assert_int_eq(revtun_options_set_limit(o, REVTUN_LIMIT_LOG_BUFFER_BYTES, 100), REVTUN_OK);
  revtun_t *h = new_with("al_host_and_builtin", o);
  for (int i = 0; i < 10; i++) { /* 20 records of 13 and 14 bytes; 7 fit in 100 */
    int p, s = pair(&p);
    ck_assert_int_eq(tu_register(h, s, "n", "c", NULL, 60000, 0), REVTUN_OK);
    ck_assert_int_eq(revtun_mark_dead(h, s, REVTUN_CLOSE_LOCAL_CLOSE, 0), REVTUN_OK);
    close(p);
  }
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.access_log.dropped_records"), 13);
  ck_assert_int_eq(host_events, 20); /* a host logger is not limited */
  ck_assert_int_eq(revtun_tick(h, 1000), REVTUN_OK);
  assert_file("al.log", "tunnel_setup\ntunnel_closed\ntunnel_setup\ntunnel_closed\n"
                        "tunnel_setup\ntunnel_closed\ntunnel_setup\n");
  /* written out, the buffer takes records again */
  int p, s = pair(&p);
  ck_assert_int_eq(tu_register(h, s, "n", "c", NULL, 60000, 1000), REVTUN_OK);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.access_log.dropped_records"), 13);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.access_log.write_errors"), 0);
  revtun_free(h);
  revtun_options_free(o);
  close(p);
}
END_TEST

static char logged[8][256];
static void log_cb(revtun_t *h, int level, const char *msg, void *user) {
  (void)h, (void)user, (void)level;
  if (n_logged < 8)
    snprintf(logged[n_logged++], sizeof(logged[0]), "%s", msg);
}

START_TEST(write_errors_are_counted_and_bytes_kept) {
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, &rec);
  ck_assert_int_eq(revtun_options_set_log_cb(o, log_cb, REVTUN_LOG_INFO), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_limit(o, REVTUN_LIMIT_LOG_BUFFER_BYTES, 39), REVTUN_OK);
  revtun_t *h = new_with("al_devfull", o); /* every write: ENOSPC */
  int p, s = pair(&p);
  ck_assert_int_eq(tu_register(h, s, "n", "c", NULL, 60000, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_tick(h, 1000), REVTUN_OK);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.access_log.write_errors"), 1);
  ck_assert_int_eq(n_logged, 1);
  ck_assert_str_eq(logged[0], "access_log[0]: writing to /dev/full failed: No space left on "
                              "device (13 bytes kept for retry)");
  ck_assert_int_eq(revtun_next_timeout_ms(h, 1000), 1000);
  ck_assert_int_eq(revtun_tick(h, 2000), REVTUN_OK);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.access_log.write_errors"), 2);
  ck_assert_int_eq(n_logged, 1); /* the same errno is not logged again */
  /* kept bytes count against the limit: 13 + 14 fit in 39, the next 13 do not */
  ck_assert_int_eq(revtun_mark_dead(h, s, REVTUN_CLOSE_LOCAL_CLOSE, 2000), REVTUN_OK);
  int s2 = pair(&p);
  ck_assert_int_eq(tu_register(h, s2, "n", "c", NULL, 60000, 2000), REVTUN_OK);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.access_log.dropped_records"), 1);
  revtun_free(h);
  revtun_options_free(o);
  close(p);
}
END_TEST

/* ------------------------------------------------------------- rotation */

START_TEST(reopen_while_writing_keeps_every_line_whole_and_once) {
  revtun_t *h = new_with("al_tour", NULL);
  revtun_time_ms_t now = 0;
  char *want_old = calloc(1, 1 << 17), *want_new = calloc(1, 1 << 17);
  for (int i = 0; i < 200; i++) {
    if (i == 100) { /* logrotate: rename, then tell the library */
      ck_assert_int_eq(rename("al.log", "al.log.1"), 0);
      ck_assert_int_eq(revtun_reopen_logs(h), REVTUN_OK);
    }
    if (i == 50 || i == 150) /* a flush in the middle of each half */
      ck_assert_int_eq(revtun_tick(h, now += 1000), REVTUN_OK);
    int p, s = pair(&p);
    char node[16];
    snprintf(node, sizeof(node), "r%03d", i);
    ck_assert_int_eq(tu_register(h, s, node, "c", NULL, 60000, now), REVTUN_OK);
    ck_assert_int_eq(revtun_mark_dead(h, s, REVTUN_CLOSE_LOCAL_CLOSE, now), REVTUN_OK);
    close(p);
    struct exp x1 = {"tunnel_setup", node, "c", "", "idle", NULL, NULL, s, -1};
    struct exp x2 = {"tunnel_closed", node, "c", "", "idle", NULL, "local_close", s, -1};
    char *w = i < 100 ? want_old : want_new;
    text_line(&x1, w + strlen(w), 512);
    text_line(&x2, w + strlen(w), 512);
  }
  revtun_free(h);
  assert_file("al.log.1", want_old);
  assert_file("al.log", want_new);
  free(want_old);
  free(want_new);
}
END_TEST

START_TEST(reopen_failure_keeps_the_old_file) {
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, &rec);
  ck_assert_int_eq(revtun_options_set_log_cb(o, log_cb, REVTUN_LOG_INFO), REVTUN_OK);
  revtun_t *h = new_with("al_tour", o);
  int p, s = pair(&p);
  ck_assert_int_eq(tu_register(h, s, "n", "c", NULL, 60000, 0), REVTUN_OK);
  ck_assert_int_eq(chdir("/proc"), 0); /* "al.log" cannot be created there */
  n_logged = 0;
  ck_assert_int_eq(revtun_reopen_logs(h), REVTUN_E_IO);
  ck_assert_int_ge(n_logged, 1);
  ck_assert_ptr_nonnull(strstr(logged[0], "access_log[0]: reopening al.log failed: "));
  ck_assert_int_eq(chdir(tmpdir), 0);
  ck_assert_int_eq(revtun_mark_dead(h, s, REVTUN_CLOSE_LOCAL_CLOSE, 0), REVTUN_OK);
  revtun_free(h);
  revtun_options_free(o);
  close(p);
  char *got = slurp("al.log");
  ck_assert_ptr_nonnull(strstr(got, "tunnel_setup node=n"));
  ck_assert_ptr_nonnull(strstr(got, "tunnel_closed node=n"));
  free(got);
  /* from inside a callback it is refused */
  ck_assert_int_eq(revtun_reopen_logs(NULL), REVTUN_E_INVAL);
}
END_TEST

/* ------------------------------------------- handles sharing a directory */

/* Descriptors of this process open on name in the test directory. */
static int fds_on(const char *name) {
  char want[512], link[320], got[512];
  snprintf(want, sizeof(want), "%s/%s", tmpdir, name);
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  ck_assert_ptr_nonnull(d);
  struct dirent *e;
  while ((e = readdir(d))) {
    snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
    ssize_t len = readlink(link, got, sizeof(got) - 1);
    if (len > 0) {
      got[len] = '\0';
      n += strcmp(got, want) == 0;
    }
  }
  closedir(d);
  return n;
}

static void one_tunnel(revtun_t *h, const char *node, revtun_time_ms_t now) {
  int p, s = pair(&p);
  ck_assert_int_eq(tu_register(h, s, node, "c", NULL, 60000, now), REVTUN_OK);
  ck_assert_int_eq(revtun_mark_dead(h, s, REVTUN_CLOSE_LOCAL_CLOSE, now), REVTUN_OK);
  close(p);
}

static revtun_options_t *dir_options(revtun_directory_t **dir) {
  revtun_options_t *o;
  ck_assert_int_eq(revtun_directory_new(dir), REVTUN_OK);
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, &rec);
  ck_assert_int_eq(revtun_options_set_directory(o, *dir), REVTUN_OK);
  return o;
}

START_TEST(handles_of_one_directory_open_and_reopen_a_file_once) {
  revtun_directory_t *dir;
  revtun_options_t *o = dir_options(&dir);
  revtun_t *h1 = new_with("al_tour", o), *h2 = new_with("al_tour", o);
  revtun_options_free(o);
  revtun_directory_free(dir);            /* the handles (and their logs) keep it */
  ck_assert_int_eq(fds_on("al.log"), 1); /* not one per handle */
  one_tunnel(h1, "before1", 0);
  one_tunnel(h2, "before2", 0);
  ck_assert_int_eq(revtun_tick(h1, 1000), REVTUN_OK);
  ck_assert_int_eq(revtun_tick(h2, 1000), REVTUN_OK);
  /* logrotate: rename, then every handle is told; the first one reopens
   * the shared file, the second finds it already current */
  ck_assert_int_eq(rename("al.log", "al.log.1"), 0);
  ck_assert_int_eq(revtun_reopen_logs(h1), REVTUN_OK);
  ck_assert_int_eq(fds_on("al.log"), 1);
  ck_assert_int_eq(fds_on("al.log.1"), 0);
  ck_assert_int_eq(revtun_reopen_logs(h2), REVTUN_OK);
  ck_assert_int_eq(fds_on("al.log"), 1);
  one_tunnel(h2, "after2", 1000);
  one_tunnel(h1, "after1", 1000);
  revtun_free(h1);
  ck_assert_int_eq(fds_on("al.log"), 1); /* h2 still writes there */
  revtun_free(h2);
  ck_assert_int_eq(fds_on("al.log"), 0);
  char *old = slurp("al.log.1"), *cur = slurp("al.log");
  ck_assert_ptr_nonnull(strstr(old, "tunnel_setup node=before1 "));
  ck_assert_ptr_nonnull(strstr(old, "tunnel_closed node=before2 "));
  ck_assert_ptr_null(strstr(old, "after"));
  ck_assert_ptr_nonnull(strstr(cur, "tunnel_setup node=after1 "));
  ck_assert_ptr_nonnull(strstr(cur, "tunnel_closed node=after2 "));
  ck_assert_ptr_null(strstr(cur, "before"));
  free(old);
  free(cur);
}
END_TEST

#define STRESS_THREADS 4
#define STRESS_TUNNELS 400

struct stress_arg {
  revtun_t *h;
  int index;
  const char *failed; /* the call that failed, or NULL */
};

/* One worker: its own handle, tunnels opened and closed, a flush every few
 * records (the flush deadline is 1 ms of injected time). */
static void *stress_worker(void *arg) {
  struct stress_arg *a = arg;
  revtun_time_ms_t now = 0;
  revtun_reg_t *reg;
  if (revtun_reg_new(a->h, &reg) != REVTUN_OK) {
    a->failed = "revtun_reg_new";
    return NULL;
  }
  for (int i = 0; i < STRESS_TUNNELS && !a->failed; i++) {
    char node[32];
    snprintf(node, sizeof(node), "w%d-%04d", a->index, i);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
      a->failed = "socketpair";
      break;
    }
    revtun_reg_set_ids(reg, node, "c", NULL);
    if (revtun_register_socket(a->h, sv[0], reg, now) != REVTUN_OK)
      a->failed = "revtun_register_socket";
    else if (revtun_mark_dead(a->h, sv[0], REVTUN_CLOSE_LOCAL_CLOSE, now) != REVTUN_OK)
      a->failed = "revtun_mark_dead";
    else if (i % 7 == 0 && revtun_tick(a->h, now += 1) != REVTUN_OK)
      a->failed = "revtun_tick";
    close(sv[1]);
  }
  revtun_reg_free(reg);
  return NULL;
}

START_TEST(threads_sharing_a_file_never_interleave_records) {
  /* no recording callbacks: they would share one record between threads */
  revtun_directory_t *dir;
  revtun_options_t *o;
  ck_assert_int_eq(revtun_directory_new(&dir), REVTUN_OK);
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_directory(o, dir), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_limit(o, REVTUN_LIMIT_LOG_FLUSH_MS, 1), REVTUN_OK);
  struct stress_arg a[STRESS_THREADS];
  pthread_t tid[STRESS_THREADS];
  for (int i = 0; i < STRESS_THREADS; i++)
    a[i] = (struct stress_arg){new_with("al_tour", o), i, NULL};
  revtun_options_free(o);
  for (int i = 0; i < STRESS_THREADS; i++)
    ck_assert_int_eq(pthread_create(&tid[i], NULL, stress_worker, &a[i]), 0);
  for (int i = 0; i < STRESS_THREADS; i++) {
    ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
    ck_assert_msg(!a[i].failed, "worker %d: %s failed", i, a[i].failed);
    revtun_free(a[i].h);
  }
  revtun_directory_free(dir);
  /* every line whole: it starts with its event and ends with the format's
   * tail; each worker's records are all there, once */
  char *got = slurp("al.log");
  int lines = 0, per[STRESS_THREADS] = {0};
  for (char *line = got, *nl; *line; line = nl + 1) {
    ck_assert_ptr_nonnull(nl = strchr(line, '\n'));
    *nl = '\0';
    ck_assert_msg(strncmp(line, "tunnel_setup node=w", 19) == 0 ||
                      strncmp(line, "tunnel_closed node=w", 20) == 0,
                  "torn line: %.80s", line);
    ck_assert_msg(nl - line >= 5 && strcmp(nl - 5, " 100%") == 0, "torn line end: %.80s", line);
    int w = line[strcspn(line, "w") + 1] - '0';
    ck_assert(w >= 0 && w < STRESS_THREADS);
    per[w]++;
    lines++;
  }
  ck_assert_int_eq(lines, 2 * STRESS_THREADS * STRESS_TUNNELS);
  for (int i = 0; i < STRESS_THREADS; i++)
    ck_assert_int_eq(per[i], 2 * STRESS_TUNNELS);
  free(got);
}
END_TEST

/* Logs n tunnels named "<prefix>-<i>-padding..." on h. */
static int log_tunnels(revtun_t *h, const char *prefix, int n, revtun_time_ms_t now) {
  for (int i = 0; i < n; i++) {
    int sv[2];
    char node[64];
    snprintf(node, sizeof(node), "%s-%04d-padding-padding-padding", prefix, i);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
      return -1;
    revtun_reg_t *reg;
    if (revtun_reg_new(h, &reg) || revtun_reg_set_ids(reg, node, "c", NULL) ||
        revtun_register_socket(h, sv[0], reg, now))
      return -1;
    revtun_reg_free(reg);
    revtun_mark_dead(h, sv[0], REVTUN_CLOSE_LOCAL_CLOSE, now);
    close(sv[1]);
  }
  return 0;
}

/* Two handles of one directory on one stdout pipe that fills up: the first
 * handle's flush stops inside a record; the second must not write its
 * records into the gap, and nothing is lost. */
START_TEST(shared_stdout_pipe_never_splits_a_record) {
  int pfd[2], go[2];
  ck_assert_int_eq(pipe(pfd), 0);
  ck_assert_int_eq(pipe(go), 0);
  const int n1 = 1200, n2 = 50; /* n1: ~80 KiB, more than a pipe holds */
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(pfd[0]);
    close(go[1]);
    alarm(20);
    dup2(pfd[1], STDOUT_FILENO);
    revtun_directory_t *dir;
    revtun_options_t *o;
    if (revtun_directory_new(&dir) || revtun_options_new(&o) ||
        revtun_options_set_directory(o, dir))
      _exit(10);
    size_t len;
    uint8_t *cfg = tu_config("al_stdout", &len);
    revtun_t *h1, *h2;
    if (revtun_new(&h1, cfg, len, o, 0, NULL, 0) || revtun_new(&h2, cfg, len, o, 0, NULL, 0))
      _exit(11);
    free(cfg);
    revtun_options_free(o);
    revtun_directory_free(dir);
    revtun_time_ms_t now = 0;
    if (log_tunnels(h1, "one", n1, now))
      _exit(12);
    revtun_tick(h1, now += 1000); /* fills the pipe; the rest stays pending */
    if (log_tunnels(h2, "two", n2, now))
      _exit(13);
    char c = 0;
    if (read(go[0], &c, 1) != 1)
      _exit(14);
    int64_t t1 = 0, t2 = 0;
    for (int guard = 0; guard < 10000; guard++) {
      now += 100;
      revtun_tick(h2, now); /* h2 first: it would write into h1's gap */
      revtun_tick(h1, now);
      t1 = revtun_next_timeout_ms(h1, now);
      t2 = revtun_next_timeout_ms(h2, now);
      if (t1 < 0 && t2 < 0)
        break;
      usleep(500);
    }
    revtun_free(h1);
    revtun_free(h2);
    _exit(t1 == -1 && t2 == -1 ? 0 : 15);
  }
  char *all = read_child_output(pid, pfd, go);
  /* every line whole, each handle's in order, all of them there */
  int next[2] = {0, 0};
  for (char *line = all, *nl; *line; line = nl + 1) {
    ck_assert_ptr_nonnull(nl = strchr(line, '\n'));
    *nl = '\0';
    int who = strstr(line, " one-") ? 0 : 1, i = next[who] / 2;
    char want[128];
    snprintf(want, sizeof(want), "out %s %s-%04d-padding-padding-padding %s",
             next[who] % 2 ? "tunnel_closed" : "tunnel_setup", who ? "two" : "one", i,
             next[who] % 2 ? "local_close" : "-");
    ck_assert_str_eq(line, want);
    next[who]++;
  }
  ck_assert_int_eq(next[0], 2 * n1);
  ck_assert_int_eq(next[1], 2 * n2);
  free(all);
}
END_TEST

/* ---------------------------------------------------------------- config */

START_TEST(config_errors_name_the_entry_and_field) {
  static const struct {
    const char *config, *msg;
  } cases[] = {
      {"al_err_unknown_op", "access_log[0] ('envoy.access_loggers.file').log_format."
                            "text_format_source: unsupported command operator %FOO% at offset 6"},
      {"al_err_req", "access_log[0] ('envoy.access_loggers.file').log_format.text_format_source: "
                     "unsupported command operator %REQ(x-node)% at offset 5 (not available in "
                     "this context)"},
      {"al_err_syntax", "access_log[0] ('envoy.access_loggers.file').log_format."
                        "text_format_source: invalid command operator at offset 3: expected "
                        "%NAME%, %NAME(arg)% or %NAME(arg):LENGTH% (write %% for a literal %)"},
      {"al_err_filename", "access_log[0] ('envoy.access_loggers.file').log_format."
                          "text_format_source.filename is not supported; put the format in "
                          "inline_string"},
      {"al_err_envvar", "access_log[0] ('envoy.access_loggers.file').log_format."
                        "text_format_source.environment_variable is not supported; put the "
                        "format in inline_string"},
      {"al_err_no_path", "access_log[0] ('envoy.access_loggers.file').path must not be empty"},
      {"al_err_formatters", "access_log[0] ('envoy.access_loggers.file').log_format.formatters "
                            "is not supported (no formatter extensions are built in)"},
      {"al_err_no_format", "access_log[0] ('envoy.access_loggers.file').log_format must set one "
                           "of text_format, text_format_source or json_format"},
      {"al_err_json", "access_log[0] ('json-logger').log_format.json_format.a.b: unsupported "
                      "command operator %NOPE% at offset 0"},
      {"al_err_time", "access_log[0] ('envoy.access_loggers.stdout').log_format.text_format: "
                      "command operator %START_TIME(%n)% at offset 0: unsupported time "
                      "conversion '%n' at offset 0"},
      {"al_err_content_type", "access_log[0] ('envoy.access_loggers.file').log_format."
                              "content_type contains control character 0x0d"},
      {"al_err_unknown_type",
       "access_log[0]: logger 'my.logger' (typed_config type.googleapis.com/my.Logger) is not "
       "known; built in are envoy.extensions.access_loggers.file.v3.FileAccessLog, "
       "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog and StderrAccessLog; hosts "
       "add theirs with revtun_access_logger_register"},
      {"al_err_garbage", "access_log[0] ('envoy.access_loggers.file'): malformed protobuf "
                         "(truncated, bad framing or nested deeper than 32)"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    size_t len;
    uint8_t *cfg = tu_config(cases[i].config, &len);
    char err[512] = "";
    ck_assert_int_eq(revtun_config_validate(cfg, len, NULL, err, sizeof(err)), REVTUN_E_CONFIG);
    ck_assert_str_eq(err, cases[i].msg);
    revtun_t *h = (revtun_t *)&h;
    err[0] = '\0';
    ck_assert_int_eq(revtun_new(&h, cfg, len, NULL, 0, err, sizeof(err)), REVTUN_E_CONFIG);
    ck_assert_str_eq(err, cases[i].msg);
    ck_assert_ptr_null(h);
    free(cfg);
  }
  /* a file that cannot be opened: valid config, but revtun_new fails */
  size_t len;
  uint8_t *cfg = tu_config("al_err_unopenable", &len);
  char err[256];
  ck_assert_int_eq(revtun_config_validate(cfg, len, NULL, err, sizeof(err)), REVTUN_OK);
  revtun_t *h;
  int fds = tu_open_fds();
  ck_assert_int_eq(revtun_new(&h, cfg, len, NULL, 0, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_str_eq(err, "access_log[0] ('envoy.access_loggers.file'): cannot open "
                        "'no/such/dir/al.log': No such file or directory");
  ck_assert_int_eq(tu_open_fds(), fds);
  free(cfg);
}
END_TEST

START_TEST(host_factory_name_wins_over_builtin) {
  /* a host factory registered under a built-in's name is used instead */
  revtun_options_t *o = opts_with_host_logger("envoy.access_loggers.file");
  size_t len;
  uint8_t *cfg = tu_config("al_host_and_builtin", &len);
  char err[512];
  /* "test.host.logger" is not registered here: validation names it */
  ck_assert_int_eq(revtun_config_validate(cfg, len, o, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "access_log[0]: logger 'test.host.logger' (typed_config "
                                    "(none)) is not known"));
  ck_assert_int_eq(
      revtun_access_logger_register(o, "test.host.logger", host_create, host_event, NULL, NULL),
      REVTUN_OK);
  ck_assert_int_eq(revtun_config_validate(cfg, len, o, err, sizeof(err)), REVTUN_OK);
  free(cfg);
  revtun_t *h = new_with("al_host_and_builtin", o);
  int p, s = pair(&p);
  ck_assert_int_eq(tu_register(h, s, "n", "c", NULL, 60000, 0), REVTUN_OK);
  revtun_free(h);
  revtun_options_free(o);
  close(p);
  ck_assert_int_eq(host_events, 4);          /* two loggers, two records */
  ck_assert_int_eq(file_size("al.log"), -1); /* the built-in was never created */
}
END_TEST

int main(void) {
  Suite *s = suite_create("accesslog");
  TCase *t = tcase_create("loggers");
  tcase_add_checked_fixture(t, enter_tmpdir, leave_tmpdir);
  tcase_set_timeout(t, 60);
  tcase_add_test(t, every_event_through_text_json_and_default_file_loggers);
  tcase_add_test(t, tcp_addresses_and_omit_empty_json);
  tcase_add_test(t, deprecated_format_fields);
  tcase_add_test(t, keepalive_timeout_logged_once_and_reused_by_close);
  tcase_add_test(t, close_after_handoff_reasons);
  tcase_add_test(t, stdout_stderr_and_stdout_json);
  tcase_add_test(t, full_pipe_never_blocks_and_loses_nothing);
  tcase_add_test(t, closed_pipe_raises_no_sigpipe);
  tcase_add_test(t, flush_deadline_arms_the_host_timer);
  tcase_add_test(t, flush_at_64k_without_waiting);
  tcase_add_test(t, buffer_limit_drops_whole_records_and_counts_them);
  tcase_add_test(t, write_errors_are_counted_and_bytes_kept);
  tcase_add_test(t, reopen_while_writing_keeps_every_line_whole_and_once);
  tcase_add_test(t, reopen_failure_keeps_the_old_file);
  tcase_add_test(t, handles_of_one_directory_open_and_reopen_a_file_once);
  tcase_add_test(t, threads_sharing_a_file_never_interleave_records);
  tcase_add_test(t, shared_stdout_pipe_never_splits_a_record);
  tcase_add_test(t, config_errors_name_the_entry_and_field);
  tcase_add_test(t, host_factory_name_wins_over_builtin);
  suite_add_tcase(s, t);
  return tu_run(s);
}
