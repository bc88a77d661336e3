/* The format engine on its own (lib/format.h): every operator against a
 * hand-built lifecycle record or acceptor context, exact output; typed and
 * untyped JSON with escaping; the parse errors with their exact sentences;
 * shortening of oversized records. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/format.h"
#include "google/protobuf/struct.pb-c.h"
#include "base/mem.h"
#include "base/sockaddr.h"
#include "core/event.h"
#include "testutil.h"

static struct rt_mem mem;
static char out[RT_FMT_MAX_RECORD + 1];
static const struct timespec wall = {1767323045, 678901234}; /* 2026-01-02T03:04:05.678901234Z */

/* ------------------------------------------------------------- fixtures */

static struct rt_addr remote4, local4, remote6, unix_addr;
static const struct rt_meta_kv extra[] = {{"validation", "passed"}};

static void set_v4(struct rt_addr *a, const char *ip, unsigned port) {
  memset(a, 0, sizeof(*a));
  a->u.in4.sin_family = AF_INET;
  a->u.in4.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, ip, &a->u.in4.sin_addr);
  a->len = sizeof(a->u.in4);
}

static void set_v6(struct rt_addr *a, const char *ip, unsigned port) {
  memset(a, 0, sizeof(*a));
  a->u.in6.sin6_family = AF_INET6;
  a->u.in6.sin6_port = htons((uint16_t)port);
  inet_pton(AF_INET6, ip, &a->u.in6.sin6_addr);
  a->len = sizeof(a->u.in6);
}

/* A tunnel_closed record with every field set. */
static void make_event(struct revtun_event *ev) {
  memset(ev, 0, sizeof(*ev));
  ev->kind = REVTUN_EV_TUNNEL_CLOSED;
  ev->node_id = "node-c";
  ev->cluster_id = "cluster-c";
  ev->tenant_id = "tenant-c";
  ev->node_key = "tenant-c:node-c";
  ev->cluster_key = "tenant-c:cluster-c";
  ev->worker = "worker_3";
  ev->init_worker = "iw-1";
  ev->init_conn = "42";
  ev->fd = 321;
  ev->socket_state = REVTUN_SOCK_IN_USE;
  ev->close_reason = REVTUN_CLOSE_HTTP2_PING_TIMEOUT;
  set_v4(&remote4, "10.1.2.3", 4242);
  set_v4(&local4, "192.168.0.1", 8080);
  ev->remote = &remote4;
  ev->local = &local4;
}

static void setup(void) {
  rt_mem_default(&mem);
  set_v6(&remote6, "2001:db8::1", 443);
  memset(&unix_addr, 0, sizeof(unix_addr));
  unix_addr.u.sa.sa_family = AF_UNIX;
  unix_addr.len = sizeof(sa_family_t) + 2;
}

static struct rt_fmt *compile_ok(const char *src, unsigned ops, unsigned flags) {
  struct rt_fmt *f = NULL;
  char err[256] = "";
  int rc = rt_fmt_compile(&mem, src, strlen(src), ops, flags, &f, err, sizeof(err));
  ck_assert_msg(rc == REVTUN_OK, "compile '%s': %s", src, err);
  return f;
}

/* Renders src against ctx and returns the NUL-terminated result. */
static const char *render(const char *src, unsigned ops, unsigned flags,
                          const struct rt_fmt_ctx *ctx, unsigned *res) {
  struct rt_fmt *f = compile_ok(src, ops, flags);
  size_t n = rt_fmt_render(f, ctx, out, RT_FMT_MAX_RECORD, res);
  out[n] = '\0';
  rt_fmt_free(&mem, f);
  return out;
}

static const char *life(const char *src, const struct revtun_event *ev) {
  struct rt_fmt_ctx ctx = {.ev = ev, .wall = &wall};
  return render(src, RT_FMT_OPS_LIFECYCLE, 0, &ctx, NULL);
}

static const char *compile_err(const char *src, unsigned ops) {
  static char err[512];
  struct rt_fmt *f = NULL;
  int rc = rt_fmt_compile(&mem, src, strlen(src), ops, 0, &f, err, sizeof(err));
  ck_assert_msg(rc == REVTUN_E_CONFIG, "'%s' compiled", src);
  ck_assert_ptr_null(f);
  return err;
}

/* ------------------------------------------------------------------ text */

START_TEST(literals_and_percent) {
  struct revtun_event ev;
  make_event(&ev);
  ck_assert_str_eq(life("", &ev), "");
  ck_assert_str_eq(life("plain text\n", &ev), "plain text\n");
  ck_assert_str_eq(life("100%% sure %%%%", &ev), "100% sure %%");
  ck_assert_str_eq(life("%%DYNAMIC_METADATA(x)%%", &ev), "%DYNAMIC_METADATA(x)%");
}
END_TEST

