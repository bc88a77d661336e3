/* TLS on reverse tunnels, over real sockets with real OpenSSL sessions:
 *   - the handshake phase through the acceptor's transport seam (mutual TLS,
 *     the HTTP/1.1 handshake inside it, then a quiet park to raw TCP where
 *     RPING runs outside TLS);
 *   - identity from the peer certificate in validation formats and records;
 *   - after the handoff, a new session with the proxy as the TLS client whose
 *     BIO strips late RPING echoes below TLS and checks the agent's name;
 *   - each bad input: plaintext on a TLS listener, a ClientHello on a
 *     plaintext one, no client certificate, an unknown CA, expired, not yet
 *     valid and revoked certificates, a name that does not match the claimed
 *     node, a stalled handshake, renegotiation, a truncated record and a
 *     close_notify where a quiet shutdown was expected — each with a clear
 *     outcome, a counter, a record with a reason, and nothing leaked. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <revtun/openssl.h>
#include <revtun/transport.h>

#include "testutil.h"
#include "tls_certs.h"

static struct tu_rec rec;
static char pki[256];
static char path_buf[16][512];

enum { SERIAL_REVOKED = 66 };

static const char *file(int slot, const char *name, const char *ext) {
  return tc_path(path_buf[slot], sizeof(path_buf[slot]), pki, name, ext);
}

/* One PKI for the whole suite: a CA, the upstream's certificate, agents'
 * certificates good and bad, another CA, and a CRL. */
static void need(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "check_tls: cannot make the test PKI: %s\n", what);
    exit(EXIT_FAILURE);
  }
}

static void make_pki(void) {
  snprintf(pki, sizeof(pki), "%s/revtun-tls-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  need(mkdtemp(pki) != NULL, "mkdtemp");
  struct tc_ca *ca = tc_ca_new(pki, "ca", "revtun test CA");
  struct tc_ca *other = tc_ca_new(pki, "other-ca", "some other CA");
  need(ca && other, "the CAs");
  const struct tc_leaf leaves[] = {
      {.name = "upstream",
       .cn = "upstream",
       .dns = {"localhost"},
       .not_before_s = -60,
       .not_after_s = 86400,
       .serial = 2,
       .server = 1},
      {.name = "edge-1",
       .cn = "edge-1",
       .dns = {"edge-1"},
       .uri = {"spiffe://acme/edge-1"},
       .not_before_s = -60,
       .not_after_s = 86400,
       .serial = 3},
      {.name = "edge-2",
       .cn = "edge-2",
       .dns = {"edge-2", "edge-2.acme"},
       .not_before_s = -60,
       .not_after_s = 86400,
       .serial = 4},
      {.name = "expired",
       .cn = "edge-1",
       .dns = {"edge-1"},
       .not_before_s = -7200,
       .not_after_s = -3600,
       .serial = 5},
      {.name = "future",
       .cn = "edge-1",
       .dns = {"edge-1"},
       .not_before_s = 3600,
       .not_after_s = 7200,
       .serial = 6},
      {.name = "revoked",
       .cn = "edge-1",
       .dns = {"edge-1"},
       .not_before_s = -60,
       .not_after_s = 86400,
       .serial = SERIAL_REVOKED},
  };
  for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++)
    need(tc_issue(ca, pki, &leaves[i]) == 0, leaves[i].name);
  const struct tc_leaf stranger = {.name = "stranger",
                                   .cn = "edge-1",
                                   .dns = {"edge-1"},
                                   .not_before_s = -60,
                                   .not_after_s = 86400,
                                   .serial = 7};
  need(tc_issue(other, pki, &stranger) == 0, "stranger");
  const uint64_t revoked[] = {SERIAL_REVOKED};
  need(tc_crl(ca, pki, "crl", revoked, 1) == 0, "the CRL");
  tc_ca_free(ca);
  tc_ca_free(other);
}

static void remove_pki(void) {
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pki);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", pki);
}

/* ------------------------------------------------------------ the server */

struct server {
  revtun_t *h;
  revtun_acceptor_t *acc;
  revtun_openssl_t *tls;
  SSL_CTX *ctx;
};

/* tunnel_setup's peer fields, captured from the record */
static char peer_seen[16][256];

static void capture_peer(revtun_t *h, const revtun_event_t *ev, struct tu_rec *r) {
  (void)h, (void)r;
  if (revtun_event_kind(ev) != REVTUN_EV_TUNNEL_SETUP)
    return;
  for (int f = REVTUN_PEER_URI_SAN; f <= REVTUN_PEER_CERT_V_END; f++) {
    size_t n = 0;
    const char *v = revtun_event_peer(ev, f, &n);
    snprintf(peer_seen[f], sizeof(peer_seen[f]), "%.*s", v ? (int)n : 1, v ? v : "-");
  }
}