START_TEST(dynamic_metadata_every_key) {
  struct revtun_event ev;
  make_event(&ev);
  ev.kind = REVTUN_EV_PING_MISS;
  ev.close_reason = 0;
  ev.socket_state = REVTUN_SOCK_IDLE;
  ev.miss_count = 2;
  ev.extra = extra;
  ev.n_extra = 1;
#define M(k) "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:" k ")%"
  /* every key of the namespace, then an extra pair */
  static const char every_key[] =
      "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:event)%|"
      "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:node_id)%|"
      "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:cluster_id)%|"
      "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:tenant_id)%|"
      "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:worker)%|"
      "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:socket_state)%|"
      "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:fd)%|"
      "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:miss_count)%|"
      "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:initiator_worker_id)%|"
      "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:initiator_connection_id)%|"
      "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:validation)%";
  ck_assert_str_eq(life(every_key, &ev),
                   "idle_ping_miss|node-c|cluster-c|tenant-c|worker_3|idle|321|2|iw-1|42|passed");
  /* keys set only when they apply: absent renders "-" */
  ck_assert_str_eq(life(M("handoff_kind") "|" M("close_reason") "|" M("nope"), &ev), "-|-|-");
  ev.kind = REVTUN_EV_SOCKET_HANDOFF;
  ev.handoff_kind = "pool_to_upstream";
  ev.socket_state = REVTUN_SOCK_HANDED_OFF;
  ck_assert_str_eq(life(M("handoff_kind") "|" M("socket_state") "|" M("miss_count"), &ev),
                   "pool_to_upstream|handed_off|-");
  ev.kind = REVTUN_EV_TUNNEL_CLOSED;
  ev.close_reason = REVTUN_CLOSE_REMOTE_CLOSE;
  ck_assert_str_eq(life(M("close_reason"), &ev), "remote_close");
  /* present but empty is "", not "-" (Envoy always sets tenant_id) */
  ev.tenant_id = "";
  ev.fd = -1;
  ck_assert_str_eq(life("[" M("tenant_id") "][" M("fd") "]", &ev), "[][-]");
  /* :Z truncates */
  ck_assert_str_eq(life("%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:cluster_id):4%", &ev),
                   "clus");
  ck_assert_str_eq(life("%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:cluster_id):0%|", &ev),
                   "|");
#undef M
}
END_TEST

START_TEST(dynamic_metadata_other_namespaces_and_paths) {
  struct revtun_event ev;
  make_event(&ev);
  ck_assert_str_eq(life("%DYNAMIC_METADATA(envoy.filters.network.reverse_tunnel:event)%", &ev),
                   "-");
  ck_assert_str_eq(life("%DYNAMIC_METADATA(other)%", &ev), "-");
  ck_assert_str_eq(life("%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:event:deeper)%", &ev),
                   "-");
  ck_assert_str_eq(life("%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle)%", &ev),
                   "{\"event\":\"tunnel_closed\",\"node_id\":\"node-c\",\"cluster_id\":"
                   "\"cluster-c\",\"tenant_id\":\"tenant-c\",\"worker\":\"worker_3\","
                   "\"socket_state\":\"in_use\",\"close_reason\":\"http2_ping_timeout\",\"fd\":321,"
                   "\"initiator_worker_id\":\"iw-1\",\"initiator_connection_id\":\"42\"}");
  /* no record (acceptor context): absent */
  struct rt_fmt_ctx ctx = {0};
  ck_assert_str_eq(render("%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:event)%",
                          RT_FMT_OPS_LIFECYCLE, 0, &ctx, NULL),
                   "-");
}
END_TEST

/* format_ops.c reads the lifecycle keys from the record directly; it must
 * agree with the public metadata view (lib/core/event.c) on every key, present or
 * absent, for every kind of record -- extra pairs included. */
START_TEST(direct_metadata_matches_the_event_view) {
  static const char *const keys[] = {
      "event",      "node_id",      "cluster_id",          "tenant_id",
      "worker",     "socket_state", "handoff_kind",        "close_reason",
      "fd",         "miss_count",   "initiator_worker_id", "initiator_connection_id",
      "validation", "nope"};
  static const struct rt_meta_kv extras[] = {
      {"validation", "passed"}, {"fd", "x7"}, {"handoff_kind", "extra"}};
  for (int variant = 0; variant < 256; variant++) {
    struct revtun_event ev;
    make_event(&ev);
    ev.kind = 1 + variant % 8;
    ev.fd = variant & 8 ? -1 : 5 + variant;
    ev.close_reason = variant % 12;
    ev.socket_state = 1 + variant % 3;
    ev.miss_count = (uint32_t)variant;
    ev.handoff_kind = variant & 16 ? "pool_to_upstream" : NULL;
    ev.init_worker = variant & 32 ? "" : "iw";
    ev.init_conn = variant & 64 ? "" : "77";
    ev.tenant_id = variant & 128 ? "" : "t";
    ev.extra = extras;
    ev.n_extra = variant & 1 ? 3 : 0;
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
      char src[128];
      snprintf(src, sizeof(src), "%%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:%s)%%",
               keys[k]);
      const char *want = revtun_event_meta_find(&ev, keys[k]);
      ck_assert_msg(strcmp(life(src, &ev), want ? want : "-") == 0,
                    "variant %d key %s: got '%s', view '%s'", variant, keys[k], out,
                    want ? want : "(absent)");
    }
  }
}
END_TEST

START_TEST(filter_state_every_key) {
  struct revtun_event ev;
  make_event(&ev);
#define FS(k) "%FILTER_STATE(envoy.reverse_tunnel." k ":PLAIN)%"
  ck_assert_str_eq(
      life(
          FS("node_id") " " FS("cluster_id") " " FS("tenant_id") " " FS("worker") " " FS(
              "fd") " " FS("initiator_worker_id") " " FS("initiator_connection_id") " " FS("other"),
          &ev),
      "node-c cluster-c tenant-c worker_3 321 iw-1 42 -");
#undef FS
  /* TYPED (the default) is the JSON of the value, as Envoy prints it */
  ck_assert_str_eq(life("%FILTER_STATE(envoy.reverse_tunnel.node_id)% "
                        "%FILTER_STATE(envoy.reverse_tunnel.fd:TYPED)%",
                        &ev),
                   "\"node-c\" \"321\"");
  ev.tenant_id = "";
  ev.init_worker = "";
  ev.fd = -1;
  ck_assert_str_eq(life("%FILTER_STATE(envoy.reverse_tunnel.tenant_id:PLAIN)% "
                        "%FILTER_STATE(envoy.reverse_tunnel.initiator_worker_id)% "
                        "%FILTER_STATE(envoy.reverse_tunnel.fd)%",
                        &ev),
                   "- - -");
  ck_assert_str_eq(life("%FILTER_STATE(envoy.reverse_tunnel.node_id:PLAIN):3%", &ev), "nod");
}
END_TEST

START_TEST(addresses) {
  struct revtun_event ev;
  make_event(&ev);
  ck_assert_str_eq(life("%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% "
                        "%DOWNSTREAM_REMOTE_PORT% %DOWNSTREAM_LOCAL_ADDRESS% "
                        "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_PORT%",
                        &ev),
                   "10.1.2.3:4242 10.1.2.3 4242 192.168.0.1:8080 192.168.0.1 8080");
  ev.remote = &remote6;
  ck_assert_str_eq(life("%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% "
                        "%DOWNSTREAM_REMOTE_PORT%",
                        &ev),
                   "[2001:db8::1]:443 2001:db8::1 443");
  ev.remote = &unix_addr; /* AF_UNIX has no address Envoy would print here */
  ev.local = NULL;
  ck_assert_str_eq(life("%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_PORT% "
                        "%DOWNSTREAM_LOCAL_ADDRESS%",
                        &ev),
                   "- - -");
  /* acceptor context: the connection's own sockaddrs */
  struct rt_fmt_ctx ctx = {.remote = &remote6.u.sa,
                           .remote_len = remote6.len,
                           .local = &local4.u.sa,
                           .local_len = local4.len};
  ck_assert_str_eq(render("%DOWNSTREAM_REMOTE_ADDRESS%|%DOWNSTREAM_LOCAL_ADDRESS%",
                          RT_FMT_OPS_HANDSHAKE, 0, &ctx, NULL),
                   "[2001:db8::1]:443|192.168.0.1:8080");
  /* a truncated sockaddr is not read past its length */
  ctx.remote_len = 4;
  ck_assert_str_eq(render("%DOWNSTREAM_REMOTE_ADDRESS%", RT_FMT_OPS_HANDSHAKE, 0, &ctx, NULL), "-");
}
END_TEST

/* The access log types Envoy's upstream socket manager gives its synthetic
 * lifecycle records, and %CONNECTION_ID% as Envoy renders a stream without
 * a connection id. */
START_TEST(access_log_type_and_connection_id) {
  struct revtun_event ev;
  make_event(&ev);
  ck_assert_str_eq(life("%ACCESS_LOG_TYPE%", &ev), "UpstreamEnd"); /* closed after handoff */
  ev.socket_state = REVTUN_SOCK_IDLE;
  ck_assert_str_eq(life("%ACCESS_LOG_TYPE%", &ev), "TcpConnectionEnd"); /* closed while parked */
  static const struct {
    int kind;
    const char *type;
  } want[] = {
      {REVTUN_EV_TUNNEL_SETUP, "TcpUpstreamConnected"},
      {REVTUN_EV_PING_SENT, "TcpUpstreamConnected"},
      {REVTUN_EV_PING_ACK, "TcpUpstreamConnected"},
      {REVTUN_EV_PING_MISS, "TcpUpstreamConnected"},
      {REVTUN_EV_PING_TIMEOUT, "TcpUpstreamConnected"},
      {REVTUN_EV_SOCKET_HANDOFF, "UpstreamPoolReady"},
      {REVTUN_EV_HANDSHAKE_FAILED, "TcpConnectionEnd"},
      {REVTUN_EV_SOCKET_EXPORTED, "TcpUpstreamConnected"},
      {REVTUN_EV_SOCKET_IMPORTED, "TcpUpstreamConnected"},
      {REVTUN_EV_H2_KEEPALIVE_TIMEOUT, "UpstreamPeriodic"},
  };
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    ev.kind = want[i].kind;
    ck_assert_str_eq(life("%ACCESS_LOG_TYPE%", &ev), want[i].type);
  }
  ck_assert_str_eq(life("%CONNECTION_ID%", &ev), "0");
  ck_assert_str_eq(life("%ACCESS_LOG_TYPE%:%CONNECTION_ID%", &ev), "UpstreamPeriodic:0");
  /* the operators describe a record: handshake validation formats refuse them */
  ck_assert_str_eq(compile_err("%ACCESS_LOG_TYPE%", RT_FMT_OPS_HANDSHAKE),
                   "unsupported command operator %ACCESS_LOG_TYPE% at offset 0 (not available "
                   "in this context)");
}
END_TEST

START_TEST(termination_details) {
  struct revtun_event ev;
  make_event(&ev);
  ck_assert_str_eq(life("%CONNECTION_TERMINATION_DETAILS%", &ev), "http2_ping_timeout");
  ev.close_reason = REVTUN_CLOSE_IDLE_KEEPALIVE_FLOOD;
  ck_assert_str_eq(life("%CONNECTION_TERMINATION_DETAILS%", &ev), "idle_keepalive_flood");
  ev.close_reason = 0;
  ck_assert_str_eq(life("[%CONNECTION_TERMINATION_DETAILS%]", &ev), "[-]");
}
END_TEST

static const char *headers(const void *user, const char *name, size_t *len) {
  (void)user;
  static const char *const kv[][2] = {
      {"x-node", "n-7"}, {"x-alt", "alt-value"}, {":authority", "proxy.example"}};
  for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
    if (strcmp(kv[i][0], name) == 0) {
      *len = strlen(kv[i][1]);
      return kv[i][1];
    }
  return NULL;
}