static void server_start(struct server *s, const char *acc_config, int client_ca, int crl) {
  memset(s, 0, sizeof(*s));
  tu_rec_init(&rec);
  memset(rec.io_events, 0, sizeof(rec.io_events));
  memset(peer_seen, 0, sizeof(peer_seen));
  rec.on_event = capture_peer;
  s->h = tu_new("empty", &rec, 0);
  size_t len;
  uint8_t *cfg = tu_config(acc_config, &len);
  char err[256];
  ck_assert_int_eq(revtun_acceptor_new(&s->acc, s->h, cfg, len, err, sizeof(err)), REVTUN_OK);
  free(cfg);
  int rc =
      revtun_openssl_server_ctx(&s->ctx, file(0, "upstream", "pem"), file(1, "upstream", "key"),
                                client_ca ? file(2, "ca", "pem") : NULL,
                                crl ? file(3, "crl", "pem") : NULL, err, sizeof(err));
  ck_assert_msg(rc == REVTUN_OK, "%s", err);
  ck_assert_int_eq(revtun_openssl_new(&s->tls, s->ctx), REVTUN_OK);
  ck_assert_int_eq(revtun_acceptor_set_transport(s->acc, revtun_openssl_transport(s->tls)),
                   REVTUN_OK);
}

static void server_stop(struct server *s) {
  revtun_free(s->h);
  revtun_openssl_free(s->tls);
  SSL_CTX_free(s->ctx);
}

/* One round of the host's loop: every fd the library watches that is ready. */
static void pump(revtun_t *h, revtun_time_ms_t now) {
  for (int fd = 0; fd < 1024; fd++) {
    int want = rec.io_events[fd];
    if (want <= 0 || !(want & (REVTUN_IO_READ | REVTUN_IO_WRITE)))
      continue;
    struct pollfd p = {
        fd, (short)((want & REVTUN_IO_READ ? POLLIN : 0) | (want & REVTUN_IO_WRITE ? POLLOUT : 0)),
        0};
    if (poll(&p, 1, 0) == 1) {
      int ev = (p.revents & (POLLIN | POLLHUP | POLLERR) ? REVTUN_IO_READ : 0) |
               (p.revents & POLLOUT ? REVTUN_IO_WRITE : 0);
      revtun_process_io(h, fd, ev, now);
    }
  }
}

/* ------------------------------------------------------------ the agent */

static const char REQUEST_FMT[] = "GET /reverse_connections/request HTTP/1.1\r\n"
                                  "host: 127.0.0.1:15000\r\n"
                                  "x-envoy-reverse-tunnel-node-id: %s\r\n"
                                  "x-envoy-reverse-tunnel-cluster-id: edge\r\n"
                                  "x-envoy-reverse-tunnel-tenant-id: acme\r\n"
                                  "content-length: 0\r\n\r\n";

struct agent {
  int fd;     /* the agent's end */
  int server; /* the library's end, given to the acceptor */
  SSL_CTX *ctx;
  SSL *ssl;
};

/* An agent with the given certificate (NULL: none) over a socketpair whose
 * other end the acceptor takes. */
static void agent_start(struct agent *a, struct server *s, const char *cert, int max_tls12) {
  memset(a, 0, sizeof(*a));
  int sv[2];
  tu_socketpair(sv);
  a->server = sv[0];
  a->fd = sv[1];
  a->ctx = SSL_CTX_new(TLS_client_method());
  ck_assert_ptr_nonnull(a->ctx);
  ck_assert_int_eq(SSL_CTX_load_verify_locations(a->ctx, file(4, "ca", "pem"), NULL), 1);
  SSL_CTX_set_verify(a->ctx, SSL_VERIFY_PEER, NULL);
  if (max_tls12)
    SSL_CTX_set_max_proto_version(a->ctx, TLS1_2_VERSION);
  if (cert) {
    ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(a->ctx, file(5, cert, "pem")), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(a->ctx, file(6, cert, "key"), SSL_FILETYPE_PEM),
                     1);
  }
  a->ssl = SSL_new(a->ctx);
  SSL_set_fd(a->ssl, a->fd);
  SSL_set_connect_state(a->ssl);
  SSL_set_tlsext_host_name(a->ssl, "localhost");
  ck_assert_int_eq(revtun_acceptor_accept(s->acc, a->server, NULL, 1), REVTUN_OK);
}

static void agent_free(struct agent *a) {
  if (a->ssl) {
    SSL_set_quiet_shutdown(a->ssl, 1);
    SSL_free(a->ssl);
  }
  SSL_CTX_free(a->ctx);
  if (a->fd >= 0)
    close(a->fd);
  ERR_clear_error();
}