START_TEST(request_headers) {
  struct rt_fmt_ctx ctx = {.req_header = headers};
  ck_assert_str_eq(render("%REQ(X-Node)% %REQ(x-missing)% %REQ(x-missing?X-ALT)% "
                          "%REQ(x-node?x-alt)% %REQ(:authority)% %REQ(x-alt):3%",
                          RT_FMT_OPS_HANDSHAKE, 0, &ctx, NULL),
                   "n-7 - alt-value n-7 proxy.example alt");
  /* a lifecycle logger has no request: REQ is refused when compiling */
  ck_assert_str_eq(compile_err("node=%REQ(x-node)%", RT_FMT_OPS_LIFECYCLE),
                   "unsupported command operator %REQ(x-node)% at offset 5 (not available in "
                   "this context)");
  /* and the acceptor has no lifecycle record */
  ck_assert_str_eq(compile_err("%CONNECTION_TERMINATION_DETAILS%", RT_FMT_OPS_HANDSHAKE),
                   "unsupported command operator %CONNECTION_TERMINATION_DETAILS% at offset 0 "
                   "(not available in this context)");
}
END_TEST

START_TEST(start_time) {
  struct revtun_event ev;
  make_event(&ev);
  ck_assert_str_eq(life("%START_TIME%", &ev), "2026-01-02T03:04:05.678Z");
  ck_assert_str_eq(life("%START_TIME()%", &ev), "2026-01-02T03:04:05.678Z");
  ck_assert_str_eq(life("%START_TIME(%s)%", &ev), "1767323045");
  ck_assert_str_eq(life("%START_TIME(%s.%3f|%6f|%9f|%f|%1f)%", &ev),
                   "1767323045.678|678901|678901234|678901234|6");
  ck_assert_str_eq(
      life("%START_TIME(%Y/%m/%d %H:%M:%S %E6S %E*S %E0S %Ez %z %Z %j %a %% %e)%", &ev),
      "2026/01/02 03:04:05 05.678901 05.678901234 05 +00:00 +0000 UTC 002 Fri %  2");
  ck_assert_str_eq(life("%START_TIME(%Y):4%", &ev), "2026");
  struct timespec whole = {0, 0};
  struct rt_fmt_ctx ctx = {.ev = &ev, .wall = &whole};
  ck_assert_str_eq(render("%START_TIME(%E*S)%|%START_TIME%", RT_FMT_OPS_LIFECYCLE, 0, &ctx, NULL),
                   "00|1970-01-01T00:00:00.000Z");
  /* without ctx.wall the renderer reads CLOCK_REALTIME, once per record */
  ctx.wall = NULL;
  struct timespec before, after;
  clock_gettime(CLOCK_REALTIME, &before);
  const char *s = render("%START_TIME(%s)% %START_TIME(%s)%", RT_FMT_OPS_LIFECYCLE, 0, &ctx, NULL);
  clock_gettime(CLOCK_REALTIME, &after);
  long long a = 0, b = 0;
  ck_assert_int_eq(sscanf(s, "%lld %lld", &a, &b), 2);
  ck_assert_int_eq(a, b);
  ck_assert(a >= before.tv_sec && a <= after.tv_sec);
}
END_TEST

START_TEST(omit_empty_values_and_null_flag) {
  struct revtun_event ev;
  make_event(&ev);
  ev.close_reason = 0;
  struct rt_fmt_ctx ctx = {.ev = &ev, .wall = &wall};
  unsigned res = 0;
  ck_assert_str_eq(render("a=%CONNECTION_TERMINATION_DETAILS%;b=%DOWNSTREAM_REMOTE_PORT%",
                          RT_FMT_OPS_LIFECYCLE, RT_FMT_OMIT_EMPTY, &ctx, &res),
                   "a=;b=4242");
  ck_assert_uint_eq(res, 0);
  ck_assert_str_eq(render("%CONNECTION_TERMINATION_DETAILS%", RT_FMT_OPS_LIFECYCLE, 0, &ctx, &res),
                   "-");
  ck_assert_uint_eq(res, RT_FMT_R_NULL);
  ck_assert_str_eq(render("%DOWNSTREAM_REMOTE_PORT%", RT_FMT_OPS_LIFECYCLE, 0, &ctx, &res), "4242");
  ck_assert_uint_eq(res, 0);
}
END_TEST

START_TEST(parse_errors_name_the_operator_and_offset) {
  const unsigned L = RT_FMT_OPS_LIFECYCLE;
  ck_assert_str_eq(compile_err("node=%NODE% x", L),
                   "unsupported command operator %NODE% at offset 5");
  ck_assert_str_eq(compile_err("0123456789ab%FOO%", L),
                   "unsupported command operator %FOO% at offset 12");
  ck_assert_str_eq(compile_err("%PROTOCOL%", L),
                   "unsupported command operator %PROTOCOL% at offset 0");
  ck_assert_str_eq(compile_err("100%", L),
                   "invalid command operator at offset 3: expected %NAME%, %NAME(arg)% or "
                   "%NAME(arg):LENGTH% (write %% for a literal %)");
  ck_assert_str_eq(compile_err("a %start_time%", L),
                   "invalid command operator at offset 2: expected %NAME%, %NAME(arg)% or "
                   "%NAME(arg):LENGTH% (write %% for a literal %)");
  ck_assert_str_eq(compile_err("%START_TIME", L),
                   "command operator %START_TIME at offset 0 is not closed by '%'");
  ck_assert_str_eq(compile_err("%START_TIME(%s%", L),
                   "missing ')' in command operator %START_TIME at offset 0");
  ck_assert_str_eq(compile_err("%START_TIME(%s)x%", L),
                   "command operator %START_TIME(%s) at offset 0 is not closed by '%'");
  ck_assert_str_eq(compile_err("%START_TIME:x%", L),
                   "invalid length after ':' in command operator at offset 0 (expected digits, "
                   "at most 4294967294)");
  ck_assert_str_eq(compile_err("%START_TIME(%n)%", L),
                   "command operator %START_TIME(%n)% at offset 0: unsupported time conversion "
                   "'%n' at offset 0");
  ck_assert_str_eq(compile_err("%START_TIME(%Y%Q)%", L),
                   "command operator %START_TIME(%Y%Q)% at offset 0: unsupported time conversion "
                   "'%Q' at offset 2");
  ck_assert_str_eq(compile_err("%START_TIME(%)%", L),
                   "command operator %START_TIME(%)% at offset 0: unsupported time conversion "
                   "'%' at offset 0");
  ck_assert_str_eq(compile_err("%DOWNSTREAM_REMOTE_ADDRESS(x)%", L),
                   "command operator %DOWNSTREAM_REMOTE_ADDRESS(x)% at offset 0 takes no argument");
  ck_assert_str_eq(compile_err("%DYNAMIC_METADATA%", L),
                   "command operator %DYNAMIC_METADATA% at offset 0 needs an argument");
  ck_assert_str_eq(compile_err("%DYNAMIC_METADATA(:event)%", L),
                   "command operator %DYNAMIC_METADATA(:event)% at offset 0: a namespace is "
                   "required");
  ck_assert_str_eq(compile_err("%FILTER_STATE(envoy.reverse_tunnel.fd:JSON)%", L),
                   "command operator %FILTER_STATE(envoy.reverse_tunnel.fd:JSON)% at offset 0: "
                   "serialization must be PLAIN or TYPED (got 'JSON')");
  ck_assert_str_eq(compile_err("%FILTER_STATE(k:FIELD:f)%", L),
                   "command operator %FILTER_STATE(k:FIELD:f)% at offset 0: only the PLAIN and "
                   "TYPED serializations are supported");
  ck_assert_str_eq(compile_err("%REQ(a?b?c)%", RT_FMT_OPS_HANDSHAKE),
                   "command operator %REQ(a?b?c)% at offset 0: more than one alternative header");
  ck_assert_str_eq(compile_err("%REQ(a b)%", RT_FMT_OPS_HANDSHAKE),
                   "command operator %REQ(a b)% at offset 0: invalid character 0x20 in header "
                   "name");
  /* a long operator name is cut in the message */
  char longop[200];
  memset(longop, 'A', sizeof(longop));
  longop[0] = '%';
  longop[sizeof(longop) - 2] = '%';
  longop[sizeof(longop) - 1] = '\0';
  const char *e = compile_err(longop, L);
  ck_assert_ptr_nonnull(strstr(e, "unsupported command operator %AAAA"));
  ck_assert_ptr_nonnull(strstr(e, "... at offset 0"));
  /* the whole format is bounded */
  char *big = malloc(RT_FMT_MAX_SOURCE + 2);
  memset(big, 'x', RT_FMT_MAX_SOURCE + 1);
  big[RT_FMT_MAX_SOURCE + 1] = '\0';
  ck_assert_str_eq(compile_err(big, L), "format is 8193 bytes, more than the limit of 8192");
  free(big);
}
END_TEST

/* A header value far larger than a record. */
static char *huge;
static const char *huge_header(const void *user, const char *name, size_t *len) {
  (void)user, (void)name;
  *len = strlen(huge);
  return huge;
}

START_TEST(oversized_records_are_shortened) {
  huge = malloc(40000);
  memset(huge, 'v', 39999);
  huge[39999] = '\0';
  struct rt_fmt_ctx ctx = {.req_header = huge_header};
  unsigned res = 0;
  const char *s = render("a=%REQ(x)% b=%REQ(y)%\n", RT_FMT_OPS_HANDSHAKE, 0, &ctx, &res);
  ck_assert_uint_eq(res, RT_FMT_R_SHORTENED);
  ck_assert_uint_eq(strlen(s), 2 + 256 + 3 + 256 + 1);
  ck_assert_int_eq(s[strlen(s) - 1], '\n');
  /* a cap smaller than the literals: the text is cut, its newline kept */
  struct rt_fmt *f = compile_ok("0123456789abcdef %REQ(x)%\n", RT_FMT_OPS_HANDSHAKE, 0);
  size_t n = rt_fmt_render(f, &ctx, out, 8, &res);
  ck_assert_uint_eq(n, 8);
  ck_assert_mem_eq(out, "0123456\n", 8);
  ck_assert_uint_eq(res, RT_FMT_R_SHORTENED);
  ck_assert_uint_eq(rt_fmt_render(f, &ctx, out, 0, &res), 0);
  rt_fmt_free(&mem, f);
  free(huge);
}
END_TEST

/* ------------------------------------------------------------------ JSON */