/* Drives the agent's TLS handshake against the library; 1 on success. */
static int agent_handshake(struct agent *a, struct server *s) {
  for (int i = 0; i < 200; i++) {
    int r = SSL_do_handshake(a->ssl);
    if (r == 1)
      return 1;
    int e = SSL_get_error(a->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      ERR_clear_error();
      return 0;
    }
    pump(s->h, 2);
  }
  return 0;
}

/* Sends the handshake request for node and reads the answer into buf. */
static size_t agent_request(struct agent *a, struct server *s, const char *node, char *buf,
                            size_t cap) {
  char req[1024];
  int n = snprintf(req, sizeof(req), REQUEST_FMT, node);
  size_t sent = 0, got = 0;
  for (int i = 0; i < 400 && got < cap - 1; i++) {
    if (sent < (size_t)n) {
      size_t w = 0;
      if (SSL_write_ex(a->ssl, req + sent, (size_t)n - sent, &w) == 1)
        sent += w;
    }
    pump(s->h, 3);
    size_t r = 0;
    int ok = SSL_read_ex(a->ssl, buf + got, cap - 1 - got, &r);
    if (ok)
      got += r;
    else if (SSL_get_error(a->ssl, 0) != SSL_ERROR_WANT_READ &&
             SSL_get_error(a->ssl, 0) != SSL_ERROR_WANT_WRITE)
      break;
    buf[got] = '\0';
    if (strstr(buf, "\r\n\r\n") &&
        (strncmp(buf, "HTTP/1.1 200", 12) == 0 || strstr(buf, "0\r\n\r\n")))
      break;
  }
  ERR_clear_error();
  buf[got] = '\0';
  return got;
}

/* Abandons the TLS session without a close_notify, as Envoy's initiator
 * does once the 200 is in. */
static void agent_park(struct agent *a) {
  SSL_set_quiet_shutdown(a->ssl, 1);
  SSL_shutdown(a->ssl);
  SSL_free(a->ssl);
  a->ssl = NULL;
  ERR_clear_error();
}

static uint64_t counter(revtun_t *h, const char *name) { return tu_stat(h, name); }

/* ---------------------------------------------------------------- tests */