/* A tiny builder for google.protobuf.Struct templates (freed with tfree). */
static Google__Protobuf__Value *vstr(const char *s) {
  Google__Protobuf__Value *v = calloc(1, sizeof(*v));
  v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
  v->string_value = strdup(s);
  return v;
}
static Google__Protobuf__Value *vnum(double d) {
  Google__Protobuf__Value *v = calloc(1, sizeof(*v));
  v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
  v->number_value = d;
  return v;
}
static Google__Protobuf__Value *vbool(bool b) {
  Google__Protobuf__Value *v = calloc(1, sizeof(*v));
  v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
  v->bool_value = b;
  return v;
}
static Google__Protobuf__Value *vnull(void) {
  Google__Protobuf__Value *v = calloc(1, sizeof(*v));
  v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
  return v;
}
static Google__Protobuf__Struct *tstruct(size_t n, ...) {
  Google__Protobuf__Struct *s = calloc(1, sizeof(*s));
  s->n_fields = n;
  s->fields = calloc(n ? n : 1, sizeof(*s->fields));
  va_list ap;
  va_start(ap, n);
  for (size_t i = 0; i < n; i++) {
    s->fields[i] = calloc(1, sizeof(*s->fields[i]));
    s->fields[i]->key = strdup(va_arg(ap, const char *));
    s->fields[i]->value = va_arg(ap, Google__Protobuf__Value *);
  }
  va_end(ap);
  return s;
}
static Google__Protobuf__Value *vstruct(Google__Protobuf__Struct *s) {
  Google__Protobuf__Value *v = calloc(1, sizeof(*v));
  v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
  v->struct_value = s;
  return v;
}
static Google__Protobuf__Value *vlist(size_t n, ...) {
  Google__Protobuf__Value *v = calloc(1, sizeof(*v));
  v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
  v->list_value = calloc(1, sizeof(*v->list_value));
  v->list_value->n_values = n;
  v->list_value->values = calloc(n ? n : 1, sizeof(Google__Protobuf__Value *));
  va_list ap;
  va_start(ap, n);
  for (size_t i = 0; i < n; i++)
    v->list_value->values[i] = va_arg(ap, Google__Protobuf__Value *);
  va_end(ap);
  return v;
}
static void tfree_value(Google__Protobuf__Value *v);
static void tfree(Google__Protobuf__Struct *s) {
  for (size_t i = 0; i < s->n_fields; i++) {
    free(s->fields[i]->key);
    tfree_value(s->fields[i]->value);
    free(s->fields[i]);
  }
  free(s->fields);
  free(s);
}
static void tfree_value(Google__Protobuf__Value *v) {
  if (!v)
    return;
  if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE)
    free(v->string_value);
  if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE)
    tfree(v->struct_value);
  if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE) {
    for (size_t i = 0; i < v->list_value->n_values; i++)
      tfree_value(v->list_value->values[i]);
    free(v->list_value->values);
    free(v->list_value);
  }
  free(v);
}

static const char *json(Google__Protobuf__Struct *t, unsigned flags,
                        const struct revtun_event *ev) {
  struct rt_fmt *f = NULL;
  char err[256] = "";
  int rc = rt_fmt_compile_json(&mem, t, RT_FMT_OPS_LIFECYCLE, flags, &f, err, sizeof(err));
  ck_assert_msg(rc == REVTUN_OK, "%s", err);
  struct rt_fmt_ctx ctx = {.ev = ev, .wall = &wall};
  size_t n = rt_fmt_render(f, &ctx, out, RT_FMT_MAX_RECORD, NULL);
  out[n] = '\0';
  rt_fmt_free(&mem, f);
  tfree(t);
  return out;
}

#define LC(k) "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:" k ")%"

START_TEST(json_typed_values_constants_and_order) {
  struct revtun_event ev;
  make_event(&ev);
  ev.kind = REVTUN_EV_PING_TIMEOUT;
  ev.miss_count = 3;
  ck_assert_str_eq(
      json(tstruct(12, "zeta", vstr(LC("event")), "fd", vstr(LC("fd")), "misses",
                   vstr(LC("miss_count")), "port", vstr("%DOWNSTREAM_REMOTE_PORT%"), "absent",
                   vstr(LC("handoff_kind")), "mixed", vstr("fd=" LC("fd") " h=" LC("handoff_kind")),
                   "literal", vstr("just text"), "empty", vstr(""), "n", vnum(1.5), "b",
                   vbool(true), "nil", vnull(), "nested",
                   vstruct(tstruct(2, "node", vstr(LC("node_id")), "list",
                                   vlist(3, vstr(LC("cluster_id")), vnum(-2), vbool(false))))),
           0, &ev),
      "{\"zeta\":\"idle_ping_timeout\",\"fd\":321,\"misses\":3,\"port\":4242,\"absent\":null,"
      "\"mixed\":\"fd=321 h=-\",\"literal\":\"just text\",\"empty\":\"\",\"n\":1.5,\"b\":true,"
      "\"nil\":null,\"nested\":{\"node\":\"node-c\",\"list\":[\"cluster-c\",-2,false]}}\n");
}
END_TEST

START_TEST(json_omit_empty_values) {
  struct revtun_event ev;
  make_event(&ev);
  ck_assert_str_eq(json(tstruct(5, "a", vstr(LC("handoff_kind")), "b", vstr(LC("event")), "c",
                                vnull(), "d", vstr("x" LC("handoff_kind") "y"), "e",
                                vstruct(tstruct(1, "gone", vstr(LC("miss_count"))))),
                        RT_FMT_OMIT_EMPTY, &ev),
                   "{\"b\":\"tunnel_closed\",\"d\":\"xy\",\"e\":{}}\n");
}
END_TEST

START_TEST(json_untyped_legacy) {
  struct revtun_event ev;
  make_event(&ev);
  ck_assert_str_eq(json(tstruct(3, "fd", vstr(LC("fd")), "absent", vstr(LC("handoff_kind")), "port",
                                vstr("%DOWNSTREAM_LOCAL_PORT%")),
                        RT_FMT_UNTYPED, &ev),
                   "{\"fd\":\"321\",\"absent\":\"-\",\"port\":\"8080\"}\n");
  ck_assert_str_eq(json(tstruct(2, "absent", vstr(LC("handoff_kind")), "fd", vstr(LC("fd"))),
                        RT_FMT_UNTYPED | RT_FMT_OMIT_EMPTY, &ev),
                   "{\"fd\":\"321\"}\n");
}
END_TEST

START_TEST(json_escaping) {
  struct revtun_event ev;
  make_event(&ev);
  ev.node_id = "q\"b\\s/\n\t\x01\x7f";
  ev.cluster_id = "caf\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80"; /* valid UTF-8 */
  ev.tenant_id = "bad\xff\xc3(\xe2\x82";                       /* invalid */
  ck_assert_str_eq(json(tstruct(4, "n", vstr(LC("node_id")), "c", vstr(LC("cluster_id")), "t",
                                vstr(LC("tenant_id")), "k\"ey",
                                vstr("%FILTER_STATE("
                                     "envoy.reverse_tunnel.node_"
                                     "id)%")),
                        0, &ev),
                   "{\"n\":\"q\\\"b\\\\s/\\n\\t\\u0001\x7f\",\"c\":\"caf\xc3\xa9-\xe2\x82\xac-"
                   "\xf0\x9f\x98\x80\",\"t\":\"bad\\u00ff\\u00c3(\\u00e2\\u0082\",\"k\\\"ey\":"
                   "\"q\\\"b\\\\s/\\n\\t\\u0001\x7f\"}\n");
  /* TYPED filter state inside a mixed string is JSON inside JSON */
  make_event(&ev);
  ck_assert_str_eq(
      json(tstruct(1, "m", vstr("id=%FILTER_STATE(envoy.reverse_tunnel.node_id)%")), 0, &ev),
      "{\"m\":\"id=\\\"node-c\\\"\"}\n");
  /* the whole namespace: an object when alone, escaped JSON text in a string */
  ck_assert_str_eq(
      json(tstruct(2, "o", vstr("%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle)%"), "s",
                   vstr("m=%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle)%")),
           0, &ev),
      "{\"o\":{\"event\":\"tunnel_closed\",\"node_id\":\"node-c\",\"cluster_id\":\"cluster-c\","
      "\"tenant_id\":\"tenant-c\",\"worker\":\"worker_3\",\"socket_state\":\"in_use\","
      "\"close_reason\":\"http2_ping_timeout\",\"fd\":321,\"initiator_worker_id\":\"iw-1\","
      "\"initiator_connection_id\":\"42\"},\"s\":\"m={\\\"event\\\":\\\"tunnel_closed\\\","
      "\\\"node_id\\\":\\\"node-c\\\",\\\"cluster_id\\\":\\\"cluster-c\\\",\\\"tenant_id\\\":"
      "\\\"tenant-c\\\",\\\"worker\\\":\\\"worker_3\\\",\\\"socket_state\\\":\\\"in_use\\\","
      "\\\"close_reason\\\":\\\"http2_ping_timeout\\\",\\\"fd\\\":321,\\\"initiator_worker_id\\\":"
      "\\\"iw-1\\\",\\\"initiator_connection_id\\\":\\\"42\\\"}\"}\n");
}
END_TEST

START_TEST(json_duplicate_keys_and_numbers) {
  struct revtun_event ev;
  make_event(&ev);
  ck_assert_str_eq(
      json(tstruct(3, "a", vstr("first"), "b", vnum(0.1), "a", vstr(LC("fd"))), 0, &ev),
      "{\"a\":321,\"b\":0.1}\n");
  ck_assert_str_eq(json(tstruct(4, "big", vnum(9007199254740993.0), "neg", vnum(-0.5), "exp",
                                vnum(1e300), "int", vnum(42)),
                        0, &ev),
                   "{\"big\":9007199254740992,\"neg\":-0.5,\"exp\":1e+300,\"int\":42}\n");
  ck_assert_str_eq(json(tstruct(0), 0, &ev), "{}\n");
}
END_TEST

START_TEST(json_template_errors) {
  struct rt_fmt *f = NULL;
  char err[256];
  Google__Protobuf__Struct *t =
      tstruct(1, "outer", vstruct(tstruct(1, "inner", vlist(2, vstr("ok"), vstr("%BAD%")))));
  ck_assert_int_eq(rt_fmt_compile_json(&mem, t, RT_FMT_OPS_LIFECYCLE, 0, &f, err, sizeof(err)),
                   REVTUN_E_CONFIG);
  ck_assert_str_eq(err, "json_format.outer.inner[1]: unsupported command operator %BAD% at "
                        "offset 0");
  tfree(t);
  Google__Protobuf__Value *unset = calloc(1, sizeof(*unset));
  t = tstruct(1, "k", unset);
  ck_assert_int_eq(rt_fmt_compile_json(&mem, t, RT_FMT_OPS_LIFECYCLE, 0, &f, err, sizeof(err)),
                   REVTUN_E_CONFIG);
  ck_assert_str_eq(err, "json_format.k: a value must be set (string, number, bool, null, struct "
                        "or list)");
  tfree(t);
  /* the template is bounded like a text format */
  char *big = malloc(RT_FMT_MAX_SOURCE + 1);
  memset(big, 'x', RT_FMT_MAX_SOURCE);
  big[RT_FMT_MAX_SOURCE] = '\0';
  t = tstruct(1, "k", vstr(big));
  ck_assert_int_eq(rt_fmt_compile_json(&mem, t, RT_FMT_OPS_LIFECYCLE, 0, &f, err, sizeof(err)),
                   REVTUN_E_CONFIG);
  ck_assert_str_eq(err, "json_format template is larger than 8192 bytes");
  tfree(t);
  free(big);
  ck_assert_ptr_null(f);
}
END_TEST