START_TEST(mutual_tls_handshake_then_raw_park_then_tls_after_handoff) {
  struct server s;
  server_start(&s, "acc_default", 1, 0);
  int fds_before = tu_open_fds();
  struct agent a;
  agent_start(&a, &s, "edge-1", 0);
  ck_assert(agent_handshake(&a, &s));
  char resp[512];
  agent_request(&a, &s, "edge-1", resp, sizeof(resp));
  ck_assert_str_eq(resp, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
  agent_park(&a);
  ck_assert_int_eq(revtun_idle_count(s.h, "edge-1", NULL), 1);
  ck_assert_uint_eq(counter(s.h, "reverse_tunnel_acceptor.transport.handshake"), 1);
  /* the tunnel_setup record carries the certificate's identity */
  ck_assert_str_eq(peer_seen[REVTUN_PEER_DNS_SAN], "edge-1");
  ck_assert_str_eq(peer_seen[REVTUN_PEER_URI_SAN], "spiffe://acme/edge-1");
  ck_assert_str_eq(peer_seen[REVTUN_PEER_SUBJECT], "CN=edge-1,O=revtun tests");
  ck_assert_str_eq(peer_seen[REVTUN_PEER_ISSUER], "CN=revtun test CA,O=revtun tests");
  ck_assert_str_eq(peer_seen[REVTUN_PEER_SERIAL], "03");
  ck_assert_str_eq(peer_seen[REVTUN_PEER_TLS_VERSION], "TLSv1.3");
  ck_assert_uint_eq(strlen(peer_seen[REVTUN_PEER_FINGERPRINT_256]), 64);
  /* parked: RPING and its echo travel raw, outside TLS */
  revtun_time_ms_t now = (revtun_time_ms_t)revtun_next_timeout_ms(s.h, 3) + 3;
  ck_assert_int_eq(revtun_tick(s.h, now), REVTUN_OK);
  char raw[16];
  ck_assert_int_eq(read(a.fd, raw, sizeof(raw)), 5);
  ck_assert_mem_eq(raw, "RPING", 5);
  tu_write(a.fd, "RPING");
  pump(s.h, now + 1);
  ck_assert_uint_eq(counter(s.h, "reverse_tunnel_acceptor.idle_ping_ack"), 1);
  /* another ping goes out, and its echo is late: it arrives after the handoff */
  now = (revtun_time_ms_t)revtun_next_timeout_ms(s.h, now + 1) + now + 1;
  ck_assert_int_eq(revtun_tick(s.h, now), REVTUN_OK);
  ck_assert_int_eq(read(a.fd, raw, sizeof(raw)), 5);
  int fd;
  revtun_strip_t strip = 0;
  ck_assert_int_eq(revtun_handoff(s.h, "edge-1", NULL, now, &fd, &strip), REVTUN_OK);
  ck_assert_int_eq(fd, a.server);
  tu_write(a.fd, "RPING"); /* the late echo, raw, ahead of the new session */
  /* roles flip: the proxy is the TLS client, the agent the server */
  SSL_CTX *cctx;
  char err[256];
  ck_assert_int_eq(
      revtun_openssl_client_ctx(&cctx, file(7, "ca", "pem"), NULL, NULL, err, sizeof(err)),
      REVTUN_OK);
  SSL *proxy;
  ck_assert_int_eq(
      revtun_openssl_handoff_new(&proxy, cctx, fd, strip, "edge-1", -1, NULL, err, sizeof(err)),
      REVTUN_OK);
  SSL_CTX *actx = SSL_CTX_new(TLS_server_method());
  static const unsigned char h2[] = "\x02h2";
  (void)h2;
  ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(actx, file(8, "edge-1", "pem")), 1);
  ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(actx, file(9, "edge-1", "key"), SSL_FILETYPE_PEM),
                   1);
  SSL *agent = SSL_new(actx);
  SSL_set_fd(agent, a.fd);
  SSL_set_accept_state(agent);
  int pdone = 0, adone = 0;
  for (int i = 0; i < 200 && !(pdone && adone); i++) {
    if (!pdone && SSL_do_handshake(proxy) == 1)
      pdone = 1;
    if (!adone && SSL_do_handshake(agent) == 1)
      adone = 1;
  }
  ck_assert_msg(pdone && adone, "post-handoff TLS handshake: proxy %d agent %d", pdone, adone);
  ck_assert_int_eq(SSL_write(proxy, "hello", 5), 5);
  char got[8] = {0};
  int r = -1;
  for (int i = 0; i < 100 && r <= 0; i++)
    r = SSL_read(agent, got, sizeof(got));
  ck_assert_int_eq(r, 5);
  ck_assert_mem_eq(got, "hello", 5);
  SSL_free(proxy); /* the fd stays ours */
  ck_assert(tu_fd_open(fd));
  SSL_free(agent);
  SSL_CTX_free(actx);
  SSL_CTX_free(cctx);
  ck_assert_int_eq(revtun_mark_dead(s.h, fd, REVTUN_CLOSE_LOCAL_CLOSE, now), REVTUN_OK);
  close(fd);
  agent_free(&a);
  ERR_clear_error();
  ck_assert_int_eq(tu_open_fds(), fds_before);
  server_stop(&s);
}
END_TEST

/* The agent's certificate must name another node: the handoff check fails. */
static void nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

START_TEST(handoff_session_refuses_a_certificate_for_another_node) {
  int sv[2];
  tu_socketpair(sv);
  nonblocking(sv[0]);
  SSL_CTX *cctx;
  char err[256];
  ck_assert_int_eq(
      revtun_openssl_client_ctx(&cctx, file(0, "ca", "pem"), NULL, NULL, err, sizeof(err)),
      REVTUN_OK);
  SSL *proxy;
  ck_assert_int_eq(
      revtun_openssl_handoff_new(&proxy, cctx, sv[0], 0, "edge-1", -1, NULL, err, sizeof(err)),
      REVTUN_OK);
  SSL_CTX *actx = SSL_CTX_new(TLS_server_method());
  ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(actx, file(1, "edge-2", "pem")), 1);
  ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(actx, file(2, "edge-2", "key"), SSL_FILETYPE_PEM),
                   1);
  SSL *agent = SSL_new(actx);
  SSL_set_fd(agent, sv[1]);
  SSL_set_accept_state(agent);
  int pr = 0;
  for (int i = 0; i < 200; i++) {
    pr = SSL_do_handshake(proxy);
    SSL_do_handshake(agent);
    if (pr == 1 || SSL_get_error(proxy, pr) == SSL_ERROR_SSL)
      break;
  }
  ck_assert_int_ne(pr, 1);
  ck_assert_int_eq(SSL_get_verify_result(proxy), X509_V_ERR_HOSTNAME_MISMATCH);
  ERR_clear_error();
  SSL_free(proxy);
  SSL_free(agent);
  SSL_CTX_free(actx);
  SSL_CTX_free(cctx);
  close(sv[0]);
  close(sv[1]);
}
END_TEST

/* validation { node_id_format: "%DOWNSTREAM_PEER_DNS_SAN%" }: the certificate
 * decides which node an agent may register as. */