START_TEST(json_oversized_values_keep_valid_json) {
  huge = malloc(40000);
  memset(huge, '"', 39999); /* every byte escapes to two */
  huge[39999] = '\0';
  struct rt_fmt *f = NULL;
  char err[256];
  Google__Protobuf__Struct *t = tstruct(2, "a", vstr("%REQ(x)%"), "b", vstr("<%REQ(x)%>"));
  ck_assert_int_eq(rt_fmt_compile_json(&mem, t, RT_FMT_OPS_HANDSHAKE, 0, &f, err, sizeof(err)),
                   REVTUN_OK);
  tfree(t);
  struct rt_fmt_ctx ctx = {.req_header = huge_header};
  unsigned res;
  size_t n = rt_fmt_render(f, &ctx, out, RT_FMT_MAX_RECORD, &res);
  ck_assert_uint_eq(res, RT_FMT_R_SHORTENED);
  /* {"a":"<256 escaped quotes>","b":"<<256 escaped quotes>>"}\n */
  ck_assert_uint_eq(n, 6 + 512 + 7 + 1 + 512 + 1 + 3);
  ck_assert_mem_eq(out, "{\"a\":\"\\\"\\\"", 10);
  ck_assert_mem_eq(out + n - 6, "\\\">\"}\n", 6);
  /* JSON is never cut: when even empty values do not fit, nothing is written */
  ck_assert_uint_eq(rt_fmt_render(f, &ctx, out, 10, &res), 0);
  ck_assert_uint_eq(res, RT_FMT_R_SHORTENED);
  rt_fmt_free(&mem, f);
  free(huge);
}
END_TEST

START_TEST(struct_to_plain_json) {
  Google__Protobuf__Struct *t =
      tstruct(4, "path", vstr("/tmp/x \"y\""), "n", vnum(3), "list", vlist(2, vnull(), vbool(true)),
              "o", vstruct(tstruct(1, "k", vstr("%NOT_A_FORMAT%"))));
  char *s;
  size_t len;
  ck_assert_int_eq(rt_json_from_struct(&mem, t, &s, &len), REVTUN_OK);
  ck_assert_str_eq(s, "{\"path\":\"/tmp/x \\\"y\\\"\",\"n\":3,\"list\":[null,true],\"o\":{\"k\":"
                      "\"%NOT_A_FORMAT%\"}}");
  ck_assert_uint_eq(len, strlen(s));
  free(s);
  tfree(t);
}
END_TEST

/* Every allocation of compile can fail; each failure is clean (valgrind and
 * the leak check of this suite see the rest). */
static int fail_at, alloc_count;
static void *failing_malloc(size_t n, void *u) {
  (void)u;
  return ++alloc_count == fail_at ? NULL : malloc(n);
}
static void *failing_realloc(void *p, size_t n, void *u) {
  (void)u;
  return ++alloc_count == fail_at ? NULL : realloc(p, n);
}
static void plain_free(void *p, void *u) {
  (void)u;
  free(p);
}

START_TEST(compile_survives_every_allocation_failure) {
  struct rt_mem fm = {failing_malloc, failing_realloc, plain_free, NULL};
  const char *src = "a %START_TIME% b %DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:event)% c "
                    "%FILTER_STATE(x)% d %% e %CONNECTION_TERMINATION_DETAILS% f g h i j k";
  for (fail_at = 1;; fail_at++) {
    alloc_count = 0;
    struct rt_fmt *f = NULL;
    char err[128];
    int rc = rt_fmt_compile(&fm, src, strlen(src), RT_FMT_OPS_LIFECYCLE, 0, &f, err, sizeof(err));
    if (rc == REVTUN_OK) {
      rt_fmt_free(&fm, f);
      break;
    }
    ck_assert_int_eq(rc, REVTUN_E_NOMEM);
    ck_assert_str_eq(err, "out of memory");
    ck_assert_ptr_null(f);
  }
  ck_assert_int_gt(fail_at, 2);
  for (fail_at = 1;; fail_at++) {
    alloc_count = 0;
    Google__Protobuf__Struct *t =
        tstruct(3, "a", vstr("x"), "b", vstruct(tstruct(1, "c", vstr(LC("event")))), "d",
                vlist(1, vnum(1)));
    struct rt_fmt *f = NULL;
    int rc = rt_fmt_compile_json(&fm, t, RT_FMT_OPS_LIFECYCLE, 0, &f, NULL, 0);
    tfree(t);
    if (rc == REVTUN_OK) {
      rt_fmt_free(&fm, f);
      break;
    }
    ck_assert_int_eq(rc, REVTUN_E_NOMEM);
  }
  ck_assert_int_gt(fail_at, 4);
}
END_TEST

int main(void) {
  Suite *s = suite_create("format");
  TCase *t = tcase_create("text");
  tcase_add_checked_fixture(t, setup, NULL);
  tcase_add_test(t, literals_and_percent);
  tcase_add_test(t, dynamic_metadata_every_key);
  tcase_add_test(t, dynamic_metadata_other_namespaces_and_paths);
  tcase_add_test(t, direct_metadata_matches_the_event_view);
  tcase_add_test(t, filter_state_every_key);
  tcase_add_test(t, addresses);
  tcase_add_test(t, termination_details);
  tcase_add_test(t, access_log_type_and_connection_id);
  tcase_add_test(t, request_headers);
  tcase_add_test(t, start_time);
  tcase_add_test(t, omit_empty_values_and_null_flag);
  tcase_add_test(t, parse_errors_name_the_operator_and_offset);
  tcase_add_test(t, oversized_records_are_shortened);
  suite_add_tcase(s, t);
  TCase *j = tcase_create("json");
  tcase_add_checked_fixture(j, setup, NULL);
  tcase_add_test(j, json_typed_values_constants_and_order);
  tcase_add_test(j, json_omit_empty_values);
  tcase_add_test(j, json_untyped_legacy);
  tcase_add_test(j, json_escaping);
  tcase_add_test(j, json_duplicate_keys_and_numbers);
  tcase_add_test(j, json_template_errors);
  tcase_add_test(j, json_oversized_values_keep_valid_json);
  tcase_add_test(j, struct_to_plain_json);
  tcase_add_test(j, compile_survives_every_allocation_failure);
  suite_add_tcase(s, j);
  return tu_run(s);
}