START_TEST(identity_is_bound_to_the_certificate) {
  struct server s;
  server_start(&s, "acc_tls_bind_dns_san", 1, 0);
  struct agent a;
  char resp[512];
  agent_start(&a, &s, "edge-1", 0);
  ck_assert(agent_handshake(&a, &s));
  agent_request(&a, &s, "edge-2", resp, sizeof(resp));
  ck_assert_msg(strncmp(resp, "HTTP/1.1 403 Forbidden\r\n", 24) == 0, "%s", resp);
  ck_assert_ptr_nonnull(strstr(resp, "validation_failed"));
  ck_assert_uint_eq(counter(s.h, "reverse_tunnel.handshake.validation_failed"), 1);
  agent_free(&a);
  agent_start(&a, &s, "edge-1", 0);
  ck_assert(agent_handshake(&a, &s));
  agent_request(&a, &s, "edge-1", resp, sizeof(resp));
  ck_assert_str_eq(resp, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
  agent_park(&a);
  ck_assert_int_eq(revtun_idle_count(s.h, "edge-1", NULL), 1);
  ck_assert_int_eq(revtun_idle_count(s.h, "edge-2", NULL), 0);
  /* a certificate with two DNS SANs renders "edge-2,edge-2.acme", so it can
   * register as neither of its names, only as that literal joined id */
  struct agent b;
  agent_start(&b, &s, "edge-2", 0);
  ck_assert(agent_handshake(&b, &s));
  agent_request(&b, &s, "edge-2", resp, sizeof(resp));
  ck_assert_msg(strncmp(resp, "HTTP/1.1 403", 12) == 0, "%s", resp);
  agent_free(&b);
  agent_free(&a);
  server_stop(&s);
}
END_TEST

/* A failed handshake gets its counter and a handshake_failed record with the
 * reason, sends no HTTP answer and leaks nothing. */
static void expect_tls_failure(struct server *s, struct agent *a, const char *counter_name,
                               const char *reason_part) {
  int tunnels = revtun_idle_count(s->h, "edge-1", NULL);
  for (int i = 0; i < 200 && revtun_acceptor_pending(s->acc); i++) {
    SSL_do_handshake(a->ssl);
    char req[64] = "GET / HTTP/1.1\r\n\r\n";
    SSL_write(a->ssl, req, (int)strlen(req)); /* TLS 1.3: the client may think it is done */
    ERR_clear_error();
    pump(s->h, 4);
  }
  ck_assert_uint_eq(revtun_acceptor_pending(s->acc), 0);
  ck_assert_uint_eq(counter(s->h, counter_name), 1);
  const struct tu_event *e = tu_last(&rec, REVTUN_EV_HANDSHAKE_FAILED);
  ck_assert_ptr_nonnull(e);
  ck_assert_msg(strstr(e->meta, reason_part) != NULL, "record: %s", e->meta);
  ck_assert_int_eq(revtun_idle_count(s->h, "edge-1", NULL), tunnels); /* no new tunnel */
  /* whatever the agent reads, it is never an HTTP answer */
  char buf[256];
  ssize_t n = recv(a->fd, buf, sizeof(buf), MSG_DONTWAIT);
  ck_assert(n <= 0 || memcmp(buf, "HTTP/", 5) != 0);
  ck_assert(!tu_fd_open(a->server)); /* the library closed its end */
}

START_TEST(no_client_certificate_when_one_is_required) {
  struct server s;
  server_start(&s, "acc_default", 1, 0);
  struct agent a;
  agent_start(&a, &s, NULL, 0);
  expect_tls_failure(&s, &a, "reverse_tunnel_acceptor.transport.fail_verify_no_cert",
                     "no certificate");
  agent_free(&a);
  server_stop(&s);
}
END_TEST

static const char *const bad_certs[][2] = {
    {"stranger", "unable to get local issuer certificate"},
    {"expired", "certificate has expired"},
    {"future", "certificate is not yet valid"},
    {"revoked", "certificate revoked"},
};

START_TEST(certificates_that_do_not_verify) {
  struct server s;
  server_start(&s, "acc_default", 1, 1);
  struct agent a;
  agent_start(&a, &s, bad_certs[_i][0], 0);
  expect_tls_failure(&s, &a, "reverse_tunnel_acceptor.transport.fail_verify_error",
                     bad_certs[_i][1]);
  agent_free(&a);
  server_stop(&s);
}
END_TEST

START_TEST(plaintext_on_a_tls_listener) {
  struct server s;
  server_start(&s, "acc_default", 0, 0);
  struct agent a;
  agent_start(&a, &s, NULL, 0);
  char req[1024];
  int n = snprintf(req, sizeof(req), REQUEST_FMT, "edge-1");
  ck_assert_int_eq(write(a.fd, req, (size_t)n), n);
  for (int i = 0; i < 50 && revtun_acceptor_pending(s.acc); i++)
    pump(s.h, 4);
  ck_assert_uint_eq(revtun_acceptor_pending(s.acc), 0);
  ck_assert_uint_eq(counter(s.h, "reverse_tunnel_acceptor.transport.connection_error"), 1);
  char buf[256];
  ssize_t r = recv(a.fd, buf, sizeof(buf), MSG_DONTWAIT);
  ck_assert(r <= 0 || memcmp(buf, "HTTP/", 5) != 0); /* no HTTP answer, at most an alert */
  ck_assert_ptr_nonnull(tu_last(&rec, REVTUN_EV_HANDSHAKE_FAILED));
  agent_free(&a);
  server_stop(&s);
}
END_TEST

/* A ClientHello on a plaintext listener is a malformed HTTP request, refused
 * at once (its first byte cannot start a method). */
START_TEST(client_hello_on_a_plaintext_listener) {
  tu_rec_init(&rec);
  memset(rec.io_events, 0, sizeof(rec.io_events));
  revtun_t *h = tu_new("empty", &rec, 0);
  size_t len;
  uint8_t *cfg = tu_config("acc_default", &len);
  revtun_acceptor_t *acc;
  ck_assert_int_eq(revtun_acceptor_new(&acc, h, cfg, len, NULL, 0), REVTUN_OK);
  free(cfg);
  int sv[2];
  tu_socketpair(sv);
  ck_assert_int_eq(revtun_acceptor_accept(acc, sv[0], NULL, 1), REVTUN_OK);
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL *c = SSL_new(ctx);
  SSL_set_fd(c, sv[1]);
  SSL_set_connect_state(c);
  SSL_do_handshake(c); /* writes the ClientHello */
  ERR_clear_error();
  for (int i = 0; i < 20 && revtun_acceptor_pending(acc); i++)
    pump(h, 2);
  char buf[256];
  tu_read_all(sv[1], buf, sizeof(buf));
  ck_assert_msg(strncmp(buf, "HTTP/1.1 400 Bad Request\r\n", 26) == 0, "%s", buf);
  ck_assert_int_eq(revtun_idle_count(h, "edge-1", NULL), 0);
  SSL_free(c);
  SSL_CTX_free(ctx);
  close(sv[1]);
  revtun_free(h);
}
END_TEST

START_TEST(a_stalled_tls_handshake_times_out) {
  struct server s;
  server_start(&s, "acc_default", 1, 0);
  int sv[2];
  tu_socketpair(sv);
  ck_assert_int_eq(revtun_acceptor_accept(s.acc, sv[0], NULL, 1), REVTUN_OK);
  tu_write(sv[1], "\x16\x03\x01"); /* three bytes of a record header, then nothing */
  pump(s.h, 2);
  ck_assert_uint_eq(revtun_acceptor_pending(s.acc), 1);
  ck_assert_int_eq(revtun_tick(s.h, 1 + 10000), REVTUN_OK);
  ck_assert_uint_eq(revtun_acceptor_pending(s.acc), 0);
  ck_assert_uint_eq(counter(s.h, "reverse_tunnel.handshake.timeout"), 1);
  const struct tu_event *e = tu_last(&rec, REVTUN_EV_HANDSHAKE_FAILED);
  ck_assert_ptr_nonnull(e);
  ck_assert_ptr_nonnull(strstr(e->meta, "timeout"));
  close(sv[1]);
  server_stop(&s);
}
END_TEST

START_TEST(a_truncated_record) {
  struct server s;
  server_start(&s, "acc_default", 1, 0);
  /* a real ClientHello, captured on a pair of our own */
  int cap[2];
  tu_socketpair(cap);
  nonblocking(cap[0]);
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL *c = SSL_new(ctx);
  SSL_set_fd(c, cap[0]);
  SSL_set_connect_state(c);
  SSL_do_handshake(c);
  ERR_clear_error();
  char hello[2048];
  ssize_t n = recv(cap[1], hello, sizeof(hello), MSG_DONTWAIT);
  ck_assert_int_gt(n, 20);
  /* half of it reaches the acceptor, then the end of the stream */
  int sv[2];
  tu_socketpair(sv);
  ck_assert_int_eq(revtun_acceptor_accept(s.acc, sv[0], NULL, 1), REVTUN_OK);
  ck_assert_int_eq(write(sv[1], hello, (size_t)n / 2), n / 2);
  shutdown(sv[1], SHUT_WR);
  for (int i = 0; i < 50 && revtun_acceptor_pending(s.acc); i++)
    pump(s.h, 4);
  ck_assert_uint_eq(revtun_acceptor_pending(s.acc), 0);
  ck_assert_uint_eq(counter(s.h, "reverse_tunnel_acceptor.transport.connection_error"), 1);
  ck_assert_ptr_nonnull(tu_last(&rec, REVTUN_EV_HANDSHAKE_FAILED));
  SSL_free(c);
  SSL_CTX_free(ctx);
  close(cap[0]);
  close(cap[1]);
  close(sv[1]);
  server_stop(&s);
}
END_TEST

START_TEST(renegotiation_is_refused) {
  struct server s;
  server_start(&s, "acc_default", 1, 0);
  struct agent a;
  agent_start(&a, &s, "edge-1", 1); /* TLS 1.2: the version that has renegotiation */
  ck_assert(agent_handshake(&a, &s));
  ck_assert_int_eq(SSL_renegotiate(a.ssl), 1);
  int done = 0;
  for (int i = 0; i < 100 && !done; i++) {
    int r = SSL_do_handshake(a.ssl);
    int e = SSL_get_error(a.ssl, r);
    if (r == 1 || (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE))
      done = 1;
    ERR_clear_error();
    pump(s.h, 3);
  }
  ck_assert_int_eq(SSL_renegotiate_pending(a.ssl), 1); /* it never completed */
  for (int i = 0; i < 50 && revtun_acceptor_pending(s.acc); i++)
    pump(s.h, 4);
  ck_assert_int_eq(revtun_idle_count(s.h, "edge-1", NULL), 0);
  agent_free(&a);
  server_stop(&s);
}
END_TEST

/* An agent that sends close_notify instead of abandoning the session quietly
 * puts a TLS record on the parked raw stream: not an echo, so the tunnel
 * closes with idle_unexpected_data and its record. */
START_TEST(close_notify_where_a_quiet_shutdown_was_expected) {
  struct server s;
  server_start(&s, "acc_default", 1, 0);
  struct agent a;
  agent_start(&a, &s, "edge-1", 0);
  ck_assert(agent_handshake(&a, &s));
  char resp[512];
  agent_request(&a, &s, "edge-1", resp, sizeof(resp));
  ck_assert_str_eq(resp, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
  SSL_shutdown(a.ssl); /* sends close_notify */
  ERR_clear_error();
  pump(s.h, 5);
  ck_assert_int_eq(revtun_idle_count(s.h, "edge-1", NULL), 0);
  const struct tu_event *e = tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED);
  ck_assert_ptr_nonnull(e);
  ck_assert_int_eq(e->reason, REVTUN_CLOSE_IDLE_UNEXPECTED_DATA);
  agent_free(&a);
  server_stop(&s);
}
END_TEST

/* A certificate and key swapped in (SIGHUP in the proxy) serve new handshakes;
 * sessions already parked are untouched. */
START_TEST(reloading_the_context_keeps_tunnels) {
  struct server s;
  server_start(&s, "acc_default", 1, 0);
  struct agent a;
  agent_start(&a, &s, "edge-1", 0);
  ck_assert(agent_handshake(&a, &s));
  char resp[512];
  agent_request(&a, &s, "edge-1", resp, sizeof(resp));
  agent_park(&a);
  SSL_CTX *fresh;
  char err[256];
  ck_assert_int_eq(revtun_openssl_server_ctx(&fresh, file(0, "upstream", "pem"),
                                             file(1, "upstream", "key"), file(2, "ca", "pem"),
                                             file(3, "crl", "pem"), err, sizeof(err)),
                   REVTUN_OK);
  ck_assert_int_eq(revtun_openssl_set_ctx(s.tls, fresh), REVTUN_OK);
  SSL_CTX_free(fresh);
  ck_assert_int_eq(revtun_idle_count(s.h, "edge-1", NULL), 1);
  struct agent b; /* the new context checks the CRL now */
  agent_start(&b, &s, "revoked", 0);
  expect_tls_failure(&s, &b, "reverse_tunnel_acceptor.transport.fail_verify_error",
                     "certificate revoked");
  agent_free(&b);
  agent_free(&a);
  server_stop(&s);
}
END_TEST

/* ------------------------------------------------- allocation failures */

struct failing {
  long countdown; /* fail when it reaches 0; negative: never */
  long live;
};

static void *f_malloc(size_t n, void *u) {
  struct failing *f = u;
  if (f->countdown >= 0 && f->countdown-- == 0)
    return NULL;
  void *p = malloc(n);
  f->live += p != NULL;
  return p;
}

static void *f_realloc(void *p, size_t n, void *u) {
  struct failing *f = u;
  if (f->countdown >= 0 && f->countdown-- == 0)
    return NULL;
  void *q = realloc(p, n);
  f->live += q && !p;
  return q;
}

static void f_free(void *p, void *u) {
  struct failing *f = u;
  f->live -= p != NULL;
  free(p);
}

/* OpenSSL's allocator hooks are process-wide, so only the library's own
 * allocations on the TLS path fail here, each in turn: every attempt ends
 * with a tunnel or a clean refusal, and nothing of the library's leaks. */
START_TEST(every_library_allocation_on_the_tls_path_may_fail) {
  int tunnels = 0, refused = 0;
  for (long k = 0; k < 400; k++) {
    struct failing f = {-1, 0};
    tu_rec_init(&rec);
    memset(rec.io_events, 0, sizeof(rec.io_events));
    revtun_options_t *o;
    ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
    tu_options(o, &rec);
    ck_assert_int_eq(revtun_options_set_allocator(o, f_malloc, f_realloc, f_free, &f), REVTUN_OK);
    struct server s;
    memset(&s, 0, sizeof(s));
    s.h = tu_new_opts("empty", o, 0);
    revtun_options_free(o);
    size_t len;
    uint8_t *cfg = tu_config("acc_default", &len);
    ck_assert_int_eq(revtun_acceptor_new(&s.acc, s.h, cfg, len, NULL, 0), REVTUN_OK);
    free(cfg);
    char err[256];
    ck_assert_int_eq(revtun_openssl_server_ctx(&s.ctx, file(0, "upstream", "pem"),
                                               file(1, "upstream", "key"), file(2, "ca", "pem"),
                                               NULL, err, sizeof(err)),
                     REVTUN_OK);
    ck_assert_int_eq(revtun_openssl_new(&s.tls, s.ctx), REVTUN_OK);
    ck_assert_int_eq(revtun_acceptor_set_transport(s.acc, revtun_openssl_transport(s.tls)),
                     REVTUN_OK);
    f.countdown = k; /* from here on, the k-th allocation fails */
    struct agent a;
    memset(&a, 0, sizeof(a));
    int sv[2];
    tu_socketpair(sv);
    a.server = sv[0];
    a.fd = sv[1];
    a.ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(a.ctx, file(4, "ca", "pem"), NULL);
    SSL_CTX_use_certificate_chain_file(a.ctx, file(5, "edge-1", "pem"));
    SSL_CTX_use_PrivateKey_file(a.ctx, file(6, "edge-1", "key"), SSL_FILETYPE_PEM);
    a.ssl = SSL_new(a.ctx);
    SSL_set_fd(a.ssl, a.fd);
    SSL_set_connect_state(a.ssl);
    int rc = revtun_acceptor_accept(s.acc, a.server, NULL, 1);
    if (rc != REVTUN_OK) {
      ck_assert_int_eq(rc, REVTUN_E_NOMEM);
      ck_assert(tu_fd_open(a.server)); /* refused: still the caller's */
      close(a.server);
      refused++;
    } else if (agent_handshake(&a, &s)) {
      char resp[512];
      agent_request(&a, &s, "edge-1", resp, sizeof(resp));
      if (strcmp(resp, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n") == 0) {
        ck_assert_int_eq(revtun_idle_count(s.h, "edge-1", NULL), 1);
        tunnels++;
      } else {
        ck_assert_int_eq(revtun_idle_count(s.h, "edge-1", NULL), 0);
        refused++;
      }
    } else {
      refused++;
    }
    agent_free(&a);
    bool done = f.countdown >= 0; /* the run needed fewer than k allocations */
    server_stop(&s);
    ck_assert_int_eq(f.live, 0);
    if (done)
      break;
  }
  ck_assert_int_gt(refused, 3);
  ck_assert_int_ge(tunnels, 1);
}
END_TEST

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* an agent writing into a closed connection */
  make_pki();
  Suite *su = suite_create("tls");
  TCase *tc = tcase_create("tls");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, mutual_tls_handshake_then_raw_park_then_tls_after_handoff);
  tcase_add_test(tc, handoff_session_refuses_a_certificate_for_another_node);
  tcase_add_test(tc, identity_is_bound_to_the_certificate);
  tcase_add_test(tc, no_client_certificate_when_one_is_required);
  tcase_add_loop_test(tc, certificates_that_do_not_verify, 0,
                      (int)(sizeof(bad_certs) / sizeof(bad_certs[0])));
  tcase_add_test(tc, plaintext_on_a_tls_listener);
  tcase_add_test(tc, client_hello_on_a_plaintext_listener);
  tcase_add_test(tc, a_stalled_tls_handshake_times_out);
  tcase_add_test(tc, a_truncated_record);
  tcase_add_test(tc, renegotiation_is_refused);
  tcase_add_test(tc, close_notify_where_a_quiet_shutdown_was_expected);
  tcase_add_test(tc, reloading_the_context_keeps_tunnels);
  tcase_add_test(tc, every_library_allocation_on_the_tls_path_may_fail);
  suite_add_tcase(su, tc);
  int rc = tu_run(su);
  remove_pki();
  return rc;
}
